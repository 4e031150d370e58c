"""DVC stage diffs: SSIM difference maps and binarised masks for the fake crops of one part."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import diffs


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--crops", type=Path, required=True, help="the crops root (holds <part>/index.csv)")
    parser.add_argument("--part", required=True, help="the part name")
    parser.add_argument("--diffs-out", type=Path, required=True, help="folder for <fake>/<frame>_<face>.png diffs")
    parser.add_argument("--masks-out", type=Path, required=True, help="folder for <fake>/<frame>_<face>.png masks")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    paths = diffs.Paths(args.crops, args.part, args.diffs_out, args.masks_out, args.report)
    diffs.run(diffs.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
