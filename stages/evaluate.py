"""DVC stage evaluate@<testset>: every trained model and the ensembles on one test set's holdout rows, or on every
video of its test-only datasets."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.core.errors import InputError
from deepfake.modeling.calibration import CALIBRATION_FILE
from deepfake.modeling.data import DataRoots
from deepfake.modeling.store import ModelStore
from deepfake.stages import evaluate


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--testset", required=True, help="a key of evaluate.testsets in params")
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument(
        "--test-crops", type=Path, required=True, help="the test-only datasets' crops root (<dataset>/index.csv)"
    )
    parser.add_argument("--models", type=Path, required=True, help="the models/ root (reads train/)")
    parser.add_argument(
        "--package",
        action="store_true",
        help="--models is a model package (models/zoo/<package>): its own members and input size, not the params'",
    )
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON (metrics/evaluate/<testset>.json)")
    parser.add_argument(
        "--plots", type=Path, required=True, help="folder for the PNGs and the data plots (roc/pr/reliability JSON)"
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="every row's calibration and operating points (models/calibration.json, the calibrate stage's); "
        "with --package, the package's own calibration.json is read when it has one",
    )
    parser.add_argument(
        "--decision", type=Path, help="the package row's decision figures (metrics/decision/<testset>.json)"
    )
    args, params = parse_stage_args(parser, argv)
    roots = DataRoots(args.crops, args.landmarks, args.masks)
    calibration = args.calibration
    if calibration is not None and not calibration.is_file():
        raise InputError(f"{calibration}: not found; run the calibrate stage (dvc repro calibrate)")
    config = evaluate.Config.from_params(params, args.testset)
    if args.package:
        store = ModelStore(args.models)
        config = evaluate.for_package(config, store)
        calibration = store.folder("onnx") / CALIBRATION_FILE
    paths = evaluate.Paths(
        args.folds, roots, args.models, args.metrics, args.plots, args.test_crops, calibration, args.decision
    )
    evaluate.run(config, paths)


if __name__ == "__main__":
    run_stage(main)
