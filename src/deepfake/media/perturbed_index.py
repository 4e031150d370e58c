"""The index of a perturbed test set (``data/robustness/<testset>/videos.csv``): the perturb stage writes it,
the robustness stage reads it. One row per perturbed file: ``variant`` (``<family>-<level>``, the baseline
``none-0``), ``family``, ``level``, ``dataset``, ``video`` (the test video's index key), ``label`` (REAL/FAKE)
and ``file`` (the perturbed video, relative to the set's folder: ``<variant>/<dataset>/<video>``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from deepfake.core.errors import InputError
from deepfake.core.vocabulary import LABELS

VIDEOS_CSV = "videos.csv"
COLUMNS = ("variant", "family", "level", "dataset", "video", "label", "file")


def variant_name(family: str, level: int) -> str:
    return f"{family}-{level}"


def videos_csv(rows: Iterable[Mapping[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def read_videos_csv(folder: Path) -> pd.DataFrame:
    """The index of the perturbed set in ``folder``; an ``InputError`` naming what is missing or wrong."""
    path = Path(folder) / VIDEOS_CSV
    if not path.is_file():
        raise InputError(f"{path}: not found; run `dvc repro perturb@<testset>`")
    table = pd.read_csv(path, keep_default_na=False, dtype={c: str for c in COLUMNS if c != "level"})
    missing = sorted(set(COLUMNS) - set(table.columns))
    if missing:
        raise InputError(f"{path}: missing columns {missing}")
    bad = sorted(set(table["label"]) - set(LABELS))
    if bad:
        raise InputError(f"{path}: labels {bad} are not {', '.join(LABELS)}")
    unsafe = [f for f in table["file"] if f.startswith("/") or ".." in Path(f).parts]
    if unsafe:
        raise InputError(f"{path}: file {unsafe[0]!r} leaves the folder")
    return table
