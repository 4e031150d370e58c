"""DVC stage evaluate: every trained model and the ensembles on the holdout fold."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.modeling.data import DataRoots
from deepfake.stages import evaluate


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="the models/ root (reads train/)")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON")
    parser.add_argument("--plots", type=Path, required=True, help="folder for roc/pr/confusion/comparison PNGs")
    parser.add_argument("--comparison", type=Path, required=True, help="markdown comparison table")
    args, params = parse_stage_args(parser, argv)
    roots = DataRoots(args.crops, args.landmarks, args.masks)
    paths = evaluate.Paths(args.folds, roots, args.models, args.metrics, args.plots, args.comparison)
    evaluate.run(evaluate.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
