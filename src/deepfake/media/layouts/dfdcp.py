"""DFDC preview (DFDCP): ``method_A/videos/<id>/<id>_A/*.mp4``, ``method_B/...``,
``original_videos/videos/<id>/*.mp4`` and ``dataset.json`` keyed by the path relative to the root, each
entry ``{"label": "real"|"fake", "set": "train"|"test", ...}``.

Only the listed videos are indexed. The key is ``<group>__<file name>`` (``method_A__x.mp4``,
``original_videos__y.mp4``); a listed path is also found with the ``videos/`` level added or removed
(copies differ). The method of a fake is its group; originals are not named by the layout (empty).
A real's identity is its actor folder (``dfdcp-<id>``); a fake's is left empty, since the layout does
not say whose face it shows.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from deepfake.core.vocabulary import FAKE, REAL, SPLITS
from deepfake.media.layouts.base import IndexRow, Layout, LayoutError, Scan, read_json_entries, register

DATASET_JSON = "dataset.json"
GROUPS = {"method_A": FAKE, "method_B": FAKE, "original_videos": REAL}
JSON_LABELS = {"real": REAL, "fake": FAKE}  # dataset.json's spelling


def _candidates(relative: str) -> list[str]:
    """``relative`` as listed, then with the ``videos/`` level after the group removed or added."""
    parts = PurePosixPath(relative).parts
    if len(parts) > 2 and parts[1] == "videos":
        return [relative, PurePosixPath(parts[0], *parts[2:]).as_posix()]
    return [relative, PurePosixPath(parts[0], "videos", *parts[1:]).as_posix()]


def _scan(scan: Scan) -> None:
    root = scan.root
    if not (root / DATASET_JSON).is_file() or not any((root / group).is_dir() for group in GROUPS):
        raise LayoutError(
            f"{root}: not a DFDC preview root: expected {DATASET_JSON} and the folders {', '.join(GROUPS)}"
        )
    document, entries = read_json_entries(root / DATASET_JSON, "DFDC preview list")
    if not isinstance(document, dict):
        raise LayoutError(f"{root / DATASET_JSON}: expected an object of path -> entry, got {type(document).__name__}")
    for line, relative, value in entries:
        assert relative is not None  # entries of a top-level object have keys
        parts = PurePosixPath(relative).parts
        group = parts[0] if parts else ""
        if group not in GROUPS or len(parts) < 2:
            scan.refuse(DATASET_JSON, line, f"{relative!r} is not under {', '.join(GROUPS)}")
            continue
        video = f"{group}__{parts[-1]}"
        if not isinstance(value, dict):
            scan.refuse(DATASET_JSON, line, f"malformed entry: an object expected, got {type(value).__name__}", video)
            continue
        raw_label, split = value.get("label"), value.get("set")
        label = JSON_LABELS.get(raw_label) if isinstance(raw_label, str) else None
        if label is None:
            scan.refuse(DATASET_JSON, line, f"label {value.get('label')!r} is not 'real' or 'fake'", video)
            continue
        if label != GROUPS[group]:
            scan.refuse(DATASET_JSON, line, f"label {value['label']!r} disagrees with the folder {group}", video)
            continue
        if split not in SPLITS:
            scan.refuse(DATASET_JSON, line, f"set {split!r} is not one of {', '.join(SPLITS)}", video)
            continue
        path = next((c for c in _candidates(relative) if (root / c).exists()), relative)
        folder = PurePosixPath(path).parent.name
        identity = f"dfdcp-{folder}" if label == REAL and folder.isalnum() and folder != "videos" else ""
        method = group if label == FAKE else ""
        row = IndexRow(video=video, path=path, label=label, identity=identity, method=method, split=split)
        scan.add(row, DATASET_JSON, line)


DFDCP = register(
    Layout(
        name="dfdcp",
        summary="DFDC preview: method_A/, method_B/, original_videos/ + dataset.json",
        options={},
        scan=_scan,
    )
)
