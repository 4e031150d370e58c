"""DFDC layouts.

``dfdc``: one training part folder (``dfdc_train_part_N``) with its videos and ``metadata.json``
(parsed by ``deepfake.media.metadata.load_metadata``: labels REAL/FAKE, a FAKE's ``original`` in the
same part, REAL entries with ``original`` null or absent). The video key is DFDC's own file name. The
metadata's ``split`` is "train" on every training part (the release, not a protocol): rows get no
official split, and the folds stage makes leak-free folds.

``dfdc_test``: the public validation or test set: videos plus ``labels.csv`` with the header
``filename,label`` where 1 = FAKE and 0 = REAL; the videos lie directly in the root or one level down
in ``videos/``. The layout names no originals, methods or identities. Option ``split`` (required:
``test``, or ``val`` for the public validation set) is written on every row.
"""

from __future__ import annotations

from typing import Any

from deepfake.core.errors import ParamsError
from deepfake.core.vocabulary import FAKE, REAL, SPLITS
from deepfake.media.layouts.base import (
    INDEX_SPLITS,
    REQUIRED,
    IndexRow,
    Layout,
    LayoutError,
    Scan,
    read_csv_rows,
    read_json_entries,
    register,
)
from deepfake.media.metadata import METADATA_NAME, MetadataError, load_metadata

LABELS_CSV = "labels.csv"
TEST_LABELS = {"0": REAL, "1": FAKE}  # DFDC test labels.csv: 1 = fake


def _scan_part(scan: Scan) -> None:
    root = scan.root
    if not (root / METADATA_NAME).is_file():
        parts = sorted(p.name for p in root.glob("dfdc_train_part_*") if p.is_dir())
        hint = (
            f"; it holds the parts {', '.join(parts[:3])}{'...' if len(parts) > 3 else ''}: one dataset per part"
            if parts
            else (f"; it has {LABELS_CSV}: use layout dfdc_test" if (root / LABELS_CSV).is_file() else "")
        )
        raise LayoutError(f"{root}: no {METADATA_NAME}, not a DFDC training part folder{hint}")
    try:
        part = load_metadata(root)
    except MetadataError as err:
        raise LayoutError(str(err)) from err
    # load_metadata has no line numbers: a second, line-aware read of the same (validated) file
    _, entries = read_json_entries(root / METADATA_NAME, "DFDC metadata")
    lines = {key: line for line, key, _ in entries}
    for name, reason in part.refused.items():
        scan.refuse(METADATA_NAME, lines.get(name), reason, name)
    for name, entry in part.entries.items():
        line = lines.get(name)
        if entry.split not in INDEX_SPLITS:
            scan.refuse(METADATA_NAME, line, f"split {entry.split!r} is not one of {', '.join(SPLITS)}", name)
            continue
        row = IndexRow(
            video=name,
            path=name,
            label=entry.label,
            original=entry.original or "",
            identity=entry.identity,
            # every training part says "train": that names the release, not a holdout protocol, so the
            # folds stage deals DFDC parts into leak-free folds itself (no official split)
            split="",
        )
        scan.add(row, METADATA_NAME, line)


def _check_split(options: dict[str, Any]) -> None:
    if options["split"] not in INDEX_SPLITS:
        raise ParamsError(f"split: one of {', '.join(SPLITS)} or empty, got {options['split']!r}")


def _scan_test(scan: Scan) -> None:
    root = scan.root
    if not (root / LABELS_CSV).is_file():
        hint = f"; it has {METADATA_NAME}: use layout dfdc" if (root / METADATA_NAME).is_file() else ""
        raise LayoutError(
            f"{root}: no {LABELS_CSV} (header filename,label; 1 = fake), not a DFDC test or validation folder{hint}"
        )
    seen: dict[str, int] = {}
    for line, record in read_csv_rows(root / LABELS_CSV, "DFDC test labels", ["filename", "label"]):
        if isinstance(record, str):
            scan.refuse(LABELS_CSV, line, record)
            continue
        name, label = record["filename"].strip(), record["label"].strip()
        if label not in TEST_LABELS:
            scan.refuse(LABELS_CSV, line, f"label {label!r} is not 0 (real) or 1 (fake)", name)
            continue
        if name in seen:
            scan.refuse(LABELS_CSV, line, f"{name!r} listed twice (first on line {seen[name]})", name)
            continue
        seen[name] = line
        # as shipped the videos sit beside labels.csv; a copy may move them into videos/
        path = name if (root / name).exists() or not (root / "videos" / name).exists() else f"videos/{name}"
        row = IndexRow(video=name, path=path, label=TEST_LABELS[label], split=scan.options["split"])
        scan.add(row, LABELS_CSV, line)


DFDC = register(Layout(name="dfdc", summary="DFDC training part: videos + metadata.json", options={}, scan=_scan_part))
DFDC_TEST = register(
    Layout(
        name="dfdc_test",
        summary="DFDC public validation/test: videos (or videos/) + labels.csv (filename,label; 1 = fake)",
        options={"split": REQUIRED},
        scan=_scan_test,
        check_options=_check_split,
    )
)
