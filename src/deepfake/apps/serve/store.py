"""The job store: every analysis as one row of a SQLite database (WAL), its files under one folder.

```
<serve.data>/
  jobs.sqlite3             analyses: status, step, progress, attempts, the predict record (JSON), errors
  uploads/<id>.video       the uploaded bytes (never named after the client's file name)
  results/<id>/            montage.png, overlay.mp4 (deepfake explain)
```
The server process and every worker process open their own connection; SQLite's locking makes a
claim (queued -> running) atomic, so two workers never take the same job. Nothing about a job lives
only in memory: a server killed at any point restarts from this file (``recover``).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUSES = ("queued", "running", "done", "failed")
DB_NAME = "jobs.sqlite3"
BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another's lock before failing
PROBE_TIMEOUT_MS = 1000  # /readyz's write-lock probe waits at most this long: a lock held longer is not ready

_SCHEMA = """
CREATE TABLE IF NOT EXISTS analyses (
    id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
    step TEXT NOT NULL DEFAULT 'queued',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker INTEGER,
    client TEXT,
    upload_bytes INTEGER NOT NULL DEFAULT 0,
    result_bytes INTEGER NOT NULL DEFAULT 0,
    record TEXT,
    explanation INTEGER NOT NULL DEFAULT 0,
    overlay INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS analyses_status_created ON analyses (status, created);
"""


@dataclass(frozen=True)
class Job:
    id: str
    filename: str
    status: str
    step: str
    progress: float
    error: str | None
    created: float
    started: float | None
    finished: float | None
    attempts: int
    worker: int | None
    client: str | None
    upload_bytes: int
    result_bytes: int
    record: dict[str, Any] | None
    explanation: bool
    overlay: bool

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        values = dict(row)
        values["record"] = json.loads(values["record"]) if values["record"] else None
        values["explanation"] = bool(values["explanation"])
        values["overlay"] = bool(values["overlay"])
        return cls(**values)


class JobStore:
    """One connection to the job database; open one per thread or process."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.uploads = self.root / "uploads"
        self.results = self.root / "results"
        for folder in (self.root, self.uploads, self.results):
            folder.mkdir(parents=True, exist_ok=True)
        self.path = self.root / DB_NAME
        # autocommit mode: every statement is its own transaction unless wrapped in _transaction
        self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a finished job survives a power cut, not just a kill
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")  # take the write lock first: no two claims interleave
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ---- paths ----------------------------------------------------------------------------------

    def upload_path(self, job_id: str) -> Path:
        return self.uploads / f"{job_id}.video"

    def result_dir(self, job_id: str) -> Path:
        return self.results / job_id

    # ---- writes ---------------------------------------------------------------------------------

    def add(self, job_id: str, filename: str, upload_bytes: int, client: str | None, queue_size: int) -> bool:
        """Queue a job unless ``queue_size`` jobs are queued already (False: the queue is full)."""
        with self._transaction() as db:
            (queued,) = db.execute("SELECT COUNT(*) FROM analyses WHERE status = 'queued'").fetchone()
            if queued >= queue_size:
                return False
            db.execute(
                "INSERT INTO analyses (id, filename, status, created, client, upload_bytes) "
                "VALUES (?, ?, 'queued', ?, ?, ?)",
                (job_id, filename, time.time(), client, upload_bytes),
            )
        return True

    def claim(self, worker: int) -> Job | None:
        """The oldest queued job, now running on ``worker`` (a pid), or None when the queue is empty."""
        with self._transaction() as db:
            row = db.execute("SELECT id FROM analyses WHERE status = 'queued' ORDER BY created, id LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE analyses SET status = 'running', step = 'decode', progress = 0, started = ?, "
                "attempts = attempts + 1, worker = ?, error = NULL WHERE id = ?",
                (time.time(), worker, row["id"]),
            )
        return self.get(row["id"])

    def set_progress(self, job_id: str, step: str, progress: float) -> None:
        self.db.execute(
            "UPDATE analyses SET step = ?, progress = ? WHERE id = ? AND status = 'running'",
            (step, round(float(progress), 3), job_id),
        )

    def finish(self, job_id: str, record: dict[str, Any], explanation: bool, overlay: bool) -> None:
        result_bytes = folder_bytes(self.result_dir(job_id))
        self.db.execute(
            "UPDATE analyses SET status = 'done', step = 'done', progress = 1, finished = ?, worker = NULL, "
            "record = ?, explanation = ?, overlay = ?, result_bytes = ?, upload_bytes = 0 "
            "WHERE id = ? AND status = 'running'",
            (time.time(), json.dumps(record), int(explanation), int(overlay), result_bytes, job_id),
        )
        self.upload_path(job_id).unlink(missing_ok=True)  # the video is not kept once analysed

    def fail(self, job_id: str, reason: str) -> None:
        self.db.execute(
            "UPDATE analyses SET status = 'failed', finished = ?, worker = NULL, error = ?, upload_bytes = 0 "
            "WHERE id = ? AND status IN ('queued', 'running')",
            (time.time(), reason, job_id),
        )
        self.upload_path(job_id).unlink(missing_ok=True)

    def release(self, job_id: str, reason: str, max_attempts: int) -> str:
        """A running job whose run was cut short (restart, dead worker): queued again while attempts remain,
        else failed with ``reason``. Returns the new status."""
        with self._transaction() as db:
            row = db.execute("SELECT attempts, status FROM analyses WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] != "running":
                return row["status"] if row else "deleted"
            if row["attempts"] < max_attempts:
                db.execute(
                    "UPDATE analyses SET status = 'queued', step = 'queued', progress = 0, worker = NULL, error = ? "
                    "WHERE id = ?",
                    (f"{reason}; queued again (attempt {row['attempts'] + 1} of {max_attempts})", job_id),
                )
                return "queued"
            db.execute(
                "UPDATE analyses SET status = 'failed', finished = ?, worker = NULL, error = ?, upload_bytes = 0 "
                "WHERE id = ?",
                (time.time(), f"{reason} (after {row['attempts']} attempts)", job_id),
            )
        self.upload_path(job_id).unlink(missing_ok=True)
        return "failed"

    def recover(self, max_attempts: int) -> dict[str, int]:
        """At start-up: every job a previous server left running is queued again or failed (none stays running)."""
        counts = {"queued": 0, "failed": 0}
        running = [r["id"] for r in self.db.execute("SELECT id FROM analyses WHERE status = 'running'")]
        for job_id in running:
            status = self.release(job_id, "interrupted by a server restart", max_attempts)
            counts[status] = counts.get(status, 0) + 1
        return counts

    def delete(self, job_id: str) -> bool:
        """Remove the job, its upload and its results; False when there is no such job."""
        deleted = self.db.execute("DELETE FROM analyses WHERE id = ?", (job_id,)).rowcount
        self.upload_path(job_id).unlink(missing_ok=True)
        shutil.rmtree(self.result_dir(job_id), ignore_errors=True)
        return bool(deleted)

    # ---- reads ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        row = self.db.execute("SELECT * FROM analyses WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def recent(self, limit: int, owner: str | None = None) -> list[Job]:
        """The newest analyses; only ``owner``'s when given (keys on: each key sees its own)."""
        if owner is None:
            rows = self.db.execute("SELECT * FROM analyses ORDER BY created DESC, id LIMIT ?", (limit,))
        else:
            rows = self.db.execute(
                "SELECT * FROM analyses WHERE client = ? ORDER BY created DESC, id LIMIT ?", (owner, limit)
            )
        return [Job.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        found = dict(self.db.execute("SELECT status, COUNT(*) FROM analyses GROUP BY status").fetchall())
        return {s: int(found.get(s, 0)) for s in STATUSES}

    def running(self) -> list[Job]:
        return [Job.from_row(r) for r in self.db.execute("SELECT * FROM analyses WHERE status = 'running'")]

    def finished_since(self, since: float) -> list[Job]:
        rows = self.db.execute("SELECT * FROM analyses WHERE finished > ? ORDER BY finished", (since,))
        return [Job.from_row(r) for r in rows]

    def mean_job_seconds(self, last: int = 20) -> float | None:
        """Mean run time of the last ``last`` finished jobs (None before any)."""
        (mean,) = self.db.execute(
            "SELECT AVG(finished - started) FROM (SELECT finished, started FROM analyses "
            "WHERE status = 'done' AND started IS NOT NULL ORDER BY finished DESC LIMIT ?)",
            (last,),
        ).fetchone()
        return float(mean) if mean is not None else None

    def expired(self, before: float) -> list[str]:
        rows = self.db.execute("SELECT id FROM analyses WHERE status IN ('done', 'failed') AND finished < ?", (before,))
        return [r["id"] for r in rows]

    def bytes_used(self) -> int:
        """Uploads and results of the jobs on record, as counted when they were written."""
        (used,) = self.db.execute("SELECT COALESCE(SUM(upload_bytes + result_bytes), 0) FROM analyses").fetchone()
        return int(used)

    def writable(self) -> bool:
        """Can this store take a write now (disk, permissions, a lock held too long)? The database's write lock
        is taken and released without writing; the uploads folder gets a uniquely named empty file, so
        concurrent probes never trip over each other's."""
        try:
            self.db.execute(f"PRAGMA busy_timeout = {PROBE_TIMEOUT_MS}")
            try:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute("ROLLBACK")
            finally:
                self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            with tempfile.NamedTemporaryFile(dir=self.uploads, prefix=".probe-"):
                pass
        except (sqlite3.Error, OSError):
            return False
        return True

    def sweep_orphans(self) -> int:
        """At start-up: remove upload files no queued job owns (``.part`` files of uploads a killed server was
        receiving, videos of jobs gone) and result folders of deleted jobs; returns how many."""
        wanted = {r["id"] for r in self.db.execute("SELECT id FROM analyses WHERE status IN ('queued', 'running')")}
        known = {r["id"] for r in self.db.execute("SELECT id FROM analyses")}
        removed = 0
        for path in self.uploads.iterdir():
            if path.is_file() and (path.suffix == ".part" or path.stem not in wanted):
                path.unlink(missing_ok=True)
                removed += 1
        for path in self.results.iterdir():
            if path.is_dir() and path.name not in known:
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
