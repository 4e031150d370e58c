"""Zoo stage fetch: one published detector's files, downloaded, verified and recorded.

``zoo_fetch@<entry>`` (zoo/dvc.yaml) downloads every file of ``zoo.entries.<entry>`` into
``models/zoo/<entry>/download`` with ``deepfake.zoo.download`` (streamed, resumed, redirects followed,
timeouts and retries, SHA-256 checked). A file's hash must equal the publisher's (params) or, for a
publisher that gives none, the one the first download recorded in ``zoo/checksums/<entry>.json``; the
first download of such a file records it there. A file whose bytes differ is refused in one line naming
the URL and both hashes, and nothing already in place is replaced. The entry's license is logged when
its files are fetched.

A file that ``dvc pull`` already fetched from the publisher (``models/zoo/<entry>/pulled``;
``deepfake.zoo.imports``) is taken from there, after the same check, instead of being downloaded again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake.core.fileio import write_json_atomic
from deepfake.core.params import Params, ZooEntryParams
from deepfake.zoo.download import download
from deepfake.zoo.imports import adopt
from deepfake.zoo.record import expected_sha256, read_record, write_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    entry: str
    spec: ZooEntryParams
    timeout_s: float
    retries: int
    progress: bool = True

    @classmethod
    def from_params(cls, params: Params, entry: str) -> Config:
        from deepfake.core.errors import ParamsError

        if entry not in params.zoo.entries:
            raise ParamsError(f"unknown zoo entry {entry!r}; zoo.entries has {', '.join(params.zoo.entries)}")
        return cls(entry, params.zoo.entries[entry], params.zoo.timeout_s, params.zoo.retries)


@dataclass(frozen=True)
class Paths:
    out: Path  # models/zoo/<entry>/download
    record: Path  # zoo/checksums/<entry>.json
    report: Path
    pulled: Path | None = None  # models/zoo/<entry>/pulled: what `dvc pull` fetched, if it ran


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Fetch every file of the entry; returns (and writes) the report."""
    spec = config.spec
    logger.info("%s: %s, license %s (%s)", config.entry, spec.title, spec.license, spec.source)
    paths.out.mkdir(parents=True, exist_ok=True)
    wanted = {f.name for f in spec.files}
    for stray in paths.out.iterdir():  # files the entry no longer lists must not ride along in the output
        if stray.is_file() and stray.name not in wanted and not stray.name.endswith(".partial"):
            stray.unlink()
    record = read_record(paths.record)
    files: dict[str, dict[str, Any]] = {}
    for file in spec.files:
        expected = expected_sha256(config.entry, file.name, file.sha256, record)
        started = time.perf_counter()
        dest = paths.out / file.name
        pulled = paths.pulled / file.name if paths.pulled is not None else None
        if pulled is not None and pulled.is_file() and not dest.exists():
            received = adopt(pulled, dest, file.url, expected)
            source = "dvc pull"
        else:
            received = download(
                file.url, dest, expected, timeout=config.timeout_s, retries=config.retries, progress=config.progress
            )
            source = "download"
        if expected is None:
            logger.info("%s: no published checksum; recorded sha256 %s in %s", file.name, received, paths.record)
            record = {**record, file.name: {"url": file.url, "sha256": received}}
            write_record(paths.record, config.entry, record)
        files[file.name] = {
            "sha256": received,
            "verified_against": "params" if file.sha256 else ("record" if expected else "recorded now"),
            "source": source,
            "bytes": dest.stat().st_size,
            "seconds": round(time.perf_counter() - started, 2),
        }
    if not paths.record.is_file():  # every file published its hash: the record still lists them, for review
        write_record(
            paths.record, config.entry, {f.name: {"url": f.url, "sha256": files[f.name]["sha256"]} for f in spec.files}
        )
    report = {"entry": config.entry, "license": spec.license, "source": spec.source, "files": files}
    write_json_atomic(paths.report, report)
    return report
