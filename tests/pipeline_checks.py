"""What the end-to-end modules share: hashes and reports of a reproduced repository, git and HTTP helpers.

The repository itself is built once per test run by the ``pipeline_build`` fixture (tests/conftest.py);
each end-to-end module works on its own copy of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from tests.conftest import run


def out_hashes(repo: Path) -> dict[str, str]:
    """md5 of every cached output in dvc.lock (reports hold wall-clock seconds, so they are left out)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if not out["path"].startswith("metrics/")
    }


TIMING = {"seconds", "data_share"}  # wall-clock fields in the reports: the only ones allowed to differ
MODEL_STAGES = ("train", "train_seed", "export")  # what `dvc pull` fetches for `deepfake predict`


def without_timing(value: object) -> object:
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def git_commit(path: Path, env: dict[str, str], message: str) -> None:
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-q", "--allow-empty", "-m", message], path, env)


def files_of(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@contextmanager
def http_remote(directory: Path) -> Iterator[str]:
    """Serve ``directory`` read-only over HTTP on 127.0.0.1, as a published DVC remote would be."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reports(path: Path) -> dict[str, object]:
    """Every stage report and training metric, wall-clock fields left out."""
    return {
        str(p.relative_to(path)): without_timing(json.loads(p.read_text()))
        for p in sorted((path / "metrics").rglob("*.json"))
    }
