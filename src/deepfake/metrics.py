"""Frame- and video-level metrics (DFDC log loss, balanced log loss, AUC, AP, EER, ECE, IoU/Dice).

Pure NumPy, so every formula is in one place and tested against hand-computed values. Labels are
1 for FAKE and 0 for REAL; predictions are probabilities of FAKE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DFDC_EPS = 1e-15  # DFDC clipped predictions before the log loss


def _arrays(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in length: {y.shape} vs {p.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 (REAL) or 1 (FAKE)")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1] without NaN")
    return y, p


def log_loss(labels: Any, probs: Any, eps: float = DFDC_EPS) -> float:
    """Binary log loss with natural log and clipped predictions (DFDC's metric)."""
    y, p = _arrays(labels, probs)
    if not len(y):
        return float("nan")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def balanced_log_loss(labels: Any, probs: Any, eps: float = DFDC_EPS) -> float:
    """(log loss on the fakes + log loss on the reals) / 2, DFDC-1st's validation metric."""
    y, p = _arrays(labels, probs)
    if not (y == 1).any() or not (y == 0).any():
        return float("nan")
    return (log_loss(y[y == 1], p[y == 1], eps) + log_loss(y[y == 0], p[y == 0], eps)) / 2


def roc_auc(labels: Any, probs: Any) -> float:
    """Area under the ROC curve: P(score of a fake > score of a real), ties counted as one half."""
    y, p = _arrays(labels, probs)
    positives, negatives = p[y == 1], p[y == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    sorted_p = p[order]
    # average ranks over ties (Mann-Whitney U)
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[y == 1].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(positives) * len(negatives)))


def roc_curve(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds, from (0, 0) to (1, 1)."""
    y, p = _arrays(labels, probs)
    thresholds = np.unique(p)[::-1]
    positives, negatives = max((y == 1).sum(), 1), max((y == 0).sum(), 1)
    tpr = np.array([((p >= t) & (y == 1)).sum() / positives for t in thresholds])
    fpr = np.array([((p >= t) & (y == 0)).sum() / negatives for t in thresholds])
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def precision_recall_curve(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct threshold, highest threshold first."""
    y, p = _arrays(labels, probs)
    thresholds = np.unique(p)[::-1]
    positives = max((y == 1).sum(), 1)
    precision, recall = [], []
    for t in thresholds:
        predicted = p >= t
        true_positive = (predicted & (y == 1)).sum()
        precision.append(true_positive / predicted.sum())
        recall.append(true_positive / positives)
    return np.array(precision), np.array(recall), thresholds


def average_precision(labels: Any, probs: Any) -> float:
    """AP = sum over thresholds of (R_n - R_{n-1}) * P_n (no interpolation)."""
    y, _ = _arrays(labels, probs)
    if not (y == 1).any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(labels, probs)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy(labels: Any, probs: Any, threshold: float = 0.5) -> float:
    y, p = _arrays(labels, probs)
    return float(np.mean((p >= threshold) == (y == 1))) if len(y) else float("nan")


def equal_error_rate(labels: Any, probs: Any) -> float:
    """The error rate where the false-positive and false-negative rates meet (linear interpolation)."""
    y, _ = _arrays(labels, probs)
    if not (y == 1).any() or not (y == 0).any():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, probs)
    fnr = 1 - tpr
    diff = fpr - fnr
    crossing = int(np.argmax(diff >= 0))  # fpr rises and fnr falls along the curve
    if crossing == 0:
        return float(fpr[0])
    a, b = crossing - 1, crossing
    weight = diff[a] / (diff[a] - diff[b])  # where the straight line between a and b crosses zero
    return float(fpr[a] + weight * (fpr[b] - fpr[a]))


def expected_calibration_error(labels: Any, probs: Any, bins: int = 10) -> float:
    """Sum over equal-width bins of |mean(label) - mean(prob)| weighted by the bin's share."""
    y, p = _arrays(labels, probs)
    if not len(y):
        return float("nan")
    index = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(y[members].mean() - p[members].mean())
    return float(error)


def mask_iou_dice(predicted: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two binary masks; both empty counts as a perfect match."""
    pred, true = np.asarray(predicted, bool), np.asarray(target, bool)
    intersection = np.logical_and(pred, true).sum()
    union = np.logical_or(pred, true).sum()
    total = pred.sum() + true.sum()
    if union == 0:
        return 1.0, 1.0
    return float(intersection / union), float(2 * intersection / total)


def binary_metrics(labels: Any, probs: Any) -> dict[str, float]:
    """Every classification metric of this module for one set of predictions."""
    y, p = _arrays(labels, probs)
    return {
        "count": len(y),
        "fakes": int((y == 1).sum()),
        "log_loss": log_loss(y, p),
        "balanced_log_loss": balanced_log_loss(y, p),
        "auc": roc_auc(y, p),
        "ap": average_precision(y, p),
        "accuracy": accuracy(y, p),
        "eer": equal_error_rate(y, p),
        "ece": expected_calibration_error(y, p),
    }


@dataclass(frozen=True)
class ConfidentStrategy:
    """DFDC-1st's per-video aggregation of frame probabilities.

    If more than ``len / min_fake_divisor`` and more than ``min_fakes`` frames exceed ``threshold``,
    the mean of those; elif more than ``low_fraction`` of the frames are below ``low``, the mean of
    those; else the mean of all.
    """

    threshold: float = 0.8
    min_fakes: int = 11
    min_fake_divisor: float = 2.5
    low: float = 0.2
    low_fraction: float = 0.9

    def __call__(self, probs: Any) -> float:
        p = np.asarray(probs, dtype=np.float64).ravel()
        if not len(p):
            raise ValueError("no frame probabilities to aggregate")
        confident = p[p > self.threshold]
        if len(confident) > len(p) // self.min_fake_divisor and len(confident) > self.min_fakes:
            return float(confident.mean())
        low = p[p < self.low]
        if len(low) > self.low_fraction * len(p):
            return float(low.mean())
        return float(p.mean())


def aggregate_video(probs: Any, method: str, confident: ConfidentStrategy | None = None) -> float:
    """One probability per video from its frame (and face) probabilities."""
    if method == "mean":
        p = np.asarray(probs, dtype=np.float64)
        if not p.size:
            raise ValueError("no frame probabilities to aggregate")
        return float(p.mean())
    if method == "confident":
        return (confident or ConfidentStrategy())(probs)
    raise ValueError(f"unknown aggregation {method!r}; use 'mean' or 'confident'")
