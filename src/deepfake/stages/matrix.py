"""The evaluation matrix (``matrix``): every model and ensemble x every test set, from the
``evaluate@<testset>`` JSONs.

Writes ``metrics/matrix.json`` (``{row: {testset: cells, "testset/method": cells}}``, for ``dvc metrics
diff``), ``metrics/matrix.md`` (a video-level AUC + log loss table, a frame-level AUC table and a
video-level AUC table per test set and manipulation method, each heading naming its level) and
``plots/matrix.png`` (a heatmap of the video-level AUCs). Test sets come in ``evaluate.testsets`` order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.core.errors import InputError
from deepfake.core.fileio import read_json_limited, write_bytes_atomic, write_json_atomic
from deepfake.core.params import Params

logger = logging.getLogger(__name__)

MAX_EVALUATION_BYTES = 64 << 20
ALL_VIDEOS = "all_videos"  # an evaluation's "selection" for a test set of test-only datasets (stages.evaluate)
# matrix cell key -> (level, metric key in the evaluation JSON's level block)
CELLS: dict[str, tuple[str, str]] = {
    "video_auc": ("video", "auc"),
    "video_log_loss": ("video", "log_loss"),
    "frame_auc": ("frame", "auc"),
    "video_ap": ("video", "ap"),
    "video_eer": ("video", "eer"),
}


@dataclass(frozen=True)
class Config:
    testsets: tuple[tuple[str, tuple[str, ...]], ...]  # (name, datasets) in params order
    packages: tuple[str, ...] = ()  # zoo.packages, in params order: their rows follow the trained models' (zoo)

    @classmethod
    def from_params(cls, params: Params) -> Config:
        return cls(testsets=tuple((name, tuple(sets)) for name, sets in params.evaluate.testsets.items()))

    @classmethod
    def with_packages(cls, params: Params) -> Config:
        """The matrix with every zoo package's rows (zoo/dvc.yaml:zoo_matrix) besides the trained models'."""
        return replace(cls.from_params(params), packages=tuple(params.zoo.packages))


@dataclass(frozen=True)
class Paths:
    evaluations: Path  # metrics/evaluate: one <testset>.json per test set
    out_json: Path  # metrics/matrix.json
    out_md: Path  # metrics/matrix.md
    heatmap: Path  # plots/matrix.png
    package_evaluations: Path | None = None  # metrics/zoo/evaluate: <package>/<testset>.json (zoo_evaluate)


# ---- reading the evaluations ------------------------------------------------------------------------


def _fail(path: Path, testset: str, problem: str) -> InputError:
    return InputError(f"{path}: {problem}; run `dvc repro evaluate@{testset}`")


def _metric(value: Any, path: Path, testset: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(path, testset, f"{where}: expected a number or null, got {value!r}")
    return float(value)


def _cells(entry: Any, path: Path, testset: str, where: str) -> dict[str, float | None]:
    """The matrix cells of one evaluation entry (a model's or a method's ``frame``/``video`` blocks)."""
    if not isinstance(entry, dict):
        raise _fail(path, testset, f"{where}: expected an object")
    cells: dict[str, float | None] = {}
    for cell, (level, key) in CELLS.items():
        block = entry.get(level)
        if block is None:  # e.g. a method with no reals to score against
            cells[cell] = None
        elif isinstance(block, dict):
            cells[cell] = _metric(block.get(key), path, testset, f"{where}.{level}.{key}")
        else:
            raise _fail(path, testset, f"{where}.{level}: expected an object or null")
    return cells


def read_evaluation(folder: Path, testset: str, datasets: tuple[str, ...]) -> dict[str, Any]:
    """``<folder>/<testset>.json``, checked to be the evaluation of that test set with those datasets."""
    path = folder / f"{testset}.json"
    report = read_json_limited(path, MAX_EVALUATION_BYTES, InputError, f"; run `dvc repro evaluate@{testset}`")
    if not isinstance(report, dict):
        raise _fail(path, testset, "not an evaluation report (expected a JSON object)")
    for key in ("models", "ensembles"):
        if not isinstance(report.get(key), dict):
            raise _fail(path, testset, f"no {key!r} object (written by an older evaluate stage?)")
    if report.get("testset") != testset:
        raise _fail(path, testset, f"holds test set {report.get('testset')!r}, expected {testset!r}")
    if report.get("datasets") != list(datasets):
        raise _fail(path, testset, f"evaluated datasets {report.get('datasets')}, params now say {list(datasets)}")
    return report


def _row_names(report: dict[str, Any]) -> list[str]:
    rows = report.get("rows")
    if isinstance(rows, list) and all(isinstance(r, str) for r in rows):
        return rows
    return list(report["models"]) + list(report["ensembles"])


# ---- the matrix -------------------------------------------------------------------------------------


def build_matrix(reports: dict[str, dict[str, Any]], folder: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``{row: {column: cells}}`` and the method columns (``testset/method``) in order."""
    matrix: dict[str, dict[str, Any]] = {}
    method_columns: list[str] = []
    for testset, report in reports.items():
        path = folder / f"{testset}.json"
        for row in _row_names(report):
            entry = report["models"].get(row, report["ensembles"].get(row))
            if entry is None:
                raise _fail(path, testset, f"'rows' names {row!r}, which is neither a model nor an ensemble")
            cells = matrix.setdefault(row, {})
            cells[testset] = _cells(entry, path, testset, row)
            methods = entry.get("methods") or {}
            if not isinstance(methods, dict):
                raise _fail(path, testset, f"{row}.methods: expected an object")
            for method in sorted(methods):
                column = f"{testset}/{method}"
                cells[column] = _cells(methods[method], path, testset, f"{row}.methods.{method}")
                if column not in method_columns:
                    method_columns.append(column)
    return matrix, method_columns


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _held_out(reports: dict[str, dict[str, Any]]) -> set[str]:
    """``testset/method`` columns whose method ``train.holdout_methods`` kept out of training."""
    out = set()
    for testset, report in reports.items():
        for entry in list(report["models"].values()) + list(report["ensembles"].values()):
            for method, info in (entry.get("methods") or {}).items():
                if isinstance(info, dict) and info.get("held_out_from_training"):
                    out.add(f"{testset}/{method}")
    return out


def matrix_markdown(
    reports: dict[str, dict[str, Any]], matrix: dict[str, dict[str, Any]], method_columns: list[str]
) -> str:
    testsets = list(reports)
    rows = list(matrix)
    aggregations = sorted({str(r.get("aggregation")) for r in reports.values()})
    trained_on = {name: r.get("train_datasets") for name, r in reports.items()}
    first = next(iter(trained_on.values()))
    lines = [
        "# Evaluation matrix",
        "",
        "Every trained model and ensemble (rows) on each test set (columns): the holdout-fold rows of its datasets, "
        "or every video of its test-only datasets (`data.test_datasets`); written by `dvc repro matrix` from "
        "`metrics/evaluate/<test set>.json`.",
        "",
        "Levels: **frame** = one probability per face crop; **video** = one probability per video, its crops' "
        f"probabilities aggregated by `evaluate.aggregation` ({', '.join(aggregations)}).",
        "",
        "Test sets (`evaluate.testsets`):",
        "",
    ]
    for name, report in reports.items():
        test_only = report.get("selection") == ALL_VIDEOS
        rows_held = "all videos (test-only)" if test_only else f"holdout fold {report.get('holdout_fold')}"
        line = (
            f"- `{name}`: datasets {', '.join(report['datasets'])}; {rows_held}: "
            f"videos {report.get('videos')} ({report.get('real_videos')} real, {report.get('fake_videos')} fake), "
            f"crops {report.get('crops')}"
        )
        if report.get("datasets_without_rows"):
            line += f"; no {'' if test_only else 'holdout '}rows from {', '.join(report['datasets_without_rows'])}"
        lines.append(line)
    lines.append("")
    if all(t == first for t in trained_on.values()):
        named = ", ".join(first) if isinstance(first, list) and first else "(not recorded)"
        lines.append(f"The models were trained on the training folds of: {named} (`train.datasets`).")
    else:
        lines.append("The evaluations name different training datasets (rerun the stale `evaluate@` stages):")
        lines += [f"- `{name}`: {', '.join(sets or [])}" for name, sets in trained_on.items()]
    held_out = _held_out(reports)
    if held_out:
        methods = sorted({c.split("/", 1)[1] for c in held_out})
        lines.append(f"Methods kept out of training (`train.holdout_methods`), marked †: {', '.join(methods)}.")
    lines += ["`n/a`: undefined (one class only, or no reals to compare against; the JSONs give the reason).", ""]

    lines += ["## Video level: AUC and log loss per test set", ""]
    header = ["model"] + [f"{t} {m}" for t in testsets for m in ("AUC", "log loss")]
    body = [
        [row] + [_number(matrix[row].get(t, {}).get(k)) for t in testsets for k in ("video_auc", "video_log_loss")]
        for row in rows
    ]
    lines += [_table(header, body)]
    lines += ["## Frame level: AUC per test set", ""]
    body = [[row] + [_number(matrix[row].get(t, {}).get("frame_auc")) for t in testsets] for row in rows]
    lines += [_table(["model", *testsets], body)]
    lines += [
        "## Video level: AUC per test set and manipulation method",
        "",
        "Each column: that method's fake videos against all the test set's real videos "
        "(`unspecified`: fakes whose dataset names no method).",
        "",
    ]
    if method_columns:
        header = ["model"] + [c + (" †" if c in held_out else "") for c in method_columns]
        body = [[row] + [_number(matrix[row].get(c, {}).get("video_auc")) for c in method_columns] for row in rows]
        lines += [_table(header, body)]
    else:
        lines += ["No fakes in any test set.", ""]
    return "\n".join(lines)


def with_package_rows(
    reports: dict[str, dict[str, Any]], folder: Path, package: str, testsets: tuple[tuple[str, tuple[str, ...]], ...]
) -> dict[str, dict[str, Any]]:
    """``reports`` with the rows of ``package``'s evaluations (``<folder>/<testset>.json``) added as
    ``<package>/<row>``; none of its methods is marked as held out of training (it was not ours)."""
    merged = {}
    for name, sets in testsets:
        theirs = read_evaluation(folder, name, sets)
        report = dict(reports[name])
        for key in ("models", "ensembles"):
            report[key] = {**report[key], **{f"{package}/{row}": entry for row, entry in theirs[key].items()}}
        report["rows"] = _row_names(reports[name]) + [f"{package}/{row}" for row in _row_names(theirs)]
        merged[name] = report
    return merged


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Collect the per-test-set evaluations into the matrix JSON, markdown and heatmap."""
    reports = {name: read_evaluation(paths.evaluations, name, sets) for name, sets in config.testsets}
    for package in config.packages:
        if paths.package_evaluations is None:
            raise InputError("the matrix with zoo packages needs their evaluations' folder (metrics/zoo/evaluate)")
        reports = with_package_rows(reports, paths.package_evaluations / package, package, config.testsets)
    matrix, method_columns = build_matrix(reports, paths.evaluations)
    write_json_atomic(paths.out_json, matrix)
    write_bytes_atomic(paths.out_md, matrix_markdown(reports, matrix, method_columns).encode())

    from deepfake.modeling.plots import annotated_heatmap

    testsets = [name for name, _ in config.testsets]
    held_out = _held_out(reports)
    columns = testsets + method_columns
    labels = testsets + [c + (" †" if c in held_out else "") for c in method_columns]
    rows = list(matrix)
    values = np.array(
        [[np.nan if (v := matrix[r].get(c, {}).get("video_auc")) is None else v for c in columns] for r in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(columns))
    separators = [len(testsets)] if method_columns else []
    for i in range(1, len(method_columns)):  # between the method columns of two test sets
        if method_columns[i].split("/", 1)[0] != method_columns[i - 1].split("/", 1)[0]:
            separators.append(len(testsets) + i)
    annotated_heatmap(
        values,
        rows,
        labels,
        paths.heatmap,
        "Video-level AUC: test sets | test set / manipulation method" + (" (†: not trained on)" if held_out else ""),
        tuple(separators),
    )
    logger.info("matrix: %d rows x %d test sets, %d method columns", len(rows), len(testsets), len(method_columns))
    return {"testsets": testsets, "rows": rows, "method_columns": method_columns, "matrix": matrix}
