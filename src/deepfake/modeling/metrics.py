"""Frame- and video-level metrics (DFDC log loss, balanced log loss, AUC, AP, EER, ECE, IoU/Dice).

Labels are 1 for FAKE and 0 for REAL; predictions are probabilities of FAKE.

From scikit-learn (``sklearn.metrics``), with the figures of the NumPy formulas they replaced (AUC
and AP to within one unit in the last place: sklearn sums a trapezoid / step integral instead):

- log loss: ``log_loss`` on predictions first clipped to [eps, 1 - eps] as DFDC did (sklearn's own
  clip at machine epsilon is then a no-op);
- AUC: ``roc_auc_score`` (the Mann-Whitney statistic, ties counted as one half);
- ROC curve: ``roc_curve`` with every distinct threshold kept (``drop_intermediate=False``);
- precision-recall curve: ``precision_recall_curve``, reordered highest threshold first and without
  sklearn's appended (precision 1, recall 0) end point;
- AP: ``average_precision_score`` (no interpolation).

No accuracy: it needs a threshold, and the thresholds are the operating points fitted on labelled videos
(``deepfake.modeling.calibration``), reported by the evaluate stage with their rates.

Hand-written, and why:

- balanced log loss: DFDC-1st's metric (mean of the per-class log losses); sklearn has none;
- EER: sklearn has no EER; it is read off the ROC curve above by linear interpolation;
- ECE: sklearn has no ECE, and ``calibration_curve`` bins right-closed, not [k/bins, (k+1)/bins);
- mask IoU/Dice: both masks empty must count as a perfect match, sklearn scores that 0;
- ConfidentStrategy / aggregate_video: DFDC-1st's per-video aggregation, not a metric sklearn has;
- degenerate inputs (no samples, or one class only): sklearn raises, warns or returns NaN or
  placeholder rates there, so each function keeps its earlier answer explicitly (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DFDC_EPS = 1e-15  # DFDC clipped predictions before the log loss
_MACHINE_EPS = float(np.finfo(np.float64).eps)  # sklearn's log_loss clips here itself


def _sklearn_metrics() -> Any:
    """scikit-learn's metrics, imported on first use: predict's and serve's worker processes import this
    module for the video aggregation alone, and sklearn's import is a second or more of each one's start."""
    from sklearn import metrics

    return metrics


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


def _both_classes(y: np.ndarray) -> bool:
    return bool((y == 1).any() and (y == 0).any())


def log_loss(labels: Any, probs: Any, eps: float = DFDC_EPS) -> float:
    """Binary log loss with natural log and predictions clipped to [eps, 1 - eps] (DFDC's metric).

    NaN for no samples. ``eps`` must be at least machine epsilon (sklearn clips there itself).
    """
    if eps < _MACHINE_EPS:
        raise ValueError(f"eps must be at least machine epsilon ({_MACHINE_EPS:.3g}), got {eps!r}")
    y, p = _arrays(labels, probs)
    if not len(y):
        return float("nan")
    return float(_sklearn_metrics().log_loss(y, np.clip(p, eps, 1 - eps), labels=[0, 1]))


def balanced_log_loss(labels: Any, probs: Any, eps: float = DFDC_EPS) -> float:
    """(log loss on the fakes + log loss on the reals) / 2, DFDC-1st's validation metric; NaN for one class."""
    y, p = _arrays(labels, probs)
    if not _both_classes(y):
        return float("nan")
    return (log_loss(y[y == 1], p[y == 1], eps) + log_loss(y[y == 0], p[y == 0], eps)) / 2


def roc_auc(labels: Any, probs: Any) -> float:
    """Area under the ROC curve: P(score of a fake > score of a real), ties counted as one half.

    NaN unless both classes are present.
    """
    y, p = _arrays(labels, probs)
    if not _both_classes(y):
        return float("nan")
    return float(_sklearn_metrics().roc_auc_score(y, p))


def roc_curve(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds, from (0, 0) to (1, 1).

    Every distinct threshold, highest first, after a leading ``inf``. With one class only the absent
    class's rate is 0 throughout (sklearn would give NaN and warn); no samples give one (0, 0) point.
    """
    y, p = _arrays(labels, probs)
    if _both_classes(y):
        return _sklearn_metrics().roc_curve(y, p, pos_label=1, drop_intermediate=False)
    thresholds, counts = np.unique(p, return_counts=True)
    rate = np.r_[0.0, np.cumsum(counts[::-1]) / max(len(p), 1)]
    absent = np.zeros_like(rate)
    fpr, tpr = (absent, rate) if (y == 1).any() else (rate, absent)
    return fpr, tpr, np.r_[np.inf, thresholds[::-1]]


def precision_recall_curve(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct threshold, highest threshold first.

    Without sklearn's appended (1, 0) end point. With no fakes both are 0 throughout (sklearn would
    set recall to 1 and warn); no samples give empty arrays.
    """
    y, p = _arrays(labels, probs)
    if not (y == 1).any():
        thresholds = np.unique(p)[::-1]
        return np.zeros(len(thresholds)), np.zeros(len(thresholds)), thresholds
    precision, recall, thresholds = _sklearn_metrics().precision_recall_curve(y, p, pos_label=1)
    return precision[-2::-1], recall[-2::-1], thresholds[::-1]


def average_precision(labels: Any, probs: Any) -> float:
    """AP = sum over thresholds of (R_n - R_{n-1}) * P_n (no interpolation); NaN with no fakes."""
    y, p = _arrays(labels, probs)
    if not (y == 1).any():
        return float("nan")
    return float(_sklearn_metrics().average_precision_score(y, p, pos_label=1))


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


ECE_BINS = 10  # the usual definition's bin count (Naeini et al. 2015); the report's ECE is this one


def expected_calibration_error(labels: Any, probs: Any, bins: int = ECE_BINS) -> float:
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
    """Every threshold-free classification metric of this module for one set of predictions."""
    y, p = _arrays(labels, probs)
    return {
        "count": len(y),
        "fakes": int((y == 1).sum()),
        "log_loss": log_loss(y, p),
        "balanced_log_loss": balanced_log_loss(y, p),
        "auc": roc_auc(y, p),
        "ap": average_precision(y, p),
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

    threshold: float
    min_fakes: int
    min_fake_divisor: float
    low: float
    low_fraction: float

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


def aggregate_video(probs: Any, method: str, confident: ConfidentStrategy) -> float:
    """One probability per video from its frame (and face) probabilities (``evaluate.aggregation``)."""
    if method == "mean":
        p = np.asarray(probs, dtype=np.float64)
        if not p.size:
            raise ValueError("no frame probabilities to aggregate")
        return float(p.mean())
    if method == "confident":
        return confident(probs)
    raise ValueError(f"unknown aggregation {method!r}; use 'mean' or 'confident'")
