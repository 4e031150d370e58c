"""DeeperForensics-1.0: ``manipulated_videos/<variant>/<target>_<actor>.mp4`` and the splits
``lists/splits/{train,val,test}.txt`` (one fake file name a line).

The dataset ships only fakes: its reals are the FF++ youtube c23 videos of the targets
(``<target>`` is the 3-digit FF++ id), read from the option ``ffpp_root``
(``original_sequences/youtube/c23/videos/<id>.mp4``) and written with a path relative to this root
(``../...``, allowed only into that declared extra root). Keys: ``<variant>__<target>_<actor>.mp4``
for a fake (method = the variant, identity ``deeperforensics-<actor>``: the actor's face is swapped
onto the target), ``youtube__<id>.mp4`` for a real (identity ``ffpp-<id>``, as in the ffpp layout,
so the same person has one label in both datasets). A real's split is that of its target's fakes
(empty if they disagree).

Options (both required, set in params.yaml): ``variants`` (e.g. ``[end_to_end]``), ``ffpp_root``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from deepfake.core.errors import ParamsError
from deepfake.core.vocabulary import FAKE, REAL, SPLITS
from deepfake.media.layouts.base import (
    REQUIRED,
    IndexRow,
    Layout,
    LayoutError,
    Scan,
    list_videos,
    read_text_lines,
    register,
    videos_folder,
)

VARIANTS = (
    "end_to_end",
    "reenact_postprocess",
    *(f"end_to_end_level_{i}" for i in range(1, 6)),
    "end_to_end_random_level",
    *(f"end_to_end_mix_{j}_distortions" for j in range(2, 5)),
)
SPLITS_DIR = "lists/splits"
FFPP_REALS = "original_sequences/youtube/c23"  # the dataset's README: FF++ target videos at c23

_FAKE = re.compile(r"^(\d{3})_([A-Za-z0-9]+)\.mp4$")


def _check(options: dict[str, Any]) -> None:
    variants = options["variants"]
    if not isinstance(variants, list | tuple) or not variants or len(set(variants)) != len(variants):
        raise ParamsError(f"variants: a non-empty list of distinct names from {', '.join(VARIANTS)}, got {variants!r}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ParamsError(f"variants: unknown variant(s) {', '.join(map(str, unknown))} (known: {', '.join(VARIANTS)})")
    if not (isinstance(options["ffpp_root"], str | Path) and str(options["ffpp_root"])):
        raise ParamsError(f"ffpp_root: the FaceForensics++ root folder, got {options['ffpp_root']!r}")


def _load_splits(scan: Scan) -> dict[str, tuple[str, str, int]]:
    """file name -> (split, list file, line); malformed or repeated lines are refused."""
    named: dict[str, tuple[str, str, int]] = {}
    for split in SPLITS:
        shown = f"{SPLITS_DIR}/{split}.txt"
        for line, text in enumerate(read_text_lines(scan.root / shown, "DeeperForensics split"), start=1):
            name = text.strip()
            if not name:
                continue
            name = name if name.endswith(".mp4") else f"{name}.mp4"
            if not _FAKE.fullmatch(name):
                scan.refuse(shown, line, f"malformed line {text.strip()!r}: '<target>_<actor>.mp4' expected")
                continue
            if name in named:
                first = named[name]
                scan.refuse(shown, line, f"{name} is already in split {first[0]} ({first[1]}:{first[2]})")
                continue
            named[name] = (split, shown, line)
    return named


def _ffpp_real(ffpp_root: Path, target: str) -> Path | None:
    for folder in (ffpp_root / FFPP_REALS / "videos", ffpp_root / FFPP_REALS):
        if (folder / f"{target}.mp4").exists():
            return folder / f"{target}.mp4"
    return None


def _scan(scan: Scan) -> None:
    root, options = scan.root, scan.options
    manipulated = root / "manipulated_videos"
    if not manipulated.is_dir():
        raise LayoutError(f"{root}: not a DeeperForensics-1.0 root: expected manipulated_videos/ and {SPLITS_DIR}/")
    variants = list(options["variants"])
    missing = [v for v in variants if not (manipulated / v).is_dir()]
    if missing:
        found = sorted(p.name for p in manipulated.iterdir() if p.is_dir())
        raise LayoutError(
            f"{root}: manipulated_videos/ has no {', '.join(missing)} (it has: {', '.join(found) or 'nothing'}; "
            "set the option variants)"
        )
    splits = _load_splits(scan)

    fakes: list[tuple[str, Path, re.Match[str]]] = []
    for variant in variants:
        for path in list_videos(videos_folder(manipulated / variant)):
            match = _FAKE.fullmatch(path.name)
            if not match:
                scan.refuse(scan.rel(path), None, "unexpected file name (<target>_<actor>.mp4 expected)")
                continue
            fakes.append((variant, path, match))
    names = {path.name for _, path, _ in fakes}
    for name, (_, shown, line) in sorted(splits.items()):
        if name not in names:
            scan.refuse(shown, line, f"names {name}, not a video of manipulated_videos/{{{','.join(variants)}}}")

    ffpp_root = Path(options["ffpp_root"])
    target_splits: dict[str, set[str]] = {}
    for name, (split, _, _) in splits.items():
        target_splits.setdefault(name[:3], set()).add(split)
    for target in sorted({match.group(1) for _, _, match in fakes}):
        real = _ffpp_real(ffpp_root, target)
        if real is None:
            continue  # its fakes are refused below, naming the file they need
        agreed = target_splits.get(target, set())
        row = IndexRow(
            video=f"youtube__{target}.mp4",
            path=scan.rel(real),
            label=REAL,
            identity=f"ffpp-{target}",
            compression="c23",
            split=next(iter(agreed)) if len(agreed) == 1 else "",
        )
        scan.add(row, scan.rel(real))

    for variant, path, match in fakes:
        target, actor = match.groups()
        video, rel = f"{variant}__{path.name}", scan.rel(path)
        original = f"youtube__{target}.mp4"
        if original not in scan.rows:
            expected = scan.rel(ffpp_root / FFPP_REALS / "videos" / f"{target}.mp4")
            reason = f"fake whose source is absent: its original {original} ({expected}) is not in the index"
            scan.refuse(rel, None, reason, video)
            continue
        split = splits[path.name][0] if path.name in splits else ""
        row = IndexRow(
            video=video,
            path=rel,
            label=FAKE,
            original=original,
            identity=f"deeperforensics-{actor}",
            method=variant,
            split=split,
        )
        scan.add(row, rel)


DEEPERFORENSICS = register(
    Layout(
        name="deeperforensics",
        summary="DeeperForensics-1.0: manipulated_videos/<variant>/ + lists/splits/; reals from FF++ (ffpp_root)",
        options={"variants": REQUIRED, "ffpp_root": REQUIRED},
        scan=_scan,
        check_options=_check,
        extra_root_options=("ffpp_root",),
    )
)
