"""DVC stage evaluate@<testset>: every trained model and the ensembles on one test set's holdout rows, or on every
video of its test-only datasets."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
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
    parser.add_argument("--plots", type=Path, required=True, help="folder for roc/pr/confusion/comparison PNGs")
    args, params = parse_stage_args(parser, argv)
    roots = DataRoots(args.crops, args.landmarks, args.masks)
    paths = evaluate.Paths(args.folds, roots, args.models, args.metrics, args.plots, args.test_crops)
    config = evaluate.Config.from_params(params, args.testset)
    if args.package:
        config = evaluate.for_package(config, ModelStore(args.models))
    evaluate.run(config, paths)


if __name__ == "__main__":
    run_stage(main)
