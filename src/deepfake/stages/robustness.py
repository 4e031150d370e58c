"""Robustness of the model package on one test set's perturbed videos (``robustness@<testset>``).

The perturb stage wrote each test video once per variant (``data/robustness/<testset>``: DeeperForensics-1.0's
families and two of platforms, at the levels of ``robustness.grid``, and the baseline ``none-0``, the same
re-encode without a perturbation). Here every file is scored as a user's video would be: ``deepfake predict``
(the product's own command, run as a subprocess on the model package, with its detector, face tracks and
calibrated verdicts), so what is measured includes faces the detector stops finding.

Per variant: how many videos were scored (a perturbation that hides the face loses its videos: they are
counted, not guessed), video AUC on the detector's score, log loss on the calibrated probability (the
package's calibration; the raw score when it has none, said in ``probability``), and the false- and
true-positive rates of the 'likely fake' verdict, with the AUC drop from the baseline, all in the report
``metrics/robustness/details/<testset>.json`` (``dvc metrics diff --targets`` it). The experiment metric
``metrics/robustness/<testset>.json`` keeps two numbers, a column each in ``dvc exp show``: the largest AUC drop
from the baseline (``auc_drop``) and the perturbed files that got no score (``unscored``: no face found). The
AUC per level of each family goes to a DVC data plot (``plots/robustness/<testset>.json``) and a PNG.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepfake.core.errors import InputError
from deepfake.core.fileio import read_json_limited, strict_json, write_json_atomic
from deepfake.core.params import Params
from deepfake.core.vocabulary import FAKE
from deepfake.media.perturbed_index import read_videos_csv
from deepfake.modeling.calibration import LIKELY_FAKE
from deepfake.modeling.metrics import log_loss, roc_auc

logger = logging.getLogger(__name__)

MAX_PREDICTIONS_BYTES = 1 << 30
BASELINE_VARIANT = "none-0"


@dataclass(frozen=True)
class Config:
    testset: str
    backend: str  # the package's runtime for the scoring (predict.backend)

    @classmethod
    def from_params(cls, params: Params, testset: str) -> Config:
        return cls(testset=testset, backend=params.predict.backend)


@dataclass(frozen=True)
class Paths:
    perturbed: Path  # data/robustness/<testset> (videos.csv and the files)
    models: Path  # the models/ root whose onnx/ is the package
    params: Path  # the params file predict reads (the pipeline's params.yaml)
    predictions: Path  # predict's JSON of every perturbed file (data/robustness_predictions/<testset>.json)
    metrics: Path  # metrics/robustness/<testset>.json: the worst AUC drop, the unscored videos (a DVC metric)
    plot_data: Path  # plots/robustness/<testset>.json
    plot: Path  # plots/robustness/<testset>.png
    details: Path  # metrics/robustness/details/<testset>.json: every figure, counts, what was scored (a report)


def score_files(paths: Paths, config: Config, folders: list[Path]) -> list[dict[str, Any]]:
    """``deepfake predict`` on the videos of ``folders`` (one run: its workers, its batching), its records."""
    out = paths.predictions
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "deepfake.cli",
        "--params",
        str(paths.params),
        "predict",
        *map(str, folders),  # folders, not files: a test set of thousands stays within the command line's limit
        "--models",
        str(paths.models),
        "--backend",
        config.backend,
        "--csv",
        str(out.with_suffix(".csv")),
        "--json",
        str(out),
        "-q",
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"deepfake predict failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    data = read_json_limited(out, MAX_PREDICTIONS_BYTES, InputError)
    return list(data["videos"])


def variant_metrics(group: pd.DataFrame) -> dict[str, Any]:
    """One variant's figures from its rows (``y``, ``score``, ``probability``, ``call``; NaN score: unscored)."""
    scored = group[group["score"].notna()]
    y = scored["y"].to_numpy()
    reals, fakes = scored[y == 0], scored[y == 1]
    return {
        "videos": len(group),
        "scored": len(scored),
        "unscored": len(group) - len(scored),
        "auc": roc_auc(y, scored["score"]) if len(scored) else None,
        "log_loss": log_loss(y, scored["probability"]) if len(scored) else None,
        "fpr_likely_fake": float((reals["call"] == LIKELY_FAKE).mean()) if len(reals) else None,
        "tpr_likely_fake": float((fakes["call"] == LIKELY_FAKE).mean()) if len(fakes) else None,
    }


def table_of(index: pd.DataFrame, records: list[dict[str, Any]], folder: Path) -> tuple[pd.DataFrame, str]:
    """The index joined with predict's records by path; which probability the log loss is on."""
    by_path = {str(Path(r["path"]).resolve()): r for r in records}
    rows, calibrated = [], True
    for row in index.itertuples(index=False):
        record = by_path.get(str((folder / row.file).resolve()))
        if record is None:
            raise InputError(f"{folder / row.file}: predict returned no record for it")
        verdict = record.get("verdict") or {}
        score = record.get("probability")
        probability = verdict.get("probability")
        if score is not None and probability is None:
            calibrated, probability = False, score  # a package without calibration: its raw score
        rows.append(
            {
                "variant": row.variant,
                "family": row.family,
                "level": int(row.level),
                "y": int(row.label == FAKE),
                "score": np.nan if score is None else float(score),
                "probability": np.nan if probability is None else float(probability),
                "call": verdict.get("call"),
                "status": record.get("status", ""),
            }
        )
    return pd.DataFrame(rows), "calibrated" if calibrated else "raw score (the package has no calibration)"


def run(config: Config, paths: Paths) -> dict[str, Any]:
    started = time.perf_counter()
    index = read_videos_csv(paths.perturbed)
    if BASELINE_VARIANT not in set(index["variant"]):
        raise InputError(f"{paths.perturbed}: no baseline variant {BASELINE_VARIANT}; rerun the perturb stage")
    folders = sorted({(paths.perturbed / f).parent for f in index["file"]})
    records = score_files(paths, config, folders)
    table, probability = table_of(index, records, paths.perturbed)
    variants: dict[str, Any] = {}
    for variant, group in table.groupby("variant", sort=False):
        variants[str(variant)] = {
            "family": str(group["family"].iloc[0]),
            "level": int(group["level"].iloc[0]),
            **variant_metrics(group),
        }
    baseline = variants[BASELINE_VARIANT]
    for figures in variants.values():
        both = figures["auc"] is not None and baseline["auc"] is not None and not np.isnan(figures["auc"])
        figures["auc_drop"] = baseline["auc"] - figures["auc"] if both else None
    perturbed = {k: v for k, v in variants.items() if k != BASELINE_VARIANT and v["auc_drop"] is not None}
    worst = max(perturbed, key=lambda k: perturbed[k]["auc_drop"]) if perturbed else None
    summary = {
        "baseline_auc": baseline["auc"],
        "worst_auc": perturbed[worst]["auc"] if worst else None,
        "worst_auc_drop": perturbed[worst]["auc_drop"] if worst else None,
        "unscored": int(table["score"].isna().sum()),
    }
    report = strict_json(
        {
            "testset": config.testset,
            "probability": probability,
            "summary": {**summary, "worst_variant": worst},
            "variants": variants,
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    write_json_atomic(paths.details, report)
    # the experiment metric: two numbers, no timings (a column each in dvc exp show); every variant's AUC and log
    # loss are in the details (dvc metrics diff --targets metrics/robustness/details/<testset>.json)
    metrics = {"auc_drop": summary["worst_auc_drop"], "unscored": summary["unscored"]}
    write_json_atomic(paths.metrics, strict_json(metrics))
    points = [
        {"family": v["family"], "level": v["level"], "auc": v["auc"], "log_loss": v["log_loss"]}
        for v in report["variants"].values()
    ]
    # the data plot: one line per family from the shared baseline (level 0), drawn by the family template
    base = report["variants"][BASELINE_VARIANT]
    families = dict.fromkeys(p["family"] for p in points if p["level"] > 0)
    lines = [{"family": f, "level": 0, "auc": base["auc"], "log_loss": base["log_loss"]} for f in families]
    write_json_atomic(paths.plot_data, lines + [p for p in points if p["level"] > 0])
    from deepfake.modeling.plots import robustness_curves

    robustness_curves(points, paths.plot, f"test set {config.testset}")
    logger.info("robustness@%s: %s", config.testset, json.dumps(report["summary"]))
    return report
