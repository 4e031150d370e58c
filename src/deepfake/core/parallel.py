"""What every preprocessing stage shares: running a function over videos, in order, in parallel.

Where the work runs (``ExecutorConfig``, params.yaml ``executor``) never changes the outputs:

- ``local``: this machine. ``workers > 1`` runs ``workers`` spawned processes (``pool="processes"``:
  torch stages, one detector per process) or threads (``pool="threads"``: the crops and diffs stages,
  whose decoding, PNG coding and SSIM release the GIL; no process start-up, no package import per worker).
- ``dask``: a Dask distributed cluster, at ``executor.scheduler`` or a ``LocalCluster`` of ``workers``
  processes started and closed by the call. Each task runs ``func`` on a worker; what it writes through
  ``deepfake.core.fileio`` is captured there and returned with its result, and the stage process alone
  writes it into its temporary output folder. Workers therefore need read access to the inputs (the raw
  videos; the crops for landmarks and diffs) under the same paths, not to the outputs (docs/scaling.md).
  A task whose worker died is rerun on another one up to ``executor.retries`` times.

Error policy (see ``deepfake.core.errors``): an ``InputError`` raised for one video (``VideoError``,
``BoxesFileError``, ``MetadataError``, ...) becomes that video's recorded skip. Nothing else does:
an ``OSError`` (a full disk, a read-only output, permission denied) stops the stage, and any other
exception (``ValueError``, ``KeyError``, a ``cv2.error`` outside the video reader, ...) is a bug
that stops it with its traceback, in a worker process, thread or Dask worker as in the calling one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import cv2
from tqdm import tqdm

from deepfake.core.errors import InputError, UserError
from deepfake.core.fileio import capture_writes, write_captured
from deepfake.core.params import Params
from deepfake.core.report import VideoResult

logger = logging.getLogger(__name__)

Task = TypeVar("Task")
Pool = Literal["processes", "threads"]
Job = tuple[Callable[[Any], VideoResult], str, Any]

# Per-video failures that become a recorded skip; anything else stops the stage. The readers turn a
# bad input's OSError (missing file) and cv2.error (a decoder failing) into InputErrors where they occur.
RECOVERABLE: tuple[type[Exception], ...] = (InputError,)


@dataclass(frozen=True)
class ExecutorConfig:
    """Where per-video work runs (params.yaml ``executor``)."""

    kind: Literal["local", "dask"] = "local"
    scheduler: str | None = None  # dask: a scheduler address; None starts a LocalCluster per call
    retries: int = 2  # dask: reruns of a task whose worker died

    @classmethod
    def from_params(cls, params: Params) -> ExecutorConfig:
        sect = params.executor
        return cls(kind=sect.kind, scheduler=sect.scheduler, retries=sect.retries)


LOCAL = ExecutorConfig()

_worker_cache: dict[Any, Any] = {}
_worker_cache_lock = threading.Lock()


def cached(key: Any, build: Callable[[], Any]) -> Any:
    """One heavy object (a detector) per process, built on first use rather than at import.

    Works the same in a spawned worker process and in a Dask worker process (this module's state
    lives as long as the process); the lock keeps threads sharing a process from building it twice.
    """
    with _worker_cache_lock:
        if key not in _worker_cache:
            _worker_cache[key] = build()
        return _worker_cache[key]


def set_torch_threads(threads: int) -> None:
    """Fix intra-op threads so float results do not depend on the machine's core count.

    Without importing torch: a process that never needs it (predict's workers on ONNX Runtime) must not pay its
    seconds of import. Where torch is loaded already its thread count is set; otherwise ``OMP_NUM_THREADS``,
    which torch reads when this process imports it later."""
    threads = max(1, threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    cv2.setNumThreads(1)


# glibc's mallopt parameters (malloc.h) and the values reuse_freed_memory sets
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
HEAP_ARRAY_BYTES = 16 << 20  # M_MMAP_THRESHOLD: arrays up to this (a 1080p frame and its tables) come from the
# heap, larger ones from mmap; set, since setting any of these stops glibc adjusting it itself (at 32 MB the
# predict process's ONNX Runtime runs fragmented the heap: 550,000 page faults for 12 videos against 70,000-90,000)
HEAP_STEP_BYTES = 256 << 20  # M_TOP_PAD: the heap grows by this much more than asked, and keeps it when trimmed
KEPT_FREE_BYTES = 1 << 30  # M_TRIM_THRESHOLD: free heap at its top up to this stays in the process


@functools.cache  # process-wide: once per process, whoever asks first (a worker, an ONNX session)
def reuse_freed_memory() -> bool:
    """Make this process reuse the memory its large temporary arrays free instead of handing it back to the
    kernel after each one.

    Why: a video's frames, their resized copies, integral images and crops are megabytes each, allocated and
    freed for every frame; ONNX Runtime without its arena (``onnx_session``) allocates and frees each run's
    activations. By default glibc returns that memory to the kernel, which faults in and zeroes every page
    again for the next array: about 40,000 page faults per 1080p video in ``deepfake predict``'s workers (8 %
    of their time) and 1.1 million in the predict process for 12 videos (a third of the models' time).
    Arrays up to ``HEAP_ARRAY_BYTES`` come from the heap, memory freed at its top stays in the process up to
    ``KEPT_FREE_BYTES``, and the heap grows in steps of ``HEAP_STEP_BYTES``; results do not change. Returns
    whether it applied (Linux with glibc; elsewhere nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt
        return False
    settings = ((M_MMAP_THRESHOLD, HEAP_ARRAY_BYTES), (M_TOP_PAD, HEAP_STEP_BYTES), (M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
    return all([bool(mallopt(option, value)) for option, value in settings])


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Threads each of ``workers`` concurrent workers may use without oversubscribing the usable cores."""
    return max(1, usable_cores() // max(1, workers))


def torch_threads() -> int:
    """The intra-op thread count ``set_torch_threads`` gave this process (torch's own where it is loaded),
    without importing torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else max(1, os.cpu_count() or 1)


def guarded(func: Callable[[Task], VideoResult], video: str, task: Task) -> VideoResult:
    """Run ``func(task)``; an ``InputError`` becomes a skip naming the video and the cause.

    Anything else propagates: an environment fault or a bug never passes as a skipped video.
    """
    try:
        return func(task)
    except RECOVERABLE as err:
        logger.warning("%s: skipped: %s", video, err)
        return VideoResult.skipped(video, f"{type(err).__name__}: {err}")


def _call(args: Job) -> VideoResult:
    func, video, task = args
    return guarded(func, video, task)


def map_videos(
    func: Callable[[Task], VideoResult],
    tasks: Sequence[tuple[str, Task]],
    workers: int,
    desc: str,
    torch_threads: int | None = None,
    *,
    pool: Pool = "processes",
    executor: ExecutorConfig = LOCAL,
) -> list[VideoResult]:
    """Apply ``func`` to each ``(video_name, task)``; results come back in the order of ``tasks``.

    Locally, ``workers > 1`` uses spawned processes (safe with torch and OpenCV threads; each builds its
    own detector on first use) or, with ``pool="threads"``, threads of this process. With
    ``executor.kind == "dask"`` the tasks run on a Dask cluster (``pool`` does not apply: Dask workers
    are processes), and ``workers`` sizes the LocalCluster started when no scheduler is given.
    """
    jobs: list[Job] = [(func, video, task) for video, task in tasks]
    if executor.kind == "dask":
        return _map_dask(jobs, workers, desc, torch_threads, executor) if jobs else []
    if workers <= 1 or len(jobs) <= 1 or pool == "threads":
        if torch_threads is not None:
            set_torch_threads(torch_threads)
        if workers <= 1 or len(jobs) <= 1:
            return [_call(job) for job in tqdm(jobs, desc=desc, unit="video", disable=None)]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="video") as threads:
            return _in_order(threads, [threads.submit(_call, job) for job in jobs], desc)
    context = multiprocessing.get_context("spawn")
    initializer: Callable[..., object] | None = set_torch_threads if torch_threads is not None else None
    initargs: tuple[Any, ...] = (torch_threads,) if torch_threads is not None else ()
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as processes:
        return _in_order(processes, [processes.submit(_call, job) for job in jobs], desc)


def _in_order(
    pool: ThreadPoolExecutor | ProcessPoolExecutor, futures: list[Future[VideoResult]], desc: str
) -> list[VideoResult]:
    try:
        # in order; the first failure (environment fault or bug) propagates as raised in the worker
        return [f.result() for f in tqdm(futures, total=len(futures), desc=desc, unit="video", disable=None)]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # do not decode the rest for a failed stage
        raise


# ---- Dask distributed ------------------------------------------------------------------------------


def run_video(job: Job, torch_threads: int | None) -> tuple[VideoResult, dict[Path, bytes]]:
    """One task on a Dask worker: ``func``'s result and the files it wrote, captured (path -> bytes)."""
    if torch_threads is not None:  # the process pool's initializer, per task: workers are shared
        set_torch_threads(torch_threads)
    with capture_writes() as files:
        result = _call(job)
    return result, files


@contextlib.contextmanager
def dask_client(executor: ExecutorConfig, workers: int) -> Iterator[Any]:
    """A ``distributed.Client`` on ``executor.scheduler``, or on a LocalCluster of ``workers`` processes on
    127.0.0.1 started and closed here; a worker that dies mid-task has its task rerun ``executor.retries`` times."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise UserError("executor.kind dask needs dask and distributed: pip install dask distributed") from err
    with contextlib.ExitStack() as stack:
        if executor.scheduler is None:
            # the LocalCluster's scheduler runs in this process and reads its config when created
            with dask.config.set({"distributed.scheduler.allowed-failures": executor.retries}):
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=max(1, workers),
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address=None,
                    )
                )
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(executor.scheduler))
            except OSError as err:
                raise OSError(f"executor.scheduler {executor.scheduler}: no Dask scheduler answers: {err}") from err
            _check_allowed_failures(client, executor.retries)
        yield client


def _map_dask(
    jobs: list[Job], workers: int, desc: str, torch_threads: int | None, executor: ExecutorConfig
) -> list[VideoResult]:
    with dask_client(executor, workers) as client:
        return _gather(client, jobs, desc, torch_threads)


def _check_allowed_failures(client: Any, retries: int) -> None:
    """A remote scheduler keeps its own setting; say so when it differs from executor.retries."""
    try:
        allowed = client.run_on_scheduler(_allowed_failures)
    except (OSError, ValueError, RuntimeError, AttributeError) as err:  # a scheduler that blocks run_function
        logger.warning("cannot read the scheduler's allowed-failures (%s); executor.retries is not checked", err)
        return
    if allowed != retries:
        logger.warning(
            "executor.retries is %d but the scheduler reruns a task whose worker died %d times: start it with "
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=%d to match",
            retries,
            allowed,
            retries,
        )


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


def _gather(client: Any, jobs: list[Job], desc: str, torch_threads: int | None) -> list[VideoResult]:
    from distributed import KilledWorker, as_completed

    futures = client.map(run_video, jobs, torch_threads=torch_threads, pure=False)
    position = {future.key: i for i, future in enumerate(futures)}
    results: list[VideoResult | None] = [None] * len(jobs)
    try:
        with tqdm(total=len(jobs), desc=desc, unit="video", disable=None) as bar:
            # as each finishes (bounded memory on the workers); the first failure stops the stage
            for future in as_completed(futures):
                i = position[future.key]
                try:
                    result, files = future.result()  # a task's exception is re-raised with its traceback
                except KilledWorker as err:
                    raise RuntimeError(
                        f"{jobs[i][1]}: the Dask workers running it died too often ({err}); see their logs"
                    ) from err
                write_captured(files)
                results[i] = result
                future.release()
                bar.update()
    except BaseException:
        client.cancel(futures)  # do not decode the rest for a failed stage
        raise
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]
