"""Scoring crops and videos: one crop-probability loop and one video aggregation for every caller.

Training's validation, the evaluate stage, the quantize stage's fp32/int8 test and ``deepfake
predict`` all turn crop probabilities into video probabilities here (``mean`` or DFDC-1st's
``confident`` strategy) and score them with ``deepfake.modeling.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deepfake.core.params import Params
from deepfake.core.vocabulary import FAKE
from deepfake.media.face_input import probabilities
from deepfake.modeling.metrics import ConfidentStrategy, aggregate_video, binary_metrics, mask_iou_dice
from deepfake.modeling.store import LOGIT, MASK, Member

if TYPE_CHECKING:  # torch, pandas and albumentations (the dataset's) are seconds of a cold `deepfake predict`,
    # which needs only `Aggregation` from here: they are imported where they are used
    import pandas as pd
    import torch

    from deepfake.modeling.data import CropDataset


@dataclass(frozen=True)
class Aggregation:
    """How a video's crop probabilities become one probability (params section ``evaluate``). Which videos are
    called fake is not decided here: a package's operating points decide it (``modeling.calibration``)."""

    method: str
    confident: ConfidentStrategy

    @classmethod
    def from_params(cls, params: Params) -> Aggregation:
        sect = params.evaluate
        strategy = ConfidentStrategy(**sect.confident.model_dump())
        return cls(method=sect.aggregation, confident=strategy)

    def __call__(self, probs: Any) -> float:
        return aggregate_video(probs, self.method, self.confident)


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
    frame, video = binary_metrics(labels, probs), binary_metrics(videos["y"], videos["prob"])
    return {"frame": frame, "video": video}, videos


ALL_MEMBERS_ROW = "all-ensemble"  # the row of every member together: a model package's row


def ensemble_rows(members: Sequence[Member]) -> dict[str, list[str]]:
    """The evaluation's ensemble rows: each architecture's seeds (``<model>-ensemble``) and every member together
    (``all-ensemble``), each only when it has two members or more; members keep the params' order."""
    models = dict.fromkeys(m.model for m in members)
    groups = {f"{m}-ensemble": [x.name for x in members if x.model == m] for m in models}
    groups[ALL_MEMBERS_ROW] = [x.name for x in members]
    return {name: names for name, names in groups.items() if len(names) >= 2}


def package_row(members: Sequence[Member]) -> str:
    """The row whose figures and calibration a package of ``members`` carries: the member alone, or all of them."""
    return members[0].name if len(members) == 1 else ALL_MEMBERS_ROW


def row_probabilities(members: Sequence[Member], probs_by_member: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Crop probabilities of every row: each member's own, then each ensemble's (the mean of its members')."""
    rows = {m.name: probs_by_member[m.name] for m in members}
    for name, names in ensemble_rows(members).items():
        rows[name] = np.mean([probs_by_member[n] for n in names], axis=0)
    return rows
