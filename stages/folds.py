"""DVC stage folds: leak-free folds over every part's crops (data/folds.csv, the training index)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import folds


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--diffs", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folds CSV")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    paths = folds.Paths(args.crops, args.landmarks, args.diffs, args.masks, args.out, args.report)
    folds.run(folds.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
