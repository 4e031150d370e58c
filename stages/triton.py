"""DVC stage triton: a Triton Inference Server model repository from the exported ONNX models."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import triton


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--models", type=Path, required=True, help="the models/ root: reads onnx/, writes triton/")
    parser.add_argument("--report", type=Path, required=True, help="report JSON (models and backends)")
    parser.add_argument("--engines", action="store_true", help="also serve build_trt's TensorRT engines (models/trt)")
    args, params = parse_stage_args(parser, argv)
    paths = triton.Paths(args.models, args.report, args.engines)
    triton.run(triton.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
