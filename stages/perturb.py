"""DVC stage perturb@<testset>: each test video written once per robustness variant (and the baseline)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import perturb


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--testset", required=True, help="a key of evaluate.testsets in params")
    parser.add_argument("--folds", type=Path, required=True, help="folds CSV (a folded test set's holdout videos)")
    parser.add_argument("--index", type=Path, required=True, help="folder of the datasets' canonical indexes")
    parser.add_argument("--out", type=Path, required=True, help="folder of the perturbed set (data/robustness/<T>)")
    parser.add_argument("--report", type=Path, required=True, help="report JSON")
    args, params = parse_stage_args(parser, argv)
    config = perturb.Config.from_params(params, args.testset)
    specs = {name: params.data.spec(name) for name in config.datasets}  # the params make sure each exists
    roots = {name: Path(spec.root) for name, spec in specs.items() if spec is not None}
    extra = {name: params.data.extra_roots(name) for name in config.datasets}
    perturb.run(config, perturb.Paths(args.folds, args.index, roots, extra, args.out, args.report))


if __name__ == "__main__":
    run_stage(main)
