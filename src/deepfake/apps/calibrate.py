"""``deepfake calibrate``: fit a model package's calibration and operating points on a user's labelled videos.

A false-positive rate is a property of the traffic it is measured on: the pipeline's operating points rest
on a validation fold, a platform's rest on its own real uploads. This command scores the videos with the
package exactly as ``deepfake predict`` does (same detector, tracks and aggregation: its records, or an earlier
``deepfake predict --json`` output given with ``--predictions``), joins them with a labels CSV, fits the
calibration and operating points of the ``calibrate`` params (``deepfake.modeling.calibration``) on the
package's row, and writes a new version of the package: the same members and manifest, a new
``calibration.json`` and a card whose ``calibration`` says what it was fitted on (so its version changes, and
every verdict names the new one). The input package is never modified.

The labels CSV has a header with ``video`` and ``label`` columns: ``video`` a path (absolute, or relative to
the CSV's folder) or a bare file name, ``label`` REAL or FAKE (0/1 accepted). Videos without a label are left
out and listed; videos that got no score (no face, unreadable) are left out and counted: neither is a guess.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.core.errors import InputError
from deepfake.core.fileio import atomic_dir, read_json_limited
from deepfake.core.vocabulary import FAKE, REAL
from deepfake.modeling.calibration import CALIBRATION_FILE, describe_decision, read_decisions, write_decisions
from deepfake.modeling.card import read_card, write_card
from deepfake.modeling.scoring import ALL_MEMBERS_ROW
from deepfake.modeling.store import ModelStore

logger = logging.getLogger(__name__)

MAX_LABELS_BYTES = 256 << 20
MAX_PREDICTIONS_BYTES = 1 << 30
LABEL_VALUES = {REAL: 0, FAKE: 1, "0": 0, "1": 1}


@dataclass(frozen=True)
class Labels:
    """Labels by resolved path and by bare file name (a name given twice is ambiguous: not used)."""

    by_path: dict[str, int]
    by_name: dict[str, int]
    source: str
    sha256: str

    def label_of(self, path: str) -> int | None:
        resolved = str(Path(path).resolve())
        if resolved in self.by_path:
            return self.by_path[resolved]
        return self.by_name.get(Path(path).name)


def read_labels(path: Path) -> Labels:
    """The labels CSV; a wrong header, label or repeated video is an ``InputError`` naming ``file:line``."""
    data = path.read_bytes()
    if len(data) > MAX_LABELS_BYTES:
        raise InputError(f"{path}: larger than {MAX_LABELS_BYTES >> 20} MiB")
    text = data.decode("utf-8-sig", errors="strict")
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or not {"video", "label"} <= set(reader.fieldnames):
        raise InputError(f"{path}:1: the header must name the columns video and label, got {reader.fieldnames}")
    by_path: dict[str, int] = {}
    names: dict[str, list[int]] = {}
    for line, row in enumerate(reader, start=2):
        video, label = (row.get("video") or "").strip(), (row.get("label") or "").strip().upper()
        if not video:
            raise InputError(f"{path}:{line}: empty video")
        if label not in LABEL_VALUES:
            raise InputError(f"{path}:{line}: label {row.get('label')!r}; use REAL or FAKE (or 0 / 1)")
        value = LABEL_VALUES[label]
        if "/" in video or "\\" in video:
            resolved = str((path.parent / video).resolve())
            if resolved in by_path and by_path[resolved] != value:
                raise InputError(f"{path}:{line}: {video} is labelled both ways")
            by_path[resolved] = value
        else:
            names.setdefault(video, []).append(value)
    by_name = {name: values[0] for name, values in names.items() if len(set(values)) == 1}
    clashing = sorted(name for name, values in names.items() if len(set(values)) > 1)
    if clashing:
        raise InputError(f"{path}: labelled both ways: {', '.join(clashing[:10])}")
    return Labels(by_path, by_name, str(path), hashlib.sha256(data).hexdigest())


def join_labels(records: Sequence[dict[str, Any]], labels: Labels) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Labels and scores of the scored, labelled videos, and what was left out and why."""
    y, scores = [], []
    unlabelled, unscored = [], {}
    for record in records:
        label = labels.label_of(record["path"])
        if label is None:
            unlabelled.append(record["path"])
            continue
        if record.get("probability") is None:
            unscored[record["path"]] = record.get("status", "not scored")
            continue
        y.append(label)
        scores.append(float(record["probability"]))
    left_out = {"unlabelled": unlabelled, "unscored": unscored}
    return np.asarray(y, dtype=np.float64), np.asarray(scores, dtype=np.float64), left_out


def predictions_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``deepfake predict --json`` output."""
    data = read_json_limited(path, MAX_PREDICTIONS_BYTES, InputError)
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise InputError(f"{path}: not a deepfake predict JSON (an object with a 'videos' list)")
    return [r for r in data["videos"] if isinstance(r, dict) and isinstance(r.get("path"), str)]


def write_calibrated_package(source: Path, out: Path, decision: Any, row: str) -> dict[str, Any]:
    """Copy the package under the models root ``source`` to the models root ``out`` (its ``onnx/`` folder),
    with ``decision`` as the package row's calibration and its card updated; all or nothing."""
    src = ModelStore(source).folder("onnx")
    if not (src / "manifest.json").is_file():
        raise InputError(f"{source}: no model package (onnx/manifest.json) to calibrate")
    card = read_card(src)
    if out.resolve() == source.resolve():
        raise InputError(f"--out {out} is the input package: write the new version beside it")
    with atomic_dir(out) as tmp:
        target = ModelStore(tmp).folder("onnx")
        shutil.copytree(src, target)
        (target / CALIBRATION_FILE).unlink(missing_ok=True)
        write_decisions(target / CALIBRATION_FILE, {row: decision}, row)
        written = write_card(
            target, card.model_copy(update={"version": "", "calibration": describe_decision(decision)})
        )
    return written.reference()


def calibrate_package(
    records: Sequence[dict[str, Any]],
    labels: Labels,
    models: Path,
    out: Path,
    fit: Any,
) -> dict[str, Any]:
    """Fit on ``records`` joined with ``labels`` (``fit``: labels, scores, fitted_on -> Decision) and write the
    new package; the summary of what it rests on."""
    y, scores, left_out = join_labels(records, labels)
    if not len(y):
        raise InputError(
            f"{labels.source}: none of the {len(records)} videos is both labelled and scored "
            f"({len(left_out['unlabelled'])} without a label, {len(left_out['unscored'])} without a score)"
        )
    src = ModelStore(models).folder("onnx")
    existing = src / CALIBRATION_FILE
    row = read_decisions(existing)[1] if existing.is_file() else None
    fitted_on = {
        "data": f"{len(y)} labelled videos of {labels.source} (sha256 {labels.sha256[:16]})",
        "source": "deepfake calibrate (predict's own scores)",
        "scores": "deepfake predict's: its detector, face tracks, most-fake track",
    }
    decision = fit(y, scores, fitted_on)
    model = write_calibrated_package(models, out, decision, row or ALL_MEMBERS_ROW)
    return {
        "model": model,
        "videos": len(records),
        "fitted_on": decision.fitted_on,
        "calibration": decision.calibration.method,
        "selection": decision.selection,
        "operating_points": [p.to_dict() for p in decision.operating_points],
        "left_out": {"unlabelled": len(left_out["unlabelled"]), "unscored": len(left_out["unscored"])},
        "left_out_videos": left_out,
    }
