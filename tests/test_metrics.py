"""Metric functions against values computed by hand."""

import math

import numpy as np
import pytest

from deepfake.metrics import (
    ConfidentStrategy,
    accuracy,
    aggregate_video,
    average_precision,
    balanced_log_loss,
    binary_metrics,
    equal_error_rate,
    expected_calibration_error,
    log_loss,
    mask_iou_dice,
    roc_auc,
    roc_curve,
)


def test_log_loss_by_hand() -> None:
    # -(ln 0.8 + ln 0.6) / 2
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))  # DFDC's 0.693 baseline
    # clipped at 1e-15 rather than infinite
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))


def test_balanced_log_loss_weights_classes_equally() -> None:
    labels, probs = [1, 1, 1, 0], [0.9, 0.9, 0.9, 0.5]
    expected = (-math.log(0.9) + math.log(2)) / 2
    assert balanced_log_loss(labels, probs) == pytest.approx(expected)
    assert math.isnan(balanced_log_loss([1, 1], [0.2, 0.3]))


def test_auc_by_hand_with_ties() -> None:
    # pairs (fake, real): (0.8,0.1)=1 (0.8,0.4)=1 (0.4,0.1)=1 (0.4,0.4)=0.5 -> 3.5 / 4
    assert roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.1, 0.4]) == pytest.approx(0.875)
    assert roc_auc([1, 0], [0.9, 0.1]) == 1.0
    assert roc_auc([1, 0], [0.1, 0.9]) == 0.0
    assert math.isnan(roc_auc([1, 1], [0.1, 0.9]))


def test_roc_curve_endpoints() -> None:
    fpr, tpr, _ = roc_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert list(tpr) == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert list(fpr) == [0.0, 0.0, 0.5, 0.5, 1.0]


def test_average_precision_by_hand() -> None:
    # ranked: F(0.9) R(0.8) F(0.7) R(0.1): precision at the fakes 1/1 and 2/3 -> (1 + 2/3) / 2
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)


def test_accuracy_and_eer_by_hand() -> None:
    assert accuracy([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == 0.75
    assert equal_error_rate([1, 0], [0.9, 0.1]) == 0.0
    # fpr = fnr = 0.5 at threshold 0.7 (one real above, one fake below)
    assert equal_error_rate([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5)


def test_expected_calibration_error_by_hand() -> None:
    # bin [0.2,0.3): mean p 0.2, mean y 0 -> 0.2 ; bin [0.8,0.9): mean p 0.8, mean y 1 -> 0.2
    assert expected_calibration_error([0, 1], [0.2, 0.8]) == pytest.approx(0.2)
    assert expected_calibration_error([0, 0, 1, 1], [0.0, 0.0, 1.0, 1.0]) == pytest.approx(0.0)


def test_mask_iou_and_dice_by_hand() -> None:
    a = np.array([[1, 1], [0, 0]])
    b = np.array([[1, 0], [1, 0]])
    assert mask_iou_dice(a, b) == (pytest.approx(1 / 3), pytest.approx(0.5))
    assert mask_iou_dice(np.zeros((2, 2)), np.zeros((2, 2))) == (1.0, 1.0)


def test_confident_strategy_follows_dfdc_first() -> None:
    strategy = ConfidentStrategy()
    confident = [0.9] * 12 + [0.1] * 8  # 12 > 20 // 2.5 = 8 and 12 > 11: mean of the confident ones
    assert strategy(confident) == pytest.approx(0.9)
    mostly_low = [0.1] * 19 + [0.6]  # 19 > 0.9 * 20: mean of the low ones
    assert strategy(mostly_low) == pytest.approx(0.1)
    mixed = [0.9] * 5 + [0.3] * 5
    assert strategy(mixed) == pytest.approx(0.6)
    assert aggregate_video(mixed, "mean") == pytest.approx(0.6)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_video(mixed, "median")
    with pytest.raises(ValueError, match="no frame"):
        aggregate_video([], "confident")


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(REAL\\) or 1"):
        log_loss([2], [0.5])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([1, 0], [0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        accuracy([1], [1.5])


def test_binary_metrics_bundle() -> None:
    metrics = binary_metrics([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert metrics["count"] == 4
    assert metrics["fakes"] == 2
    assert metrics["auc"] == pytest.approx(0.75)
