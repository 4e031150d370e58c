"""DVC stage crops: face crops of every video of one DFDC part (fakes use their original's boxes)."""

from pathlib import Path

from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.pipeline import crops


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--part-dir", type=Path, required=True, help="the DFDC part folder (videos + metadata.json)")
    parser.add_argument("--boxes", type=Path, required=True, help="this part's folder of box files")
    parser.add_argument("--out", type=Path, required=True, help="folder for <video>/<frame>_<face>.png + index.csv")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    crops.run(args.part_dir, args.boxes, args.out, args.report, crops.CropsConfig.from_params(params))


if __name__ == "__main__":
    run_stage(main)
