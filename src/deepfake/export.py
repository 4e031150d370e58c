"""ONNX export of trained models, checked with onnx.checker and against PyTorch on real crops.

Every ensemble member (``models/train/<model>/best.pt`` and ``models/train/ensemble/<model>-<seed>/best.pt``)
becomes ``<out>/<member>.onnx`` with one input ``image`` (N, 3, S, S) float32, RGB normalised by
ImageNet mean/std after an isotropic resize + zero pad to S, and logits out: ``logit`` (N, 1) and,
for U-YNet, ``mask`` (N, 1, S, S). The batch axis is dynamic. ``<out>/manifest.json`` records the
members and that preprocessing, so a reader (``deepfake predict``, Triton) needs nothing else.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepfake.data import IMAGENET_MEAN, IMAGENET_STD, CropDataset, DataRoots, read_folds, select_folds
from deepfake.evaluate import Member, ensemble_members, load_member
from deepfake.fileio import atomic_path, write_json_atomic
from deepfake.params import section

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "deepfake-onnx/1"


class ExportError(ValueError):
    """An exported graph that fails the ONNX checker or disagrees with PyTorch."""


@dataclass(frozen=True)
class ExportConfig:
    opset: int
    parity_crops: int  # holdout crops each exported model is compared with PyTorch on
    tolerance: float  # largest absolute logit difference accepted
    image_size: int
    holdout_fold: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ExportConfig:
        sect, train = section(params, "export"), section(params, "train")
        config = cls(
            opset=int(sect["opset"]),
            parity_crops=int(sect["parity_crops"]),
            tolerance=float(sect["tolerance"]),
            image_size=int(train["image_size"]),
            holdout_fold=int(train["holdout_fold"]),
        )
        if config.opset < 17:
            raise ValueError(f"export.opset must be 17 or newer, got {config.opset}")
        if config.parity_crops < 1 or config.tolerance <= 0:
            raise ValueError("export.parity_crops must be >= 1 and export.tolerance > 0")
        return config


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
    return ["logit", *sorted(k for k in keys if k != "logit")]


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


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@torch.no_grad()
def parity(model: nn.Module, session: Any, images: torch.Tensor, names: list[str]) -> dict[str, float]:
    """Largest absolute difference per output between PyTorch and ONNX Runtime on ``images``."""
    reference = model.eval()(images)
    produced = session.run(names, {INPUT_NAME: images.numpy()})
    return {
        name: float(np.abs(reference[name].numpy() - value).max()) for name, value in zip(names, produced, strict=True)
    }


def parity_images(folds_csv: Path, roots: DataRoots, config: ExportConfig) -> torch.Tensor:
    """Up to ``parity_crops`` holdout crops, preprocessed exactly as evaluation does."""
    rows = select_folds(read_folds(folds_csv), [config.holdout_fold], drop_unmasked_fakes=False)
    if rows.empty:
        raise ValueError(f"{folds_csv}: holdout fold {config.holdout_fold} holds no crops to check the export on")
    picks = np.linspace(0, len(rows) - 1, min(config.parity_crops, len(rows))).round().astype(int)
    dataset = CropDataset(rows.iloc[np.unique(picks)], roots, config.image_size)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def export_member(member: Member, out_dir: Path, images: torch.Tensor, config: ExportConfig) -> dict[str, Any]:
    """Export one member, check it, and return its manifest entry (with the parity figures)."""
    model = load_member(member, torch.device("cpu"))
    path = out_dir / f"{member.name}.onnx"
    started = time.perf_counter()
    names = export_onnx(model, path, config.image_size, config.opset)
    differences = parity(model, onnx_session(path), images, names)
    worst = max(differences.values())
    if not np.isfinite(worst) or worst > config.tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{member.name}: ONNX Runtime differs from PyTorch by {worst:.3g} on holdout crops "
            f"(export.tolerance {config.tolerance:g}); the ONNX file was removed"
        )
    logger.info("%s -> %s: max abs difference %s", member.checkpoint, path, differences)
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


def run(
    params: dict[str, Any], folds_csv: Path, roots: DataRoots, models_dir: Path, out_dir: Path, report: Path
) -> None:
    """The export stage: every ensemble member to ONNX, a manifest, and the parity report."""
    config = ExportConfig.from_params(params)
    members = ensemble_members(params, models_dir)
    images = parity_images(folds_csv, roots, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.onnx"):  # members dropped from params must not linger
        if stale.stem not in {m.name for m in members}:
            stale.unlink()
    entries = [export_member(member, out_dir, images, config) for member in members]
    manifest = {
        "format": MANIFEST_FORMAT,
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "image_size": config.image_size,
            "resize": "longest side to image_size (INTER_AREA), zero pad to a centred square",
            "mean": [round(v * 255, 4) for v in IMAGENET_MEAN],
            "std": [round(v * 255, 4) for v in IMAGENET_STD],
        },
        "opset": config.opset,
        "members": [{k: e[k] for k in ("name", "model", "file", "outputs")} for e in entries],
    }
    write_json_atomic(out_dir / MANIFEST, manifest)
    write_json_atomic(
        report,
        {
            "opset": config.opset,
            "members": {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in entries},
            "max_abs_diff": max(max(e["max_abs_diff"].values()) for e in entries),
        },
    )
    logger.info("exported %d models to %s", len(entries), out_dir)


def read_manifest(out_dir: Path, stage: str = "export") -> dict[str, Any]:
    """The manifest of ``out_dir``; a missing one names the DVC stage that makes it (``stage``)."""
    path = out_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `dvc repro {stage}` or `dvc pull {stage}`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    return manifest
