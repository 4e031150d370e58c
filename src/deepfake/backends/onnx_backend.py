"""ONNX Runtime (CPU provider): the exported graphs (``models/onnx``) or their int8 versions (``models/int8``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepfake.backends.base import Backend
from deepfake.modeling.store import INPUT_NAME, ModelStore


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime session on the CPU provider, quiet unless something is wrong."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxBackend(Backend):
    name = "onnx"
    fmt = "onnx"

    def __init__(self, store: ModelStore) -> None:
        manifest = store.read_manifest(self.fmt)
        folder = store.folder(self.fmt)
        self.sessions = {m["name"]: onnx_session(folder / m["file"]) for m in manifest["members"]}
        self.members = list(self.sessions)
        self.face_input = store.face_input(self.fmt)

    @classmethod
    def create(cls, store: ModelStore, params: Any, url: str | None = None) -> OnnxBackend:
        return cls(store)

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {n: s.run(["logit"], {INPUT_NAME: images})[0].reshape(-1) for n, s in self.sessions.items()}


class OnnxInt8Backend(OnnxBackend):
    name = "onnx-int8"
    fmt = "onnx-int8"
