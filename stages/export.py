"""DVC stage export: every trained model to ONNX, checked against PyTorch on holdout crops."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.modeling.data import DataRoots
from deepfake.stages import export


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="fake crops are read with their masks")
    parser.add_argument("--models", type=Path, required=True, help="the models/ root (the model store)")
    parser.add_argument("--report", type=Path, required=True, help="report JSON")
    parser.add_argument("--sample", type=Path, help="the sample stage's output root (the card's demonstration flag)")
    parser.add_argument("--matrix", type=Path, help="the evaluation matrix JSON (the card's figures)")
    parser.add_argument(
        "--calibration", type=Path, help="the calibrate stage's models/calibration.json (the package's verdicts)"
    )
    args, params = parse_stage_args(parser, argv)
    roots = DataRoots(args.crops, Path(), args.masks)
    paths = export.Paths(
        args.folds,
        roots,
        args.models,
        args.report,
        sample=args.sample,
        matrix=args.matrix,
        calibration=args.calibration,
    )
    export.run(export.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
