"""DVC stage robustness@<testset>: the model package's figures on the perturbed test videos (deepfake predict)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import robustness


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--testset", required=True, help="a key of evaluate.testsets in params")
    parser.add_argument("--perturbed", type=Path, required=True, help="the perturb stage's folder (videos.csv)")
    parser.add_argument("--models", type=Path, required=True, help="the models/ root whose onnx/ is the package")
    parser.add_argument("--predictions", type=Path, required=True, help="predict's JSON of every perturbed file")
    parser.add_argument("--metrics", type=Path, required=True, help="metrics JSON")
    parser.add_argument("--plot-data", type=Path, required=True, help="AUC per family and level (DVC data plot)")
    parser.add_argument("--plot", type=Path, required=True, help="the same as a PNG")
    parser.add_argument("--details", type=Path, required=True, help="every figure per variant (report JSON)")
    args, params = parse_stage_args(parser, argv)
    paths = robustness.Paths(
        args.perturbed,
        args.models,
        args.params,
        args.predictions,
        args.metrics,
        args.plot_data,
        args.plot,
        args.details,
    )
    robustness.run(robustness.Config.from_params(params, args.testset), paths)


if __name__ == "__main__":
    run_stage(main)
