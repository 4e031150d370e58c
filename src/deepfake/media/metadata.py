"""The stages' view of a dataset's videos (``PartMetadata``), DFDC metadata.json, and safe paths.

A malformed file is a clear error (the part cannot be processed without it): missing, not JSON,
a duplicate key anywhere (never last-one-wins), or the wrong top-level shape. A malformed entry (a
name escaping the part folder, an unknown label, a wrong type) is refused on its own and recorded, so
one bad line never loses the rest of the part.

Paths never leave the part folder. An entry's name must be a plain ``.mp4`` file name (no folder, no
``..``), and the file it names, once every symbolic link is followed, must be a file directly inside the
(resolved) part folder. A symlink that stays inside the part folder (``b.mp4 -> a.mp4``) is accepted;
one that leads out of it (``link.mp4 -> ../../elsewhere/x.mp4``, a link to a folder elsewhere), or that
cannot be resolved (a loop), refuses that entry. The check runs when the metadata is loaded and again
in ``PartMetadata.video_path``, the only way stages get a video's path.

An indexed path (the canonical index of ``deepfake.media.layouts``) may name a file below the root, or
through ``..`` in a declared extra root; ``path_problem`` is the one check of it, used by the layouts at
ingest and by ``resolve_inside`` here. The vocabulary (labels, video names, identities) is
``deepfake.core.vocabulary``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deepfake.core.errors import InputError, is_environment_fault
from deepfake.core.fileio import read_json_limited
from deepfake.core.vocabulary import FAKE, LABELS, TRAIN, is_identity, is_video_name

METADATA_NAME = "metadata.json"
MAX_METADATA_BYTES = 64 * 1024 * 1024  # DFDC's largest metadata.json is ~0.3 MB
# An optional label of the person (or cluster of look-alikes) whose face a video shows; DFDC's own
# metadata has none. Folds keep videos sharing an identity in one fold (see deepfake.modeling.splits).
IDENTITY_KEY = "identity"


class MetadataError(InputError):
    """metadata.json cannot be used at all (missing, not JSON, duplicate keys, wrong top-level shape),
    or a name that ``safe_join`` refuses."""


@dataclass(frozen=True)
class VideoEntry:
    name: str  # file name inside the part folder, e.g. "abc.mp4"
    label: str  # REAL or FAKE
    original: str | None  # for a FAKE: the REAL video it was made from
    split: str
    part: str  # the dataset the video belongs to (a DFDC part is one dataset)
    identity: str = ""  # optional: whose face the video shows (a FAKE: the donor's); "" when unknown
    path: str = ""  # canonical index: the file relative to the dataset root ("" = ``name`` in the folder)
    method: str = ""  # manipulation method of a FAKE ("" when the layout does not say)
    compression: str = ""
    mask: str = ""  # manipulation-mask video relative to the dataset root (FF++), or ""

    @property
    def is_fake(self) -> bool:
        return self.label == FAKE

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def source(self) -> str:
        """The real video whose face boxes this video uses: itself for a REAL, and for a FAKE
        whose original the layout does not name (DFDC test, DFDC preview)."""
        return self.original if self.is_fake and self.original else self.name


@dataclass(frozen=True)
class PartMetadata:
    """The videos of one dataset: a DFDC part's metadata.json, or a canonical index
    (``deepfake.media.layouts.load_dataset``)."""

    part: str  # the dataset's name
    folder: Path  # the dataset root
    entries: dict[str, VideoEntry]  # by name, sorted
    refused: dict[str, str]  # entry name -> reason
    extra_roots: tuple[Path, ...] = ()  # folders besides ``folder`` that indexed videos may lie in

    @property
    def reals(self) -> list[VideoEntry]:
        return [e for e in self.entries.values() if not e.is_fake]

    @property
    def fakes(self) -> list[VideoEntry]:
        return [e for e in self.entries.values() if e.is_fake]

    @property
    def detected(self) -> list[VideoEntry]:
        """The videos the face detector runs on: every REAL, and every FAKE without a named original."""
        return [e for e in self.entries.values() if e.source == e.name]

    def video_path(self, name: str) -> Path:
        """The video's file, checked again: a link swapped in since loading is refused."""
        entry = self.entries[name]
        if not entry.path:
            return safe_join(self.folder, name)
        return resolve_inside(self.folder, entry.path, self.extra_roots)

    def mask_path(self, name: str) -> Path | None:
        """The manipulation-mask video of a FAKE, when the dataset ships one (FF++)."""
        entry = self.entries[name]
        return resolve_inside(self.folder, entry.mask, self.extra_roots) if entry.mask else None


def is_relative_posix(path: str) -> bool:
    """Whether ``path`` is a non-empty relative POSIX path (no backslash, no NUL)."""
    return bool(path) and "\\" not in path and "\x00" not in path and not PurePosixPath(path).is_absolute()


def _lexical(root: Path, relative: str) -> Path:
    """``root/relative`` made absolute with ``..`` removed by name, before any link is followed."""
    return Path(os.path.normpath(os.path.join(os.path.abspath(root), relative)))


def _inside(path: Path, homes: Iterable[Path]) -> bool:
    return any(path == home or path.is_relative_to(home) for home in homes)


def path_problem(root: Path, relative: str, extra_roots: Sequence[Path] = ()) -> tuple[Path | None, str | None]:
    """Resolve ``relative`` under ``root``: ``(resolved path, None)``, or ``(None, why it is refused)``.

    Refused: anything but a relative POSIX path; ``..`` that does not lead into an extra root; a path
    that, once every link is followed, lies outside the root and every extra root; an unresolvable
    link (a loop). Environment faults (EACCES, EIO, ...) propagate. Whether the file exists is left to
    the caller.
    """
    if not is_relative_posix(relative):
        return None, f"path {relative!r} is not a relative POSIX path"
    lexical = _lexical(root, relative)
    extras = [Path(os.path.abspath(extra)) for extra in extra_roots]
    if ".." in PurePosixPath(relative).parts and not _inside(lexical, extras):
        return None, f"path {relative!r} escapes the dataset root"
    if not _inside(lexical, [Path(os.path.abspath(root)), *extras]):
        return None, f"path {relative!r} escapes the dataset root"
    try:
        resolved = lexical.resolve()
        homes = [Path(home).resolve() for home in (root, *extra_roots)]
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        return None, f"path {relative!r} cannot be resolved (a symbolic link loop)"
    except OSError as err:
        if is_environment_fault(err):
            raise
        return None, f"path {relative!r} cannot be resolved ({err.strerror or type(err).__name__})"
    if not _inside(resolved, homes):
        return None, f"path {relative!r} resolves outside the dataset root (through a symbolic link)"
    return resolved, None


def resolve_inside(root: Path, relative: str, extra_roots: tuple[Path, ...] = ()) -> Path:
    """The file at ``relative`` under ``root``, refused (``MetadataError``) when, with ``..`` taken by name
    and then every link followed, it lies outside ``root`` and every extra root (the ingest check)."""
    _, reason = path_problem(root, relative, extra_roots)
    if reason:
        raise MetadataError(f"refused in {root}: {reason}")
    return root / relative  # as named: reports show the indexed name, not a link's target


def _escape_reason(folder: Path, name: str) -> str | None:
    """Why ``folder / name`` leaves ``folder`` once links are followed, or None if it stays inside.

    A missing file stays inside (the per-video loop records it as missing); a link whose target is
    elsewhere, present or not, leaves. Environment faults (EACCES, EIO, ...) propagate.
    """
    try:
        resolved = (folder / name).resolve()
        home = folder.resolve()
    except RuntimeError:  # Python < 3.13 reports a symlink loop this way
        return "the path cannot be resolved (a symbolic link loop)"
    except OSError as err:
        if is_environment_fault(err):
            raise
        return f"the path cannot be resolved ({err.strerror or type(err).__name__})"
    if resolved.parent != home:
        # the reason goes into reports: no absolute path, so they stay equal across machines
        return "resolves outside the part folder (through a symbolic link)"
    return None


def safe_join(folder: Path, name: str) -> Path:
    """``folder / name`` for a plain file name; refuse anything that could leave ``folder``.

    Refused: a name with a folder or ``..`` in it, and a name that is (or goes through) a symbolic
    link resolving outside ``folder``. A symlink resolving to a file directly inside ``folder`` is allowed.
    """
    if not is_video_name(name):
        raise MetadataError(f"refused file name {name!r}: not a plain .mp4 name inside {folder}")
    reason = _escape_reason(folder, name)
    if reason:
        raise MetadataError(f"refused file name {name!r}: {reason}")
    return folder / name


def _check_entry(name: object, value: object) -> str | None:
    """Return why an entry is refused, or None if it is well formed."""
    if not is_video_name(name):
        return "name is not a plain .mp4 file name inside the part folder"
    if not isinstance(value, dict):
        return f"entry must be an object, got {type(value).__name__}"
    label = value.get("label")
    if label not in LABELS:
        return f"label must be one of {LABELS}, got {label!r}"
    split = value.get("split", TRAIN)
    if not isinstance(split, str):
        return f"split must be a string, got {type(split).__name__}"
    original = value.get("original")
    if label == FAKE:
        if not is_video_name(original):
            return f"a FAKE needs 'original' as a plain .mp4 name, got {original!r}"
        if original == name:
            return "a FAKE cannot be its own original"
    elif original is not None:
        return f"a REAL must have original null, got {original!r}"
    identity = value.get(IDENTITY_KEY)
    if identity is not None and not is_identity(identity):
        return f"{IDENTITY_KEY} must be a short plain label (letters, digits, '_', '-', '.'), got {identity!r}"
    return None


def load_metadata(folder: Path | str) -> PartMetadata:
    """Read and validate ``folder/metadata.json``.

    Entries whose file resolves outside the part folder are refused (see the module docstring).
    Fakes whose original is not a valid REAL entry of the same part are refused here too, so
    every later stage can rely on ``entries[fake.original]`` existing.
    """
    folder = Path(folder)
    path = folder / METADATA_NAME
    # duplicate keys, nesting too deep and oversized integers are MetadataErrors (read_json_limited)
    raw = read_json_limited(path, MAX_METADATA_BYTES, MetadataError, f" (is {folder} a DFDC part folder?)")
    if not isinstance(raw, dict):
        raise MetadataError(f"{path}: expected an object of video name -> entry, got {type(raw).__name__}")

    refused: dict[str, str] = {}
    valid: dict[str, VideoEntry] = {}
    for name in sorted(raw, key=str):
        reason = _check_entry(name, raw[name]) or _escape_reason(folder, name)
        if reason:
            refused[str(name)] = reason
            continue
        value = raw[name]
        valid[name] = VideoEntry(
            name=name,
            label=value["label"],
            original=value.get("original"),
            split=value.get("split", TRAIN),
            part=folder.name,
            identity=value.get(IDENTITY_KEY) or "",
        )
    entries: dict[str, VideoEntry] = {}
    for name, entry in valid.items():
        if entry.is_fake:
            original = valid.get(entry.original or "")
            if original is None or original.is_fake:
                refused[name] = f"original {entry.original!r} is not a REAL video listed in this part"
                continue
        entries[name] = entry
    return PartMetadata(part=folder.name, folder=folder, entries=entries, refused=refused)
