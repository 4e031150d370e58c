"""DVC stage folds: leak-free folds over every crop of the configured parts (data/folds.csv)."""

from pathlib import Path

from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.folds import FoldsConfig
from deepfake.params import require, section
from deepfake.pipeline import folds


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--diffs", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folds CSV")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    parts = require(section(params, "data"), "parts", list, "data")
    folds.run(
        args.crops,
        args.landmarks,
        args.diffs,
        args.masks,
        parts,
        args.out,
        args.report,
        FoldsConfig.from_params(params),
    )


if __name__ == "__main__":
    run_stage(main)
