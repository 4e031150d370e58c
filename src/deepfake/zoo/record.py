"""The recorded checksums of a zoo entry's files: ``zoo/checksums/<entry>.json``, kept in git.

A publisher that gives a SHA-256 has it in params (``zoo.entries.<entry>.files[].sha256``). One that gives
none (the DFDC winner) has it recorded here by the first download, visible in review like any change;
every later download, on any machine, must produce the same bytes. The fetch stage writes the record (a
DVC output with ``cache: false`` and ``persist: true``, so DVC neither caches it nor deletes it before a
rerun); the convert stage checks the files against it again before reading them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deepfake.core.errors import InputError
from deepfake.core.fileio import read_json_limited, write_json_atomic

RECORD_FORMAT = 1
MAX_RECORD_BYTES = 1 << 20


def read_record(path: Path) -> dict[str, dict[str, str]]:
    """File name -> ``{"url", "sha256"}``; an absent record is empty (nothing downloaded yet)."""
    if not path.is_file():
        return {}
    record = read_json_limited(path, MAX_RECORD_BYTES, InputError)
    files = record.get("files") if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("url"), str)
        for v in files.values()
    ):
        raise InputError(f"{path}: not a checksum record (format {RECORD_FORMAT}, files: name -> url, sha256)")
    return files


def write_record(path: Path, entry: str, files: Mapping[str, Mapping[str, str]]) -> None:
    payload: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "entry": entry,
        "files": {name: dict(files[name]) for name in sorted(files)},
    }
    write_json_atomic(path, payload)


def expected_sha256(
    entry: str, name: str, published: str | None, record: Mapping[str, Mapping[str, str]]
) -> str | None:
    """The hash file ``name`` must have: the publisher's (params), else the recorded one, else None.

    Both present and different is a contradiction a person must resolve, never silently picked."""
    recorded = record.get(name, {}).get("sha256")
    if published and recorded and published != recorded:
        raise InputError(
            f"zoo.entries.{entry}: {name}: params give sha256 {published} but the record holds {recorded}; "
            "one of them is wrong: fix it before fetching"
        )
    return published or recorded
