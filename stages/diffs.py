"""DVC stage diffs: SSIM difference maps and binarised masks for the fake crops of one DFDC part."""

from pathlib import Path

from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.pipeline import diffs


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--crops", type=Path, required=True, help="the crops root (holds <part>/index.csv)")
    parser.add_argument("--part", required=True, help="DFDC part name")
    parser.add_argument("--diffs-out", type=Path, required=True, help="folder for grey SSIM difference maps")
    parser.add_argument("--masks-out", type=Path, required=True, help="folder for binarised masks")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    config = diffs.DiffsConfig.from_params(params)
    diffs.run(args.crops, args.part, args.diffs_out, args.masks_out, args.report, config)


if __name__ == "__main__":
    run_stage(main)
