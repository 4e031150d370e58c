"""A Triton Inference Server model repository from the exported models.

Layout (Triton's, in the model store's ``models/triton``): ``<repo>/<member>/config.pbtxt`` and
``<repo>/<member>/1/model.onnx`` for the ONNX Runtime backend; with ``--engines``, where the store
holds a TensorRT engine for the member (``models/trt/<member>.plan``), also
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

from deepfake.core.errors import InputError, ToolchainError
from deepfake.core.fileio import atomic_dir, write_json_atomic
from deepfake.core.params import Params
from deepfake.modeling.store import ModelStore

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.pbtxt"
VERSION = "1"


@dataclass(frozen=True)
class Config:
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int

    @classmethod
    def from_params(cls, params: Params) -> Config:
        sect = params.triton
        return cls(sect.max_batch_size, tuple(sect.preferred_batch_sizes), sect.max_queue_delay_us)


@dataclass(frozen=True)
class Paths:
    models: Path  # the models/ root: reads onnx/ (and trt/ with engines), writes triton/
    report: Path
    engines: bool = False  # add <member>-trt models for the TensorRT engines build_trt made


def _schema() -> Any:
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as err:
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


def model_config(name: str, platform: str, onnx_path: Path, config: Config) -> Any:
    """Triton's ModelConfig for one model, with inputs and outputs read from the ONNX graph."""
    import onnx

    schema = _schema()
    types: dict[int, Any] = {onnx.TensorProto.FLOAT: schema.TYPE_FP32, onnx.TensorProto.FLOAT16: schema.TYPE_FP16}
    message = schema.ModelConfig(name=name, platform=platform, max_batch_size=config.max_batch_size)
    inputs, outputs = graph_io(onnx_path)
    for values, field in ((inputs, message.input), (outputs, message.output)):
        for tensor_name, elem_type, dims in values:
            if elem_type not in types:
                raise InputError(f"{onnx_path}: tensor {tensor_name!r} has ONNX type {elem_type}, not float")
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
    repo: Path, name: str, platform: str, artifact: Path, filename: str, onnx_path: Path, config: Config
) -> None:
    from google.protobuf import text_format

    message = model_config(name, platform, onnx_path, config)
    (repo / name / VERSION).mkdir(parents=True)
    shutil.copyfile(artifact, repo / name / VERSION / filename)
    (repo / name / CONFIG_FILE).write_text(text_format.MessageToString(message))


def build_repository(store: ModelStore, config: Config, engines: bool = False) -> list[str]:
    """Write the repository atomically (a temp folder renamed into place); returns the model names."""
    manifest = store.read_manifest("onnx")
    out_dir = store.folder("triton")
    names = []
    with atomic_dir(out_dir) as tmp:
        for member in manifest["members"]:
            onnx_path = store.graph(member["name"], "onnx")
            _write_model(tmp, member["name"], "onnxruntime_onnx", onnx_path, "model.onnx", onnx_path, config)
            names.append(member["name"])
            engine = store.engine(member["name"]) if engines else None
            if engine is not None and engine.is_file():
                trt_name = f"{member['name']}-trt"
                _write_model(tmp, trt_name, "tensorrt_plan", engine, "model.plan", onnx_path, config)
                names.append(trt_name)
    logger.info("Triton repository %s: %s", out_dir, ", ".join(names))
    return names


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """The triton stage: the repository, and a report naming each model and its backend."""
    store = ModelStore(paths.models)
    names = build_repository(store, config, paths.engines)
    repository = store.folder("triton")
    report = {
        "repository": str(repository),
        "models": {n: parse_config(repository / n / CONFIG_FILE).platform for n in names},
    }
    write_json_atomic(paths.report, report)
    return report
