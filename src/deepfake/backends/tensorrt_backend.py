"""TensorRT 10: engines ``models/trt/<member>.plan`` from build_trt, run with the tensor-address API.

Written against TensorRT 10's Python API; it needs the tensorrt package and a CUDA GPU, and has not
been run on the machines this project is built on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfake.backends.base import Backend
from deepfake.core.errors import InputError, ToolchainError
from deepfake.core.params import Params
from deepfake.modeling.store import INPUT_NAME, LOGIT, ModelStore


def check_tensorrt(purpose: str = "the tensorrt backend") -> Any:
    """The tensorrt module with a CUDA GPU, or a ToolchainError naming what is missing."""
    import torch

    missing = []
    try:
        import tensorrt as trt
    except ImportError:
        trt = None
        missing.append("the tensorrt Python package (NVIDIA TensorRT 10)")
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    if missing:
        raise ToolchainError(f"{purpose} needs " + " and ".join(missing) + ". Nothing was written.")
    return trt


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, store: ModelStore) -> None:
        import torch

        trt = check_tensorrt()
        manifest = store.read_manifest("onnx")
        self.face_input = store.face_input("onnx")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.contexts = {}
        for member in manifest["members"]:
            plan = store.engine(member["name"])
            if not plan.is_file():
                raise InputError(f"{plan}: no engine; run `dvc repro {store.stage('tensorrt')}`")
            engine = runtime.deserialize_cuda_engine(plan.read_bytes())
            self.contexts[member["name"]] = (engine, engine.create_execution_context(), member["outputs"])
        self.members = list(self.contexts)
        self._torch = torch

    @classmethod
    def create(cls, store: ModelStore, params: Params, url: str | None = None) -> TensorRTBackend:
        return cls(store)

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        batch = torch.from_numpy(images).cuda()
        stream = torch.cuda.current_stream()
        out = {}
        for name, (_engine, context, outputs) in self.contexts.items():
            context.set_input_shape(INPUT_NAME, tuple(batch.shape))
            context.set_tensor_address(INPUT_NAME, batch.data_ptr())
            buffers = {o: torch.empty(tuple(context.get_tensor_shape(o)), device="cuda") for o in outputs}
            for o, buffer in buffers.items():
                context.set_tensor_address(o, buffer.data_ptr())
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT engine {name} failed to run")
            stream.synchronize()
            out[name] = buffers[LOGIT].reshape(-1).cpu().numpy()
        return out
