"""Matplotlib figures the stages write as PNG (shown as they are by `dvc plots show/diff`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

from deepfake.core.fileio import atomic_path
from deepfake.core.vocabulary import FAKE, REAL


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png", metadata={"Software": None})
    plt.close(fig)


def loss_curves(
    history: list[dict[str, float]], best_epoch: int | None, ignore_epochs: int, title: str, path: Path
) -> None:
    """Train loss and validation fake/real/weighted loss per epoch; the picked epoch marked (DFDC-1st's plot_loss)."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (
        ("train_loss", "-"),
        ("val_fake_loss", "--"),
        ("val_real_loss", "--"),
        ("val_weighted_loss", "-"),
    ):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], style, marker="o", ms=3, label=key)
    if ignore_epochs:
        ax.axvspan(-0.5, ignore_epochs - 0.5, color="grey", alpha=0.15, label="ignored by the picker")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="red", lw=1)
        picked = next(h for h in history if h["epoch"] == best_epoch)
        ax.plot([best_epoch], [picked["val_weighted_loss"]], "r*", ms=14, label=f"picked: epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)


def roc_pr_confusion(curves: dict[str, dict[str, Any]], out_dir: Path, where: str = "holdout") -> None:
    """roc.png and pr.png with one line per model; confusion.png with one matrix per model, at its 'likely
    fake' operating point (``confusion_at``: the false-positive rate it was fitted for; a model without one
    is shown empty and says so).

    ``where`` names the data in the titles (the test set).
    """
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, c in curves.items():
        ax.plot(c["fpr"], c["tpr"], label=f"{name} (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=f"ROC, video level ({where})")
    ax.legend(fontsize=7)
    _save(fig, out_dir / "roc.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, c in curves.items():
        ax.plot(c["recall"], c["precision"], label=f"{name} (AP {c['ap']:.3f})")
    ax.set(xlabel="recall", ylabel="precision", title=f"Precision-recall, video level ({where})")
    ax.legend(fontsize=7)
    _save(fig, out_dir / "pr.png")
    fig, axes = plt.subplots(1, len(curves), figsize=(2.6 * len(curves), 2.8), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=True):
        if c.get("confusion") is None:
            ax.text(0.5, 0.5, "no operating point\n(not calibrated)", ha="center", va="center", fontsize=7)
            ax.set(xticks=[], yticks=[], title=name)
            ax.title.set_fontsize(8)
            continue
        matrix = np.asarray(c["confusion"])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center")
        ax.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=[REAL, f"{FAKE}?"],
            yticklabels=[REAL, FAKE],
            xlabel=f"flagged at the {c['confusion_at']:.0%} FPR point",
            ylabel="true",
            title=name,
        )
        ax.title.set_fontsize(8)
    _save(fig, out_dir / "confusion.png")


def reliability_diagram(curves: dict[str, dict[str, Any]], path: Path, where: str = "holdout") -> None:
    """Two panels, before and after calibration: per model, the share of fakes against the mean predicted
    P(fake) in each probability bin (a calibrated model lies on the diagonal)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharey=True)
    for ax, stage in zip(axes, ("before", "after"), strict=True):
        ax.plot([0, 1], [0, 1], ":", color="grey")
        for name, c in curves.items():
            points = c.get("reliability", {}).get(stage)
            if points:
                ax.plot([p["predicted"] for p in points], [p["observed"] for p in points], marker="o", ms=3, label=name)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted P(fake)", title=f"{stage} calibration ({where})")
        ax.title.set_fontsize(8)
    axes[0].set_ylabel("share of fake videos")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:  # no calibration for any row: say so rather than draw an empty panel silently
            ax.text(0.5, 0.5, "not calibrated", ha="center", va="center", fontsize=8, color="grey")
    _save(fig, path)


def robustness_curves(points: list[dict[str, Any]], path: Path, where: str) -> None:
    """Video AUC against perturbation level, one line per family, the baseline (level 0) shared by all."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    baseline = next((p["auc"] for p in points if p["family"] == "none"), None)
    families = sorted({p["family"] for p in points if p["family"] != "none"})
    for family in families:
        series = sorted((p["level"], p["auc"]) for p in points if p["family"] == family and p["auc"] is not None)
        if baseline is not None:
            series = [(0, baseline), *series]
        ax.plot([x for x, _ in series], [y for _, y in series], marker="o", ms=4, label=family)
    if baseline is not None:
        ax.axhline(baseline, color="grey", lw=0.8, ls=":", label="baseline (re-encoded)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
    ax.set(xlabel="perturbation level (0: none)", ylabel="video AUC", ylim=(0, 1.02), xticks=range(6))
    ax.set_title(f"Robustness ({where})", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def comparison_bars(rows: list[dict[str, Any]], keys: tuple[str, ...], path: Path, where: str = "holdout") -> None:
    """One group of bars per metric, one bar per model (TrustNet's model comparison)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(keys) * max(1, len(rows)) / 3), 4))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        ax.bar(np.arange(len(keys)) + i * width, [row.get(k, np.nan) for k in keys], width, label=row["model"])
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax.set_title(f"Model comparison, video level ({where})")
    ax.legend(fontsize=7)
    _save(fig, path)


def annotated_heatmap(
    values: np.ndarray,
    rows: list[str],
    columns: list[str],
    path: Path,
    title: str,
    separators: tuple[int, ...] = (),
) -> None:
    """A rows x columns grid of values in [0, 1] (the evaluation matrix's AUCs), each cell annotated.

    NaN cells (no evaluation, or the metric undefined there) are grey and read "n/a"; a vertical line is
    drawn before each column index in ``separators``. Same values, same PNG bytes.
    """
    grid = np.asarray(values, dtype=np.float64).reshape(len(rows), len(columns))
    fig, ax = plt.subplots(figsize=(2.0 + 0.95 * max(len(columns), 1), 1.4 + 0.42 * max(len(rows), 1)))
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        text, colour = ("n/a", "black") if np.isnan(value) else (f"{value:.3f}", "black" if value > 0.6 else "white")
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    for index in separators:
        ax.axvline(index - 0.5, color="white", lw=3)
    ax.set_xticks(np.arange(len(columns)), columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(np.arange(len(rows)), rows, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    _save(fig, path)
