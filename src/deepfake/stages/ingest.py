"""Stage ingest: one dataset root, in any supported layout, to its canonical index.

The adapter for the dataset's layout (``deepfake.media.layouts``) lists every video with its label,
original, identity, method, compression, official split and mask video; entries it cannot use are
refused one by one with ``file:line: reason`` and counted in the report. Every later stage reads only
the canonical index, so nothing after this one knows which layout a dataset came in.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepfake.core.errors import InputError
from deepfake.core.fileio import write_json_atomic
from deepfake.core.params import Params
from deepfake.media.layouts import ingest, write_index

logger = logging.getLogger(__name__)

REPORTED_PROBLEMS = 200  # refused entries listed in the report (all are counted)


@dataclass(frozen=True)
class Config:
    dataset: str
    layout: str
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Params, dataset: str) -> Config:
        """From ``data.datasets.<dataset>`` or, for a test-only dataset (stage ``ingest_test@<dataset>``),
        ``data.test_datasets.<dataset>``; an unknown name lists the configured ones."""
        spec = params.data.spec(dataset)
        if spec is None:
            data = params.data
            test_only = f" or data.test_datasets ({', '.join(data.test_datasets)})" if data.test_datasets else ""
            raise InputError(f"dataset {dataset!r} is not in data.datasets ({', '.join(data.datasets)}){test_only}")
        return cls(dataset=dataset, layout=spec.layout, options=spec.options())


@dataclass(frozen=True)
class Paths:
    root: Path  # the dataset root, laid out as the dataset ships
    out: Path  # data/index/<dataset>.csv
    report: Path


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Write the canonical index of ``paths.root`` to ``paths.out``; return the report."""
    started = time.perf_counter()
    index = ingest(config.dataset, config.layout, paths.root, config.options)
    if not index.rows:
        shown = "; ".join(str(p) for p in index.problems[:5])
        raise InputError(
            f"{paths.root}: no usable video for layout {config.layout!r}"
            + (f" ({len(index.problems)} refused, e.g. {shown})" if shown else " (is this the dataset root?)")
        )
    write_index(index, paths.out)
    report = {
        "stage": "ingest",
        "dataset": config.dataset,
        "layout": config.layout,
        "options": config.options,
        **index.counts(),
        "refused": [str(p) for p in index.problems[:REPORTED_PROBLEMS]],
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(paths.report, report)
    logger.info(
        "ingest %s (%s): %d videos, %d refused", config.dataset, config.layout, len(index.rows), len(index.problems)
    )
    return report
