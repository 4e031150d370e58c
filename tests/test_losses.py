import math

import pytest
import torch

from deepfake.modeling.losses import balanced_bce, dice_loss, segmentation_loss, total_loss
from deepfake.modeling.store import LOGIT, MASK


def test_balanced_bce_averages_the_class_terms() -> None:
    logits = torch.tensor([0.0, 0.0, 0.0, math.log(3.0)])  # p = .5, .5, .5, .75
    labels = torch.tensor([1.0, 1.0, 1.0, 0.0])
    loss = balanced_bce(logits, labels, None, label_clip=0.0)
    # fakes: -ln .5 each; real: -ln .25 -> (ln2 + ln4) / 2
    assert float(loss) == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-5)


def test_invalid_samples_do_not_count_and_labels_are_clipped() -> None:
    logits = torch.tensor([5.0, -50.0])
    labels = torch.tensor([1.0, 1.0])
    only_first = balanced_bce(logits, labels, valid=torch.tensor([1, 0]), label_clip=0.0)
    assert float(only_first) == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(-5.0))), rel=1e-5)
    # with clipping the target is .99, so a huge logit is no longer free
    assert float(balanced_bce(torch.tensor([50.0]), torch.tensor([1.0]), None, label_clip=0.01)) > 0.4
    empty = balanced_bce(logits, labels, valid=torch.tensor([0, 0]), label_clip=0.0)
    assert float(empty) == 0.0


def test_dice_and_segmentation_loss() -> None:
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    perfect = torch.where(target > 0, 20.0, -20.0)
    assert float(dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-3)
    assert float(dice_loss(-perfect, target)) > 0.9
    assert float(segmentation_loss(perfect, target)) < float(segmentation_loss(-perfect, target))


def test_total_loss_adds_weighted_segmentation_only_for_uynet() -> None:
    labels, valid = torch.tensor([1.0, 0.0]), torch.tensor([1, 1])
    masks = torch.zeros(2, 1, 4, 4)
    outputs = {LOGIT: torch.zeros(2, 1), MASK: torch.zeros(2, 1, 4, 4)}
    cls_only, parts = total_loss({LOGIT: outputs[LOGIT]}, labels, valid, masks, 0.5, 0.01)
    both, parts_both = total_loss(outputs, labels, valid, masks, 0.5, 0.01)
    assert "seg" not in parts
    assert float(both) == pytest.approx(parts_both["cls"] + 0.5 * parts_both["seg"], rel=1e-5)
    none, _ = total_loss(outputs, labels, valid, masks, 0.0, 0.01)
    assert float(none) == pytest.approx(float(cls_only))
