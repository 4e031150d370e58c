"""Calibration and operating points (``calibrate``): every model and ensemble, fitted on the validation fold.

The validation fold (``train.val_fold``) of the training datasets and methods (``train.datasets`` minus the
fakes of ``train.holdout_methods``, the rows that picked each checkpoint) is scored by every member, as the
evaluate stage scores a test set (the crops stage's crops, ``evaluate.aggregation`` per video; an ensemble
averages its members' crop probabilities first). For each row (member, ``<model>-ensemble``,
``all-ensemble``), ``deepfake.modeling.calibration.fit_decision`` fits the calibration (chosen by
cross-validated log loss) and the operating points of ``calibrate.false_positive_rates``; all rows go to
``models/calibration.json`` (read by the evaluate stages and packaged by export), and a report of what was
chosen and what each point rests on to ``metrics/calibrate.json``.

What it cannot promise: the fitting videos are the validation fold's, scored on the training detector's
crops. ``deepfake predict`` finds faces with its own detector and scores a video by its most-fake face
track, and real traffic is unlike any validation fold: refit on your own labelled videos with
``deepfake calibrate`` (docs/decisions.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.core.device import resolve_device
from deepfake.core.errors import InputError
from deepfake.core.fileio import strict_json, write_json_atomic
from deepfake.core.params import Params
from deepfake.core.vocabulary import FAKE
from deepfake.modeling.calibration import Decision, VerdictRule, fit_decision, write_decisions
from deepfake.modeling.data import CropDataset, DataRoots, read_folds, select_folds, select_training_data
from deepfake.modeling.metrics import expected_calibration_error, log_loss
from deepfake.modeling.scoring import Aggregation, package_row, predict_crops, row_probabilities, video_predictions
from deepfake.modeling.store import Member, ModelStore, ensemble

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    members: tuple[Member, ...]
    aggregation: Aggregation
    image_size: int
    val_fold: int
    datasets: tuple[str, ...]  # train.datasets
    holdout_methods: tuple[str, ...]  # train.holdout_methods: their fakes never fit anything
    methods: tuple[str, ...]
    cv_folds: int
    seed: int
    false_positive_rates: tuple[float, ...]
    confidence: float
    rule: VerdictRule
    batch_size: int
    device: str

    @classmethod
    def from_params(cls, params: Params) -> Config:
        sect = params.calibrate
        return cls(
            members=ensemble(params),
            aggregation=Aggregation.from_params(params),
            image_size=params.train.image_size,
            val_fold=params.train.val_fold,
            datasets=tuple(params.train.datasets),
            holdout_methods=tuple(params.train.holdout_methods),
            methods=tuple(sect.methods),
            cv_folds=sect.cv_folds,
            seed=sect.seed,
            false_positive_rates=tuple(sect.false_positive_rates),
            confidence=sect.confidence,
            rule=VerdictRule(sect.likely_fake_at, sect.likely_real_below),
            batch_size=sect.batch_size,
            device=sect.device,
        )

    def fit(self, labels: Any, scores: Any, fitted_on: dict[str, Any]) -> Decision:
        """This configuration's decision fitted on labelled video scores (also ``deepfake calibrate``'s)."""
        return fit_decision(
            labels,
            scores,
            methods=self.methods,
            cv_folds=self.cv_folds,
            seed=self.seed,
            false_positive_rates=self.false_positive_rates,
            confidence=self.confidence,
            rule=self.rule,
            fitted_on=fitted_on,
        )


@dataclass(frozen=True)
class Paths:
    folds: Path
    roots: DataRoots
    models: Path  # the models/ root (reads models/train)
    out: Path  # models/calibration.json
    report: Path  # metrics/calibrate.json


def validation_rows(folds_csv: Path, config: Config) -> Any:
    """The validation fold's rows of the training datasets and methods, ``video`` made unique across datasets."""
    table = select_training_data(read_folds(folds_csv), config.datasets, config.holdout_methods)
    rows = select_folds(table, [config.val_fold], drop_unmasked_fakes=False)
    if rows.empty:
        raise InputError(f"{folds_csv}: validation fold {config.val_fold} holds no crops of {list(config.datasets)}")
    return rows.assign(video=rows["part"].astype(str) + "/" + rows["video"].astype(str))


def _summary(decision: Decision, labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    calibrated = decision.calibration(scores)
    return {
        "method": decision.calibration.method,
        "cv_log_loss": decision.selection.get("cv_log_loss"),
        "log_loss_before": log_loss(labels, scores),
        "log_loss_after": log_loss(labels, calibrated),
        "ece_before": expected_calibration_error(labels, scores),
        "ece_after": expected_calibration_error(labels, calibrated),
        "operating_points": {
            f"fpr_{p.target_fpr:g}": {
                "threshold": p.threshold,
                "reals": p.reals,
                "false_positives": p.false_positives,
                "fpr_interval": list(p.fpr_interval) if p.fpr_interval else None,
                "tpr": p.tpr,
                "resolved": p.resolved,
            }
            for p in decision.operating_points
        },
    }


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Score the validation fold with every member, fit each row's decision, write the file and the report."""
    started = time.perf_counter()
    rows = validation_rows(paths.folds, config)
    device = resolve_device(config.device)
    dataset = CropDataset(rows, paths.roots, config.image_size)
    store = ModelStore(paths.models)
    probs = {
        m.name: predict_crops(store.load_torch(m, device), dataset, config.batch_size, device)["prob"]
        for m in config.members
    }
    fitted_on = {
        "data": f"validation fold {config.val_fold} of {', '.join(config.datasets) or 'every dataset'}"
        + (f", without the held-out methods {', '.join(config.holdout_methods)}" if config.holdout_methods else ""),
        "source": "calibrate stage (dvc repro calibrate)",
        "scores": "the evaluate stage's: the training detector's crops, evaluate.aggregation "
        f"({config.aggregation.method})",
    }
    decisions: dict[str, Decision] = {}
    report: dict[str, Any] = {"fitted_on": fitted_on, "rows": {}}
    for name, crop_probs in row_probabilities(config.members, probs).items():
        videos = video_predictions(rows, crop_probs, config.aggregation)
        labels, scores = videos["y"].to_numpy(), videos["prob"].to_numpy()
        decisions[name] = config.fit(labels, scores, fitted_on)
        report["rows"][name] = _summary(decisions[name], labels, scores)
    package = package_row(config.members)
    write_decisions(paths.out, decisions, package)
    report.update(
        package_row=package,
        videos=int(rows["video"].nunique()),
        real_videos=int(rows.loc[rows["label"] != FAKE, "video"].nunique()),
        fake_videos=int(rows.loc[rows["label"] == FAKE, "video"].nunique()),
        seconds=round(time.perf_counter() - started, 2),
    )
    write_json_atomic(paths.report, strict_json(report))
    logger.info("calibrate: %s", {n: r["method"] for n, r in report["rows"].items()})
    return report
