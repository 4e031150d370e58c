"""DVC stage triton: a Triton Inference Server model repository from the exported ONNX models."""

from pathlib import Path

from deepfake import triton
from deepfake.cli import parse_stage_args, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--onnx", type=Path, required=True, help="the export stage's folder (manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="the model repository folder")
    parser.add_argument("--report", type=Path, required=True, help="report JSON (models and backends)")
    parser.add_argument("--engines", type=Path, help="TensorRT engines <member>.plan to add (build_trt's folder)")
    args, params = parse_stage_args(parser, argv)
    triton.run(params, args.onnx, args.out, args.engines, args.report)


if __name__ == "__main__":
    run_stage(main)
