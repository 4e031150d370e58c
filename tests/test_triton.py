"""The Triton model repository: every config.pbtxt parses with Triton's schema and matches its model."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from tritonclient.grpc import model_config_pb2

from deepfake.core.errors import ParamsError
from deepfake.modeling.store import INPUT_NAME, ModelStore
from deepfake.stages import triton
from tests.conftest import as_params, store_linking, tiny_params

TRITON = {"triton__max_batch_size": 16, "triton__preferred_batch_sizes": [4, 8], "triton__max_queue_delay_us": 500}


@pytest.fixture(scope="module")
def store(models_root: dict, tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A models/ folder whose onnx/ is the models_root fixture's (classifier and uynet, exported from the
    trained fixture's checkpoints): the triton stage reads it and writes triton/ and tensorrt/ beside it."""
    return store_linking(tmp_path_factory.mktemp("triton"), "onnx", models_root["store"].folder("onnx"))


def test_repository_configs_parse_and_match_the_onnx_models(store: ModelStore, tmp_path: Path) -> None:
    onnx_dir, repo = store.folder("onnx"), store.folder("triton")
    config = triton.Config.from_params(as_params(tiny_params(tmp_path, **TRITON)))
    engine = store.engine("uynet")
    engine.parent.mkdir(parents=True, exist_ok=True)
    engine.write_bytes(b"engine bytes")  # an input file only: the layout is what is tested
    assert not store.engine("classifier").exists()
    returned = triton.run(config, triton.Paths(store.root, tmp_path / "triton.json", engines=True))
    names = list(returned["models"])
    assert names == ["classifier", "uynet", "uynet-trt"]
    report = json.loads((tmp_path / "triton.json").read_text())
    assert report == returned
    assert report["models"] == {
        "classifier": "onnxruntime_onnx",
        "uynet": "onnxruntime_onnx",
        "uynet-trt": "tensorrt_plan",
    }
    for name in names:
        parsed = triton.parse_config(repo / name / "config.pbtxt")
        assert parsed.name == name
        assert parsed.max_batch_size == 16
        assert list(parsed.dynamic_batching.preferred_batch_size) == [4, 8]
        assert parsed.dynamic_batching.max_queue_delay_microseconds == 500
        model = "uynet" if name == "uynet-trt" else name
        graph = onnx.load(str(onnx_dir / f"{model}.onnx")).graph
        assert [i.name for i in parsed.input] == [i.name for i in graph.input] == [INPUT_NAME]
        assert [o.name for o in parsed.output] == [o.name for o in graph.output]
        size = store.read_manifest("onnx")["input"]["image_size"]
        assert list(parsed.input[0].dims) == [3, size, size]
        assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in [*parsed.input, *parsed.output])
        assert list(parsed.output[0].dims) == [1]
    assert triton.parse_config(repo / "classifier" / "config.pbtxt").platform == "onnxruntime_onnx"
    assert triton.parse_config(repo / "uynet-trt" / "config.pbtxt").platform == "tensorrt_plan"
    assert (repo / "uynet-trt" / "1" / "model.plan").is_file()
    assert (repo / "classifier" / "1" / "model.onnx").is_file()
    uynet = triton.parse_config(repo / "uynet" / "config.pbtxt")
    assert [list(o.dims) for o in uynet.output] == [[1], [1, size, size]]


def test_bad_config_text_and_params_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nmax_batch_sizes: 4\n')
    with pytest.raises(Exception, match="max_batch_sizes"):
        triton.parse_config(bad)
    with pytest.raises(ParamsError, match=r"triton\.preferred_batch_sizes"):
        as_params(tiny_params(tmp_path, **{**TRITON, "triton__preferred_batch_sizes": [64]}))
