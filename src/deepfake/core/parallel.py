"""What every preprocessing stage shares: running a function over videos, in order, in parallel.

Error policy (see ``deepfake.core.errors``): an ``InputError`` raised for one video (``VideoError``,
``BoxesFileError``, ``MetadataError``, ...) becomes that video's recorded skip. Nothing else does:
an ``OSError`` (a full disk, a read-only output, permission denied) stops the stage, and any other
exception (``ValueError``, ``KeyError``, a ``cv2.error`` outside the video reader, ...) is a bug
that stops it with its traceback, in a worker process as in the calling one.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

import cv2
from tqdm import tqdm

from deepfake.core.errors import InputError
from deepfake.core.report import VideoResult

logger = logging.getLogger(__name__)

Task = TypeVar("Task")

# Per-video failures that become a recorded skip; anything else stops the stage. The readers turn a
# bad input's OSError (missing file) and cv2.error (a decoder failing) into InputErrors where they occur.
RECOVERABLE: tuple[type[Exception], ...] = (InputError,)

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
    """Run ``func(task)``; an ``InputError`` becomes a skip naming the video and the cause.

    Anything else propagates: an environment fault or a bug never passes as a skipped video.
    """
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
        futures: list[Future[VideoResult]] = [pool.submit(_call, job) for job in jobs]
        try:
            # in order; the first failure (environment fault or bug) propagates as raised in the worker
            return [f.result() for f in tqdm(futures, total=len(jobs), desc=desc, unit="video", disable=None)]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # do not decode the rest for a failed stage
            raise
