"""DVC stage bboxes: MTCNN face boxes for the REAL videos of one DFDC part."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import bboxes


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--part-dir", type=Path, required=True, help="the DFDC part folder (videos + metadata.json)")
    parser.add_argument("--out", type=Path, required=True, help="folder for <video>.json box files")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    bboxes.run(bboxes.Config.from_params(params), bboxes.Paths(args.part_dir, args.out, args.report))


if __name__ == "__main__":
    run_stage(main)
