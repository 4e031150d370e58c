"""Evaluation on the holdout fold: every trained model, each model type's seed ensemble, and all models.

Frame level: one probability per crop. Video level: crops aggregated per video (``mean`` or DFDC-1st's
``confident`` strategy). Ensembles average the members' crop probabilities before aggregating.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from deepfake.data import CropDataset, DataRoots, read_folds, select_folds
from deepfake.device import resolve_device
from deepfake.fileio import write_bytes_atomic, write_json_atomic
from deepfake.metrics import (
    ConfidentStrategy,
    aggregate_video,
    binary_metrics,
    mask_iou_dice,
    precision_recall_curve,
    roc_curve,
)
from deepfake.models import CheckpointError, create_model, load_weights, read_checkpoint
from deepfake.params import require, section

logger = logging.getLogger(__name__)

COMPARISON_KEYS = ("auc", "ap", "accuracy", "log_loss", "balanced_log_loss", "eer", "ece")


@dataclass(frozen=True)
class EvalConfig:
    aggregation: str
    confident: ConfidentStrategy
    batch_size: int
    holdout_fold: int
    image_size: int
    device: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> EvalConfig:
        sect, train = section(params, "evaluate"), section(params, "train")
        strategy = section(sect, "confident") if "confident" in sect else {}
        config = cls(
            aggregation=str(sect["aggregation"]),
            confident=ConfidentStrategy(**strategy),
            batch_size=int(sect["batch_size"]),
            holdout_fold=int(train["holdout_fold"]),
            image_size=int(train["image_size"]),
            device=str(sect["device"]),
        )
        aggregate_video([0.5], config.aggregation, config.confident)  # validates the method name
        return config


@dataclass(frozen=True)
class Member:
    name: str  # e.g. "classifier" or "classifier-555"
    model: str  # registry name
    checkpoint: Path


def ensemble_members(params: dict[str, Any], models_dir: Path) -> list[Member]:
    """The train@<model> models and the train_seed@<model>-<seed> models the params describe."""
    models = require(params, "models", list, "params")
    seeds = require(section(params, "ensemble"), "seeds", list, "ensemble")
    members = [Member(m, m, models_dir / m / "best.pt") for m in models]
    members += [Member(f"{m}-{s}", m, models_dir / "ensemble" / f"{m}-{s}" / "best.pt") for m in models for s in seeds]
    return members


def load_member(member: Member, device: torch.device) -> torch.nn.Module:
    """Build the architecture recorded in the checkpoint and load it strictly."""
    if not member.checkpoint.is_file():
        raise CheckpointError(f"{member.checkpoint}: missing; run `dvc repro` for its train stage or `dvc pull` it")
    header = read_checkpoint(member.checkpoint)
    if header.get("model_name") != member.model:
        raise CheckpointError(
            f"{member.checkpoint}: holds a {header.get('model_name')!r} model, expected {member.model!r}"
        )
    model = create_model(member.model, **header.get("model_kwargs", {}))
    load_weights(model, member.checkpoint)
    return model.to(device).eval()


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: CropDataset, batch_size: int, device: torch.device) -> dict[str, Any]:
    """Crop probabilities in row order; for U-YNet also per-crop mask IoU and Dice."""
    model.eval()
    probs, iou, dice = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        outputs = model(batch["image"].to(device))
        probs.append(torch.sigmoid(outputs["logit"].float()).reshape(-1).cpu().numpy())
        if "mask" in outputs:
            for predicted, target in zip((outputs["mask"] > 0).cpu().numpy(), batch["mask"].numpy() > 0.5, strict=True):
                i, d = mask_iou_dice(predicted, target)
                iou.append(i)
                dice.append(d)
    result: dict[str, Any] = {"prob": np.concatenate(probs) if probs else np.zeros(0)}
    if iou:
        result["iou"], result["dice"] = np.asarray(iou), np.asarray(dice)
    return result


def video_predictions(rows: pd.DataFrame, probs: np.ndarray, config: EvalConfig) -> pd.DataFrame:
    frame = rows.assign(prob=probs, y=(rows["label"] == "FAKE").astype(int))
    grouped = frame.groupby("video", sort=True)
    return pd.DataFrame(
        {
            "y": grouped["y"].first(),
            "prob": grouped["prob"].apply(
                lambda p: aggregate_video(p.to_numpy(), config.aggregation, config.confident)
            ),
        }
    )


def score(rows: pd.DataFrame, probs: np.ndarray, config: EvalConfig) -> tuple[dict[str, Any], pd.DataFrame]:
    labels = (rows["label"] == "FAKE").astype(int).to_numpy()
    videos = video_predictions(rows, probs, config)
    return {"frame": binary_metrics(labels, probs), "video": binary_metrics(videos["y"], videos["prob"])}, videos


def _mask_scores(rows: pd.DataFrame, prediction: dict[str, Any]) -> dict[str, float]:
    fakes = ((rows["label"] == "FAKE") & (rows["mask"] != "")).to_numpy()
    reals = (rows["label"] == "REAL").to_numpy()
    return {
        "fake_iou": float(prediction["iou"][fakes].mean()) if fakes.any() else float("nan"),
        "fake_dice": float(prediction["dice"][fakes].mean()) if fakes.any() else float("nan"),
        "real_empty_rate": float(prediction["iou"][reals].mean()) if reals.any() else float("nan"),
    }


def _curve(videos: pd.DataFrame, metrics: dict[str, Any]) -> dict[str, Any]:
    fpr, tpr, _ = roc_curve(videos["y"], videos["prob"])
    precision, recall, _ = precision_recall_curve(videos["y"], videos["prob"])
    predicted = (videos["prob"] >= 0.5).astype(int)
    confusion = [[int(((videos["y"] == t) & (predicted == p)).sum()) for p in (0, 1)] for t in (0, 1)]
    return {
        "fpr": fpr,
        "tpr": tpr,
        "precision": precision,
        "recall": recall,
        "auc": metrics["auc"],
        "ap": metrics["ap"],
        "confusion": confusion,
    }


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    header = "| model | " + " | ".join(COMPARISON_KEYS) + " |\n|---|" + "---|" * len(COMPARISON_KEYS) + "\n"
    lines = [f"| {r['model']} | " + " | ".join(f"{r[k]:.4f}" for k in COMPARISON_KEYS) + " |" for r in rows]
    return "Video-level metrics on the holdout fold (from `dvc repro evaluate`).\n\n" + header + "\n".join(lines) + "\n"


def run(
    params: dict[str, Any],
    folds_csv: Path,
    roots: DataRoots,
    models_dir: Path,
    metrics_path: Path,
    plots_dir: Path,
    comparison_path: Path,
) -> dict[str, Any]:
    started = time.perf_counter()
    config = EvalConfig.from_params(params)
    device = resolve_device(config.device)
    rows = select_folds(read_folds(folds_csv), [config.holdout_fold], drop_unmasked_fakes=False)
    if rows.empty:
        raise ValueError(f"{folds_csv}: holdout fold {config.holdout_fold} has no crops")
    dataset = CropDataset(rows, roots, config.image_size)
    members = ensemble_members(params, models_dir)
    report: dict[str, Any] = {
        "holdout_fold": config.holdout_fold,
        "aggregation": config.aggregation,
        "crops": len(rows),
        "videos": int(rows["video"].nunique()),
        "models": {},
        "ensembles": {},
    }
    probs_by_member: dict[str, np.ndarray] = {}
    curves: dict[str, dict[str, Any]] = {}
    for member in members:
        prediction = predict(load_member(member, device), dataset, config.batch_size, device)
        probs_by_member[member.name] = prediction["prob"]
        metrics, videos = score(rows, prediction["prob"], config)
        if "iou" in prediction:
            metrics["mask"] = _mask_scores(rows, prediction)
        report["models"][member.name] = metrics
        curves[member.name] = _curve(videos, metrics["video"])
    groups = {f"{m}-ensemble": [x.name for x in members if x.model == m] for m in params["models"]}
    groups["all-ensemble"] = [x.name for x in members]
    for name, names in groups.items():
        if len(names) < 2:
            continue
        metrics, videos = score(rows, np.mean([probs_by_member[n] for n in names], axis=0), config)
        report["ensembles"][name] = {"members": names, **metrics}
        curves[name] = _curve(videos, metrics["video"])
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json_atomic(metrics_path, report)

    from deepfake.plots import comparison_bars, roc_pr_confusion

    table = [{"model": name, **(report["models"].get(name) or report["ensembles"][name])["video"]} for name in curves]
    roc_pr_confusion(curves, plots_dir)
    comparison_bars(table, ("auc", "ap", "accuracy", "balanced_log_loss"), plots_dir / "comparison.png")
    write_bytes_atomic(comparison_path, comparison_markdown(table).encode())
    logger.info("evaluate: %s", {n: round(r["video"]["auc"], 3) for n, r in report["models"].items()})
    return report
