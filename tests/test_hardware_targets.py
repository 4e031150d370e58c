"""Hardware targets: clear failures without their toolchains; real builds where they exist (skipped here)."""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from deepfake.backends.tensorrt_backend import check_tensorrt
from deepfake.core.errors import ParamsError, ToolchainError
from deepfake.stages import build_trt, compile_dpu, export
from tests.conftest import as_params, store_with_checkpoints, tiny_params

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
HAS_VITIS = importlib.util.find_spec("pytorch_nndct") is not None and shutil.which("vai_c_xir") is not None

TRT = {"precisions": ["fp16", "int8"], "min_batch": 1, "opt_batch": 4, "max_batch": 8, "workspace_mib": 256}
QUANT = {"config": "XINT8", "calib_crops": 8, "seed": 1, "batch_size": 8}


def _trt_raw(root: Path, **build_trt: object) -> dict:
    raw = tiny_params(root, quantize=QUANT)
    raw["build_trt"] = {**TRT, **build_trt}
    return raw


def test_trt_config_is_checked(tmp_path: Path) -> None:
    config = build_trt.Config.from_params(as_params(_trt_raw(tmp_path)))
    assert config.precisions == ("fp16", "int8")
    assert (config.min_batch, config.opt_batch, config.max_batch) == (1, 4, 8)
    assert (config.calib_crops, config.seed, config.holdout_fold) == (8, 1, 0)
    with pytest.raises(ParamsError, match=r"build_trt\.precisions"):
        as_params(_trt_raw(tmp_path, precisions=["fp8"]))
    with pytest.raises(ParamsError, match="min_batch <= opt_batch <= max_batch"):
        as_params(_trt_raw(tmp_path, precisions=["fp16"], opt_batch=16))


@pytest.mark.skipif(HAS_TRT, reason="TensorRT and a GPU are present: the real build test covers this machine")
def test_build_trt_without_tensorrt_names_what_is_missing(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match=r"the tensorrt backend needs .*Nothing was written"):
        check_tensorrt()
    config = build_trt.Config.from_params(as_params(_trt_raw(tmp_path)))
    store = store_with_checkpoints(trained, tmp_path)
    paths = build_trt.Paths(trained["folds"], trained["roots"], store.root, tmp_path / "t.json")
    with pytest.raises(ToolchainError, match=r"build_trt needs .*Nothing was written"):
        build_trt.run(config, paths)
    assert not store.folder("tensorrt").exists() and not paths.report.exists()


@pytest.mark.skipif(HAS_VITIS, reason="the Vitis AI toolchain is present")
def test_compile_dpu_without_vitis_ai_names_every_missing_piece(trained: dict, tmp_path: Path) -> None:
    raw = tiny_params(tmp_path, compile_dpu__arch=str(tmp_path / "arch.json"))
    config = compile_dpu.Config.from_params(as_params(raw))
    assert config.arch == tmp_path / "arch.json"
    with pytest.raises(ToolchainError) as info:
        compile_dpu.check_vitis_ai(config)
    message = str(info.value)
    assert "pytorch_nndct" in message and "vai_c_xir" in message and "arch.json" in message
    assert "Nothing was written" in message
    store = store_with_checkpoints(trained, tmp_path)
    paths = compile_dpu.Paths(trained["folds"], trained["roots"], store.root, tmp_path / "d.json")
    with pytest.raises(ToolchainError, match="Nothing was written"):
        compile_dpu.run(config, paths)
    assert not store.folder("xmodel").exists() and not paths.report.exists()


@pytest.mark.skipif(not HAS_TRT, reason="needs NVIDIA TensorRT 10 and a CUDA GPU (not installable on the CI machine)")
def test_build_trt_engines_with_metadata(trained: dict, tmp_path: Path) -> None:
    raw = copy.deepcopy(trained["raw"])
    raw["models"], raw["ensemble"]["seeds"] = ["classifier"], []
    raw.update(build_trt=TRT, quantize=QUANT)
    params = as_params(raw)
    store = store_with_checkpoints(trained, tmp_path)
    export.run(
        export.Config.from_params(params),
        export.Paths(trained["folds"], trained["roots"], store.root, tmp_path / "e.json"),
    )
    build_trt.run(
        build_trt.Config.from_params(params),
        build_trt.Paths(trained["folds"], trained["roots"], store.root, tmp_path / "t.json"),
    )
    for precision in ("fp16", "int8"):
        engine = store.engine("classifier", precision)
        assert engine.stat().st_size > 0
        meta = json.loads(engine.with_suffix(".json").read_text())
        assert meta["gpu"] and meta["tensorrt"] and meta["batch"] == [1, 4, 8]


@pytest.mark.skipif(
    not HAS_VITIS, reason="needs the Vitis AI toolchain (pytorch_nndct, vai_c_xir): not on any registry"
)
def test_compile_dpu_writes_xmodels(trained: dict, tmp_path: Path) -> None:
    raw = copy.deepcopy(trained["raw"])
    raw["models"], raw["ensemble"]["seeds"] = ["classifier"], []
    raw.update(quantize=QUANT, compile_dpu={"arch": "/opt/vitis_ai/compiler/arch/DPUCVDX8H/VCK5000/arch.json"})
    store = store_with_checkpoints(trained, tmp_path)
    compile_dpu.run(
        compile_dpu.Config.from_params(as_params(raw)),
        compile_dpu.Paths(trained["folds"], trained["roots"], store.root, tmp_path / "d.json"),
    )
    assert store.graph("classifier", "xmodel").stat().st_size > 0
