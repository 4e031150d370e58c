"""The Triton model repository: every config.pbtxt parses with Triton's schema and matches its model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import onnx
import pytest
from tritonclient.grpc import model_config_pb2

from deepfake import export, triton

PARAMS = {"triton": {"max_batch_size": 16, "preferred_batch_sizes": [4, 8], "max_queue_delay_us": 500}}


@pytest.fixture(scope="module")
def onnx_dir(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("triton")
    params = copy.deepcopy(trained["params"])
    params["ensemble"]["seeds"] = []
    export.run(params, trained["folds"], trained["roots"], trained["root"] / "models", root / "onnx", root / "e.json")
    return root / "onnx"


def test_repository_configs_parse_and_match_the_onnx_models(onnx_dir: Path, tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    engines.mkdir()
    (engines / "uynet.plan").write_bytes(b"engine bytes")  # an input file only: the layout is what is tested
    names = triton.run(PARAMS, onnx_dir, tmp_path / "repo", engines, tmp_path / "triton.json")
    assert names == ["classifier", "uynet", "uynet-trt"]
    report = json.loads((tmp_path / "triton.json").read_text())
    assert report["models"] == {
        "classifier": "onnxruntime_onnx",
        "uynet": "onnxruntime_onnx",
        "uynet-trt": "tensorrt_plan",
    }
    for name in names:
        config = triton.parse_config(tmp_path / "repo" / name / "config.pbtxt")
        assert config.name == name
        assert config.max_batch_size == 16
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
        model = "uynet" if name == "uynet-trt" else name
        graph = onnx.load(str(onnx_dir / f"{model}.onnx")).graph
        assert [i.name for i in config.input] == [i.name for i in graph.input] == ["image"]
        assert [o.name for o in config.output] == [o.name for o in graph.output]
        size = export.read_manifest(onnx_dir)["input"]["image_size"]
        assert list(config.input[0].dims) == [3, size, size]
        assert all(t.data_type == model_config_pb2.TYPE_FP32 for t in [*config.input, *config.output])
        assert list(config.output[0].dims) == [1]
    assert triton.parse_config(tmp_path / "repo" / "classifier" / "config.pbtxt").platform == "onnxruntime_onnx"
    assert triton.parse_config(tmp_path / "repo" / "uynet-trt" / "config.pbtxt").platform == "tensorrt_plan"
    assert (tmp_path / "repo" / "uynet-trt" / "1" / "model.plan").is_file()
    assert (tmp_path / "repo" / "classifier" / "1" / "model.onnx").is_file()
    uynet = triton.parse_config(tmp_path / "repo" / "uynet" / "config.pbtxt")
    assert [list(o.dims) for o in uynet.output] == [[1], [1, size, size]]


def test_bad_config_text_and_params_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nmax_batch_sizes: 4\n')
    with pytest.raises(Exception, match="max_batch_sizes"):
        triton.parse_config(bad)
    params = {"triton": {**PARAMS["triton"], "preferred_batch_sizes": [64]}}
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        triton.TritonConfig.from_params(params)
