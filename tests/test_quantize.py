"""int8 quantization with AMD Quark: calibration data, the XINT8 graph, the fp32/int8 test, the DPU report."""

from __future__ import annotations

import builtins
import copy
import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepfake.core.errors import InputError, ToolchainError
from deepfake.modeling.data import calibration_rows
from deepfake.stages import export, quantize
from tests.conftest import as_params, store_linking


def test_calibration_never_uses_the_holdout_and_caps_the_count() -> None:
    table = pd.DataFrame({"fold": [0] * 5 + [1] * 5 + [2] * 5, "label": ["REAL"] * 15, "mask": [""] * 15})
    rows = calibration_rows(table, 0, 4, seed=1)
    assert len(rows) == 4 and 0 not in set(rows["fold"])
    assert len(calibration_rows(table, 0, 100, seed=1)) == 10  # fewer when fewer exist
    with pytest.raises(InputError, match="outside the holdout"):
        calibration_rows(table[table["fold"] == 0], 0, 4, seed=1)


def test_operator_report_splits_dpu_cpu_and_unknown(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Resize", ["r", "", "scales"], ["u"]),
        helper.make_node("Sigmoid", ["u"], ["y"]),
        helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(np.ones(4, np.float32))),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], [weight])), str(path))
    report = quantize.operator_report(path)
    assert report["dpu"] == {"Conv": 1, "Relu": 1}
    assert report["cpu"] == {"Sigmoid": 1}
    assert report["unknown"] == {"Resize": 1}  # not in the DPU's table: the compiler decides


@pytest.fixture(scope="module")
def exported(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One exported classifier (Quark takes seconds per model)."""
    root = tmp_path_factory.mktemp("quantize")
    raw = copy.deepcopy(trained["raw"])
    raw["models"], raw["ensemble"]["seeds"] = ["classifier"], []
    raw["quantize"].update(config="XINT8", calib_crops=8, seed=1, batch_size=8)
    params = as_params(raw)
    store = store_linking(root, "checkpoint", trained["store"].folder("checkpoint"))
    export.run(
        export.Config.from_params(params), export.Paths(trained["folds"], trained["roots"], store.root, root / "e.json")
    )
    return {**trained, "raw": raw, "params": params, "qroot": root, "qstore": store}


def test_quantize_stage_writes_power_of_two_int8_and_the_fp32_comparison(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, store = exported["qroot"], exported["qstore"]
    monkeypatch.chdir(tmp_path)  # Quark's own quantized_info.csv must not land in the working directory
    quantize.run(
        quantize.Config.from_params(exported["params"]),
        quantize.Paths(exported["folds"], exported["roots"], store.root, root / "q.json"),
    )
    report = json.loads((root / "q.json").read_text())
    member = report["members"]["classifier"]
    assert report["calib_crops"] == 8
    assert member["bytes"]["int8"] < member["bytes"]["fp32"]
    for precision in ("fp32", "int8"):
        assert 0.0 <= member[precision]["frame_auc"] <= 1.0
        assert member[precision]["video_log_loss"] > 0
    assert member["dpu_operators"]["dpu"]["Conv"] > 0
    assert store.read_manifest("onnx-int8")["precision"] == "int8"
    assert store.face_input("onnx-int8") == store.face_input("onnx")
    assert not list(tmp_path.iterdir())
    graph = onnx.load(str(store.graph("classifier", "onnx-int8")))
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.graph.initializer}
    scales = [initializers[n.input[1]] for n in graph.graph.node if n.op_type == "DequantizeLinear"]
    assert scales, "the int8 graph has no DequantizeLinear nodes"
    exponents = np.log2(np.concatenate([np.atleast_1d(s) for s in scales]).astype(np.float64))
    assert np.allclose(exponents, np.round(exponents))  # XINT8: every scale a power of two, as the DPU needs


def test_missing_quark_is_a_clear_error_and_writes_nothing(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_quark(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("quark"):
            raise ImportError("No module named 'quark'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_quark)
    store = store_linking(tmp_path, "onnx", exported["qstore"].folder("onnx"))
    with pytest.raises(ToolchainError, match="AMD Quark is not installed"):
        quantize.run(
            quantize.Config.from_params(exported["params"]),
            quantize.Paths(exported["folds"], exported["roots"], store.root, tmp_path / "n.json"),
        )
    assert not list(store.folder("onnx-int8").glob("*.onnx")) and not (tmp_path / "n.json").exists()
