"""The crops index (``data/crops/<part>/index.csv``): one row per face crop, written by the crops stage.

Columns ``video,file,label,original,part,frame,face,identity,method,compression,split``: ``file`` is
relative to the crops root, ``original`` is the real video the face comes from (the video itself for a
REAL), ``part`` is the dataset, and ``identity``, ``method``, ``compression`` and ``split`` (the
official split) come from the canonical index (empty when the layout does not say). Crop files are named
``<frame>_<face>.png``, so one name addresses the same face in an original and all its fakes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from deepfake.core.errors import InputError

INDEX_NAME = "index.csv"
INDEX_COLUMNS = [
    "video",
    "file",
    "label",
    "original",
    "part",
    "frame",
    "face",
    "identity",
    "method",
    "compression",
    "split",
]
TEXT_COLUMNS = ("video", "file", "label", "original", "part", "identity", "method", "compression", "split")


def crop_name(frame: int, face: int) -> str:
    return f"{frame}_{face}"


def read_index(crops_part_dir: Path) -> pd.DataFrame:
    """The index of one dataset's crops; a missing one names the stage that writes it."""
    path = crops_part_dir / INDEX_NAME
    if not path.is_file():
        raise InputError(f"{path}: missing; run the crops stage for this dataset first")
    index = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str), keep_default_na=False)
    missing = set(INDEX_COLUMNS) - set(index.columns)
    if missing:
        raise InputError(f"{path}: missing columns {sorted(missing)}")
    return index


def index_csv(rows: list[dict]) -> bytes:
    """The index CSV's bytes for ``rows`` (in the given order, ``\\n`` line ends)."""
    return pd.DataFrame(rows, columns=INDEX_COLUMNS).to_csv(index=False, lineterminator="\n").encode()
