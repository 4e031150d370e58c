"""Evaluation of one test set (``evaluate@<testset>``): every trained model, each model type's seed
ensemble and all models, on the test set's rows.

A test set (``evaluate.testsets.<name>``) is a list of dataset names, of one of two kinds (the params
refuse a mix):

- ``data.datasets`` entries (folded, trainable): its rows are the holdout fold's (``train.holdout_fold``)
  rows of ``folds.csv`` whose ``part`` (the dataset) is one of them;
- test-only datasets (``data.test_datasets``, never folded or trained on): its rows are every crop of
  every video of them, read from their crops indexes (``data/crops_test/<dataset>/index.csv``), no fold
  filter.

Two levels, each block labelled:

- frame level: one probability per face crop;
- video level: a video's crop probabilities aggregated into one (``evaluate.aggregation``: ``mean`` or
  DFDC-1st's ``confident`` strategy). Ensembles average the members' crop probabilities first.

Besides the whole test set, each manipulation method among its fakes (``method``; an empty one reads
``unspecified``) is scored alone: that method's fakes against all the test set's reals. A metric that
is undefined there (one class only: AUC, AP, EER, balanced log loss) is ``null`` in the JSON, with the
reason beside it; the JSON never holds NaN.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepfake.core.device import resolve_device
from deepfake.core.errors import InputError, ParamsError
from deepfake.core.fileio import strict_json, write_json_atomic
from deepfake.core.params import Params
from deepfake.core.vocabulary import FAKE, REAL
from deepfake.media.crop_index import read_index
from deepfake.modeling.calibration import VERDICTS, Decision, apply_operating_point, read_decisions
from deepfake.modeling.data import CropDataset, DataRoots, read_folds, select_folds
from deepfake.modeling.metrics import (
    ECE_BINS,
    expected_calibration_error,
    log_loss,
    precision_recall_curve,
    roc_curve,
)
from deepfake.modeling.scoring import (
    Aggregation,
    ensemble_rows,
    package_row,
    predict_crops,
    row_probabilities,
    score,
)
from deepfake.modeling.store import Member, ModelStore, ensemble

logger = logging.getLogger(__name__)

UNSPECIFIED = "unspecified"  # the method of a fake whose dataset does not say
COMPARISON_KEYS = ("auc", "ap", "ece", "balanced_log_loss")
TWO_CLASS_KEYS = ("auc", "ap", "eer", "balanced_log_loss")  # undefined without both classes (AP: without fakes)
# which rows a test set holds (the report's "selection"): its datasets' holdout-fold rows, or every video of its
# test-only datasets
HOLDOUT_FOLD, ALL_VIDEOS = "holdout_fold", "all_videos"
# the folds.csv columns a test-only dataset's crops have nothing for (no landmarks, diffs or masks are made)
UNFOLDED_COLUMNS = ("landmarks", "diff", "mask")


@dataclass(frozen=True)
class Config:
    testset: str
    datasets: tuple[str, ...]  # the test set's datasets (values of the folds' ``part`` column)
    test_only: bool  # its datasets are test-only (data.test_datasets): every video, read from their crops indexes
    train_datasets: tuple[str, ...]  # train.datasets: what the models were trained on (recorded, not used)
    holdout_methods: tuple[str, ...]  # train.holdout_methods: methods never trained on (marked per method)
    aggregation: Aggregation
    batch_size: int
    holdout_fold: int
    image_size: int
    device: str
    members: tuple[Member, ...]  # the ensemble: every model with train.seed and each ensemble seed
    crop_margin: float  # crops.margin: the margin the crops stage cut every crop with
    package: str | None = None  # a model package's name (its card's) when one is evaluated (for_package)
    notes: tuple[str, ...] = ()  # what a reader of the figures must know (a package expecting other crops)

    @classmethod
    def from_params(cls, params: Params, testset: str) -> Config:
        """The evaluation of test set ``testset`` (a key of ``evaluate.testsets``)."""
        testsets = params.evaluate.testsets
        if testset not in testsets:
            raise ParamsError(
                f"params.yaml: evaluate.testsets: no test set {testset!r} (test sets: {', '.join(testsets)})"
            )
        datasets = tuple(testsets[testset])
        return cls(
            testset=testset,
            datasets=datasets,
            test_only=all(name in params.data.test_datasets for name in datasets),  # the params refuse a mix
            train_datasets=tuple(params.train.datasets),
            holdout_methods=tuple(params.train.holdout_methods),
            aggregation=Aggregation.from_params(params),
            batch_size=params.evaluate.batch_size,
            holdout_fold=params.train.holdout_fold,
            image_size=params.train.image_size,
            device=params.evaluate.device,
            members=ensemble(params),
            crop_margin=params.crops.margin,
        )


def for_package(config: Config, store: ModelStore) -> Config:
    """The evaluation of a model package (a published detector converted by ``zoo_convert``, or any folder
    ``deepfake predict --models`` takes) instead of the params' ensemble: the package's own members, at its
    own input size, with its card's name and training data; no method counts as held out of its training.

    The crops are the crops stage's, cut with ``crops.margin``: a package trained on crops with another
    margin is scored on them anyway, and the report says so (its figures are then approximate)."""
    from deepfake.modeling.card import package_card

    manifest = store.read_manifest("onnx")
    architectures = [str(m["model"]) for m in manifest["members"]]
    members = tuple(Member.parse(str(m["name"]), architectures) for m in manifest["members"])
    face_input = store.face_input("onnx")
    card = package_card(store.root)
    notes = []
    if not math.isclose(face_input.margin, config.crop_margin):
        notes.append(
            f"the package expects crops with margin {face_input.margin}; these were cut with crops.margin "
            f"{config.crop_margin}: the figures are approximate"
        )
    return replace(
        config,
        members=members,
        image_size=face_input.image_size,
        train_datasets=tuple(card.trained_on),
        holdout_methods=(),
        package=card.name,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class Paths:
    folds: Path
    roots: DataRoots
    models: Path  # the models/ root (reads models/train)
    metrics: Path  # metrics/evaluate/<testset>.json
    plots: Path  # plots/evaluate/<testset>/
    test_crops: Path  # the test-only datasets' crops root (data/crops_test: <dataset>/index.csv and the crops)
    calibration: Path | None = None  # every row's calibration and operating points (models/calibration.json)
    decision: Path | None = None  # metrics/decision/<testset>.json: the package row's decision figures (a DVC metric)

    def crop_roots(self, config: Config) -> DataRoots:
        """Where the test set's crops lie: the test-only crops root for a test-only test set (no masks or
        landmarks are read there: its rows name none), else the folds' roots."""
        return replace(self.roots, crops=self.test_crops) if config.test_only else self.roots


# ---- selecting the test set's rows ------------------------------------------------------------------


def read_test_crops(crops: Path, datasets: tuple[str, ...]) -> pd.DataFrame:
    """Every crop of the test-only ``datasets`` (their crops indexes under ``crops``), as rows shaped like
    folds.csv's without a fold: no landmarks, diffs or masks (empty)."""
    table = pd.concat([read_index(crops / name) for name in datasets], ignore_index=True)
    return table.assign(**dict.fromkeys(UNFOLDED_COLUMNS, ""))


def select_testset(table: pd.DataFrame, config: Config, source: Path | str) -> pd.DataFrame:
    """The test set's rows: the holdout-fold rows of its datasets, or for a test-only test set every row of
    its datasets (no fold filter); ``method`` filled (``unspecified`` for a fake whose method is empty, empty
    for a real) and ``video`` made unique across datasets (``<dataset>/<video>``). An empty selection is an
    ``InputError`` naming the test set."""
    if "part" not in table.columns:
        raise InputError(f"{source}: missing column 'part' (the dataset of each row); rerun `dvc repro folds`")
    if config.test_only:
        candidates = table.reset_index(drop=True)
    else:
        candidates = select_folds(table, [config.holdout_fold], drop_unmasked_fakes=False)
    parts = candidates["part"].astype(str)
    rows = candidates[parts.isin(config.datasets)].reset_index(drop=True)
    if rows.empty and config.test_only:
        raise InputError(
            f"{source}: test set {config.testset!r} (test-only datasets {', '.join(config.datasets)}) has no crops; "
            f"see their crops_test@ and bboxes_test@ reports (metrics/preprocess/)"
        )
    if rows.empty:
        present = sorted(set(parts))
        raise InputError(
            f"{source}: test set {config.testset!r} (datasets {', '.join(config.datasets)}) has no rows in holdout "
            f"fold {config.holdout_fold} (the fold holds {', '.join(present) if present else 'no rows'}); "
            f"check evaluate.testsets.{config.testset} and rerun `dvc repro folds`"
        )
    part = rows["part"].astype(str)
    method = rows["method"].astype(str) if "method" in rows.columns else pd.Series("", index=rows.index)
    fake = rows["label"] == FAKE
    method = method.where(~fake | (method != ""), UNSPECIFIED).where(fake, "")
    return rows.assign(part=part, method=method, video=part + "/" + rows["video"].astype(str))


# ---- metrics blocks ---------------------------------------------------------------------------------


def _null_reason(metrics: dict[str, Any]) -> str | None:
    if metrics["count"] and 0 < metrics["fakes"] < metrics["count"]:
        return None
    missing = FAKE if not metrics["fakes"] else REAL
    undefined = [k for k in TWO_CLASS_KEYS if k != "ap" or missing == FAKE]
    return f"no {missing} rows: {', '.join(undefined)} need both classes (null)"


def _levels(rows: pd.DataFrame, probs: np.ndarray, aggregation: Aggregation) -> tuple[dict[str, Any], pd.DataFrame]:
    """``{"frame": {...}, "video": {...}}``, each labelled with its level (and a reason where metrics are null)."""
    metrics, videos = score(rows, probs, aggregation)
    for level in ("frame", "video"):
        block = metrics[level]
        block["level"] = level
        reason = _null_reason(block)
        if reason:
            block["null_reason"] = reason
    metrics["video"]["aggregation"] = aggregation.method
    return metrics, videos


def _mask_scores(rows: pd.DataFrame, prediction: dict[str, Any]) -> dict[str, float]:
    fakes = ((rows["label"] == FAKE) & (rows["mask"] != "")).to_numpy()
    reals = (rows["label"] == REAL).to_numpy()
    return {
        "fake_iou": float(prediction["iou"][fakes].mean()) if fakes.any() else float("nan"),
        "fake_dice": float(prediction["dice"][fakes].mean()) if fakes.any() else float("nan"),
        "real_empty_rate": float(prediction["iou"][reals].mean()) if reals.any() else float("nan"),
    }


def _by_method(rows: pd.DataFrame, prediction: dict[str, Any], config: Config) -> dict[str, dict[str, Any]]:
    """Per method among the fakes: that method's fakes against every real of the test set."""
    reals = (rows["label"] == REAL).to_numpy()
    out: dict[str, dict[str, Any]] = {}
    for method in sorted(set(rows.loc[~reals, "method"])):
        fakes = (rows["method"] == method).to_numpy()
        entry: dict[str, Any] = {
            "fake_crops": int(fakes.sum()),
            "fake_videos": int(rows.loc[fakes, "video"].nunique()),
            "held_out_from_training": method in config.holdout_methods,
        }
        if not reals.any():
            reason = f"test set {config.testset!r} has no REAL rows to score the {method} fakes against"
            out[method] = {**entry, "frame": None, "video": None, "reason": reason}
            continue
        keep = fakes | reals
        subset = rows[keep].reset_index(drop=True)
        metrics, _ = _levels(subset, prediction["prob"][keep], config.aggregation)
        if "iou" in prediction:
            metrics["mask"] = _mask_scores(subset, {k: prediction[k][keep] for k in ("iou", "dice")})
        out[method] = {**entry, **metrics}
    return out


def _evaluation(rows: pd.DataFrame, prediction: dict[str, Any], config: Config) -> tuple[dict[str, Any], pd.DataFrame]:
    metrics, videos = _levels(rows, prediction["prob"], config.aggregation)
    if "iou" in prediction:
        metrics["mask"] = _mask_scores(rows, prediction)
    metrics["methods"] = _by_method(rows, prediction, config)
    return metrics, videos


def _curve(videos: pd.DataFrame, metrics: dict[str, Any], decision: Decision | None) -> dict[str, Any]:
    """The PNGs' data of one row: ROC and PR, the confusion matrix at its 'likely fake' operating point (none
    without a decision), reliability before and after calibration."""
    fpr, tpr, _ = roc_curve(videos["y"], videos["prob"])
    precision, recall, _ = precision_recall_curve(videos["y"], videos["prob"])
    curve: dict[str, Any] = {
        "fpr": fpr,
        "tpr": tpr,
        "precision": precision,
        "recall": recall,
        "auc": metrics["auc"],
        "ap": metrics["ap"],
        "confusion": None,
        "reliability": {"before": _reliability(videos["y"], videos["prob"])},
    }
    if decision is not None:
        point = decision.point(decision.rule.likely_fake_at)
        flagged = (videos["prob"] >= point.threshold).astype(int)
        curve["confusion"] = [[int(((videos["y"] == t) & (flagged == p)).sum()) for p in (0, 1)] for t in (0, 1)]
        curve["confusion_at"] = point.target_fpr
        curve["reliability"]["after"] = _reliability(videos["y"], decision.calibration(videos["prob"].to_numpy()))
    return curve


def _describe(rows: pd.DataFrame, config: Config) -> dict[str, Any]:
    fakes = rows[rows["label"] == FAKE]
    found = set(rows["part"])
    held = "every video of its test-only datasets" if config.test_only else "the test set's holdout rows"
    return {
        "testset": config.testset,
        "datasets": list(config.datasets),
        "datasets_without_rows": [d for d in config.datasets if d not in found],
        "train_datasets": list(config.train_datasets),
        "holdout_methods": list(config.holdout_methods),
        "selection": ALL_VIDEOS if config.test_only else HOLDOUT_FOLD,
        "holdout_fold": None if config.test_only else config.holdout_fold,  # test-only datasets have no folds
        "aggregation": config.aggregation.method,
        "levels": {
            "frame": f"one probability per face crop (every crop of {held})",
            "video": f"one probability per video: its crops' probabilities aggregated by evaluate.aggregation "
            f"({config.aggregation.method}); ensembles average their members' crop probabilities first",
            "methods": "per manipulation method: that method's fakes against all the test set's reals",
        },
        "crops": len(rows),
        "videos": int(rows["video"].nunique()),
        "fake_videos": int(fakes["video"].nunique()),
        "real_videos": int(rows.loc[rows["label"] == REAL, "video"].nunique()),
        "methods": {
            str(m): {"fake_crops": len(group), "fake_videos": int(group["video"].nunique())}
            for m, group in fakes.groupby("method", sort=True)
        },
    }


def _decisions(paths: Paths) -> tuple[dict[str, Decision], str | None]:
    """Every row's calibration and operating points (the calibrate stage's file, or a package's own); none when
    the file is absent (a package never calibrated: its report says so)."""
    if paths.calibration is None or not paths.calibration.is_file():
        return {}, None
    return read_decisions(paths.calibration)


def _decided(videos: pd.DataFrame, decision: Decision | None) -> dict[str, Any]:
    """What a row's calibration and operating points do on the test set: log loss and ECE before and after
    calibration, each operating point's false- and true-positive rate here, and the verdicts per true label."""
    if decision is None:
        return {
            "calibration": None,
            "operating_points": None,
            "verdicts": None,
            "reason": "no calibration for this row (calibration.json): run the calibrate stage or `deepfake calibrate`",
        }
    y, raw = videos["y"].to_numpy(), videos["prob"].to_numpy()
    calibrated = decision.calibration(raw)
    verdicts: dict[str, dict[str, int]] = {REAL: dict.fromkeys(VERDICTS, 0), FAKE: dict.fromkeys(VERDICTS, 0)}
    for truth, value in zip(y, raw, strict=True):
        verdicts[FAKE if truth else REAL][decision.verdict(float(value))["call"]] += 1
    return {
        "calibration": {
            "method": decision.calibration.method,
            "log_loss_before": log_loss(y, raw),
            "log_loss_after": log_loss(y, calibrated),
            "ece_before": expected_calibration_error(y, raw),
            "ece_after": expected_calibration_error(y, calibrated),
        },
        "operating_points": {
            f"fpr_{p.target_fpr:g}": {**apply_operating_point(p, y, raw), "validation": p.note()}
            for p in decision.operating_points
        },
        "verdicts": verdicts,
    }


def _reliability(labels: Any, probs: Any) -> list[dict[str, Any]]:
    """Reliability diagram points: per equal-width bin with videos, its mean predicted P(fake), the share of
    fakes in it and its count (the bins of the report's ECE)."""
    y, p = np.asarray(labels, dtype=np.float64), np.asarray(probs, dtype=np.float64)
    index = np.minimum((p * ECE_BINS).astype(int), ECE_BINS - 1)
    return [
        {
            "predicted": float(p[index == b].mean()),
            "observed": float(y[index == b].mean()),
            "videos": int((index == b).sum()),
        }
        for b in range(ECE_BINS)
        if (index == b).any()
    ]


def _plot_data(videos: pd.DataFrame, decision: Decision | None) -> dict[str, list[dict[str, Any]]]:
    """The package row's curves as DVC data plots (one record per point): ROC, precision-recall, reliability."""
    fpr, tpr, thresholds = roc_curve(videos["y"], videos["prob"])
    precision, recall, pr_thresholds = precision_recall_curve(videos["y"], videos["prob"])
    calibrated = decision.calibration(videos["prob"].to_numpy()) if decision is not None else videos["prob"].to_numpy()
    return {
        "roc": [{"fpr": f, "tpr": t, "threshold": h} for f, t, h in zip(fpr, tpr, thresholds, strict=True)],
        "pr": [
            {"recall": r, "precision": q, "threshold": h}
            for r, q, h in zip(recall, precision, pr_thresholds, strict=True)
        ],
        "reliability": _reliability(videos["y"], calibrated),
    }


def decision_figures(entry: dict[str, Any], decision: Decision | None) -> dict[str, float | None]:
    """The figures an experiment is compared on, for the package's row (``dvc exp show``'s columns): video AUC,
    log loss and ECE after calibration, and the false- and true-positive rate on this test set of the operating
    point that calls a video likely fake (null without a decision). Short keys: a column each."""
    decided = entry.get("decision") or {}
    calibration = decided.get("calibration") or {}
    figures: dict[str, float | None] = {
        "auc": entry["video"]["auc"],
        "log_loss": calibration.get("log_loss_after", entry["video"]["log_loss"]),
        "ece": calibration.get("ece_after", entry["video"]["ece"]),
        "fpr": None,
        "tpr": None,
    }
    if decision is not None:
        point = decided["operating_points"][f"fpr_{decision.rule.likely_fake_at:g}"]
        figures.update(fpr=point["fpr"], tpr=point["tpr"])
    return figures


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Every member and each ensemble on the test set: the metrics JSON and the plots."""
    started = time.perf_counter()
    if config.test_only:
        rows = select_testset(read_test_crops(paths.test_crops, config.datasets), config, paths.test_crops)
    else:
        rows = select_testset(read_folds(paths.folds), config, paths.folds)
    report = _describe(rows, config)
    if config.package is not None:
        report.update(package=config.package, notes=list(config.notes))
        for note in config.notes:
            logger.warning("evaluate@%s: %s: %s", config.testset, config.package, note)
    if report["datasets_without_rows"]:
        logger.warning("evaluate@%s: no rows for %s", config.testset, ", ".join(report["datasets_without_rows"]))
    decisions, calibrated_row = _decisions(paths)
    device = resolve_device(config.device)
    dataset = CropDataset(rows, paths.crop_roots(config), config.image_size)
    store = ModelStore(paths.models)
    report.update(models={}, ensembles={}, rows=[], package_row=calibrated_row or package_row(config.members))
    probs_by_member: dict[str, np.ndarray] = {}
    predictions: dict[str, dict[str, Any]] = {}
    for member in config.members:
        prediction = predict_crops(store.load_torch(member, device), dataset, config.batch_size, device)
        probs_by_member[member.name] = prediction["prob"]
        predictions[member.name] = prediction
    ensembles = ensemble_rows(config.members)
    curves: dict[str, dict[str, Any]] = {}
    plot_data: dict[str, list[dict[str, Any]]] = {}
    for name, probs in row_probabilities(config.members, probs_by_member).items():
        metrics, videos = _evaluation(rows, {**predictions.get(name, {}), "prob": probs}, config)
        decision = decisions.get(name)
        metrics["decision"] = _decided(videos, decision)
        if name in ensembles:
            report["ensembles"][name] = {"members": ensembles[name], **metrics}
        else:
            report["models"][name] = metrics
        curves[name] = _curve(videos, metrics["video"], decision)
        if name == report["package_row"]:
            plot_data = _plot_data(videos, decision)
    report["rows"] = list(curves)  # members in params order, then the ensembles: the matrix's row order
    report["seconds"] = round(time.perf_counter() - started, 2)
    report = strict_json(report)
    write_json_atomic(paths.metrics, report)
    if paths.decision is not None:
        row = report["package_row"]
        entry = report["models"].get(row) or report["ensembles"].get(row)
        if entry is None:
            raise InputError(f"evaluate@{config.testset}: no row {row!r} for the package's decision figures")
        write_json_atomic(paths.decision, strict_json(decision_figures(entry, decisions.get(row))))
    for kind, records in plot_data.items():  # DVC data plots (dvc plots diff overlays experiments on them)
        write_json_atomic(paths.plots / f"{kind}.json", strict_json(records))

    from deepfake.modeling.plots import comparison_bars, reliability_diagram, roc_pr_confusion

    where = f"test set {config.testset}, {'all videos' if config.test_only else 'holdout'}"
    table = [{"model": n, **(report["models"].get(n) or report["ensembles"][n])["video"]} for n in curves]
    table = [{k: (np.nan if v is None else v) for k, v in row.items()} for row in table]
    roc_pr_confusion(curves, paths.plots, where)
    reliability_diagram(curves, paths.plots / "reliability.png", where)
    comparison_bars(table, COMPARISON_KEYS, paths.plots / "comparison.png", where)
    logger.info(
        "evaluate@%s: video AUC %s", config.testset, {n: r["video"]["auc"] for n, r in report["models"].items()}
    )
    return report
