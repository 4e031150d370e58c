"""What every preprocessing stage shares: running a function over videos, in order, in parallel."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import cv2
from tqdm import tqdm

from deepfake.faces import BoxesFileError
from deepfake.metadata import MetadataError
from deepfake.report import VideoResult
from deepfake.video import VideoError

logger = logging.getLogger(__name__)

Task = TypeVar("Task")

# Per-video failures that become a recorded skip; anything else is a bug and stops the stage.
RECOVERABLE = (VideoError, BoxesFileError, MetadataError, cv2.error, OSError, ValueError)

_worker_cache: dict[Any, Any] = {}


def cached(key: Any, build: Callable[[], Any]) -> Any:
    """One heavy object (a detector) per process, built on first use rather than at import."""
    if key not in _worker_cache:
        _worker_cache[key] = build()
    return _worker_cache[key]


def set_torch_threads(threads: int) -> None:
    """Fix intra-op threads so float results do not depend on the machine's core count."""
    import torch

    torch.set_num_threads(max(1, threads))
    cv2.setNumThreads(1)


def guarded(func: Callable[[Task], VideoResult], video: str, task: Task) -> VideoResult:
    """Run ``func(task)``; a recoverable failure becomes a skip naming the video and the cause."""
    try:
        return func(task)
    except RECOVERABLE as err:
        logger.warning("%s: skipped: %s", video, err)
        return VideoResult.skipped(video, f"{type(err).__name__}: {err}")


def _call(args: tuple[Callable[[Task], VideoResult], str, Task]) -> VideoResult:
    func, video, task = args
    return guarded(func, video, task)


def map_videos(
    func: Callable[[Task], VideoResult],
    tasks: Sequence[tuple[str, Task]],
    workers: int,
    desc: str,
    torch_threads: int | None = None,
) -> list[VideoResult]:
    """Apply ``func`` to each ``(video_name, task)``; results come back in the order of ``tasks``.

    ``workers > 1`` uses spawned processes (safe with torch and OpenCV threads); each process
    builds its own detector on first use.
    """
    jobs = [(func, video, task) for video, task in tasks]
    if workers <= 1 or len(jobs) <= 1:
        if torch_threads is not None:
            set_torch_threads(torch_threads)
        return [_call(job) for job in tqdm(jobs, desc=desc, unit="video", disable=None)]
    context = multiprocessing.get_context("spawn")
    initializer = set_torch_threads if torch_threads is not None else None
    initargs = (torch_threads,) if torch_threads is not None else ()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
        return list(tqdm(pool.map(_call, jobs), total=len(jobs), desc=desc, unit="video", disable=None))
