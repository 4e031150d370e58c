"""Metric functions against values computed by hand and against pure-Python reference formulas."""

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from deepfake.modeling.metrics import (
    ConfidentStrategy,
    aggregate_video,
    average_precision,
    balanced_log_loss,
    binary_metrics,
    equal_error_rate,
    expected_calibration_error,
    log_loss,
    mask_iou_dice,
    precision_recall_curve,
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


def test_eer_by_hand() -> None:
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
    from deepfake.core.params import load_params

    # DFDC-1st's confident_strategy (selimsef/dfdc_deepfake_challenge, README "Averaging predictions"):
    # t=0.8, fakes > len // 2.5 and fakes > 11, else the low ones (< 0.2) when more than 0.9 of the frames
    dfdc_first = {"threshold": 0.8, "min_fakes": 11, "min_fake_divisor": 2.5, "low": 0.2, "low_fraction": 0.9}
    configured = load_params(Path(__file__).parents[1] / "params.yaml").evaluate.confident.model_dump()
    assert configured == dfdc_first  # params.yaml configures exactly DFDC-1st's numbers
    strategy = ConfidentStrategy(**dfdc_first)
    confident = [0.9] * 12 + [0.1] * 8  # 12 > 20 // 2.5 = 8 and 12 > 11: mean of the confident ones
    assert strategy(confident) == pytest.approx(0.9)
    mostly_low = [0.1] * 19 + [0.6]  # 19 > 0.9 * 20: mean of the low ones
    assert strategy(mostly_low) == pytest.approx(0.1)
    mixed = [0.9] * 5 + [0.3] * 5
    assert strategy(mixed) == pytest.approx(0.6)
    assert aggregate_video(mixed, "mean", strategy) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_video(mixed, "median", strategy)
    with pytest.raises(ValueError, match="no frame"):
        aggregate_video([], "confident", strategy)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="0 \\(REAL\\) or 1"):
        log_loss([2], [0.5])
    with pytest.raises(ValueError, match="differ in length"):
        roc_auc([1, 0], [0.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        roc_auc([1], [1.5])


def test_binary_metrics_bundle() -> None:
    metrics = binary_metrics([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert metrics["count"] == 4
    assert metrics["fakes"] == 2
    assert metrics["auc"] == pytest.approx(0.75)
    assert "accuracy" not in metrics  # it needs a threshold: the operating points report their rates instead


# --- against pure-Python references ----------------------------------------------------------------
# The sklearn-backed functions must give the figures of the NumPy formulas they replaced. The
# references below restate those formulas in plain Python (exact fractions where the figure is a
# ratio of counts), so no expected value is tied to one CPU. Rates that are one ratio of two counts
# are compared exactly; everything else with rtol 1e-12.

RTOL = 1e-12


def _random_cases() -> list[tuple[str, list[int], list[float]]]:
    rng = np.random.default_rng(20240611)
    cases = []
    for n in (7, 23, 64):
        y = rng.integers(0, 2, n)
        y[:2] = (0, 1)  # both classes present
        p = rng.random(n)
        ties = np.round(p, 1)
        edges = ties.copy()  # ties, with probabilities at exactly 0 and 1
        edges[edges < 0.15], edges[edges > 0.85] = 0.0, 1.0
        for kind, probs in (("continuous", p), ("ties", ties), ("edges", edges)):
            cases.append((f"{kind}-{n}", [int(v) for v in y], [float(v) for v in probs]))
    return cases


CASES = _random_cases()
ONE_CLASS = [
    ("fakes-only", [1] * 6, [0.0, 1.0, 0.5, 0.5, 1.0, 0.2]),
    ("reals-only", [0] * 6, [0.0, 1.0, 0.5, 0.5, 0.0, 0.2]),
    ("fakes-only-random", [1] * 9, [float(v) for v in np.random.default_rng(1).random(9)]),
    ("reals-only-random", [0] * 9, [float(v) for v in np.random.default_rng(2).random(9)]),
]


def _ids(cases: list) -> list[str]:
    return [case[0] for case in cases]


def _counts(y: list[int], p: list[float]) -> list[tuple[float, int, int]]:
    """(threshold, true positives, false positives) at each distinct threshold, highest first."""
    return [
        (
            t,
            sum(s >= t and label == 1 for s, label in zip(p, y, strict=True)),
            sum(s >= t and label == 0 for s, label in zip(p, y, strict=True)),
        )
        for t in sorted(set(p), reverse=True)
    ]


def ref_roc_curve(y: list[int], p: list[float]) -> tuple[list[float], list[float], list[float]]:
    positives, negatives = max(sum(y), 1), max(len(y) - sum(y), 1)
    counts = _counts(y, p)
    fpr = [0.0] + [fp / negatives for _, _, fp in counts]
    tpr = [0.0] + [tp / positives for _, tp, _ in counts]
    return fpr, tpr, [math.inf] + [t for t, _, _ in counts]


def ref_pr_curve(y: list[int], p: list[float]) -> tuple[list[float], list[float], list[float]]:
    positives = max(sum(y), 1)
    counts = _counts(y, p)
    return [tp / (tp + fp) for _, tp, fp in counts], [tp / positives for _, tp, _ in counts], [t for t, _, _ in counts]


def ref_auc(y: list[int], p: list[float]) -> float:
    """Mann-Whitney: the share of (fake, real) pairs ranked right, ties counting one half."""
    fakes = [s for s, label in zip(p, y, strict=True) if label == 1]
    reals = [s for s, label in zip(p, y, strict=True) if label == 0]
    won = sum(Fraction(1) if f > r else Fraction(1, 2) if f == r else Fraction(0) for f in fakes for r in reals)
    return float(won / (len(fakes) * len(reals)))


def ref_ap(y: list[int], p: list[float]) -> float:
    """Sum over thresholds of (R_n - R_{n-1}) * P_n, exactly."""
    total, previous = Fraction(0), Fraction(0)
    for _, tp, fp in _counts(y, p):
        recall = Fraction(tp, sum(y))
        total += (recall - previous) * Fraction(tp, tp + fp)
        previous = recall
    return float(total)


def ref_log_loss(y: list[int], p: list[float], eps: float = 1e-15) -> float:
    clipped = [min(max(s, eps), 1 - eps) for s in p]
    return -math.fsum(
        math.log(s) if label == 1 else math.log(1 - s) for s, label in zip(clipped, y, strict=True)
    ) / len(y)


def ref_balanced_log_loss(y: list[int], p: list[float]) -> float:
    fakes = [s for s, label in zip(p, y, strict=True) if label == 1]
    reals = [s for s, label in zip(p, y, strict=True) if label == 0]
    return (ref_log_loss([1] * len(fakes), fakes) + ref_log_loss([0] * len(reals), reals)) / 2


def ref_eer(y: list[int], p: list[float]) -> float:
    """Linear interpolation where fpr - fnr first turns non-negative along the ROC curve."""
    fpr, tpr, _ = ref_roc_curve(y, p)
    diff = [f - (1 - t) for f, t in zip(fpr, tpr, strict=True)]
    crossing = next(i for i, d in enumerate(diff) if d >= 0)
    if crossing == 0:
        return fpr[0]
    a, b = crossing - 1, crossing
    return fpr[a] + diff[a] / (diff[a] - diff[b]) * (fpr[b] - fpr[a])


def ref_ece(y: list[int], p: list[float], bins: int = 10) -> float:
    """Equal-width bins [k/bins, (k+1)/bins), the last one closed; |mean label - mean prob| by share."""
    members: dict[int, list[tuple[int, float]]] = {}
    for label, s in zip(y, p, strict=True):
        members.setdefault(min(int(s * bins), bins - 1), []).append((label, s))
    return sum(
        len(m) / len(y) * abs(math.fsum(label for label, _ in m) / len(m) - math.fsum(s for _, s in m) / len(m))
        for m in members.values()
    )


def _assert_curve_equal(actual: tuple, expected: tuple) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert isinstance(a, np.ndarray)
        assert a.dtype == np.float64
        np.testing.assert_array_equal(a, np.asarray(e, dtype=np.float64))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name, y, p", CASES, ids=_ids(CASES))
def test_metrics_match_the_reference_formulas(name: str, y: list[int], p: list[float]) -> None:
    _assert_curve_equal(roc_curve(y, p), ref_roc_curve(y, p))
    _assert_curve_equal(precision_recall_curve(y, p), ref_pr_curve(y, p))
    np.testing.assert_allclose(roc_auc(y, p), ref_auc(y, p), rtol=RTOL)
    np.testing.assert_allclose(average_precision(y, p), ref_ap(y, p), rtol=RTOL)
    np.testing.assert_allclose(log_loss(y, p), ref_log_loss(y, p), rtol=RTOL)
    np.testing.assert_allclose(log_loss(y, p, eps=1e-7), ref_log_loss(y, p, eps=1e-7), rtol=RTOL)
    np.testing.assert_allclose(balanced_log_loss(y, p), ref_balanced_log_loss(y, p), rtol=RTOL)
    np.testing.assert_allclose(equal_error_rate(y, p), ref_eer(y, p), rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(expected_calibration_error(y, p), ref_ece(y, p), rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(expected_calibration_error(y, p, bins=5), ref_ece(y, p, 5), rtol=RTOL, atol=1e-15)
    metrics = binary_metrics(np.array(y), np.array(p))
    assert metrics["count"] == len(y)
    assert metrics["fakes"] == sum(y)
    expected = {
        "log_loss": ref_log_loss(y, p),
        "balanced_log_loss": ref_balanced_log_loss(y, p),
        "auc": ref_auc(y, p),
        "ap": ref_ap(y, p),
        "eer": ref_eer(y, p),
        "ece": ref_ece(y, p),
    }
    for key, value in expected.items():
        assert isinstance(metrics[key], float), key
        np.testing.assert_allclose(metrics[key], value, rtol=RTOL, atol=1e-15, err_msg=key)


@pytest.mark.filterwarnings("error")  # sklearn warns on one class; the module must not reach that path
@pytest.mark.parametrize("name, y, p", ONE_CLASS, ids=_ids(ONE_CLASS))
def test_one_class_keeps_the_earlier_answers(name: str, y: list[int], p: list[float]) -> None:
    fakes = y[0] == 1
    assert math.isnan(roc_auc(y, p))
    assert math.isnan(equal_error_rate(y, p))
    assert math.isnan(balanced_log_loss(y, p))
    # the absent class's rate is 0 throughout (sklearn would give NaN)
    _assert_curve_equal(roc_curve(y, p), ref_roc_curve(y, p))
    fpr, tpr, _ = roc_curve(y, p)
    assert not (fpr if fakes else tpr).any()
    # with no fakes precision and recall are 0 throughout (sklearn would set recall to 1)
    _assert_curve_equal(
        precision_recall_curve(y, p),
        ref_pr_curve(y, p) if fakes else ([0.0] * len(set(p)), [0.0] * len(set(p)), sorted(set(p), reverse=True)),
    )
    if fakes:
        assert average_precision(y, p) == 1.0
    else:
        assert math.isnan(average_precision(y, p))
    np.testing.assert_allclose(log_loss(y, p), ref_log_loss(y, p), rtol=RTOL)
    np.testing.assert_allclose(expected_calibration_error(y, p), ref_ece(y, p), rtol=RTOL)
    metrics = binary_metrics(y, p)
    assert math.isnan(metrics["auc"]) and math.isnan(metrics["eer"]) and math.isnan(metrics["balanced_log_loss"])
    assert (metrics["ap"] == 1.0) if fakes else math.isnan(metrics["ap"])


@pytest.mark.filterwarnings("error")
def test_no_samples_keep_the_earlier_answers() -> None:
    for function in (log_loss, balanced_log_loss, roc_auc, average_precision, equal_error_rate):
        assert math.isnan(function([], [])), function.__name__
    assert math.isnan(expected_calibration_error([], []))
    _assert_curve_equal(roc_curve([], []), ([0.0], [0.0], [math.inf]))
    _assert_curve_equal(precision_recall_curve([], []), ([], [], []))
    metrics = binary_metrics([], [])
    assert (metrics["count"], metrics["fakes"]) == (0, 0)
    assert all(math.isnan(v) for k, v in metrics.items() if k not in ("count", "fakes"))


@pytest.mark.filterwarnings("error")
def test_small_exact_cases() -> None:
    # one probability for all: every pair tied
    y, p = [1, 0, 1, 0, 0], [0.5] * 5
    assert roc_auc(y, p) == 0.5
    assert equal_error_rate(y, p) == 0.5
    assert average_precision(y, p) == 0.4
    _assert_curve_equal(roc_curve(y, p), ([0.0, 1.0], [0.0, 1.0], [math.inf, 0.5]))
    _assert_curve_equal(precision_recall_curve(y, p), ([0.4], [1.0], [0.5]))
    # probabilities at exactly 0 and 1, clipped at DFDC's 1e-15
    perfect, worst = [1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]
    y = [1, 1, 0, 0]
    assert (roc_auc(y, perfect), roc_auc(y, worst)) == (1.0, 0.0)
    assert (equal_error_rate(y, perfect), equal_error_rate(y, worst)) == (0.0, 1.0)
    assert (average_precision(y, perfect), average_precision(y, worst)) == (1.0, 0.5)
    np.testing.assert_allclose(log_loss(y, perfect), -math.log(1 - 1e-15), rtol=RTOL)
    # a real at 1 is clipped to 1 - 1e-15, and 1 - (1 - 1e-15) is 1e-15 only up to rounding
    worst_loss = (-math.log(1e-15) - math.log(1 - (1 - 1e-15))) / 2
    np.testing.assert_allclose(log_loss(y, worst), worst_loss, rtol=RTOL)
    np.testing.assert_allclose(balanced_log_loss(y, worst), worst_loss, rtol=RTOL)
    _assert_curve_equal(precision_recall_curve(y, perfect), ([1.0, 0.5], [1.0, 1.0], [1.0, 0.0]))
    _assert_curve_equal(roc_curve(y, worst), ([0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [math.inf, 1.0, 0.0]))


def test_log_loss_refuses_eps_below_machine_epsilon() -> None:
    # sklearn clips at machine epsilon itself, so a smaller eps could not clip as asked
    with pytest.raises(ValueError, match="machine epsilon"):
        log_loss([1], [0.0], eps=1e-17)
    assert log_loss([1], [0.0], eps=float(np.finfo(float).eps)) == pytest.approx(-math.log(np.finfo(float).eps))
