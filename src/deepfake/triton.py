"""A Triton Inference Server model repository from the exported models.

Layout (Triton's): ``<repo>/<member>/config.pbtxt`` and ``<repo>/<member>/1/model.onnx`` for the
ONNX Runtime backend; where a TensorRT engine ``<engines>/<member>.plan`` exists, also
``<repo>/<member>-trt/1/model.plan`` for the TensorRT backend. Configs are built as Triton's own
``ModelConfig`` protobuf (``tritonclient`` ships the schema) from the ONNX graph's inputs and
outputs, with dynamic batching, so names, shapes and types cannot drift from the model.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake.export import read_manifest
from deepfake.fileio import atomic_dir, write_json_atomic
from deepfake.params import section

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.pbtxt"
VERSION = "1"


@dataclass(frozen=True)
class TritonConfig:
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TritonConfig:
        sect = section(params, "triton")
        config = cls(
            max_batch_size=int(sect["max_batch_size"]),
            preferred_batch_sizes=tuple(int(b) for b in sect["preferred_batch_sizes"]),
            max_queue_delay_us=int(sect["max_queue_delay_us"]),
        )
        if config.max_batch_size < 1 or any(not 1 <= b <= config.max_batch_size for b in config.preferred_batch_sizes):
            raise ValueError("triton.preferred_batch_sizes must lie in [1, triton.max_batch_size]")
        return config


def _schema() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as err:
        from deepfake.errors import ToolchainError

        raise ToolchainError(f"tritonclient is not installed ({err}); pip install -r requirements.txt") from err
    return model_config_pb2


def graph_io(path: Path) -> tuple[list[tuple[str, int, list[int]]], list[tuple[str, int, list[int]]]]:
    """(name, ONNX element type, dims without the batch axis) of the graph's inputs and outputs."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values: Any) -> list[tuple[str, int, list[int]]]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            out.append((value.name, tensor.elem_type, dims[1:]))
        return out

    return describe(graph.input), describe(graph.output)


def model_config(name: str, platform: str, onnx_path: Path, config: TritonConfig) -> Any:
    """Triton's ModelConfig for one model, with inputs and outputs read from the ONNX graph."""
    import onnx

    schema = _schema()
    types = {onnx.TensorProto.FLOAT: schema.TYPE_FP32, onnx.TensorProto.FLOAT16: schema.TYPE_FP16}
    message = schema.ModelConfig(name=name, platform=platform, max_batch_size=config.max_batch_size)
    inputs, outputs = graph_io(onnx_path)
    for values, field in ((inputs, message.input), (outputs, message.output)):
        for tensor_name, elem_type, dims in values:
            if elem_type not in types:
                raise ValueError(f"{onnx_path}: tensor {tensor_name!r} has ONNX type {elem_type}, not float")
            entry = field.add()
            entry.name, entry.data_type = tensor_name, types[elem_type]
            entry.dims.extend(dims)
    message.dynamic_batching.preferred_batch_size.extend(config.preferred_batch_sizes)
    message.dynamic_batching.max_queue_delay_microseconds = config.max_queue_delay_us
    return message


def parse_config(path: Path) -> Any:
    """Parse a config.pbtxt with Triton's schema (raises on unknown fields or bad values)."""
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), _schema().ModelConfig())


def _write_model(
    repo: Path, name: str, platform: str, artifact: Path, filename: str, onnx_path: Path, config: TritonConfig
) -> None:
    from google.protobuf import text_format

    message = model_config(name, platform, onnx_path, config)
    (repo / name / VERSION).mkdir(parents=True)
    shutil.copyfile(artifact, repo / name / VERSION / filename)
    (repo / name / CONFIG_FILE).write_text(text_format.MessageToString(message))


def build_repository(onnx_dir: Path, out_dir: Path, config: TritonConfig, engines_dir: Path | None = None) -> list[str]:
    """Write the repository atomically (a temp folder renamed into place); returns the model names."""
    manifest = read_manifest(onnx_dir)
    names = []
    with atomic_dir(out_dir) as tmp:
        for member in manifest["members"]:
            onnx_path = onnx_dir / member["file"]
            _write_model(tmp, member["name"], "onnxruntime_onnx", onnx_path, "model.onnx", onnx_path, config)
            names.append(member["name"])
            engine = engines_dir / f"{member['name']}.plan" if engines_dir else None
            if engine is not None and engine.is_file():
                trt_name = f"{member['name']}-trt"
                _write_model(tmp, trt_name, "tensorrt_plan", engine, "model.plan", onnx_path, config)
                names.append(trt_name)
    logger.info("Triton repository %s: %s", out_dir, ", ".join(names))
    return names


def run(
    params: dict[str, Any], onnx_dir: Path, out_dir: Path, engines_dir: Path | None = None, report: Path | None = None
) -> list[str]:
    """The triton stage: the repository, and a report naming each model and its backend."""
    names = build_repository(onnx_dir, out_dir, TritonConfig.from_params(params), engines_dir)
    if report is not None:
        models = {n: parse_config(out_dir / n / CONFIG_FILE).platform for n in names}
        write_json_atomic(report, {"repository": str(out_dir), "models": models})
    return names
