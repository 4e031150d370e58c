"""FaceForensics++, as its download script lays it out.

- Reals: ``original_sequences/youtube/<c>/videos/NNN.mp4`` (key ``youtube__NNN.mp4``, identity
  ``ffpp-NNN``) and the DeepFakeDetection actors ``original_sequences/actors/<c>/videos/<actor>__<scene>.mp4``
  (key ``actors__<actor>__<scene>.mp4``, identity ``ffpp-<actor>``).
- Fakes: ``manipulated_sequences/<method>/<c>/videos/<target>_<source>.mp4`` for Deepfakes, Face2Face,
  FaceSwap, NeuralTextures and FaceShifter (key ``<method>__<target>_<source>.mp4``, original
  ``youtube__<target>.mp4``), and ``manipulated_sequences/DeepFakeDetection/<c>/videos/<t>_<s>__<scene>__<hash>.mp4``
  (original ``actors__<t>__<scene>.mp4``). Identity: the source (donor) for the face swaps (Deepfakes,
  FaceSwap, FaceShifter, DeepFakeDetection), the target for the reenactments (Face2Face, NeuralTextures).
- Masks: ``manipulated_sequences/<method>/masks/videos/<name>.mp4`` when present (none for FaceShifter).
- Official splits: ``train.json``, ``val.json``, ``test.json`` in the ``splits`` folder (unset:
  ``<root>/splits``; copy them from github.com/ondyari/FaceForensics, dataset/splits), each a list of
  pairs ``["953", "974"]``: the pair owns the reals 953 and 974 and the fakes 953_974 and 974_953.
  Videos of ids in no pair (the DeepFakeDetection ones) get the split "".

Options: ``compression`` (raw, c23 or c40, required; a ``raw`` copy may name its folder ``c0``),
``methods`` (unset: every method folder found; the actors are read when DeepFakeDetection is),
``splits``. A ``<c>`` folder without its ``videos/`` level is accepted too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deepfake.core.errors import ParamsError
from deepfake.core.vocabulary import COMPRESSIONS, FAKE, REAL, SPLITS
from deepfake.media.layouts.base import (
    REQUIRED,
    IndexRow,
    Layout,
    LayoutError,
    Scan,
    list_videos,
    read_json_entries,
    register,
    videos_folder,
)

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter", "DeepFakeDetection")
IDENTITY_SWAP = frozenset({"Deepfakes", "FaceSwap", "FaceShifter", "DeepFakeDetection"})  # the rest reenact
DFD = "DeepFakeDetection"

_ID = re.compile(r"^\d{3}$")
_YOUTUBE = re.compile(r"^(\d{3})\.mp4$")
_PAIR_FAKE = re.compile(r"^(\d{3})_(\d{3})\.mp4$")
_ACTOR = re.compile(r"^(\d+)__([A-Za-z0-9][A-Za-z0-9_\-]*)\.mp4$")
_DFD_FAKE = re.compile(r"^(\d+)_(\d+)__([A-Za-z0-9][A-Za-z0-9_\-]*?)__([A-Za-z0-9]+)\.mp4$")


def _check(options: dict[str, Any]) -> None:
    if options["compression"] not in COMPRESSIONS:
        raise ParamsError(f"compression: one of {', '.join(COMPRESSIONS)}, got {options['compression']!r}")
    methods = options["methods"]
    if methods is not None:
        if not isinstance(methods, list | tuple) or not methods or len(set(methods)) != len(methods):
            raise ParamsError(f"methods: a non-empty list of distinct names from {', '.join(METHODS)}, got {methods!r}")
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            shown = ", ".join(map(str, unknown))
            raise ParamsError(f"methods: unknown method(s) {shown} (known: {', '.join(METHODS)})")
    splits = options["splits"]
    if splits is not None and not (isinstance(splits, str | Path) and str(splits)):
        raise ParamsError(f"splits: a folder path, got {splits!r}")


def _compression_folder(base: Path, compression: str) -> Path | None:
    for name in (compression, "c0") if compression == "raw" else (compression,):
        if (base / name).is_dir():
            return videos_folder(base / name)
    return None


def _load_splits(scan: Scan, folder: Path, known: set[str]) -> tuple[dict[str, str], dict[frozenset[str], str]]:
    """``(id -> split, pair -> split)`` from the official split files; bad pairs are refused."""
    if not folder.is_dir():
        raise LayoutError(
            f"{folder}: the FF++ official splits are missing: copy train.json, val.json and test.json from "
            "github.com/ondyari/FaceForensics (dataset/splits) there, or set the option splits to their folder"
        )
    id_split: dict[str, str] = {}
    id_where: dict[str, str] = {}
    pair_split: dict[frozenset[str], str] = {}
    compression = scan.options["compression"]
    for split in SPLITS:
        path = folder / f"{split}.json"
        shown = scan.rel(path)
        document, entries = read_json_entries(path, "FF++ official split")
        if not isinstance(document, list):
            raise LayoutError(f"{path}: expected a list of [id, id] pairs, got {type(document).__name__}")
        for line, _, pair in entries:
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(i, str) and _ID.fullmatch(i) for i in pair)
                and pair[0] != pair[1]
            ):
                scan.refuse(shown, line, f"malformed pair {pair!r}: two different 3-digit ids expected")
                continue
            clash = [i for i in pair if i in id_split]
            if clash:
                first = clash[0]
                scan.refuse(shown, line, f"id {first} is already in split {id_split[first]} ({id_where[first]})")
                continue
            for i in pair:
                id_split[i], id_where[i] = split, f"{shown}:{line}"
            pair_split[frozenset(pair)] = split
            # the pair stays official (its other id keeps its split); the unknown id is reported
            for i in pair:
                if i not in known:
                    expected = f"original_sequences/youtube/{compression}/videos/{i}.mp4"
                    scan.refuse(shown, line, f"names id {i} that has no video {expected}")
    return id_split, pair_split


def _scan(scan: Scan) -> None:
    root, options = scan.root, scan.options
    compression = options["compression"]
    originals, manipulated = root / "original_sequences", root / "manipulated_sequences"
    if not originals.is_dir() and not manipulated.is_dir():
        raise LayoutError(
            f"{root}: not a FaceForensics++ root: expected original_sequences/ and manipulated_sequences/ "
            "(as its download script writes them)"
        )
    if options["methods"] is None:
        methods = [m for m in METHODS if (manipulated / m).is_dir()]
        with_actors = True
    else:
        methods = list(options["methods"])
        missing = [m for m in methods if not (manipulated / m).is_dir()]
        if missing:
            raise LayoutError(f"{root}: option methods names {', '.join(missing)}, not in manipulated_sequences/")
        with_actors = DFD in methods

    youtube = _compression_folder(originals / "youtube", compression)
    actors = _compression_folder(originals / "actors", compression) if with_actors else None
    fake_folders = {m: _compression_folder(manipulated / m, compression) for m in methods}
    if options["methods"] is not None:
        absent = [m for m, folder in fake_folders.items() if folder is None]
        if absent:
            raise LayoutError(f"{root}: no {compression} videos for method(s) {', '.join(absent)} (option methods)")
    if youtube is None and actors is None and not any(fake_folders.values()):
        found = sorted({p.name for p in (originals / "youtube").glob("*") if p.is_dir()})
        raise LayoutError(
            f"{root}: no FaceForensics++ videos at compression {compression}"
            + (f" (original_sequences/youtube has {', '.join(found)}: set the option compression)" if found else "")
        )

    youtube_files = list_videos(youtube) if youtube else []
    known = {m.group(1) for p in youtube_files if (m := _YOUTUBE.fullmatch(p.name))}
    splits_folder = Path(options["splits"]) if options["splits"] is not None else root / "splits"
    id_split, pair_split = _load_splits(scan, splits_folder, known)

    for path in youtube_files:
        match = _YOUTUBE.fullmatch(path.name)
        if not match:
            scan.refuse(scan.rel(path), None, "unexpected file name (NNN.mp4 expected)")
            continue
        vid = match.group(1)
        row = IndexRow(
            video=f"youtube__{path.name}",
            path=scan.rel(path),
            label=REAL,
            identity=f"ffpp-{vid}",
            compression=compression,
            split=id_split.get(vid, ""),
        )
        scan.add(row, row.path)
    for path in list_videos(actors) if actors else []:
        match = _ACTOR.fullmatch(path.name)
        if not match:
            scan.refuse(scan.rel(path), None, "unexpected file name (<actor>__<scene>.mp4 expected)")
            continue
        row = IndexRow(
            video=f"actors__{path.name}",
            path=scan.rel(path),
            label=REAL,
            identity=f"ffpp-{match.group(1)}",
            compression=compression,
        )
        scan.add(row, row.path)

    for method, folder in fake_folders.items():
        for path in list_videos(folder) if folder else []:
            _add_fake(scan, method, path, pair_split)


def _add_fake(scan: Scan, method: str, path: Path, pair_split: dict[frozenset[str], str]) -> None:
    rel, compression = scan.rel(path), scan.options["compression"]
    if method == DFD:
        match = _DFD_FAKE.fullmatch(path.name)
        if not match:
            scan.refuse(rel, None, "unexpected file name (<target>_<source>__<scene>__<hash>.mp4 expected)")
            return
        target, source, scene = match.group(1), match.group(2), match.group(3)
        original = f"actors__{target}__{scene}.mp4"
        original_path = f"original_sequences/actors/{compression}/videos/{target}__{scene}.mp4"
        split = ""
    else:
        match = _PAIR_FAKE.fullmatch(path.name)
        if not match:
            scan.refuse(rel, None, "unexpected file name (<target>_<source>.mp4 expected)")
            return
        target, source = match.group(1), match.group(2)
        original = f"youtube__{target}.mp4"
        original_path = f"original_sequences/youtube/{compression}/videos/{target}.mp4"
        split = pair_split.get(frozenset((target, source)), "")
    video = f"{method}__{path.name}"
    if original not in scan.rows:
        reason = f"fake whose source is absent: its original {original} ({original_path}) is not in the index"
        scan.refuse(rel, None, reason, video)
        return
    mask = scan.root / "manipulated_sequences" / method / "masks" / "videos" / path.name
    row = IndexRow(
        video=video,
        path=rel,
        label=FAKE,
        original=original,
        identity=f"ffpp-{source if method in IDENTITY_SWAP else target}",
        method=method,
        compression=compression,
        split=split,
        mask=scan.rel(mask) if mask.exists() or mask.is_symlink() else "",
    )
    scan.add(row, rel)


FFPP = register(
    Layout(
        name="ffpp",
        summary="FaceForensics++: original_sequences/, manipulated_sequences/ + official splits",
        options={"compression": REQUIRED, "methods": None, "splits": None},
        scan=_scan,
        check_options=_check,
    )
)
