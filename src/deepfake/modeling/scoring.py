"""Scoring crops and videos: one crop-probability loop and one video aggregation for every caller.

Training's validation, the evaluate stage, the quantize stage's fp32/int8 test and ``deepfake
predict`` all turn crop probabilities into video probabilities here (``mean`` or DFDC-1st's
``confident`` strategy) and score them with ``deepfake.modeling.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfake.core.params import Params
from deepfake.core.vocabulary import FAKE, REAL
from deepfake.media.face_input import probabilities
from deepfake.modeling.metrics import ConfidentStrategy, aggregate_video, binary_metrics, mask_iou_dice
from deepfake.modeling.store import LOGIT, MASK

if TYPE_CHECKING:  # torch, pandas and albumentations (the dataset's) are seconds of a cold `deepfake predict`,
    # which needs only `Aggregation` from here: they are imported where they are used
    import pandas as pd
    import torch

    from deepfake.modeling.data import CropDataset


@dataclass(frozen=True)
class Aggregation:
    """How a video's crop probabilities become one probability, and from which probability a video (or a
    crop) is called FAKE (params section ``evaluate``)."""

    method: str
    confident: ConfidentStrategy
    threshold: float  # evaluate.decision_threshold: P(fake) >= threshold is FAKE

    @classmethod
    def from_params(cls, params: Params) -> Aggregation:
        sect = params.evaluate
        strategy = ConfidentStrategy(**sect.confident.model_dump())
        return cls(method=sect.aggregation, confident=strategy, threshold=sect.decision_threshold)

    def __call__(self, probs: Any) -> float:
        return aggregate_video(probs, self.method, self.confident)

    def label(self, probability: float) -> str:
        """FAKE or REAL: the verdict on a video of P(fake) ``probability``."""
        return FAKE if probability >= self.threshold else REAL


def predict_crops(
    model: torch.nn.Module, dataset: CropDataset, batch_size: int, device: torch.device
) -> dict[str, Any]:
    """Crop probabilities in row order; for U-YNet also per-crop mask IoU and Dice."""
    import torch
    from torch.utils.data import DataLoader

    model.eval()
    logits, iou, dice = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        with torch.no_grad():
            outputs = model(batch["image"].to(device))
        logits.append(outputs[LOGIT].float().reshape(-1).cpu().numpy())
        if MASK in outputs:
            # a pixel is predicted manipulated where its mask logit is positive (P > 1/2: the likelier class);
            # target masks hold 0 or 1, so any cut between binarises them alike
            for predicted, target in zip((outputs[MASK] > 0).cpu().numpy(), batch["mask"].numpy() > 0.5, strict=True):
                i, d = mask_iou_dice(predicted, target)
                iou.append(i)
                dice.append(d)
    result: dict[str, Any] = {"prob": probabilities(np.concatenate(logits)) if logits else np.zeros(0)}
    if iou:
        result["iou"], result["dice"] = np.asarray(iou), np.asarray(dice)
    return result


def predict_crops_with(
    logit_fn: Callable[[np.ndarray], np.ndarray], dataset: CropDataset, batch_size: int
) -> np.ndarray:
    """Crop probabilities in row order from any ``images -> logits`` function (an ONNX session, an engine)."""
    logits = []
    for start in range(0, len(dataset), batch_size):
        batch = np.stack([dataset[i]["image"].numpy() for i in range(start, min(start + batch_size, len(dataset)))])
        logits.append(np.asarray(logit_fn(batch)).reshape(-1))
    return probabilities(np.concatenate(logits)) if logits else np.zeros(0)


def video_predictions(rows: pd.DataFrame, probs: np.ndarray, aggregation: Aggregation) -> pd.DataFrame:
    """One row per video: its label ``y`` and aggregated probability ``prob``."""
    import pandas as pd

    frame = rows.assign(prob=probs, y=(rows["label"] == FAKE).astype(int))
    grouped = frame.groupby("video", sort=True)
    return pd.DataFrame({"y": grouped["y"].first(), "prob": grouped["prob"].apply(lambda p: aggregation(p.to_numpy()))})


def score(rows: pd.DataFrame, probs: np.ndarray, aggregation: Aggregation) -> tuple[dict[str, Any], pd.DataFrame]:
    """Frame- and video-level metrics of crop probabilities ``probs`` (in ``rows`` order)."""
    labels = (rows["label"] == FAKE).astype(int).to_numpy()
    videos = video_predictions(rows, probs, aggregation)
    threshold = aggregation.threshold
    frame, video = binary_metrics(labels, probs, threshold), binary_metrics(videos["y"], videos["prob"], threshold)
    return {"frame": frame, "video": video}, videos
