"""The backend interface and registry; importing this module loads no runtime (torch, onnxruntime, ...)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from deepfake.core.errors import ParamsError

if TYPE_CHECKING:  # importing this module stays cheap: `deepfake --help` lists BACKENDS
    import numpy as np

    from deepfake.core.params import Params
    from deepfake.media.face_input import FaceInput
    from deepfake.modeling.store import ModelStore

# name -> module and class; the order is the one `deepfake predict --help` lists
REGISTRY: dict[str, tuple[str, str]] = {
    "torch": ("deepfake.backends.torch_backend", "TorchBackend"),
    "onnx": ("deepfake.backends.onnx_backend", "OnnxBackend"),
    "onnx-int8": ("deepfake.backends.onnx_backend", "OnnxInt8Backend"),
    "tensorrt": ("deepfake.backends.tensorrt_backend", "TensorRTBackend"),
    "triton": ("deepfake.backends.triton_backend", "TritonBackend"),
    "vart": ("deepfake.backends.vart_backend", "VartBackend"),
}
BACKENDS = tuple(REGISTRY)
EXPLAIN_BACKENDS = ("torch", "onnx", "onnx-int8")  # those whose graphs explain can open (gradients or outputs)


class Backend(ABC):
    """One runtime holding every ensemble member.

    ``members`` are member names in ensemble order; ``face_input`` is the input contract the models
    were built with (the batch ``logits`` takes is ``normalize_batch([face_input.fit(crop) for crop in crops])``).
    """

    name: str
    members: list[str]
    face_input: FaceInput

    @abstractmethod
    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``images`` (N, 3, S, S) float32 -> ``{member: (N,) logits}``."""


def create_backend(name: str, store: ModelStore, params: Params, url: str | None = None) -> Backend:
    """The backend ``name`` over the models of ``store`` (a ``ModelStore``)."""
    if name not in REGISTRY:
        raise ParamsError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module, cls = REGISTRY[name]
    return getattr(importlib.import_module(module), cls).create(store, params, url)
