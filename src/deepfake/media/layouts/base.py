"""The canonical index: one row per video, whatever layout the dataset ships in (docs/datasets.md).

Each layout module turns a dataset root into candidate rows; this module checks every row the same
way (a plain ``video`` key, a path that stays inside the root, a file that exists, a FAKE's original
that is a REAL row of the same index), applies the optional identities map, and writes and reads the
index CSV.

Paths. An index path is POSIX and relative to the dataset root. ``..`` is allowed only when it
leads into a declared extra root (DeeperForensics' FF++ reals). A path is first normalised
lexically (``root/../ffpp/x`` is ``<parent of root>/ffpp/x`` even when ``root`` is a symbolic link,
so the same index works on every machine), then every link is followed and the file must lie inside
the root or an extra root (``deepfake.media.metadata.path_problem``, the one check of a dataset path):
``ingest`` checks it when the index is built, ``deepfake.media.metadata.resolve_inside`` when a stage
asks for a video.

Problems. An entry that cannot be used is refused on its own and recorded as
``"<file>:<line>: <reason>"``, the file relative to the dataset root (never absolute: reports must
be equal across machines). A root that is missing or not of the layout, and a list file that is
missing or unreadable, stop the whole dataset with ``LayoutError``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any

from deepfake.core.errors import InputError, ParamsError, is_environment_fault
from deepfake.core.fileio import read_json_limited, write_bytes_atomic
from deepfake.core.vocabulary import COMPRESSIONS, FAKE, LABELS, REAL, SPLITS, is_identity, is_video_name
from deepfake.media.metadata import (
    METADATA_NAME,
    PartMetadata,
    VideoEntry,
    is_relative_posix,
    path_problem,
)

INDEX_COLUMNS = ["video", "path", "label", "original", "identity", "method", "compression", "split", "mask"]
# the index's compression and split columns: the vocabulary's values, or "" (not stated, no official split)
INDEX_COMPRESSIONS = ("", *COMPRESSIONS)
INDEX_SPLITS = ("", *SPLITS)
IDENTITIES_OPTION = "identities"  # every layout takes it; applied here, after the layout's own scan
MAX_LIST_BYTES = 256 * 1024 * 1024  # the largest list (a DFDC index of ~120k rows) is ~20 MB
REQUIRED = object()  # an option default meaning "the layout cannot run without it"


class LayoutError(InputError):
    """A dataset root that is missing or not of its layout, or a list file that is missing or unreadable."""


@dataclass(frozen=True)
class IndexRow:
    """One video of the canonical index (see docs/datasets.md for each column)."""

    video: str
    path: str
    label: str
    original: str = ""
    identity: str = ""
    method: str = ""
    compression: str = ""
    split: str = ""
    mask: str = ""

    def values(self) -> list[str]:
        return [getattr(self, column) for column in INDEX_COLUMNS]


assert [f.name for f in fields(IndexRow)] == INDEX_COLUMNS  # the CSV and the dataclass agree


@dataclass(frozen=True)
class Problem:
    """One refused entry: where it was read (file relative to the root, 1-based line or None) and why."""

    file: str
    line: int | None
    reason: str
    video: str = ""  # the video key concerned, "" when the entry names none

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        # DFDC's metadata.json holds every entry on line 1: the line alone does not say which entry
        json_entry = self.file.endswith(METADATA_NAME) and self.video and self.video not in self.reason
        named = f"{self.video}: " if json_entry else ""
        return f"{where}: {named}{self.reason}"


@dataclass(frozen=True)
class DatasetIndex:
    name: str
    layout: str
    rows: tuple[IndexRow, ...]  # sorted by video
    problems: tuple[Problem, ...]  # sorted by file, line

    def counts(self) -> dict[str, Any]:
        """The ingest report's tallies: videos per label, method, split and compression, and refusals.

        An empty value ("" method of a REAL, no official split) is counted under "".
        """

        def tally(column: str) -> dict[str, int]:
            return dict(sorted(Counter(getattr(row, column) for row in self.rows).items()))

        return {
            "videos": len(self.rows),
            "refused_count": len(self.problems),
            "label": tally("label"),
            "method": tally("method"),
            "split": tally("split"),
            "compression": tally("compression"),
        }


@dataclass(frozen=True)
class Layout:
    """A dataset layout: the options it takes (name -> default; ``REQUIRED`` if it has none), how to
    check their values, and the scan that lists its videos."""

    name: str
    summary: str
    options: Mapping[str, Any]
    scan: Callable[[Scan], None]
    check_options: Callable[[dict[str, Any]], None] = lambda options: None
    extra_root_options: tuple[str, ...] = ()  # options naming folders besides the root that hold videos

    def accepted(self) -> dict[str, Any]:
        """Every option this layout accepts with its default, the shared ``identities`` included."""
        return {**self.options, IDENTITIES_OPTION: None}


LAYOUTS: dict[str, Layout] = {}


def register(layout: Layout) -> Layout:
    """Add ``layout`` to ``LAYOUTS`` (each layout module registers its own at import)."""
    if layout.name in LAYOUTS:
        raise ValueError(f"layout {layout.name!r} registered twice")
    LAYOUTS[layout.name] = layout
    return layout


# ---- paths ------------------------------------------------------------------------------------------




def extra_roots(layout: str, options: Mapping[str, Any]) -> tuple[Path, ...]:
    """The folders besides the root that ``layout``'s videos may lie in, from its ``options``."""
    spec = LAYOUTS.get(layout)
    if spec is None:
        return ()
    return tuple(Path(options[key]) for key in spec.extra_root_options if options.get(key))


# ---- reading list files with line numbers ---------------------------------------------------------------


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 list file (line ends and a leading BOM removed); ``LayoutError`` if it is
    missing, too big or not UTF-8 text. Line ``n`` of the file is ``lines[n - 1]``."""
    if not path.is_file():
        raise LayoutError(f"{path}: not found ({what})")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_LIST_BYTES + 1)
    except OSError as err:
        if is_environment_fault(err):
            raise
        raise LayoutError(f"{path}: cannot be read ({what}): {err.strerror or err}") from err
    if len(data) > MAX_LIST_BYTES:
        raise LayoutError(f"{path}: over the {MAX_LIST_BYTES} byte limit ({what})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise LayoutError(f"{path}:{line}: not UTF-8 text ({what})") from err
    # split on \n only (str.splitlines also splits on \f, \x1c, \u2028...): line n is what an editor shows
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_csv_rows(path: Path, what: str, header: Sequence[str]) -> list[tuple[int, dict[str, str] | str]]:
    """The records of a CSV list file as ``(line, {column: value})``, or ``(line, why it is malformed)``
    for a record with the wrong number of fields. The header must name ``header`` (other columns are
    ignored); a missing file or header, or broken quoting, is a ``LayoutError``."""
    lines = read_text_lines(path, what)
    reader = csv.reader(io.StringIO("\n".join(lines) + "\n", newline=""), strict=True)
    records: list[tuple[int, dict[str, str] | str]] = []
    try:
        names = next(reader, None)
        if names is None or any(column not in names for column in header):
            raise LayoutError(f"{path}:1: the header must name the columns {','.join(header)} ({what}), got {names}")
        for values in reader:
            if not values:
                continue  # a blank line
            if len(values) != len(names):
                records.append((reader.line_num, f"malformed line: {len(values)} fields, the header has {len(names)}"))
                continue
            records.append((reader.line_num, dict(zip(names, values, strict=True))))
    except csv.Error as err:
        raise LayoutError(f"{path}:{reader.line_num}: not valid CSV ({what}): {err}") from err
    return records


_WS = re.compile(r"[ \t\n\r]*")


def read_json_entries(path: Path, what: str) -> tuple[Any, list[tuple[int, str | None, Any]]]:
    """A JSON list file and its top-level entries with the line each starts on.

    Returns ``(document, [(line, key, value)])``: for a top-level object each key and its value, for a
    top-level array each element (key None), for anything else no entries. The file is first read by
    ``read_json_limited`` (size limit, duplicate keys refused, strict JSON), so any syntax error is a
    ``LayoutError`` naming the line.
    """
    document = read_json_limited(path, MAX_LIST_BYTES, LayoutError, f" ({what})")
    if not isinstance(document, dict | list):
        return document, []
    text = path.read_text(encoding="utf-8")
    try:
        return document, _top_level_entries(text)
    except (json.JSONDecodeError, IndexError) as err:  # valid a moment ago: it changed while being read
        raise LayoutError(f"{path}: changed while being read ({what})") from err


def _skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # [ \t\n\r]* always matches


def _top_level_entries(text: str) -> list[tuple[int, str | None, Any]]:
    """``(line, key, value)`` of each entry of the top-level object or array of a valid JSON ``text``."""
    decoder = json.JSONDecoder()
    entries: list[tuple[int, str | None, Any]] = []
    pos = _skip_ws(text, 0)
    closer = "}" if text[pos] == "{" else "]"
    pos = _skip_ws(text, pos + 1)
    line, counted = 1, 0
    while text[pos] != closer:
        line += text.count("\n", counted, pos)  # counted from the last entry on: linear in the file
        counted = pos
        key = None
        if closer == "}":
            key, pos = decoder.raw_decode(text, pos)
            pos = _skip_ws(text, _skip_ws(text, pos) + 1)  # past the ':'
        value, pos = decoder.raw_decode(text, pos)
        entries.append((line, key, value))
        pos = _skip_ws(text, pos)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    return entries


# ---- the scan: candidate rows in, checked rows and problems out ----------------------------------------


def list_videos(folder: Path) -> list[Path]:
    """The ``*.mp4`` entries directly in ``folder`` (files and links, dangling ones too), sorted by name;
    [] when the folder does not exist. Hidden names are skipped: ``._x.mp4`` is the AppleDouble
    companion a copy from macOS leaves beside ``x.mp4``, not a video."""
    if not folder.is_dir():
        return []
    try:
        with os.scandir(folder) as entries:
            names = sorted(
                e.name for e in entries if e.name.endswith(".mp4") and not e.name.startswith(".") and not e.is_dir()
            )
    except OSError as err:
        if is_environment_fault(err):
            raise
        raise LayoutError(f"{folder}: cannot be listed: {err.strerror or err}") from err
    return [folder / name for name in names]


def videos_folder(folder: Path) -> Path:
    """``folder/videos`` when it exists (the layout as downloaded, or the usual extra level), else ``folder``."""
    nested = folder / "videos"
    return nested if nested.is_dir() else folder


@dataclass
class Scan:
    """What a layout's scan works with: the root, its options, and where rows and problems go."""

    root: Path
    options: dict[str, Any]
    extra_roots: tuple[Path, ...] = ()
    rows: dict[str, IndexRow] = field(default_factory=dict)
    where: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # video -> where it was listed
    problems: list[Problem] = field(default_factory=list)

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, POSIX, lexically (``../ffpp/x`` for a file beside it): how the
        index and the problems name a file, whatever the machine."""
        return PurePosixPath(os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))).as_posix()

    def refuse(self, file: str, line: int | None, reason: str, video: str = "") -> None:
        self.problems.append(Problem(file=file, line=line, reason=reason, video=video))

    def add(self, row: IndexRow, file: str, line: int | None = None) -> bool:
        """Keep ``row`` (read at ``file:line``) if its key, path and mask pass; else record why not."""
        reason = self._row_problem(row)
        if reason is None and row.video in self.rows:
            first = self.where[row.video]
            reason = f"duplicate video key {row.video!r} (also {_at(*first)})"
        if reason is not None:
            self.refuse(file, line, reason, row.video)
            return False
        self.rows[row.video] = row
        self.where[row.video] = (file, line)
        return True

    def _row_problem(self, row: IndexRow) -> str | None:
        if not is_video_name(row.video):
            return f"video key {row.video!r} is not a plain .mp4 file name"
        if row.identity and not is_identity(row.identity):
            return f"identity {row.identity!r} is not a short plain label"
        for what, relative in (("video", row.path), ("mask", row.mask)):
            if what == "mask" and not relative:
                continue
            resolved, reason = path_problem(self.root, relative, self.extra_roots)
            if reason is not None:
                return reason if what == "video" else f"mask {reason}"
            if not resolved.is_file():  # type: ignore[union-attr]
                return f"{what} {relative} is missing"
        return None


def _at(file: str, line: int | None) -> str:
    return f"{file}:{line}" if line is not None else file


# ---- ingest -------------------------------------------------------------------------------------------


def _options(name: str, layout: Layout, given: Mapping[str, Any]) -> dict[str, Any]:
    accepted = layout.accepted()
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ParamsError(
            f"data.datasets.{name}: option(s) {', '.join(unknown)} not accepted by layout {layout.name!r} "
            f"(it takes: {', '.join(sorted(accepted))})"
        )
    options = {**accepted, **{key: value for key, value in given.items() if value is not None}}
    missing = sorted(key for key, value in options.items() if value is REQUIRED)
    if missing:
        raise ParamsError(f"data.datasets.{name}: layout {layout.name!r} needs option(s) {', '.join(missing)}")
    identities = options[IDENTITIES_OPTION]
    if identities is not None and not (isinstance(identities, str | Path) and str(identities)):
        raise ParamsError(f"data.datasets.{name}.{IDENTITIES_OPTION}: a CSV file path, got {identities!r}")
    try:
        layout.check_options(options)
    except ParamsError as err:
        raise ParamsError(f"data.datasets.{name}: {err}") from err
    return options


def ingest(name: str, layout: str, root: Path, options: Mapping[str, Any]) -> DatasetIndex:
    """List the videos of the dataset at ``root`` in ``layout`` as its canonical index.

    ``options`` are the layout's options (the params entry without ``layout`` and ``root``); paths in
    them are relative to the working directory, like ``root``. ``ParamsError``: an unknown layout, an
    option it does not take, a bad option value. ``LayoutError``: a missing root, a root not of the
    layout, a missing or unreadable list file. Everything else is refused entry by entry.
    """
    spec = LAYOUTS.get(layout)
    if spec is None:
        known = ", ".join(sorted(LAYOUTS))
        raise ParamsError(f"data.datasets.{name}.layout: unknown layout {layout!r} (known: {known})")
    opts = _options(name, spec, options)
    root = Path(root)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise LayoutError(f"dataset {name!r}: root {root} {what} (set data.datasets.{name}.root to the {layout} root)")
    extras = tuple(Path(opts[key]) for key in spec.extra_root_options if opts.get(key))
    for key, extra in zip(spec.extra_root_options, extras, strict=True):
        if not extra.is_dir():
            raise LayoutError(f"dataset {name!r}: option {key} = {extra} is not a folder")
    scan = Scan(root=root, options=opts, extra_roots=extras)
    spec.scan(scan)
    _refuse_orphan_fakes(scan)
    if opts[IDENTITIES_OPTION] is not None:
        _apply_identities(scan, Path(opts[IDENTITIES_OPTION]))
    rows = tuple(sorted(scan.rows.values(), key=lambda row: row.video))
    problems = tuple(sorted(scan.problems, key=lambda p: (p.file, p.line or 0, p.video, p.reason)))
    return DatasetIndex(name=name, layout=layout, rows=rows, problems=problems)


def _refuse_orphan_fakes(scan: Scan) -> None:
    """A FAKE whose named original is not a kept REAL row is refused: every original names a REAL row."""
    for video, row in list(scan.rows.items()):
        if row.label != FAKE or not row.original:
            continue
        original = scan.rows.get(row.original)
        if original is None or original.label != REAL:
            del scan.rows[video]
            file, line = scan.where.pop(video)
            reason = f"fake whose source is absent: original {row.original!r} is not a REAL video of the index"
            scan.refuse(file, line, reason, video)


def _apply_identities(scan: Scan, path: Path) -> None:
    """Override identities from a CSV ``path,identity`` (paths relative to the root, as in the index)."""
    shown = scan.rel(path)
    by_path = {row.path: video for video, row in scan.rows.items()}
    seen: dict[str, int] = {}
    for line, record in read_csv_rows(path, "identities map", ["path", "identity"]):
        if isinstance(record, str):
            scan.refuse(shown, line, record)
            continue
        relative, identity = record["path"].strip(), record["identity"].strip()
        if relative in seen:
            scan.refuse(shown, line, f"path {relative!r} listed twice (first on line {seen[relative]})")
            continue
        seen[relative] = line
        if not is_identity(identity):
            scan.refuse(shown, line, f"identity {identity!r} is not a short plain label (letters, digits, _ - .)")
            continue
        video = by_path.get(relative)
        if video is None:
            scan.refuse(shown, line, f"path {relative!r} is not a video of the index")
            continue
        scan.rows[video] = replace(scan.rows[video], identity=identity)


# ---- the index CSV ----------------------------------------------------------------------------------------


def _csv_bytes(rows: Sequence[IndexRow]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(INDEX_COLUMNS)
    writer.writerows(row.values() for row in rows)
    return out.getvalue().encode("utf-8")


def write_index(index: DatasetIndex, path: Path) -> None:
    """Write ``index`` as CSV (header, rows sorted by video, ``\\n`` line ends), atomically.

    The rows are validated as ``read_index_csv`` would: an invalid index is a bug, not written.
    """
    rows = sorted(index.rows, key=lambda row: row.video)
    problems = _index_problems([(n + 2, row) for n, row in enumerate(rows)])
    if problems:
        raise ValueError(f"refusing to write an invalid index for {index.name}: {problems[0]}")
    write_bytes_atomic(path, _csv_bytes(rows))


def read_index_csv(path: Path) -> list[IndexRow]:
    """Read a canonical index, in file order; ``InputError`` naming ``file:line`` for the first problem:
    wrong columns, a value outside its vocabulary, a duplicate video or path, an original that does
    not name a REAL row."""
    path = Path(path)
    try:
        lines = read_text_lines(path, "canonical index")
    except LayoutError as err:
        raise InputError(str(err)) from err
    reader = csv.reader(io.StringIO("\n".join(lines) + "\n", newline=""), strict=True)
    numbered: list[tuple[int, IndexRow]] = []
    try:
        header = next(reader, None)
        if header != INDEX_COLUMNS:
            raise InputError(f"{path}:1: the header must be {','.join(INDEX_COLUMNS)}, got {header}")
        for values in reader:
            if len(values) != len(INDEX_COLUMNS):
                raise InputError(f"{path}:{reader.line_num}: {len(values)} fields, expected {len(INDEX_COLUMNS)}")
            numbered.append((reader.line_num, IndexRow(*values)))
    except csv.Error as err:
        raise InputError(f"{path}:{reader.line_num}: not valid CSV: {err}") from err
    problems = _index_problems(numbered)
    if problems:
        line, reason = problems[0]
        raise InputError(f"{path}:{line}: {reason}")
    return [row for _, row in numbered]


def load_dataset(index_csv: Path, root: Path, name: str, extra_roots: tuple[Path, ...] = ()) -> PartMetadata:
    """A dataset's canonical index (written by the ingest stage) as the stages' view of its videos.

    The index was validated when it was written; ``read_index_csv`` checks it again (columns,
    vocabularies, originals naming REAL rows), and every path is checked again when opened.
    """
    entries = {
        row.video: VideoEntry(
            name=row.video,
            label=row.label,
            original=row.original or None,
            split=row.split,
            part=name,
            identity=row.identity,
            path=row.path,
            method=row.method,
            compression=row.compression,
            mask=row.mask,
        )
        for row in sorted(read_index_csv(Path(index_csv)), key=lambda r: r.video)
    }
    return PartMetadata(part=name, folder=Path(root), entries=entries, refused={}, extra_roots=tuple(extra_roots))


def _row_value_problem(row: IndexRow) -> str | None:
    if not is_video_name(row.video):
        return f"video {row.video!r} is not a plain .mp4 file name"
    if not is_relative_posix(row.path):
        return f"path {row.path!r} is not a relative POSIX path"
    if row.label not in LABELS:
        return f"label {row.label!r} is not one of {', '.join(LABELS)}"
    if row.compression not in INDEX_COMPRESSIONS:
        return f"compression {row.compression!r} is not one of {', '.join(COMPRESSIONS)} or empty"
    if row.split not in INDEX_SPLITS:
        return f"split {row.split!r} is not one of {', '.join(SPLITS)} or empty"
    if row.identity and not is_identity(row.identity):
        return f"identity {row.identity!r} is not a short plain label"
    if row.mask and not is_relative_posix(row.mask):
        return f"mask {row.mask!r} is not a relative POSIX path"
    if row.label == REAL and (row.original or row.method):
        return "a REAL has no original and no method"
    return None


def _index_problems(numbered: Sequence[tuple[int, IndexRow]]) -> list[tuple[int, str]]:
    """``(line, reason)`` for every invalid row of an index, in line order."""
    problems: list[tuple[int, str]] = []
    videos: dict[str, tuple[int, IndexRow]] = {}
    paths: dict[str, int] = {}
    for line, row in numbered:
        reason = _row_value_problem(row)
        if reason is None and row.video in videos:
            reason = f"video {row.video!r} repeated (first on line {videos[row.video][0]})"
        if reason is None and row.path in paths:
            reason = f"path {row.path!r} repeated (first on line {paths[row.path]})"
        if reason is not None:
            problems.append((line, reason))
            continue
        videos[row.video] = (line, row)
        paths[row.path] = line
    for line, row in numbered:
        if row.label == FAKE and row.original:
            original = videos.get(row.original)
            if original is None or original[1].label != REAL:
                problems.append((line, f"original {row.original!r} is not a REAL row of the index"))
    return sorted(problems)
