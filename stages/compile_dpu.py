"""DVC stage compile_dpu (separate target): VCK5000 DPU xmodels with Vitis AI; needs its toolchain."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.modeling.data import DataRoots
from deepfake.stages import compile_dpu


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="fake crops are read with their masks")
    parser.add_argument("--models", type=Path, required=True, help="the models/ root (the model store)")
    parser.add_argument("--report", type=Path, required=True, help="report JSON")
    args, params = parse_stage_args(parser, argv)
    roots = DataRoots(args.crops, Path(), args.masks)
    compile_dpu.run(
        compile_dpu.Config.from_params(params), compile_dpu.Paths(args.folds, roots, args.models, args.report)
    )


if __name__ == "__main__":
    run_stage(main)
