"""Device selection shared by training, evaluation and benchmarks."""

from __future__ import annotations

import torch

from deepfake.core.errors import ToolchainError


def resolve_device(requested: str) -> torch.device:
    """``auto`` means CUDA when a GPU is visible, else the CPU; asking for CUDA without one is an error."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ToolchainError(f"device {requested!r} asks for CUDA but no GPU is visible (use cpu or auto)")
    return torch.device(requested)
