"""DVC stage export: every trained model to ONNX, checked against PyTorch on holdout crops."""

from pathlib import Path

from deepfake import export
from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.data import DataRoots


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="fake crops are read with their masks")
    parser.add_argument("--models", type=Path, required=True, help="the trained models folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for <member>.onnx and manifest.json")
    parser.add_argument("--report", type=Path, required=True, help="parity metrics JSON")
    args, params = parse_stage_args(parser, argv)
    roots = DataRoots(args.crops, Path(), args.masks)
    export.run(params, args.folds, roots, args.models, args.out, args.report)


if __name__ == "__main__":
    run_stage(main)
