"""DVC stage quantize: every exported ONNX model to int8 with AMD Quark, tested on the holdout."""

from pathlib import Path

from deepfake import quantize
from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.data import DataRoots


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="fake crops are read with their masks")
    parser.add_argument("--onnx", type=Path, required=True, help="the export stage's folder (manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the int8 <member>.onnx files")
    parser.add_argument("--report", type=Path, required=True, help="fp32 vs int8 metrics and DPU operator report")
    args, params = parse_stage_args(parser, argv)
    quantize.run(params, args.folds, DataRoots(args.crops, Path(), args.masks), args.onnx, args.out, args.report)


if __name__ == "__main__":
    run_stage(main)
