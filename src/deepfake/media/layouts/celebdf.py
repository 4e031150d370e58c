"""Celeb-DF v2: ``Celeb-real/idK_NNNN.mp4``, ``YouTube-real/NNNNN.mp4`` (copies also spell it
``Youtube-real``), ``Celeb-synthesis/idT_idS_NNNN.mp4`` and ``List_of_testing_videos.txt``.

Keys: ``<folder>__<file name>`` with the folder spelled as released (``YouTube-real__00170.mp4``
whichever spelling is on disk). A fake ``idT_idS_NNNN`` is target T's clip NNNN with source S's face:
its original is ``Celeb-real__idT_NNNN.mp4`` and its identity ``celebdf-idS``; a Celeb-real video's
identity is ``celebdf-idK``; a YouTube-real video's is unknown (empty).

The test list has lines ``<label> <folder>/<file>.mp4`` where **1 = REAL and 0 = FAKE** (inverted from
the usual convention). A line whose label disagrees with its folder refuses the video (its split is
unknown, so it goes nowhere). Listed videos get the split test, the rest train. A folder may hold its
videos one level down in ``videos/``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import PurePosixPath

from deepfake.core.vocabulary import FAKE, REAL, TEST, TRAIN
from deepfake.media.layouts.base import (
    IndexRow,
    Layout,
    LayoutError,
    Scan,
    list_videos,
    read_text_lines,
    register,
    videos_folder,
)

TEST_LIST = "List_of_testing_videos.txt"
CELEB_REAL, YOUTUBE_REAL, SYNTHESIS = "Celeb-real", "YouTube-real", "Celeb-synthesis"
FOLDERS = {CELEB_REAL: CELEB_REAL, YOUTUBE_REAL: YOUTUBE_REAL, "Youtube-real": YOUTUBE_REAL, SYNTHESIS: SYNTHESIS}
FOLDER_LABELS = {CELEB_REAL: REAL, YOUTUBE_REAL: REAL, SYNTHESIS: FAKE}
LIST_LABELS = {"1": REAL, "0": FAKE}  # Celeb-DF's own convention: 1 = real

_CELEB = re.compile(r"^(id\d+)_(\d+)\.mp4$")
_FAKE = re.compile(r"^(id\d+)_(id\d+)_(\d+)\.mp4$")


def _candidates(scan: Scan) -> dict[str, IndexRow]:
    """Every video on disk as a row without its split, by key; badly named files are refused."""
    root = scan.root
    spellings = [name for name in (YOUTUBE_REAL, "Youtube-real") if (root / name).is_dir()]
    if len(spellings) > 1:
        raise LayoutError(f"{root}: both YouTube-real/ and Youtube-real/ exist; keep one")
    folders = [name for name in (CELEB_REAL, *spellings, SYNTHESIS) if (root / name).is_dir()]
    if not folders:
        raise LayoutError(f"{root}: not a Celeb-DF v2 root: expected {CELEB_REAL}/, {YOUTUBE_REAL}/ and {SYNTHESIS}/")
    rows: dict[str, IndexRow] = {}
    for folder in folders:
        canonical = FOLDERS[folder]
        for path in list_videos(videos_folder(root / folder)):
            rel, name = scan.rel(path), path.name
            key = f"{canonical}__{name}"
            if canonical == CELEB_REAL:
                match = _CELEB.fullmatch(name)
                if not match:
                    scan.refuse(rel, None, "unexpected file name (idK_NNNN.mp4 expected)")
                    continue
                rows[key] = IndexRow(video=key, path=rel, label=REAL, identity=f"celebdf-{match.group(1)}")
            elif canonical == YOUTUBE_REAL:
                rows[key] = IndexRow(video=key, path=rel, label=REAL)
            else:
                match = _FAKE.fullmatch(name)
                if not match:
                    scan.refuse(rel, None, "unexpected file name (idT_idS_NNNN.mp4 expected)")
                    continue
                target, source, clip = match.groups()
                rows[key] = IndexRow(
                    video=key,
                    path=rel,
                    label=FAKE,
                    original=f"{CELEB_REAL}__{target}_{clip}.mp4",
                    identity=f"celebdf-{source}",
                    method=SYNTHESIS,
                )
    return rows


def _scan(scan: Scan) -> None:
    candidates = _candidates(scan)
    list_path = scan.root / TEST_LIST
    if not list_path.is_file():
        raise LayoutError(f"{list_path}: not found (the Celeb-DF v2 test list, shipped in the dataset root)")
    listed: dict[str, int] = {}
    refused: set[str] = set()
    for line, text in enumerate(read_text_lines(list_path, "Celeb-DF test list"), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 2:
            scan.refuse(TEST_LIST, line, f"malformed line {text.strip()!r}: '<label> <folder>/<file>.mp4' expected")
            continue
        label, relative = fields
        parts = PurePosixPath(relative).parts
        if ".." in parts or PurePosixPath(relative).is_absolute() or "\\" in relative:
            scan.refuse(TEST_LIST, line, f"path {relative!r} escapes the dataset root")
            continue
        folder = FOLDERS.get(parts[0]) if parts else None
        if folder is None or not (len(parts) == 2 or (len(parts) == 3 and parts[1] == "videos")):
            scan.refuse(TEST_LIST, line, f"path {relative!r} is not <folder>/<file>.mp4 in {', '.join(FOLDER_LABELS)}")
            continue
        key = f"{folder}__{parts[-1]}"
        if label not in LIST_LABELS:
            scan.refuse(TEST_LIST, line, f"label {label!r} is not 1 (real) or 0 (fake)", key)
            refused.add(key)
            continue
        if LIST_LABELS[label] != FOLDER_LABELS[folder]:
            reason = f"label {label} ({LIST_LABELS[label]}; Celeb-DF's 1 = real) disagrees with the folder {folder}"
            scan.refuse(TEST_LIST, line, reason, key)
            refused.add(key)
            continue
        if key in listed:
            scan.refuse(TEST_LIST, line, f"{relative} listed twice (first on line {listed[key]})", key)
            continue
        if key not in candidates:
            scan.refuse(TEST_LIST, line, f"listed video {relative} is missing", key)
            continue
        listed[key] = line
    # reals first, so that a fake's original is in place; the fakes are checked again by ingest
    for key, row in sorted(candidates.items(), key=lambda item: (item[1].label != REAL, item[0])):
        if key in refused:
            continue
        split = TEST if key in listed else TRAIN
        where = (TEST_LIST, listed[key]) if key in listed else (row.path, None)
        scan.add(replace(row, split=split), *where)


CELEBDF = register(
    Layout(
        name="celebdf",
        summary="Celeb-DF v2: Celeb-real/, YouTube-real/, Celeb-synthesis/ + List_of_testing_videos.txt",
        options={},
        scan=_scan,
    )
)
