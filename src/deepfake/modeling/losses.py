"""Losses: DFDC-1st's class-balanced BCE, and U-YNet's segmentation term (BCE + Dice)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepfake.modeling.store import LOGIT, MASK


def balanced_bce(
    logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None, label_clip: float
) -> torch.Tensor:
    """BCE over the fakes and BCE over the reals of a batch, each averaged, then the two averaged.

    Labels are clipped to ``[label_clip, 1 - label_clip]`` (``train.label_clip``: label smoothing by clipping). Samples
    with ``valid == 0`` (a fake crop whose diff shows no change) do not count. A batch holding only
    one class uses that class's term alone.
    """
    logits, labels = logits.reshape(-1).float(), labels.reshape(-1).float()
    keep = torch.ones_like(labels, dtype=torch.bool) if valid is None else valid.reshape(-1).bool()
    targets = labels.clamp(label_clip, 1 - label_clip)
    per_sample = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    terms = []
    for is_fake in (True, False):
        members = keep & ((labels > 0.5) == is_fake)  # the labels are 0 or 1: any cut between them reads the class
        if members.any():
            terms.append(per_sample[members].mean())
    if not terms:
        return logits.sum() * 0.0  # keeps the graph (DDP needs every replica to backward)
    return torch.stack(terms).mean()


def dice_loss(mask_logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - Dice over each sample's mask, averaged; an empty target with an empty prediction scores 0."""
    probs = torch.sigmoid(mask_logits.float()).flatten(1)
    target = target.float().flatten(1)
    intersection = (probs * target).sum(1)
    dice = (2 * intersection + smooth) / (probs.sum(1) + target.sum(1) + smooth)
    return (1 - dice).mean()


def segmentation_loss(mask_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + Dice on the binarised SSIM mask (all zeros for reals)."""
    bce = F.binary_cross_entropy_with_logits(mask_logits.float(), target.float())
    return bce + dice_loss(mask_logits, target)


def total_loss(
    outputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    valid: torch.Tensor,
    masks: torch.Tensor | None,
    seg_weight: float,
    label_clip: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective and its parts (for logging)."""
    cls = balanced_bce(outputs[LOGIT], labels, valid, label_clip)
    parts = {"cls": float(cls.detach())}
    if MASK in outputs and masks is not None and seg_weight > 0:
        seg = segmentation_loss(outputs[MASK], masks)
        parts["seg"] = float(seg.detach())
        return cls + seg_weight * seg, parts
    return cls, parts
