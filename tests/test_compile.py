"""Hardware targets: clear failures without their toolchains; real builds where they exist (skipped here)."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from deepfake import compile as hw
from deepfake import export
from deepfake.errors import ToolchainError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
HAS_VITIS = importlib.util.find_spec("pytorch_nndct") is not None and shutil.which("vai_c_xir") is not None

TRT = {"precisions": ["fp16", "int8"], "min_batch": 1, "opt_batch": 4, "max_batch": 8, "workspace_mib": 256}
QUANT = {"config": "XINT8", "calib_crops": 8, "seed": 1, "batch_size": 8}


def test_trt_config_is_checked() -> None:
    params = {"build_trt": dict(TRT), "quantize": QUANT, "train": {"holdout_fold": 0}}
    assert hw.TrtConfig.from_params(params).precisions == ("fp16", "int8")
    params["build_trt"]["precisions"] = ["fp8"]
    with pytest.raises(ValueError, match="fp16 and/or int8"):
        hw.TrtConfig.from_params(params)
    params["build_trt"].update(precisions=["fp16"], opt_batch=16)
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        hw.TrtConfig.from_params(params)


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and a GPU are present: the real build test covers this machine")
def test_build_trt_without_tensorrt_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match=r"build_trt needs .*Nothing was written"):
        hw.check_tensorrt()


@pytest.mark.skipif(HAS_VITIS, reason="the Vitis AI toolchain is present")
def test_compile_dpu_without_vitis_ai_names_every_missing_piece(tmp_path: Path) -> None:
    config = hw.DpuConfig(tmp_path / "arch.json", 8, 1, 64, 0)
    with pytest.raises(ToolchainError) as info:
        hw.check_vitis_ai(config)
    message = str(info.value)
    assert "pytorch_nndct" in message and "vai_c_xir" in message and "arch.json" in message
    assert "Nothing was written" in message


@pytest.mark.skipif(not HAS_TRT, reason="needs NVIDIA TensorRT 10 and a CUDA GPU (not installable on the CI machine)")
def test_build_trt_engines_with_metadata(trained: dict, tmp_path: Path) -> None:
    params = copy.deepcopy(trained["params"])
    params["models"], params["ensemble"]["seeds"] = ["classifier"], []
    params.update(build_trt=TRT, quantize=QUANT)
    export.run(
        params, trained["folds"], trained["roots"], trained["root"] / "models", tmp_path / "onnx", tmp_path / "e.json"
    )
    hw.build_trt(params, trained["folds"], trained["roots"], tmp_path / "onnx", tmp_path / "trt", tmp_path / "t.json")
    for name in ("classifier", "classifier-int8"):
        assert (tmp_path / "trt" / f"{name}.plan").stat().st_size > 0
        meta = json.loads((tmp_path / "trt" / f"{name}.json").read_text())
        assert meta["gpu"] and meta["tensorrt"] and meta["batch"] == [1, 4, 8]


@pytest.mark.skipif(
    not HAS_VITIS, reason="needs the Vitis AI toolchain (pytorch_nndct, vai_c_xir): not on any registry"
)
def test_compile_dpu_writes_xmodels(trained: dict, tmp_path: Path) -> None:
    params = copy.deepcopy(trained["params"])
    params["models"], params["ensemble"]["seeds"] = ["classifier"], []
    params.update(quantize=QUANT, compile_dpu={"arch": "/opt/vitis_ai/compiler/arch/DPUCVDX8H/VCK5000/arch.json"})
    hw.compile_dpu(
        params, trained["folds"], trained["roots"], trained["root"] / "models", tmp_path / "dpu", tmp_path / "d.json"
    )
    assert (tmp_path / "dpu" / "classifier.xmodel").stat().st_size > 0
