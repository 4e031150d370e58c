"""DVC stage matrix: every model and ensemble x every test set, from the evaluate@<testset> JSONs."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import matrix


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--evaluations", type=Path, required=True, help="folder of <testset>.json (metrics/evaluate)")
    parser.add_argument("--out-json", type=Path, required=True, help="the matrix as metrics JSON")
    parser.add_argument("--out-md", type=Path, required=True, help="the matrix as markdown tables")
    parser.add_argument("--heatmap", type=Path, required=True, help="PNG heatmap of the video-level AUCs")
    parser.add_argument(
        "--package-evaluations",
        type=Path,
        help="with the zoo packages' rows: folder of <package>/<testset>.json (metrics/zoo/evaluate)",
    )
    args, params = parse_stage_args(parser, argv)
    paths = matrix.Paths(args.evaluations, args.out_json, args.out_md, args.heatmap, args.package_evaluations)
    with_packages = args.package_evaluations is not None
    matrix.run(matrix.Config.with_packages(params) if with_packages else matrix.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
