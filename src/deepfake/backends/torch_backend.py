"""PyTorch: the trained checkpoints (``models/train``), on the evaluate stage's device.

Inference runs channels-last (NHWC memory: the convolution kernels PyTorch picks for it are faster on
CPUs and GPUs alike; 1.7x for the DFDC-size classifier on this project's 2-core CPU) and, on CUDA,
under fp16 autocast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from deepfake.backends.base import Backend
from deepfake.core.device import resolve_device
from deepfake.core.params import Params
from deepfake.media.face_input import FaceInput
from deepfake.modeling.store import (
    LOGIT,
    MANIFEST,
    Member,
    ModelStore,
    ensemble,
    params_face_input,
    shared_face_input,
)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, store: ModelStore, member_list: list[Any], default_face_input: FaceInput, device: str) -> None:
        """``default_face_input``: the contract of members whose checkpoint records none (the params')."""
        self.device = resolve_device(device)
        loaded = {m.name: store.load_member(m, self.device) for m in member_list}
        self.models = {name: model.to(memory_format=torch.channels_last) for name, (model, _) in loaded.items()}
        self.members = list(self.models)
        self.face_input = shared_face_input({name: fi for name, (_, fi) in loaded.items()}, default_face_input)

    @classmethod
    def create(cls, store: ModelStore, params: Params, url: str | None = None) -> TorchBackend:
        return cls(
            store, package_members(store) or list(ensemble(params)), params_face_input(params), params.evaluate.device
        )

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        half = self.device.type == "cuda"
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.float16, enabled=half):
            batch = torch.from_numpy(images).to(self.device).contiguous(memory_format=torch.channels_last)
            return {n: m(batch)[LOGIT].float().reshape(-1).cpu().numpy() for n, m in self.models.items()}


def package_members(store: ModelStore) -> list[Member]:
    """The members a package made outside the export stage holds, whatever the params in the working folder say:
    a converted one (``zoo_convert``: its manifest names its ``zoo`` source) or any whose manifest records no
    settings (``scripts/make_bench_inputs.py``, a model brought in with ``ModelStore.add_model``); their
    manifest is the only word on what they hold. Empty for the pipeline's own ``models/``, whose members are
    the params' ensemble (trained perhaps after the last export)."""
    if not (store.folder("onnx") / MANIFEST).is_file():
        return []
    manifest = store.read_manifest("onnx")
    if "zoo" not in manifest and manifest.get("settings") is not None:
        return []
    architectures = [str(m["model"]) for m in manifest["members"]]
    return [Member.parse(str(m["name"]), architectures) for m in manifest["members"]]
