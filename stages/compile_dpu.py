"""DVC stage compile_dpu (separate target): VCK5000 DPU xmodels with Vitis AI; needs its toolchain."""

from pathlib import Path

from deepfake import compile as hw
from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.data import DataRoots


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="the trained models folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for <member>.xmodel")
    parser.add_argument("--report", type=Path, required=True, help="report JSON")
    args, params = parse_stage_args(parser, argv)
    hw.compile_dpu(params, args.folds, DataRoots(args.crops, Path(), args.masks), args.models, args.out, args.report)


if __name__ == "__main__":
    run_stage(main)
