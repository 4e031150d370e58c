"""The small JSON report every stage writes: what was done, what was skipped and why, how long."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake.fileio import write_json_atomic

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
        data = self.to_dict()
        write_json_atomic(path, data)
        return data
