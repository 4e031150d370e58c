"""The runtime backends: one registry, one interface, lazy runtimes, clear failures, and parity between them."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from deepfake.backends.base import BACKENDS, EXPLAIN_BACKENDS, REGISTRY, Backend, create_backend
from deepfake.core.errors import CheckpointError, InputError, ParamsError, ToolchainError
from deepfake.media.face_input import FaceInput, normalize_batch
from deepfake.modeling.store import ModelStore
from tests.conftest import as_params, tiny_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory):
    return as_params(tiny_params(tmp_path_factory.mktemp("raw"), ensemble__seeds=[]))


def test_the_registry_is_the_backend_list() -> None:
    # the runtimes README.md and docs/architecture.md list, in that order
    assert tuple(REGISTRY) == BACKENDS == ("torch", "onnx", "onnx-int8", "tensorrt", "triton", "vart")
    assert set(EXPLAIN_BACKENDS) <= set(BACKENDS)
    assert len(set(BACKENDS)) == len(BACKENDS)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_registry_entry_names_a_backend_of_that_name(name: str) -> None:
    module_name, class_name = REGISTRY[name]
    assert module_name.startswith("deepfake.backends.")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert inspect.isclass(cls) and issubclass(cls, Backend) and cls is not Backend
    assert not inspect.isabstract(cls), f"{class_name} leaves abstract methods unimplemented"
    assert cls.name == name
    assert callable(getattr(cls, "create", None))


def test_an_unknown_backend_is_a_params_error_listing_the_valid_ones(params, tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="unknown backend 'tpu'") as caught:
        create_backend("tpu", ModelStore(tmp_path), params)
    for name in BACKENDS:
        assert name in str(caught.value)


IMPORTED = """
import json, sys
import {module}
print(json.dumps(sorted(m for m in ("torch", "onnxruntime", "tensorrt", "tritonclient", "vart") if m in sys.modules)))
"""


@pytest.mark.parametrize("module", ["deepfake.backends.base", "deepfake.cli"])
def test_the_registry_loads_no_runtime(module: str) -> None:
    """`deepfake --help` and the backend list stay cheap: no runtime is imported until one is asked for."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# ---- runtimes absent here --------------------------------------------------------------------------


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tensorrt_usable() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize(
    ("name", "url", "message"),
    [
        ("tensorrt", None, "tensorrt"),
        ("vart", None, "VART is not installed"),
        ("triton", "http", "Triton"),
        ("triton", "grpc", "Triton|tritonclient"),
    ],
)
def test_absent_runtimes_are_toolchain_errors(name: str, url: str | None, message: str, params, tmp_path: Path) -> None:
    """Before any model file is looked at: the store here is empty."""
    if name == "tensorrt" and tensorrt_usable():
        pytest.skip("TensorRT and a CUDA GPU are installed here")
    if name == "vart" and importlib.util.find_spec("vart") is not None and importlib.util.find_spec("xir"):
        pytest.skip("Vitis AI's VART runtime is installed here")
    address = None
    if url is not None:
        address = f"127.0.0.1:{closed_port()}" if url == "http" else f"grpc://127.0.0.1:{closed_port()}"
    with pytest.raises(ToolchainError, match=message):
        create_backend(name, ModelStore(tmp_path / "models"), params, address)


def test_triton_without_a_url_is_a_params_error(params, tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="needs --url"):
        create_backend("triton", ModelStore(tmp_path), params)


@pytest.mark.parametrize(
    ("name", "error", "stage"),
    [
        ("torch", CheckpointError, "dvc repro train@classifier"),
        ("onnx", InputError, "dvc pull export"),
        ("onnx-int8", InputError, "dvc pull quantize"),
    ],
)
def test_missing_models_name_the_dvc_stage(name: str, error: type, stage: str, params, tmp_path: Path) -> None:
    with pytest.raises(error, match=stage):
        create_backend(name, ModelStore(tmp_path / "models"), params)


# ---- parity over real models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_crops(processed: dict) -> list[np.ndarray]:
    """Native-size RGB face crops the crops stage cut from the hostile part's videos."""
    crops_root = processed["out"] / "crops"
    index = pd.read_csv(crops_root / processed["part"] / "index.csv")
    picks = index.groupby("video").head(2)["file"].tolist()
    images = [cv2.cvtColor(cv2.imread(str(crops_root / f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for f in picks]
    assert len(images) >= 4
    return images


def test_torch_and_onnx_give_the_same_logits(models_root: dict, real_crops: list[np.ndarray]) -> None:
    params, store = models_root["params"], models_root["store"]
    torch_backend = create_backend("torch", store, params)
    onnx_backend = create_backend("onnx", store, params)
    assert torch_backend.name == "torch" and onnx_backend.name == "onnx"
    assert torch_backend.members == onnx_backend.members == ["classifier", "uynet"]
    assert torch_backend.face_input == onnx_backend.face_input == store.face_input("onnx")
    assert isinstance(onnx_backend.face_input, FaceInput)
    batch = normalize_batch([onnx_backend.face_input.fit(crop) for crop in real_crops])
    size = onnx_backend.face_input.image_size
    assert batch.shape == (len(real_crops), 3, size, size) and batch.dtype == np.float32
    from_torch, from_onnx = torch_backend.logits(batch), onnx_backend.logits(batch)
    assert list(from_torch) == list(from_onnx) == onnx_backend.members
    for member in onnx_backend.members:
        assert from_torch[member].shape == from_onnx[member].shape == (len(real_crops),)
        assert np.isfinite(from_torch[member]).all()
        np.testing.assert_allclose(from_onnx[member], from_torch[member], rtol=0, atol=1e-4, err_msg=member)
    # the logits really depend on the crop: parity is not two constant outputs agreeing
    assert max(float(np.ptp(v)) for v in from_torch.values()) > 1e-4
