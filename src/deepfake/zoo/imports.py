"""`dvc pull` for the zoo: one `dvc import-url --no-download` stage per published file.

A DVC remote is a content-addressed store that DVC itself filled; a publisher's release page is not one.
DVC's route for a file that lives elsewhere is an import stage (``<file>.dvc``) that records the URL with
the server's ETag and size: ``dvc pull`` then downloads every such file from its publisher, following
redirects, as long as the server still answers with the recorded ETag (a changed publication is not
fetched, ``dvc update`` shows it). DVC 3.67 fetches nothing for a server that sends no ETag or
Content-MD5 (treeverse/dvc#10594): such an entry is fetched by ``zoo_fetch`` only.

Writing these stages asks each server for its ETag, so it needs the network once, like a first download:

    python scripts/zoo_dvc_imports.py            # writes models/zoo/<entry>/pulled/<file>.dvc, then commit them

``dvc pull`` puts the files in ``models/zoo/<entry>/pulled/``; ``zoo_fetch@<entry>`` takes a pulled file
instead of downloading it again once its SHA-256 matches the published or recorded one (``adopt``), so
``dvc pull && dvc repro zoo/dvc.yaml`` downloads each file once and verifies it before anything reads it.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from deepfake.core.errors import InputError, one_line
from deepfake.core.params import Params
from deepfake.zoo.download import ChecksumMismatch, partial_path, sha256_of, verify_recorded

logger = logging.getLogger(__name__)

PULLED_DIR = "pulled"


@dataclass(frozen=True)
class ImportSpec:
    """One published file and where `dvc pull` puts it (relative to the repository root)."""

    entry: str
    name: str
    url: str
    out: Path


def pulled_dir(models_root: Path, entry: str) -> Path:
    """Where `dvc pull` leaves an entry's files: ``<models_root>/<entry>/pulled`` (beside ``download``)."""
    return models_root / entry / PULLED_DIR


def import_specs(params: Params, models_root: Path, entries: list[str] | None = None) -> list[ImportSpec]:
    """Every file of the named zoo entries (all by default), in params order."""
    chosen = list(params.zoo.entries) if entries is None else entries
    unknown = [e for e in chosen if e not in params.zoo.entries]
    if unknown:
        raise InputError(f"unknown zoo entries {unknown}; zoo.entries has {', '.join(params.zoo.entries)}")
    return [
        ImportSpec(entry, f.name, f.url, pulled_dir(models_root, entry) / f.name)
        for entry in chosen
        for f in params.zoo.entries[entry].files
    ]


def write_import_stages(repo_root: Path, specs: list[ImportSpec]) -> list[Path]:
    """Write (or rewrite) one frozen ``dvc import-url --no-download`` stage per file; returns the .dvc paths.

    Nothing is downloaded: DVC asks each server for the file's ETag and size. A server that cannot be
    reached, or answers an error, stops with one line naming the URL."""
    from dvc.repo import Repo

    written: list[Path] = []
    with Repo(str(repo_root)) as repo:
        for spec in specs:
            (repo_root / spec.out).parent.mkdir(parents=True, exist_ok=True)
            try:
                repo.imp_url(spec.url, out=str((repo_root / spec.out).resolve()), no_download=True, force=True)
            except Exception as err:  # DVC wraps network and HTTP faults in many types; all end the same way
                raise InputError(f"cannot record {spec.url} for dvc pull: {one_line(err)}") from err
            written.append(spec.out.with_name(spec.out.name + ".dvc"))
            logger.info("%s: %s -> %s", spec.entry, spec.url, written[-1])
    return written


def adopt(pulled: Path, dest: Path, url: str, expected: str | None) -> str:
    """Put a file `dvc pull` fetched at ``dest`` (hard link, else copy) once its SHA-256 is right.

    ``expected`` None (no published or recorded hash) makes this the first download, whose hash the
    caller records. A mismatch is refused in one line naming the URL and both hashes, and ``dest`` is
    left as it was. Returns the SHA-256."""
    received = sha256_of(pulled)
    try:
        verify_recorded(url, expected, received)
    except ChecksumMismatch as err:
        raise ChecksumMismatch(f"{err} (the file dvc pull left in {pulled})") from None
    staging = partial_path(dest)
    staging.unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(pulled, staging)
    except OSError:  # another file system, or links not allowed: a copy costs disk, not correctness
        shutil.copyfile(pulled, staging)
    os.replace(staging, dest)
    return received
