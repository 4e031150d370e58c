"""The experiments' one-screen summary (``decision``): what a decision rests on, across every test set.

``dvc exp show`` puts every DVC metric in a column; four test sets times the figures of a decision do not fit a
terminal. This stage reads each test set's decision figures (``metrics/decision/<testset>.json``, written by
``evaluate@``: the package row's video AUC, log loss and ECE after calibration, and the false- and true-positive
rate of the operating point that calls a video likely fake) and robustness figures
(``metrics/robustness/<testset>.json``: the largest AUC drop under a perturbation, the files that got no score),
and writes ``metrics/decision.json``, the only experiment metric: each figure at its worst across the test sets
(and the mean AUC), so a glance at two experiments says which one a reviewer would rather use, and on which
count. The per-test-set files stay git-tracked reports: ``dvc metrics diff --targets metrics/decision
metrics/robustness`` compares them one by one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.core.errors import InputError
from deepfake.core.fileio import read_json_limited, strict_json, write_json_atomic
from deepfake.core.params import Params

logger = logging.getLogger(__name__)

MAX_REPORT_BYTES = 1 << 20
DECISION_KEYS = ("auc", "log_loss", "ece", "fpr", "tpr")
ROBUSTNESS_KEYS = ("auc_drop", "unscored")


@dataclass(frozen=True)
class Config:
    testsets: tuple[str, ...]  # evaluate.testsets, in params order

    @classmethod
    def from_params(cls, params: Params) -> Config:
        return cls(testsets=tuple(params.evaluate.testsets))


@dataclass(frozen=True)
class Paths:
    decisions: Path  # metrics/decision: <testset>.json (evaluate@)
    robustness: Path  # metrics/robustness: <testset>.json (robustness@)
    out: Path  # metrics/decision.json


def _read(folder: Path, testset: str, keys: tuple[str, ...], stage: str) -> dict[str, float | None]:
    path = folder / f"{testset}.json"
    data = read_json_limited(path, MAX_REPORT_BYTES, InputError, f"; run `dvc repro {stage}@{testset}`")
    if not isinstance(data, dict) or set(keys) - set(data):
        raise InputError(f"{path}: expected the keys {', '.join(keys)}; run `dvc repro {stage}@{testset}`")
    values: dict[str, float | None] = {}
    for key in keys:
        value = data[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(f"{path}: {key}: expected a number or null, got {value!r}")
        values[key] = None if value is None else float(value)
    return values


def _worst(values: list[float | None], pick: Any) -> float | None:
    known = [v for v in values if v is not None]
    return float(pick(known)) if known else None


def summarise(
    decisions: dict[str, dict[str, float | None]], robustness: dict[str, dict[str, float | None]]
) -> dict[str, float | None]:
    """Each figure at its worst across the test sets (lowest AUC and true-positive rate, highest log loss, ECE,
    false-positive rate and AUC drop), the mean AUC, and the unscored files in all; null where no test set has it."""

    def column(source: dict[str, dict[str, float | None]], key: str) -> list[float | None]:
        return [figures[key] for figures in source.values()]

    return {
        "auc": _worst(column(decisions, "auc"), np.mean),
        "worst_auc": _worst(column(decisions, "auc"), min),
        "log_loss": _worst(column(decisions, "log_loss"), max),
        "ece": _worst(column(decisions, "ece"), max),
        "fpr": _worst(column(decisions, "fpr"), max),
        "tpr": _worst(column(decisions, "tpr"), min),
        "auc_drop": _worst(column(robustness, "auc_drop"), max),
        "unscored": _worst(column(robustness, "unscored"), sum),
    }


def run(config: Config, paths: Paths) -> dict[str, Any]:
    decisions = {t: _read(paths.decisions, t, DECISION_KEYS, "evaluate") for t in config.testsets}
    robustness = {t: _read(paths.robustness, t, ROBUSTNESS_KEYS, "robustness") for t in config.testsets}
    summary = strict_json(summarise(decisions, robustness))
    write_json_atomic(paths.out, summary)
    logger.info("decision: %s", summary)
    return summary
