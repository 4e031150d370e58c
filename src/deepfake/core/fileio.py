"""Atomic file writes: write to a temporary name in the same folder, then rename; and reading input JSON.

An interrupted stage therefore never leaves a half-written file under its final name, and a stage that
fails (a bug, a full disk) leaves its previous complete output folder in place (``atomic_dir``).
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.core.errors import is_environment_fault


def _file_mode() -> int:
    """0o666 less the process umask (read without changing it for longer than a call)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    ``suffix`` keeps the extension for writers that infer the format from the name (OpenCV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600 files; outputs get the usual umask mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def partial_writes(folder: Path | str, suffix: str) -> list[Path]:
    """The temporary files that ``atomic_path`` writes of ``*<suffix>`` files left in ``folder`` when their
    process was killed between creating and renaming them (SIGKILL, OOM killer, power loss): ``.<name>.``,
    mkstemp's eight random characters, then the suffix. A rerun that keeps the folder's other files (a
    resumed training run) removes them, or they would become part of its output."""
    pattern = re.compile(rf"\.[^/]+\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    return sorted(p for p in Path(folder).glob(f".*{suffix}") if pattern.fullmatch(p.name) and p.is_file())


def _unique_keys(path: Path, error: type[Exception]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """An ``object_pairs_hook`` that refuses a key repeated within one JSON object."""

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise error(f"{path}: duplicate key {key!r} in one JSON object (refused rather than keep one of them)")
            obj[key] = value
        return obj

    return build


def read_json_limited(path: Path, max_bytes: int, error: type[Exception], missing_hint: str = "") -> Any:
    """Parse an input JSON file that must exist and be at most ``max_bytes``; failures raise ``error``.

    Refused with ``error`` naming the file: a missing or unreadable file, one over ``max_bytes``,
    bytes that are not UTF-8 JSON, nesting deeper than the interpreter's stack, an integer over
    Python's digit limit, and a key repeated within one object (JSON leaves that undefined; Python
    would keep the last value silently). An environment fault (EACCES, EIO, ...) stays an ``OSError``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: not found{missing_hint}")
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise error(f"{path}: {size} bytes, over the {max_bytes} limit")
            data = fh.read(max_bytes + 1)
    except OSError as err:
        if is_environment_fault(err):
            raise
        raise error(f"{path}: cannot be read: {err.strerror or err}") from err
    if len(data) > max_bytes:  # grew while being read
        raise error(f"{path}: over the {max_bytes} limit")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys(path, error))
    except error:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not valid JSON: {err}") from err
    except (RecursionError, ValueError) as err:
        # json.loads raises these rather than JSONDecodeError for nesting deeper than the interpreter's
        # stack and for integers over Python's int_max_str_digits limit.
        raise error(f"{path}: not valid JSON: {type(err).__name__}: {err}") from err


def json_bytes(obj: Any) -> bytes:
    """JSON with sorted keys so equal content gives equal bytes."""
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


# Set by capture_writes: the writes of this thread's current task, path -> bytes, kept instead of written.
_captured: ContextVar[dict[Path, bytes] | None] = ContextVar("deepfake_captured_writes", default=None)


@contextmanager
def capture_writes() -> Iterator[dict[Path, bytes]]:
    """Within the block, this thread's writes through this module are kept in memory, path -> bytes.

    A task on a remote Dask worker runs in this block and returns the files with its result; the stage
    process writes them (``write_captured``) into its own temporary folder. Per-video tasks write only
    inside their stage's private temporary folder (``atomic_dir`` / ``StageReport.outputs``).
    """
    files: dict[Path, bytes] = {}
    token = _captured.set(files)
    try:
        yield files
    finally:
        _captured.reset(token)


def _keep_captured(path: Path | str, data: bytes) -> bool:
    files = _captured.get()
    if files is None:
        return False
    files[Path(path)] = data
    return True


def write_captured(files: Mapping[Path, bytes]) -> None:
    """Write the files a remote task captured, in place (they lie in the stage's private temporary folder)."""
    for path, data in files.items():
        _write_in_place(path, data)


def _write_in_place(path: Path | str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # mode 0o666 less the umask, as _file_mode gives atomic writes
        fh.write(data)


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    if _keep_captured(path, data):
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON ``null``), recursively."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json_atomic(path: Path | str, obj: Any) -> None:
    """Write JSON with sorted keys so equal content gives equal bytes."""
    write_bytes_atomic(path, json_bytes(obj))


def png_bytes(image: np.ndarray, path: Path | str = "") -> bytes:
    """``image`` (BGR or grey uint8) as PNG, with OpenCV's default settings (those of ``cv2.imwrite``)."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    return buf.tobytes()


def write_png_atomic(path: Path | str, image: np.ndarray) -> None:
    """Encode ``image`` (BGR or grey uint8) as PNG and write it atomically."""
    write_bytes_atomic(path, png_bytes(image, path))


def write_png(path: Path | str, image: np.ndarray) -> None:
    """Encode ``image`` as PNG and write it in place, creating its folder: for files inside a stage's
    private temporary folder only, which ``atomic_dir`` swaps in whole (a file cut short by a failure
    goes with the folder). No temporary name, chmod or rename per file: the crops stage writes
    thousands. A full disk or a read-only folder stays an ``OSError`` that stops the stage."""
    data = png_bytes(image, path)
    if not _keep_captured(path, data):
        _write_in_place(path, data)


def write_npy_atomic(path: Path | str, array: np.ndarray) -> None:
    if _captured.get() is not None:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        _keep_captured(path, buffer.getvalue())
        return
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


@contextmanager
def atomic_dir(path: Path | str, companions: Callable[[], Mapping[Path | str, bytes]] | None = None) -> Iterator[Path]:
    """Yield an empty folder ``.<name>.partial`` beside ``path``; on success it replaces ``path``.

    All or nothing: when the body raises, or the final swap fails (a full disk, a read-only folder),
    the exception propagates, the previous complete ``path`` is left as it was, and the partial folder
    is removed. The previous folder is moved aside to ``.<name>.previous`` (a rename, no copy) while
    the new one is moved in, put back if that fails, and deleted once the new one is in place.

    ``companions``, called once the body has succeeded, gives files outside the folder (a stage
    report: ``StageReport.outputs``) that are committed with it: written to temporary names first,
    renamed into place after the folder; if any step fails, the previous folder and the previous
    files are restored.

    The temporary names are fixed, so a run killed midway leaves at most one of each, which the next
    run clears (or, for a ``.previous`` folder whose ``path`` is gone, puts back).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial"
    previous = path.parent / f".{path.name}.previous"
    _recover_previous(path, previous)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        _commit_dir(path, tmp, previous, companions() if companions is not None else {})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # never hide the error that is propagating
        raise


def _recover_previous(path: Path, previous: Path) -> None:
    """Finish what a run killed during ``_commit_dir`` left: put the old folder back, or drop it."""
    if not previous.exists():
        return
    if path.exists():
        shutil.rmtree(previous)
    else:
        os.replace(previous, path)


def _commit_dir(path: Path, tmp: Path, previous: Path, companions: Mapping[Path | str, bytes]) -> None:
    staged: list[tuple[Path, Path]] = []  # (temporary file, final file)
    placed: list[tuple[Path, Path | None]] = []  # (final file, a link to its previous content or None)
    had_previous = False
    try:
        for final, data in companions.items():
            final = Path(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=final.suffix, dir=final.parent)
            staged.append((Path(name), final))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(name, _file_mode())
        had_previous = path.exists() or path.is_symlink()
        if had_previous:
            os.replace(path, previous)
        try:
            os.replace(tmp, path)
            for temp, final in staged:
                placed.append((final, _keep_copy(final) if final.exists() else None))
                os.replace(temp, final)
        except BaseException:
            # best effort, each step on its own; the error that stopped the commit is the one raised.
            # An old folder that cannot be put back stays at .previous, and the next run restores it.
            for final, copy in reversed(placed):
                with suppress(OSError):
                    if copy is None:
                        final.unlink(missing_ok=True)
                    else:
                        os.replace(copy, final)
                        copy.unlink(missing_ok=True)  # rename is a no-op when both name one file
            placed.clear()  # a previous file that could not be put back keeps its hidden copy
            if path.exists() and not tmp.exists():
                with suppress(OSError):
                    os.replace(path, tmp)  # the new folder goes back to partial; atomic_dir removes it
            if had_previous and not path.exists():
                with suppress(OSError):
                    os.replace(previous, path)
            raise
    finally:
        for temp, _ in staged:
            with suppress(OSError):
                temp.unlink(missing_ok=True)
        for _, copy in placed:
            if copy is not None:
                with suppress(OSError):
                    copy.unlink(missing_ok=True)
    if had_previous:
        shutil.rmtree(previous, ignore_errors=True)  # the next run clears what is left (_recover_previous)


def _keep_copy(final: Path) -> Path:
    """A second name for ``final``'s current content (a hard link: no data is copied)."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".previous", dir=final.parent)
    os.close(fd)
    os.unlink(name)
    try:
        os.link(final, name)
    except OSError:  # a file system without hard links
        shutil.copy2(final, name)
    return Path(name)
