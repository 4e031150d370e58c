"""Atomic file writes: write to a temporary name in the same folder, then rename.

An interrupted stage therefore never leaves a half-written file under its final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np


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


def read_json_limited(path: Path, max_bytes: int, error: type[Exception], missing_hint: str = "") -> Any:
    """Parse a JSON file that must exist and be at most ``max_bytes``; failures raise ``error``."""
    if not path.is_file():
        raise error(f"{path}: not found{missing_hint}")
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{path}: {size} bytes, over the {max_bytes} limit")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{path}: not valid JSON: {err}") from err


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: Path | str, obj: Any) -> None:
    """Write JSON with sorted keys so equal content gives equal bytes."""
    text = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def write_png_atomic(path: Path | str, image: np.ndarray) -> None:
    """Encode ``image`` (BGR or grey uint8) as PNG and write it atomically."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    write_bytes_atomic(path, buf.tobytes())


def write_npy_atomic(path: Path | str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


@contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty folder ``.<name>.partial`` beside ``path``; on success it replaces ``path``.

    The partial name is fixed, so a run killed midway leaves one folder that the next run clears
    instead of a growing pile of temporaries.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
