"""ONNX Runtime: the exported graphs (``models/onnx``) or their int8 versions (``models/int8``).

Prediction runs on the CUDA provider when this onnxruntime build has it and a GPU is visible
(``onnxruntime-gpu``), else on the CPU provider; the stages' checks (export parity, quantize) always
use the CPU provider, so their figures do not depend on the machine's GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepfake.backends.base import Backend
from deepfake.core.parallel import reuse_freed_memory
from deepfake.core.params import Params
from deepfake.modeling.store import INPUT_NAME, LOGIT, ModelStore

CPU = ("CPUExecutionProvider",)
ORT_DEFAULT_THREADS = 0  # intra_op_num_threads 0: ONNX Runtime's own choice (one thread per physical core)


def fastest_providers() -> tuple[str, ...]:
    """CUDA first when this onnxruntime build offers it and torch sees a GPU; the CPU provider always."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return CPU  # a CPU build: no need to import torch (seconds of a first verdict) to ask about a GPU
    import torch

    return ("CUDAExecutionProvider", *CPU) if torch.cuda.is_available() else CPU


def onnx_session(path: Path, providers: tuple[str, ...] = CPU, threads: int = ORT_DEFAULT_THREADS) -> Any:
    """An ONNX Runtime session (CPU provider unless told otherwise) with ``threads`` intra-op threads (the
    stages' checks keep ONNX Runtime's default; prediction passes ``predict.inference_threads``), quiet unless
    something is wrong."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    # Idle intra-op threads sleep instead of spinning: prediction runs its models beside the worker processes
    # that decode and detect, and a spinning thread takes the core they need
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Without the arena each run's buffers go back to the system: an ensemble's sessions, run one after
    # another, then peak at one member's activations, not the sum of every member's largest run (the DFDC
    # winner's seven B7 at 380 px: killed at 24 GB with the arena, 5.4 GB without; one B7 3.8 GB instead of
    # 6.7 at the same speed; the sample's default ensemble 1.2 GB instead of 2.0, 2.5 % slower).
    options.enable_cpu_mem_arena = False
    # ... and glibc then keeps what a run frees for the next run instead of returning it to the kernel, which
    # would fault in and zero every page again: 1.1 million page faults and 2.4 s of kernel time in the predict
    # process for 12 videos at 1080p (b0 at 224 px, 4 crops a pass) before this
    reuse_freed_memory()
    return ort.InferenceSession(str(path), options, providers=list(providers))


class OnnxBackend(Backend):
    name = "onnx"
    fmt = "onnx"

    def __init__(self, store: ModelStore, threads: int) -> None:
        manifest = store.read_manifest(self.fmt)
        folder = store.folder(self.fmt)
        providers = fastest_providers()
        self.sessions = {m["name"]: onnx_session(folder / m["file"], providers, threads) for m in manifest["members"]}
        self.providers = list(providers)
        self.members = list(self.sessions)
        self.face_input = store.face_input(self.fmt)

    @classmethod
    def create(cls, store: ModelStore, params: Params, url: str | None = None) -> OnnxBackend:
        return cls(store, params.predict.inference_threads)

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {n: s.run([LOGIT], {INPUT_NAME: images})[0].reshape(-1) for n, s in self.sessions.items()}


class OnnxInt8Backend(OnnxBackend):
    name = "onnx-int8"
    fmt = "onnx-int8"
