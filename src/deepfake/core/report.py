"""The small JSON report every stage writes: what was done, what was skipped and why, how long."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake.core.fileio import atomic_dir, json_bytes, write_json_atomic

DONE = "done"
SKIPPED = "skipped"


@dataclass
class VideoResult:
    """Outcome of one video in one stage. ``counts`` are summed into the stage report."""

    video: str
    status: str = DONE
    reason: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # stage-specific rows (not reported)

    @classmethod
    def skipped(cls, video: str, reason: str) -> VideoResult:
        return cls(video=video, status=SKIPPED, reason=reason)


@dataclass
class StageReport:
    stage: str
    part: str
    started: float = field(default_factory=time.perf_counter)
    results: list[VideoResult] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = field(default=None, init=False)  # what ``outputs`` wrote

    def add(self, result: VideoResult) -> None:
        self.results.append(result)

    def refuse(self, entry: str, reason: str) -> None:
        """Record a metadata entry that was refused before any processing."""
        self.refused.append({"entry": entry, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        totals: Counter[str] = Counter()
        for result in self.results:
            totals.update(result.counts)
        done = [r for r in self.results if r.status == DONE]
        skipped = [r for r in self.results if r.status == SKIPPED]
        return {
            "stage": self.stage,
            "part": self.part,
            "videos_total": len(self.results),
            "videos_done": len(done),
            "videos_skipped": len(skipped),
            "skipped": [{"video": r.video, "reason": r.reason} for r in skipped],
            "notes": [{"video": r.video, "note": n} for r in self.results for n in r.notes],
            "metadata_refused": self.refused,
            **dict(sorted(totals.items())),
            **self.extra,
            "seconds": round(time.perf_counter() - self.started, 2),
        }

    def write(self, path: Path | str) -> dict[str, Any]:
        """Write the report on its own (atomically); see ``outputs`` to commit it with the stage's folder."""
        data = self.to_dict()
        write_json_atomic(path, data)
        self.summary = data
        return data

    @contextmanager
    def outputs(self, out_dir: Path | str, report_path: Path | str) -> Iterator[Path]:
        """``atomic_dir(out_dir)`` that commits this report with the folder, all or nothing.

        Yields the partial folder to write into. When the body succeeds, the report (as of that
        moment) and the folder replace the previous ones together and ``self.summary`` holds the
        report; when anything fails (the body, writing the report, a rename: a full disk), the
        previous folder and the previous report stay exactly as they were::

            with report.outputs(out_dir, report_path) as tmp:
                ...  # write into tmp, report.add(...)
            return report.summary
        """

        written: list[dict[str, Any]] = []

        def report_file() -> dict[Path | str, bytes]:
            written.append(self.to_dict())
            return {report_path: json_bytes(written[-1])}

        self.summary = None
        with atomic_dir(out_dir, companions=report_file) as tmp:
            yield tmp
        self.summary = written[-1]
