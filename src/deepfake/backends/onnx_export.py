"""ONNX export of a model store's members, checked with onnx.checker and against PyTorch.

The one writer of the store's ONNX graphs: one input ``image`` (N, 3, S, S) float32 prepared by the
face-input contract, logits out (``logit``, and ``mask`` for U-YNet), a dynamic batch axis. The export
stage (trained models) and the zoo's convert stage (published ones) both export through it, so a
converted detector is checked exactly as a trained one is.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake.backends.onnx_backend import onnx_session
from deepfake.core.errors import InputError
from deepfake.core.fileio import atomic_path
from deepfake.modeling.store import INPUT_NAME, LOGIT, Member, ModelStore

logger = logging.getLogger(__name__)


class ExportError(InputError):
    """An exported graph that fails the ONNX checker or disagrees with PyTorch."""


class OutputTuple(nn.Module):
    """The model with its output dict as a fixed-order tuple (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(image)
        return tuple(outputs[name] for name in self.names)


def output_names(model: nn.Module, image_size: int) -> list[str]:
    """``logit`` first, then the model's other outputs (``mask``) in a stable order."""
    with torch.no_grad():
        keys = list(model.eval()(torch.zeros(1, 3, image_size, image_size)))
    return [LOGIT, *sorted(k for k in keys if k != LOGIT)]


def export_onnx(model: nn.Module, path: Path, image_size: int, opset: int) -> list[str]:
    """Write ``model`` (eval mode) to ``path`` with a dynamic batch axis; returns the output names."""
    import onnx

    model = model.eval()
    names = output_names(model, image_size)
    wrapped = OutputTuple(model, names).eval()
    example = torch.zeros(2, 3, image_size, image_size)
    with atomic_path(path) as tmp:
        # torch's exporter builds the graph at opset 18; older opsets are converted down by onnx
        torch.onnx.export(
            wrapped,
            (example,),
            str(tmp),
            input_names=[INPUT_NAME],
            output_names=names,
            opset_version=opset,
            dynamo=True,
            # keyed by OutputTuple.forward's argument name, not the graph's input name
            dynamic_shapes={"image": {0: torch.export.Dim("batch", min=1, max=4096)}},
            external_data=False,
        )
        graph = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(graph, full_check=True)
        except onnx.checker.ValidationError as err:
            raise ExportError(f"{path}: the exported graph fails onnx.checker: {err}") from err
    model.eval()  # the exporter restores the wrapper's train flag, which reaches the model
    return names


@torch.no_grad()
def parity(model: nn.Module, session: Any, images: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Largest absolute difference per output between PyTorch and ONNX Runtime on ``images``."""
    reference = model.eval()(images)
    produced = session.run(names, {INPUT_NAME: images.numpy()})
    return {
        name: float(np.abs(reference[name].numpy() - value).max()) for name, value in zip(names, produced, strict=True)
    }


def export_member(
    store: ModelStore, member: Member, images: torch.Tensor, *, image_size: int, opset: int, tolerance: float
) -> dict[str, Any]:
    """Export one member, check it, and return its manifest entry (with the parity figures)."""
    model = store.load_torch(member)
    path = store.graph(member.name, "onnx")
    started = time.perf_counter()
    names = export_onnx(model, path, image_size, opset)
    differences = parity(model, onnx_session(path), images, names)
    worst = max(differences.values())
    if not np.isfinite(worst) or worst > tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{member.name}: ONNX Runtime differs from PyTorch by {worst:.3g} on the parity images "
            f"(export.tolerance {tolerance:g}); the ONNX file was removed"
        )
    logger.info("%s -> %s: max abs difference %s", store.checkpoint(member), path, differences)
    return {
        "name": member.name,
        "model": member.model,
        "file": path.name,
        "outputs": names,
        "bytes": path.stat().st_size,
        "max_abs_diff": differences,
        "parity_crops": len(images),
        "seconds": round(time.perf_counter() - started, 2),
    }
