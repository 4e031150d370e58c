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

from deepfake.core.device import resolve_device
from deepfake.core.errors import InputError
from deepfake.core.fileio import write_bytes_atomic, write_json_atomic
from deepfake.modeling.data import CropDataset, DataRoots, read_folds, select_folds
from deepfake.modeling.metrics import precision_recall_curve, roc_curve
from deepfake.modeling.scoring import Aggregation, predict_crops, score
from deepfake.modeling.store import Member, ModelStore, ensemble

logger = logging.getLogger(__name__)

COMPARISON_KEYS = ("auc", "ap", "accuracy", "log_loss", "balanced_log_loss", "eer", "ece")


@dataclass(frozen=True)
class Config:
    aggregation: Aggregation
    batch_size: int
    holdout_fold: int
    image_size: int
    device: str
    members: tuple[Member, ...]  # the ensemble: every model with train.seed and each ensemble seed

    @classmethod
    def from_params(cls, params: Any) -> Config:
        return cls(
            aggregation=Aggregation.from_params(params),
            batch_size=params.evaluate.batch_size,
            holdout_fold=params.train.holdout_fold,
            image_size=params.train.image_size,
            device=params.evaluate.device,
            members=ensemble(params),
        )


@dataclass(frozen=True)
class Paths:
    folds: Path
    roots: DataRoots
    models: Path  # the models/ root (reads models/train)
    metrics: Path
    plots: Path
    comparison: Path


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


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Every member and each ensemble on the holdout fold: metrics JSON, plots and the comparison table."""
    started = time.perf_counter()
    device = resolve_device(config.device)
    rows = select_folds(read_folds(paths.folds), [config.holdout_fold], drop_unmasked_fakes=False)
    if rows.empty:
        raise InputError(f"{paths.folds}: holdout fold {config.holdout_fold} has no crops")
    dataset = CropDataset(rows, paths.roots, config.image_size)
    store = ModelStore(paths.models)
    report: dict[str, Any] = {
        "holdout_fold": config.holdout_fold,
        "aggregation": config.aggregation.method,
        "crops": len(rows),
        "videos": int(rows["video"].nunique()),
        "models": {},
        "ensembles": {},
    }
    probs_by_member: dict[str, np.ndarray] = {}
    curves: dict[str, dict[str, Any]] = {}
    for member in config.members:
        prediction = predict_crops(store.load_torch(member, device), dataset, config.batch_size, device)
        probs_by_member[member.name] = prediction["prob"]
        metrics, videos = score(rows, prediction["prob"], config.aggregation)
        if "iou" in prediction:
            metrics["mask"] = _mask_scores(rows, prediction)
        report["models"][member.name] = metrics
        curves[member.name] = _curve(videos, metrics["video"])
    models = dict.fromkeys(m.model for m in config.members)  # in params order
    groups = {f"{m}-ensemble": [x.name for x in config.members if x.model == m] for m in models}
    groups["all-ensemble"] = [x.name for x in config.members]
    for name, names in groups.items():
        if len(names) < 2:
            continue
        metrics, videos = score(rows, np.mean([probs_by_member[n] for n in names], axis=0), config.aggregation)
        report["ensembles"][name] = {"members": names, **metrics}
        curves[name] = _curve(videos, metrics["video"])
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_json_atomic(paths.metrics, report)

    from deepfake.modeling.plots import comparison_bars, roc_pr_confusion

    table = [{"model": name, **(report["models"].get(name) or report["ensembles"][name])["video"]} for name in curves]
    roc_pr_confusion(curves, paths.plots)
    comparison_bars(table, ("auc", "ap", "accuracy", "balanced_log_loss"), paths.plots / "comparison.png")
    write_bytes_atomic(paths.comparison, comparison_markdown(table).encode())
    logger.info("evaluate: %s", {n: round(r["video"]["auc"], 3) for n, r in report["models"].items()})
    return report
