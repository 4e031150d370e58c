"""DVC stage crops: face crops of every video of one part (fakes are cut with their original's boxes)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import crops


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--part-dir", type=Path, required=True, help="the DFDC part folder (videos + metadata.json)")
    parser.add_argument("--boxes", type=Path, required=True, help="the bboxes stage's folder for this part")
    parser.add_argument("--out", type=Path, required=True, help="folder for <video>/<frame>_<face>.png and index.csv")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    crops.run(crops.Config.from_params(params), crops.Paths(args.part_dir, args.boxes, args.out, args.report))


if __name__ == "__main__":
    run_stage(main)
