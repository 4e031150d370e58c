"""Calibrated probabilities, operating points chosen by false-positive rate, and the three-way verdict.

A detector's video score is a probability only in name: a network trained on balanced crops and a video
aggregation of them says 0.55 or 0.9 without those numbers meaning "55 % or 90 % of such videos are fake".
People who act on a verdict ask two other questions, answered here from labelled videos (the validation
fold in the pipeline, a platform's own uploads with ``deepfake calibrate``):

- **calibration**: a monotone map from the score to P(fake). Candidates are ``none``, ``temperature``
  (one parameter: ``sigmoid(logit(score) / T)``, fitted by log loss with SciPy) and ``isotonic``
  (scikit-learn's ``IsotonicRegression``: a non-decreasing step function, linear between its knots). Each
  is scored by cross-validated log loss on the fitting videos (stratified folds; with fewer than two videos
  of a class nothing can be validated and the score stays uncalibrated, saying why); the simplest within one
  standard error of the lowest wins (``fit_calibration``) and is refitted on all of them. Isotonic outputs
  are kept within ``[1/(n+1), n/(n+1)]`` for ``n`` fitting videos: a step fitted on a handful of videos
  never claims certainty.
- **operating points**: for each false-positive rate asked for (``calibrate.false_positive_rates``), the
  score threshold that flags at most that share of the fitting data's REAL videos, with how many reals
  it rests on, how many of them it flags, and the exact (Clopper-Pearson) interval of the false-positive
  rate those counts support; the true-positive rate on the fitting fakes likewise.
- **the verdict**: ``likely_fake`` at or above the threshold of ``likely_fake_at`` (the stricter rate),
  ``likely_real`` below the threshold of ``likely_real_below``, ``uncertain`` between. No fixed 0.5: a
  chance-level model's 0.55 is uncertain or likely real unless the fitting reals scored lower.

Thresholds apply to the uncalibrated score, which orders videos exactly as the model does (an isotonic map
ties whole runs of scores); the calibrated probability is shown beside the verdict, never used to make it.

The file (``calibration.json`` in a model package, ``models/calibration.json`` in the pipeline) is
``{"format": "deepfake-calibration/1", "rows": {row: Decision}, "package_row": row | null}``: one
``Decision`` per model and ensemble row of the evaluation; a package's verdicts use ``package_row``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from deepfake.core.errors import InputError
from deepfake.core.fileio import read_json_limited, strict_json, write_json_atomic
from deepfake.media.face_input import probabilities

CALIBRATION_FORMAT = "deepfake-calibration/1"
CALIBRATION_FILE = "calibration.json"
MAX_CALIBRATION_BYTES = 16 << 20  # isotonic knots are at most one per fitting video
METHODS = ("none", "temperature", "isotonic")
LIKELY_FAKE, UNCERTAIN, LIKELY_REAL = "likely_fake", "uncertain", "likely_real"
VERDICTS = (LIKELY_REAL, UNCERTAIN, LIKELY_FAKE)
# scores are clipped this far from 0 and 1 before their logit (float32 sigmoids saturate at exactly 1)
LOGIT_EPS = 1e-7
TEMPERATURE_BOUNDS = (math.log(1e-2), math.log(1e2))  # log T searched within; beyond, the fit has no signal
# an operating point "rests on too few reals" when its interval's upper end exceeds the target by this factor
RESOLUTION_FACTOR = 2.0


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.log(q) - np.log1p(-q)


# ---- calibration maps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A fitted monotone map from a detector's score to P(fake)."""

    method: Literal["none", "temperature", "isotonic"]
    temperature: float | None = None  # temperature: P = sigmoid(logit(score) / temperature)
    knots_x: tuple[float, ...] = ()  # isotonic: scores, ascending
    knots_y: tuple[float, ...] = ()  # isotonic: P(fake) at them, non-decreasing; linear between, flat beyond

    def __call__(self, scores: Any) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "none":
            return s.copy()
        if self.method == "temperature":
            assert self.temperature is not None
            return probabilities(_logit(s) / self.temperature)
        return np.interp(s, self.knots_x, self.knots_y)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method}
        if self.method == "temperature":
            out["temperature"] = self.temperature
        if self.method == "isotonic":
            out.update(knots_x=list(self.knots_x), knots_y=list(self.knots_y))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> Calibration:
        method = data.get("method")
        if method not in METHODS:
            raise InputError(f"{source}: calibration method {method!r}; expected one of {', '.join(METHODS)}")
        if method == "temperature":
            t = data.get("temperature")
            if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and t > 0):
                raise InputError(f"{source}: temperature must be a positive number, got {t!r}")
            return cls("temperature", temperature=float(t))
        if method == "isotonic":
            x, y = data.get("knots_x"), data.get("knots_y")
            if not isinstance(x, list) or not isinstance(y, list) or len(x) != len(y) or not x:
                raise InputError(f"{source}: isotonic knots_x and knots_y must be equal-length non-empty lists")
            xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
            bad = not (np.isfinite(xs).all() and np.isfinite(ys).all())
            if bad or (np.diff(xs) < 0).any() or (np.diff(ys) < 0).any() or (ys < 0).any() or (ys > 1).any():
                raise InputError(f"{source}: isotonic knots must be finite, ascending, and P(fake) within [0, 1]")
            return cls("isotonic", knots_x=tuple(map(float, xs)), knots_y=tuple(map(float, ys)))
        return cls("none")


def fit_temperature(y: np.ndarray, scores: np.ndarray) -> Calibration:
    """The temperature minimising the log loss of ``sigmoid(logit(score) / T)`` (bounded search on log T)."""
    from scipy.optimize import minimize_scalar

    z = _logit(scores)
    yy = np.asarray(y, dtype=np.float64)

    def loss(log_t: float) -> float:
        logits = z / math.exp(log_t)
        # the binary cross-entropy from logits, stable for any magnitude
        return float(np.mean(np.logaddexp(0.0, logits) - yy * logits))

    found = minimize_scalar(loss, bounds=TEMPERATURE_BOUNDS, method="bounded")
    return Calibration("temperature", temperature=float(math.exp(found.x)))


def fit_isotonic(y: np.ndarray, scores: np.ndarray) -> Calibration:
    """scikit-learn's isotonic regression, its outputs kept within [1/(n+1), n/(n+1)] (see the module)."""
    from sklearn.isotonic import IsotonicRegression

    n = len(y)
    model = IsotonicRegression(y_min=1 / (n + 1), y_max=n / (n + 1), out_of_bounds="clip")
    model.fit(np.asarray(scores, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return Calibration(
        "isotonic",
        knots_x=tuple(float(v) for v in model.X_thresholds_),
        knots_y=tuple(float(v) for v in model.y_thresholds_),
    )


FITTERS = {"temperature": fit_temperature, "isotonic": fit_isotonic}


def _stratified_folds(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [test for _, test in splitter.split(np.zeros(len(y)), y)]


COMPLEXITY = ("none", "temperature", "isotonic")  # fewest fitted parameters first: the one-standard-error rule's order


def _video_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each video's log loss (DFDC's clip), so candidates can be compared video by video."""
    from deepfake.modeling.metrics import DFDC_EPS

    q = np.clip(p, DFDC_EPS, 1 - DFDC_EPS)
    return -(y * np.log(q) + (1 - y) * np.log1p(-q))


def fit_calibration(
    labels: Any, scores: Any, methods: Sequence[str], cv_folds: int, seed: int
) -> tuple[Calibration, dict[str, Any]]:
    """The calibration of ``methods`` (plus ``none``) chosen by cross-validated log loss, refitted on all the
    videos; and a report: each candidate's cross-validated log loss, the folds used, or why none fitted.

    The choice follows the one-standard-error rule (Breiman et al. 1984; Hastie et al., ESL 7.10): the
    simplest candidate (``COMPLEXITY``) whose out-of-fold log loss is within one standard error (of the per-video
    difference) of the lowest. On a few dozen videos an isotonic step function "wins" by a margin the next
    videos do not repeat; a platform's thousands of labelled uploads give the flexible map when it is better."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    unknown = sorted(set(methods) - set(FITTERS))
    if unknown:
        raise ValueError(f"unknown calibration methods {unknown}; use {', '.join(FITTERS)}")
    smaller = int(min((y == 1).sum(), (y == 0).sum()))
    folds = min(cv_folds, smaller)
    report: dict[str, Any] = {"videos": len(y), "fakes": int((y == 1).sum()), "reals": int((y == 0).sum())}
    if folds < 2:
        report.update(
            chosen="none",
            cv_folds=0,
            reason=f"calibration needs at least 2 REAL and 2 FAKE videos to validate a fit; got {report['reals']} "
            f"real and {report['fakes']} fake: scores stay uncalibrated",
        )
        return Calibration("none"), report
    candidates = [m for m in COMPLEXITY if m == "none" or m in methods]
    out_of_fold = {m: np.empty(len(y)) for m in candidates}
    for test in _stratified_folds(y, folds, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        out_of_fold["none"][test] = s[test]
        for method in candidates[1:]:
            out_of_fold[method][test] = FITTERS[method](y[train], s[train])(s[test])
    losses = {m: _video_losses(y, np.clip(p, 0.0, 1.0)) for m, p in out_of_fold.items()}
    cv = {m: float(v.mean()) for m, v in losses.items()}
    best = min(candidates, key=lambda m: cv[m])
    standard_error = {m: float(np.std(losses[m] - losses[best], ddof=1) / math.sqrt(len(y))) for m in candidates}
    chosen = next(m for m in candidates if cv[m] - cv[best] <= standard_error[m])
    report.update(
        cv_folds=folds,
        cv_log_loss=cv,
        lowest=best,
        standard_error=standard_error[chosen] if chosen != best else 0.0,
        chosen=chosen,
        rule="the simplest within one standard error of the lowest cross-validated log loss",
        seed=seed,
    )
    if chosen == "none":
        return Calibration("none"), report
    return FITTERS[chosen](y, s), report


# ---- operating points ------------------------------------------------------------------------------------


def proportion_interval(successes: int, trials: int, confidence: float) -> tuple[float, float] | None:
    """The exact (Clopper-Pearson) interval of a proportion; None without trials."""
    if trials <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold flagging at most ``target_fpr`` of the fitting reals, and what it rests on."""

    target_fpr: float
    threshold: float  # on the score: a video at or above it is flagged
    reals: int
    false_positives: int  # fitting reals at or above the threshold
    fpr_interval: tuple[float, float] | None
    fakes: int
    true_positives: int
    tpr_interval: tuple[float, float] | None
    confidence: float

    @property
    def fpr(self) -> float | None:
        return self.false_positives / self.reals if self.reals else None

    @property
    def tpr(self) -> float | None:
        return self.true_positives / self.fakes if self.fakes else None

    @property
    def resolved(self) -> bool:
        """Whether the reals it rests on can show a false-positive rate near the target at all."""
        return self.fpr_interval is not None and self.fpr_interval[1] <= RESOLUTION_FACTOR * self.target_fpr

    def note(self) -> str:
        """One sentence on what the threshold rests on."""
        if self.fpr_interval is None:
            return "no REAL videos to set it on: its false-positive rate is unknown"
        low, high = self.fpr_interval
        text = (
            f"flags {self.false_positives} of {self.reals} real videos; at {self.confidence:.0%} confidence its "
            f"false-positive rate lies within {low:.1%}-{high:.1%}"
        )
        if not self.resolved:
            text += f": too few real videos to show a rate of {self.target_fpr:.1%}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_fpr": self.target_fpr,
            "threshold": self.threshold,
            "reals": self.reals,
            "false_positives": self.false_positives,
            "fpr": self.fpr,
            "fpr_interval": list(self.fpr_interval) if self.fpr_interval else None,
            "fakes": self.fakes,
            "true_positives": self.true_positives,
            "tpr": self.tpr,
            "tpr_interval": list(self.tpr_interval) if self.tpr_interval else None,
            "confidence": self.confidence,
            "resolved": self.resolved,
            "note": self.note(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> OperatingPoint:
        try:
            fpr_ci, tpr_ci = data["fpr_interval"], data["tpr_interval"]
            point = cls(
                target_fpr=float(data["target_fpr"]),
                threshold=float(data["threshold"]),
                reals=int(data["reals"]),
                false_positives=int(data["false_positives"]),
                fpr_interval=(float(fpr_ci[0]), float(fpr_ci[1])) if fpr_ci is not None else None,
                fakes=int(data["fakes"]),
                true_positives=int(data["true_positives"]),
                tpr_interval=(float(tpr_ci[0]), float(tpr_ci[1])) if tpr_ci is not None else None,
                confidence=float(data["confidence"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise InputError(f"{source}: not a valid operating point: {err!r}") from err
        if not (0 < point.target_fpr < 1) or math.isnan(point.threshold) or point.threshold == -math.inf:
            raise InputError(
                f"{source}: operating point with target {point.target_fpr} and threshold {point.threshold}"
            )
        return point


def threshold_for_fpr(real_scores: Any, target_fpr: float) -> float:
    """The lowest threshold at which at most ``target_fpr`` of ``real_scores`` are at or above it.

    With ``k = floor(target * n)`` reals allowed above, the threshold sits just above the ``k+1``-th highest
    real score (the next float up), so the fitting reals give exactly the rate promised; without reals,
    nothing can be promised and the threshold is +inf (no video is flagged)."""
    scores = np.sort(np.asarray(real_scores, dtype=np.float64))[::-1]
    if not len(scores):
        return math.inf
    allowed = math.floor(target_fpr * len(scores) + 1e-9)  # float noise must not drop one allowed
    if allowed >= len(scores):
        return float(scores[-1])
    return float(np.nextafter(scores[allowed], np.inf))


def _point_at(target_fpr: float, threshold: float, labels: Any, scores: Any, confidence: float) -> OperatingPoint:
    """The operating point of ``threshold`` on labelled video scores: what it flags, with exact intervals."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    reals, fakes = s[y == 0], s[y == 1]
    fp, tp = int((reals >= threshold).sum()), int((fakes >= threshold).sum())
    return OperatingPoint(
        target_fpr=target_fpr,
        threshold=threshold,
        reals=len(reals),
        false_positives=fp,
        fpr_interval=proportion_interval(fp, len(reals), confidence),
        fakes=len(fakes),
        true_positives=tp,
        tpr_interval=proportion_interval(tp, len(fakes), confidence),
        confidence=confidence,
    )


def fit_operating_point(labels: Any, scores: Any, target_fpr: float, confidence: float) -> OperatingPoint:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    return _point_at(target_fpr, threshold_for_fpr(s[y == 0], target_fpr), y, s, confidence)


def apply_operating_point(point: OperatingPoint, labels: Any, scores: Any) -> dict[str, Any]:
    """The rates ``point``'s threshold gives on other labelled videos (a test set), with their intervals and
    whether that test set has reals enough to show the rate."""
    return _point_at(point.target_fpr, point.threshold, labels, scores, point.confidence).to_dict()


# ---- the decision: calibration + operating points + the verdict rule ------------------------------------------


@dataclass(frozen=True)
class VerdictRule:
    """Which operating points split the three verdicts (targets among the fitted ones)."""

    likely_fake_at: float  # at or above this point's threshold: likely fake
    likely_real_below: float  # below this point's threshold: likely real

    def __post_init__(self) -> None:
        if self.likely_fake_at > self.likely_real_below:
            raise ValueError(
                f"likely_fake_at ({self.likely_fake_at}) must not exceed likely_real_below ({self.likely_real_below}):"
                " the stricter false-positive rate decides 'likely fake'"
            )


@dataclass(frozen=True)
class Decision:
    """Everything a verdict needs for one model or ensemble, and what it was fitted on."""

    calibration: Calibration
    operating_points: tuple[OperatingPoint, ...]
    rule: VerdictRule
    fitted_on: dict[str, Any] = field(default_factory=dict)  # description: data, videos, reals, fakes, source
    selection: dict[str, Any] = field(default_factory=dict)  # fit_calibration's report

    def point(self, target_fpr: float) -> OperatingPoint:
        for p in self.operating_points:
            if math.isclose(p.target_fpr, target_fpr):
                return p
        raise KeyError(target_fpr)

    def verdict(self, score: float) -> dict[str, Any]:
        """The three-way verdict on a video of ``score``, its calibrated probability, and which operating point
        (and so which false-positive rate) decided it."""
        fake_point, real_point = self.point(self.rule.likely_fake_at), self.point(self.rule.likely_real_below)
        if not fake_point.reals or not real_point.reals:
            call, point = UNCERTAIN, fake_point
            meaning = "the operating points rest on no real videos: no false-positive rate can be promised"
        elif score >= fake_point.threshold:
            call, point = LIKELY_FAKE, fake_point
            meaning = (
                f"at or above the {fake_point.target_fpr:.1%} false-positive-rate operating point: {fake_point.note()}"
            )
        elif score < real_point.threshold:
            call, point = LIKELY_REAL, real_point
            meaning = (
                f"below the {real_point.target_fpr:.1%} false-positive-rate operating point, which still flags "
                f"{real_point.tpr:.0%} of the fitting fakes"
                if real_point.tpr is not None
                else f"below the {real_point.target_fpr:.1%} false-positive-rate operating point"
            )
        else:
            call, point = UNCERTAIN, fake_point
            meaning = (
                f"between the {real_point.target_fpr:.1%} and {fake_point.target_fpr:.1%} false-positive-rate "
                "operating points: flagged at the looser one, not at the stricter"
            )
        return {
            "call": call,
            "probability": round(float(self.calibration(score)), 5),
            "calibration": self.calibration.method,
            "operating_point": {
                "target_fpr": point.target_fpr,
                "threshold": point.threshold,
                "resolved": point.resolved,
            },
            "thresholds": {LIKELY_FAKE: fake_point.threshold, LIKELY_REAL: real_point.threshold},
            "meaning": meaning,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "calibration": self.calibration.to_dict(),
            "operating_points": [p.to_dict() for p in self.operating_points],
            "verdict": {"likely_fake_at": self.rule.likely_fake_at, "likely_real_below": self.rule.likely_real_below},
            "fitted_on": self.fitted_on,
            "selection": self.selection,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Decision:
        if not isinstance(data, dict):
            raise InputError(f"{source}: a decision must be an object")
        try:
            rule = VerdictRule(float(data["verdict"]["likely_fake_at"]), float(data["verdict"]["likely_real_below"]))
            points = tuple(OperatingPoint.from_dict(p, source) for p in data["operating_points"])
            calibration = Calibration.from_dict(data["calibration"], source)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{source}: not a valid decision: {err!r}") from err
        decision = cls(calibration, points, rule, dict(data.get("fitted_on") or {}), dict(data.get("selection") or {}))
        for target in (rule.likely_fake_at, rule.likely_real_below):
            try:
                decision.point(target)
            except KeyError:
                raise InputError(f"{source}: the verdict names operating point {target}, which is not fitted") from None
        return decision


def fit_decision(
    labels: Any,
    scores: Any,
    *,
    methods: Sequence[str],
    cv_folds: int,
    seed: int,
    false_positive_rates: Sequence[float],
    confidence: float,
    rule: VerdictRule,
    fitted_on: Mapping[str, Any],
) -> Decision:
    """Calibration and operating points from labelled video scores (1 = FAKE)."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape or not len(y):
        raise InputError(f"calibration needs labelled videos: got {len(y)} labels and {len(s)} scores")
    missing = [
        t
        for t in (rule.likely_fake_at, rule.likely_real_below)
        if not any(math.isclose(t, f) for f in false_positive_rates)
    ]
    if missing:
        raise ValueError(
            f"the verdict's operating points {missing} are not among the false-positive rates "
            f"{list(false_positive_rates)}"
        )
    calibration, selection = fit_calibration(y, s, methods, cv_folds, seed)
    points = tuple(fit_operating_point(y, s, t, confidence) for t in sorted(false_positive_rates))
    counts = {"videos": len(y), "reals": int((y == 0).sum()), "fakes": int((y == 1).sum())}
    return Decision(calibration, points, rule, {**fitted_on, **counts}, selection)


# ---- the file --------------------------------------------------------------------------------------------


def write_decisions(path: Path, rows: Mapping[str, Decision], package_row: str | None) -> None:
    if package_row is not None and package_row not in rows:
        raise ValueError(f"package row {package_row!r} is not among the rows {sorted(rows)}")
    data = {
        "format": CALIBRATION_FORMAT,
        "package_row": package_row,
        "rows": {name: decision.to_dict() for name, decision in rows.items()},
    }
    write_json_atomic(path, strict_json(data))  # an infinite threshold (no reals to set it on) as null


def read_decisions(path: Path) -> tuple[dict[str, Decision], str | None]:
    """Every row's decision in ``path`` and the package's row; an ``InputError`` naming what is wrong."""
    data = read_json_limited(path, MAX_CALIBRATION_BYTES, InputError)
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise InputError(f"{path}: not a {CALIBRATION_FORMAT} file")
    rows = data.get("rows")
    if not isinstance(rows, dict):
        raise InputError(f"{path}: 'rows' must be an object")
    decisions = {str(name): Decision.from_dict(_infinite(d), f"{path}: {name}") for name, d in rows.items()}
    package_row = data.get("package_row")
    if package_row is not None and package_row not in decisions:
        raise InputError(f"{path}: package_row {package_row!r} names no row")
    return decisions, package_row


def _infinite(data: Any) -> Any:
    """A threshold written as null (no reals to set it on) read back as +inf: it flags nothing."""
    if isinstance(data, dict) and isinstance(data.get("operating_points"), list):
        points = [
            {**p, "threshold": math.inf if p.get("threshold") is None else p["threshold"]} if isinstance(p, dict) else p
            for p in data["operating_points"]
        ]
        return {**data, "operating_points": points}
    return data


def package_decision(folder: Path) -> Decision | None:
    """The decision a model package's verdicts use (``calibration.json`` beside its manifest, its package row);
    None when the package has none (it was exported before calibration existed, or converted from elsewhere
    and not yet calibrated: ``deepfake calibrate``)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        return None
    decisions, row = read_decisions(path)
    if row is None:
        raise InputError(f"{path}: names no package_row: which row's calibration the package's verdicts use")
    return decisions[row]


NO_DECISION_REASON = (
    "the model package carries no calibration or operating points (calibration.json): no verdict is given; "
    "fit them on labelled videos with `deepfake calibrate`"
)


def no_verdict() -> dict[str, Any]:
    """The verdict of a package without a decision: none, saying why (never a default threshold)."""
    return {
        "call": None,
        "probability": None,
        "calibration": None,
        "operating_point": None,
        "thresholds": None,
        "meaning": NO_DECISION_REASON,
    }


def describe_decision(decision: Decision) -> str:
    """What a package's calibration and operating points rest on, for its model card."""
    fitted = decision.fitted_on
    counts = f"{fitted.get('videos', '?')} videos: {fitted.get('reals', '?')} real, {fitted.get('fakes', '?')} fake"
    chosen = decision.calibration.method
    why = decision.selection.get("reason") or (
        "chosen by cross-validated log loss: the simplest within one standard error of the lowest"
    )
    points = "; ".join(f"{p.target_fpr:.1%} false-positive rate: {p.note()}" for p in decision.operating_points)
    rule = decision.rule
    return (
        f"Calibration {chosen} ({why}), fitted on {fitted.get('data', 'labelled videos')} ({counts}; "
        f"{fitted.get('source', '')}). Operating points: {points}. Verdict: likely fake at or above the "
        f"{rule.likely_fake_at:.1%} point, likely real below the {rule.likely_real_below:.1%} point, uncertain between."
    )
