"""ONNX export of trained models, checked with onnx.checker and against PyTorch on real crops.

Every ensemble member's checkpoint becomes an ONNX graph in the model store (``models/onnx``) with
one input ``image`` (N, 3, S, S) float32, prepared by the face-input contract
(``deepfake.media.face_input``), and logits out: ``logit`` (N, 1) and, for U-YNet, ``mask``
(N, 1, S, S) (the store's ``INPUT_NAME``, ``LOGIT``, ``MASK``). The batch axis is dynamic. The
contract is the params' (``train.image_size``, ``crops.margin``) unless the checkpoints record their
own (a model added to the store from elsewhere). The store's ``manifest.json`` records the members and the
contract, and the params prediction needs (detector, crop margin, sampling, tracks, aggregation), so a
reader (``deepfake predict`` and ``deepfake serve`` from any folder, Triton) needs nothing else.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake.backends.onnx_backend import onnx_session
from deepfake.core.errors import InputError
from deepfake.core.fileio import atomic_path, write_json_atomic
from deepfake.core.params import Params, package_settings
from deepfake.media.face_input import FaceInput
from deepfake.modeling.data import CropDataset, DataRoots, ModelStagePaths, read_folds, select_folds
from deepfake.modeling.store import INPUT_NAME, LOGIT, Member, ModelStore, ensemble, params_face_input

logger = logging.getLogger(__name__)


class ExportError(InputError):
    """An exported graph that fails the ONNX checker or disagrees with PyTorch."""


@dataclass(frozen=True)
class Config:
    opset: int
    parity_crops: int  # holdout crops each exported model is compared with PyTorch on
    tolerance: float  # largest absolute logit difference accepted
    face_input: FaceInput  # the params'; a checkpoint that records its own contract overrides it (run)
    holdout_fold: int
    members: tuple[Member, ...]  # the ensemble: every model with train.seed and each ensemble seed
    settings: dict[str, Any]  # what prediction needs, recorded in the manifest (core.params.PACKAGE_SETTINGS)

    @classmethod
    def from_params(cls, params: Params) -> Config:
        return cls(
            opset=params.export.opset,
            parity_crops=params.export.parity_crops,
            tolerance=params.export.tolerance,
            face_input=params_face_input(params),
            holdout_fold=params.train.holdout_fold,
            members=ensemble(params),
            settings=package_settings(params),
        )


Paths = ModelStagePaths  # the models/ root: reads train/, writes onnx/


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


def parity_images(folds_csv: Path, roots: DataRoots, config: Config) -> torch.Tensor:
    """Up to ``parity_crops`` holdout crops, preprocessed exactly as evaluation does."""
    rows = select_folds(read_folds(folds_csv), [config.holdout_fold], drop_unmasked_fakes=False)
    if rows.empty:
        raise InputError(f"{folds_csv}: holdout fold {config.holdout_fold} holds no crops to check the export on")
    picks = np.linspace(0, len(rows) - 1, min(config.parity_crops, len(rows))).round().astype(int)
    dataset = CropDataset(rows.iloc[np.unique(picks)], roots, config.face_input.image_size)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def export_member(store: ModelStore, member: Member, images: torch.Tensor, config: Config) -> dict[str, Any]:
    """Export one member, check it, and return its manifest entry (with the parity figures)."""
    model = store.load_torch(member)
    path = store.graph(member.name, "onnx")
    started = time.perf_counter()
    names = export_onnx(model, path, config.face_input.image_size, config.opset)
    differences = parity(model, onnx_session(path), images, names)
    worst = max(differences.values())
    if not np.isfinite(worst) or worst > config.tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{member.name}: ONNX Runtime differs from PyTorch by {worst:.3g} on holdout crops "
            f"(export.tolerance {config.tolerance:g}); the ONNX file was removed"
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


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """The export stage: every ensemble member to ONNX, the store's manifest, and the parity report."""
    store = ModelStore(paths.models)
    config = replace(config, face_input=store.checkpoint_face_input(config.members, config.face_input))
    images = parity_images(paths.folds, paths.roots, config)
    out_dir = store.folder("onnx")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.onnx"):  # members dropped from params must not linger
        if stale.stem not in {m.name for m in config.members}:
            stale.unlink()
    entries = [export_member(store, member, images, config) for member in config.members]
    store.write_manifest("onnx", entries, config.face_input, opset=config.opset, settings=config.settings)
    report = {
        "opset": config.opset,
        "members": {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in entries},
        "max_abs_diff": max(max(e["max_abs_diff"].values()) for e in entries),
    }
    write_json_atomic(paths.report, report)
    logger.info("exported %d models to %s", len(entries), out_dir)
    return report
