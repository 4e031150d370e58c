"""Calibration, operating points by false-positive rate and the three-way verdict (deepfake.modeling.calibration)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from deepfake.core.errors import InputError
from deepfake.modeling.calibration import (
    LIKELY_FAKE,
    LIKELY_REAL,
    UNCERTAIN,
    Calibration,
    Decision,
    VerdictRule,
    fit_calibration,
    fit_decision,
    fit_operating_point,
    package_decision,
    read_decisions,
    threshold_for_fpr,
    write_decisions,
)
from deepfake.modeling.metrics import expected_calibration_error, log_loss

RULE = VerdictRule(likely_fake_at=0.01, likely_real_below=0.05)


def _overconfident(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a true P(fake), and scores whose logits are ``temperature`` times too large."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(float)
    return y, 1 / (1 + np.exp(-temperature * true_logit))


def test_temperature_scaling_corrects_a_known_overconfidence() -> None:
    y, scores = _overconfident(4000, temperature=3.0)
    calibration, report = fit_calibration(y, scores, ["temperature"], cv_folds=5, seed=1)
    assert calibration.method == "temperature"
    assert calibration.temperature == pytest.approx(3.0, rel=0.1)  # the distortion, found
    after = calibration(scores)
    assert log_loss(y, after) < log_loss(y, scores) - 0.05
    assert expected_calibration_error(y, after) < 0.5 * expected_calibration_error(y, scores)
    assert report["cv_log_loss"]["temperature"] < report["cv_log_loss"]["none"]
    assert np.all(np.diff(after[np.argsort(scores)]) >= 0)  # monotone: the ranking (AUC) is kept


def test_isotonic_corrects_a_non_logistic_distortion() -> None:
    rng = np.random.default_rng(3)
    p_true = rng.random(3000)
    y = (rng.random(3000) < p_true).astype(float)
    scores = p_true**4  # monotone, but no temperature undoes it
    calibration, report = fit_calibration(y, scores, ["temperature", "isotonic"], cv_folds=5, seed=0)
    assert report["chosen"] == "isotonic"
    assert expected_calibration_error(y, calibration(scores)) < 0.03 < expected_calibration_error(y, scores)
    n = len(y)
    assert min(calibration.knots_y) >= 1 / (n + 1) and max(calibration.knots_y) <= n / (n + 1)  # never certain


def test_a_dozen_videos_keep_the_simpler_map_unless_the_flexible_one_is_clearly_better() -> None:
    """The one-standard-error rule: on 12 videos temperature scaling has the lowest cross-validated log loss,
    but not by more than its standard error, so the scores stay as they are (the validation fold of the sample
    is this small: a fitted map there would not carry to the next videos)."""
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(4), np.ones(8)]
    s = np.r_[rng.random(4) * 0.5 + 0.3, rng.random(8) * 0.5 + 0.35]
    calibration, report = fit_calibration(y, s, ["temperature", "isotonic"], cv_folds=5, seed=2026)
    assert report["lowest"] == "temperature" and report["cv_log_loss"]["temperature"] < report["cv_log_loss"]["none"]
    assert report["chosen"] == "none" and calibration.method == "none"
    assert report["cv_log_loss"]["none"] - report["cv_log_loss"]["temperature"] <= report["standard_error"]


def test_calibration_keeps_scores_when_a_class_is_too_small() -> None:
    calibration, report = fit_calibration([0, 1, 1, 1], [0.2, 0.6, 0.7, 0.9], ["isotonic"], cv_folds=5, seed=0)
    assert calibration.method == "none" and report["chosen"] == "none"
    assert "at least 2 REAL and 2 FAKE" in report["reason"]
    assert np.array_equal(calibration(np.array([0.3, 0.8])), [0.3, 0.8])


def test_calibration_round_trips_and_refuses_broken_maps() -> None:
    iso = Calibration("isotonic", knots_x=(0.1, 0.5, 0.9), knots_y=(0.2, 0.4, 0.8))
    again = Calibration.from_dict(json.loads(json.dumps(iso.to_dict())), "x")
    assert again == iso and again(0.3) == pytest.approx(0.3) and again(0.0) == 0.2 and again(1.0) == 0.8
    with pytest.raises(InputError, match="ascending"):
        Calibration.from_dict({"method": "isotonic", "knots_x": [0.5, 0.1], "knots_y": [0.1, 0.2]}, "x")
    with pytest.raises(InputError, match="positive"):
        Calibration.from_dict({"method": "temperature", "temperature": 0}, "x")
    with pytest.raises(InputError, match="method"):
        Calibration.from_dict({"method": "platt"}, "x")


@pytest.mark.parametrize("reals", [1, 4, 12, 100, 1000])
@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_operating_point_holds_its_false_positive_rate_on_the_fitting_data(reals: int, target: float) -> None:
    rng = np.random.default_rng(reals)
    real_scores = rng.random(reals)
    fake_scores = rng.random(50) * 0.5 + 0.5
    y = np.r_[np.zeros(reals), np.ones(50)]
    s = np.r_[real_scores, fake_scores]
    point = fit_operating_point(y, s, target, confidence=0.95)
    flagged = int((real_scores >= point.threshold).sum())
    assert flagged == point.false_positives and point.reals == reals
    assert flagged / reals <= target  # the promise, on the data it was set on
    assert flagged == math.floor(target * reals + 1e-9)  # and no stricter than it needs to be
    low, high = point.fpr_interval
    assert low <= flagged / reals <= high  # the interval holds the observed rate...
    assert point.resolved == (high <= 2 * target)  # ...and says when too few reals cannot show the target
    if reals < 50:
        assert not point.resolved and "too few real videos" in point.note()
    assert point.true_positives == int((fake_scores >= point.threshold).sum())


def test_threshold_is_just_above_the_first_real_it_must_not_flag() -> None:
    reals = [0.1, 0.2, 0.3, 0.4, 0.9]
    t = threshold_for_fpr(reals, 0.2)  # one of five may be flagged: 0.9; 0.4 must not be
    assert 0.4 < t <= np.nextafter(0.4, 1)
    assert threshold_for_fpr([], 0.01) == math.inf  # nothing to set it on: nothing is flagged


def _decision() -> Decision:
    rng = np.random.default_rng(7)
    y = np.r_[np.zeros(400), np.ones(400)]
    s = np.r_[rng.beta(2, 5, 400), rng.beta(5, 2, 400)]
    return fit_decision(
        y,
        s,
        methods=["temperature", "isotonic"],
        cv_folds=5,
        seed=0,
        false_positive_rates=[0.01, 0.05],
        confidence=0.95,
        rule=RULE,
        fitted_on={"data": "synthetic"},
    )


def test_three_way_verdict_at_each_boundary() -> None:
    decision = _decision()
    fake_t, real_t = decision.point(0.01).threshold, decision.point(0.05).threshold
    assert real_t < fake_t
    assert decision.verdict(fake_t)["call"] == LIKELY_FAKE  # at the stricter threshold: flagged
    assert decision.verdict(np.nextafter(fake_t, 0))["call"] == UNCERTAIN
    assert decision.verdict(real_t)["call"] == UNCERTAIN  # at the looser threshold: flagged there, not here
    assert decision.verdict(np.nextafter(real_t, 0))["call"] == LIKELY_REAL
    verdict = decision.verdict(0.999)
    assert verdict["operating_point"]["target_fpr"] == 0.01 and "1.0% false-positive-rate" in verdict["meaning"]
    assert verdict["thresholds"] == {LIKELY_FAKE: fake_t, LIKELY_REAL: real_t}
    assert verdict["probability"] == pytest.approx(float(decision.calibration(0.999)), abs=1e-5)


def test_a_chance_score_is_not_called_fake_without_evidence() -> None:
    """No fixed 0.5: a 0.55 is likely fake only if the fitting reals scored below it."""
    y = np.r_[np.zeros(200), np.ones(200)]
    s = np.r_[np.linspace(0.4, 0.7, 200), np.linspace(0.4, 0.7, 200)]  # a chance-level model
    decision = fit_decision(
        y,
        s,
        methods=["temperature"],
        cv_folds=5,
        seed=0,
        false_positive_rates=[0.01, 0.05],
        confidence=0.95,
        rule=RULE,
        fitted_on={},
    )
    assert decision.verdict(0.55)["call"] == LIKELY_REAL
    assert decision.verdict(0.55)["probability"] == pytest.approx(0.5, abs=0.05)


def test_verdict_rule_refuses_a_stricter_real_point() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        VerdictRule(likely_fake_at=0.05, likely_real_below=0.01)


def test_decisions_file_round_trip_and_refusals(tmp_path: Path) -> None:
    decision = _decision()
    no_reals = fit_decision(
        [1, 1, 1],
        [0.5, 0.6, 0.7],
        methods=["isotonic"],
        cv_folds=5,
        seed=0,
        false_positive_rates=[0.01, 0.05],
        confidence=0.95,
        rule=RULE,
        fitted_on={},
    )
    path = tmp_path / "calibration.json"
    write_decisions(path, {"all-ensemble": decision, "lonely": no_reals}, "all-ensemble")
    rows, package_row = read_decisions(path)
    assert package_row == "all-ensemble"
    assert rows["all-ensemble"].verdict(0.8) == decision.verdict(0.8)
    assert rows["lonely"].point(0.01).threshold == math.inf  # written as null (strict JSON), read back as +inf
    for score in (0.0, 0.5, 0.99):  # no reals to promise a rate on: never likely fake, never likely real
        assert rows["lonely"].verdict(score)["call"] == UNCERTAIN
    assert package_decision(tmp_path).verdict(0.8) == decision.verdict(0.8)
    assert package_decision(tmp_path / "elsewhere") is None
    data = json.loads(path.read_text())
    data["rows"]["all-ensemble"]["verdict"]["likely_fake_at"] = 0.02
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="not fitted"):
        read_decisions(path)
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="deepfake-calibration/1"):
        read_decisions(path)


def test_read_labels_refuses_what_it_cannot_trust(tmp_path: Path) -> None:
    from deepfake.apps.calibrate import read_labels

    path = tmp_path / "labels.csv"
    path.write_text("video,label\na.mp4,REAL\nsub/b.mp4,fake\nc.mp4,1\n")
    labels = read_labels(path)
    assert labels.label_of(str(tmp_path / "elsewhere" / "a.mp4")) == 0  # a bare name matches anywhere
    assert labels.label_of(str(tmp_path / "sub" / "b.mp4")) == 1  # a path matches that file only
    assert labels.label_of(str(tmp_path / "b.mp4")) is None
    assert labels.label_of("c.mp4") == 1 and labels.label_of("d.mp4") is None
    for text, error in (
        ("name,label\na.mp4,REAL\n", "labels.csv:1: the header must name"),
        ("video,label\na.mp4,MAYBE\n", "labels.csv:2: label 'MAYBE'"),
        ("video,label\na.mp4,REAL\na.mp4,FAKE\n", "labelled both ways: a.mp4"),
    ):
        path.write_text(text)
        with pytest.raises(InputError, match=error):
            read_labels(path)


@pytest.mark.slow
def test_deepfake_calibrate_writes_a_new_version_fitted_on_the_users_videos(
    models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    """The package's verdicts are refitted on a user's labelled videos, scored by predict itself; the result is
    a new version (its card says what it was fitted on), the input package untouched, and predict with it
    calls videos from the new operating points."""
    import yaml

    from deepfake.cli import main as cli_main
    from deepfake.modeling.card import read_card
    from deepfake.modeling.store import ModelStore

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(models_root["raw"]))
    labels = tmp_path / "labels.csv"
    labels.write_text("video,label\nreala.mp4,REAL\nrealb.mp4,REAL\nfakea.mp4,FAKE\nfakeb.mp4,FAKE\n")
    videos = [str(hostile_part / n) for n in ("reala.mp4", "realb.mp4", "fakea.mp4", "fakeb.mp4", "noface.mp4")]
    source = ModelStore(models_root["root"]).folder("onnx")
    before = (source / "calibration.json").read_bytes()
    out = tmp_path / "calibrated"
    common = ["--params", str(params), "calibrate", "--labels", str(labels), "--models", str(models_root["root"])]
    assert cli_main([*common, *videos, "--out", str(out), "-q"]) == 0
    package = ModelStore(out).folder("onnx")
    card, old = read_card(package), read_card(source)
    assert card.version != old.version and card.name == old.name
    assert "4 labelled videos of" in card.calibration and "labels.csv" in card.calibration
    decision = package_decision(package)
    assert decision is not None
    assert (decision.fitted_on["videos"], decision.fitted_on["reals"], decision.fitted_on["fakes"]) == (4, 2, 2)
    assert "deepfake calibrate" in decision.fitted_on["source"]
    assert (source / "calibration.json").read_bytes() == before  # the input package is never modified
    # predict with the new version: its records name it, and their verdicts come from its operating points
    report = tmp_path / "p.json"
    predict = ["--params", str(params), "predict", videos[0], "--models", str(out), "-q"]
    assert cli_main([*predict, "--csv", str(tmp_path / "p.csv"), "--json", str(report)]) == 0
    [record] = json.loads(report.read_text())["videos"]
    assert record["model"]["version"] == card.version
    assert record["verdict"] == json.loads(json.dumps(decision.verdict(record["probability"])))
    # an earlier predict run's JSON is enough (no second scoring), and gives the same fit
    again = tmp_path / "again"
    scored = tmp_path / "scored.json"
    assert cli_main([*predict[:3], *videos, *predict[4:], "--csv", str(tmp_path / "s.csv"), "--json", str(scored)]) == 0
    assert cli_main([*common, "--predictions", str(scored), "--out", str(again), "-q"]) == 0
    refit = package_decision(ModelStore(again).folder("onnx"))
    assert refit is not None and refit.operating_points == decision.operating_points
    # writing over the input package is refused
    assert cli_main([*common, "--predictions", str(scored), "--out", str(models_root["root"]), "-q"]) == 2
