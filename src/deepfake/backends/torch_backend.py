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
from deepfake.modeling.store import ModelStore, ensemble


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, store: ModelStore, member_list: list[Any], face_input: FaceInput, device: str) -> None:
        self.device = resolve_device(device)
        self.models = {
            m.name: store.load_torch(m, self.device).to(memory_format=torch.channels_last) for m in member_list
        }
        self.members = list(self.models)
        self.face_input = face_input

    @classmethod
    def create(cls, store: ModelStore, params: Params, url: str | None = None) -> TorchBackend:
        face_input = FaceInput(params.train.image_size, params.crops.margin)
        return cls(store, list(ensemble(params)), face_input, params.evaluate.device)

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        half = self.device.type == "cuda"
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.float16, enabled=half):
            batch = torch.from_numpy(images).to(self.device).contiguous(memory_format=torch.channels_last)
            return {n: m(batch)["logit"].float().reshape(-1).cpu().numpy() for n, m in self.models.items()}
