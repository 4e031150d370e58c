"""The bounded worker pool: ``serve.workers`` processes, each loading the models once, each taking
the oldest queued job from the job store, scoring it as ``deepfake predict`` does and explaining it
as ``deepfake explain`` does, from one decode.

Each worker runs under ``serve.worker_memory_mb`` (``RLIMIT_DATA``): a video that needs more fails its own
job with the reason and the worker goes on. The server process supervises them (``WorkerPool``): a
worker that dies under a job (a crash, the OOM killer) has that job failed with the reason, never run
again (a video that kills a worker would kill the next one too), and is replaced; a job running past
``serve.job_timeout_s`` is failed and its worker killed and replaced. Workers die with the server
(``PR_SET_PDEATHSIG``), and a restarted server re-queues what they were doing (``JobStore.recover``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from deepfake.apps.predict import (
    PredictConfig,
    decide,
    init_worker,
    load_decision,
    prepare_video,
    score_prepared,
)
from deepfake.apps.serve.settings import ServeConfig
from deepfake.apps.serve.store import Job, JobStore

logger = logging.getLogger(__name__)

# The supervisor's own cadence (how soon a dead worker is noticed and replaced; how often expired analyses are
# looked for, against a retention counted in hours): bookkeeping, not a setting anyone tunes
SUPERVISE_S = 0.5
JANITOR_S = 60.0
EXPLAIN_BACKEND = {"torch": "torch", "onnx": "onnx", "onnx-int8": "onnx-int8", "triton": "onnx"}


class JobRunner:
    """The models of one worker process, loaded once: the backend, the detector (cached by predict), the explainers."""

    def __init__(self, config: ServeConfig) -> None:
        from deepfake.apps.explain import Explainers
        from deepfake.backends.base import create_backend
        from deepfake.modeling.card import package_card
        from deepfake.modeling.store import ModelStore

        self.config = config
        self.model = package_card(config.models).reference()  # named in every record this worker makes
        self.decision = load_decision(config.models)  # the package's operating points: every record's verdict
        params = config.params
        self.predict = PredictConfig.from_params(params)
        store = ModelStore(config.models)
        self.backend = create_backend(config.backend, store, params, config.triton_url)
        self.explainers = Explainers(EXPLAIN_BACKEND[config.backend], params, store) if config.explain else None

    def run(self, job: Job, jobs: JobStore) -> None:
        """Score and explain ``job``; whatever happens, the job ends done or failed with the reason."""
        try:
            jobs.set_progress(job.id, "decode", 0.05)
            prepared = prepare_video(jobs.upload_path(job.id), self.predict, self.backend.face_input)
            jobs.set_progress(job.id, "score", 0.6)
            [record] = score_prepared([prepared], self.backend, self.predict)
            decide(record, self.decision)
            record = scrub_paths(record, {str(jobs.upload_path(job.id)): "the upload", str(jobs.root): "the store"})
            record.update(filename=job.filename, path=job.filename, model=self.model)  # never the upload path
            explained = False
            if self.explainers is not None and record["status"] == "ok" and len(prepared.crops):
                from deepfake.apps.explain import explain_prepared

                jobs.set_progress(job.id, "explain", 0.8)
                explain_prepared(
                    prepared,
                    self.explainers,
                    jobs.result_dir(job.id),
                    self.config.montage_rows,
                    self.config.overlay_fps,
                    face_pngs=False,
                    max_faces=self.config.explain_faces,
                )
                explained = True
            jobs.finish(job.id, record, explanation=explained, overlay=explained)
        except Exception as err:  # noqa: BLE001 - whatever happened to this job is recorded; the worker goes on
            self._failed(job, err, jobs)

    def _failed(self, job: Job, err: Exception, jobs: JobStore) -> None:
        if _out_of_memory(err):
            # the worker's memory limit, not a bug: this video needs more than the limit allows; what it held is
            # freed with the frames of this job, and the worker takes the next one
            logger.error("analysis %s needed more memory than serve.worker_memory_mb allows", job.id)
            jobs.fail(job.id, f"error: the video needs more memory than a worker may use ({self._memory_text()})")
            return
        # a bug or an environment fault in this job: recorded, the worker goes on
        trace = "".join(traceback.format_exception(err))
        logger.error("analysis %s failed:\n%s", job.id, trace)
        # the client sees the kind of failure, never the server's paths or an exception's raw text
        jobs.fail(job.id, f"error: internal error ({type(err).__name__}); the server log has it under {job.id}")

    def _memory_text(self) -> str:
        limit = self.config.worker_memory_bytes
        return f"serve.worker_memory_mb={limit >> 20}" if limit else "no limit set: the machine ran out"


def _out_of_memory(err: BaseException) -> bool:
    """An allocation refused: Python's MemoryError, or torch's and ONNX Runtime's own words for it."""
    if isinstance(err, MemoryError):
        return True
    text = str(err).lower()
    return type(err).__name__ in ("RuntimeError", "RuntimeException", "Fail") and (
        "can't allocate memory" in text or "failed to allocate memory" in text or "bad_alloc" in text
    )


def limit_memory(limit_bytes: int) -> None:
    """Cap this process's data segment (``RLIMIT_DATA``: heap and private anonymous mappings, the memory a
    decoder or a model's activations take; not the shared libraries' address space, which ``RLIMIT_AS`` would
    count). Past it an allocation fails (``MemoryError`` in Python, ENOMEM in FFmpeg) instead of the kernel's
    OOM killer choosing a process. 0: no limit."""
    if limit_bytes:
        resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def scrub_paths(value: Any, replacements: dict[str, str]) -> Any:
    """``value`` (a record: dicts, lists, strings) with every server path in ``replacements`` replaced."""
    if isinstance(value, str):
        for path, text in sorted(replacements.items(), key=lambda item: -len(item[0])):  # the longest first
            value = value.replace(path, text)
        return value
    if isinstance(value, dict):
        return {k: scrub_paths(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_paths(v, replacements) for v in value]
    return value


def worker_main(config: ServeConfig, parent: int, events: Any) -> None:
    """A worker process: load the models, say so, then take jobs until SIGTERM (after the current job).

    No multiprocessing Event or lock is shared with the server: a worker killed while waiting on one
    would leave the server's ``set()`` blocked for good. Ctrl+C reaches the whole process group, so
    the worker ignores SIGINT and leaves the shutdown to the server; if the server is killed, the
    kernel kills the worker (SIGKILL, so no orphan finishes a job a restarted server has re-queued).
    """
    init_worker(parent, config.torch_threads, on_parent_death=signal.SIGKILL)
    limit_memory(config.worker_memory_bytes)  # before the models load: they count against it too
    stopping = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s worker %(process)d: %(message)s")
    try:
        runner = JobRunner(config)
        jobs = JobStore(config.data)
    except Exception as err:  # noqa: BLE001 - reported to the server, which refuses to start without models
        events.put(("failed", os.getpid(), f"{type(err).__name__}: {err}"))
        return
    events.put(("ready", os.getpid(), ""))
    while not stopping.is_set():
        job = jobs.claim(os.getpid())
        if job is None:
            stopping.wait(config.poll_s)
            continue
        runner.run(job, jobs)


class _Spawner:
    """Starts processes from one thread that outlives them. Linux sends a child's parent-death signal when
    the *thread* that started it ends, not the process: workers started from a thread pool's thread (the
    app's start-up) or the supervisor thread were killed when that thread retired."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="deepfake-serve-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            func, future = request
            try:
                future.set_result(func())
            except BaseException as err:  # noqa: BLE001 - handed to the caller waiting on the future
                future.set_exception(err)

    def call(self, func: Callable[[], Any]) -> Any:
        future: Future[Any] = Future()
        self._requests.put((func, future))
        return future.result()

    def close(self) -> None:
        """Only once every process it started has ended."""
        self._requests.put(None)
        self._thread.join(timeout=5)


def _death(exitcode: int | None) -> str:
    """How a worker ended, for a job's reason: a signal by name (SIGKILL is usually the OOM killer)."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
        hint = ": the kernel's OOM killer, or someone, killed it" if name == "SIGKILL" else ""
        return f"{name}{hint}"
    return f"exit code {exitcode}"


@dataclass
class _Worker:
    process: Any
    ready: bool = False


class WorkerPool:
    """Starts, watches and replaces the worker processes; also expires old analyses."""

    def __init__(self, config: ServeConfig, metrics: Any) -> None:
        self.config = config
        self.jobs = JobStore(config.data)  # the supervisor's own connection (one per thread)
        self.metrics = metrics
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.workers: dict[int, _Worker] = {}
        self.load_error: str | None = None
        self._thread: threading.Thread | None = None
        self._spawner = _Spawner()
        self._halt = threading.Event()
        self._last_finished = time.time()
        self._last_janitor = 0.0

    # ---- life cycle -------------------------------------------------------------------------------

    def _spawn(self) -> None:
        process = self.context.Process(
            target=worker_main,
            args=(self.config, os.getpid(), self.events),
            name="deepfake-serve-worker",
            daemon=True,
        )
        self._spawner.call(process.start)
        assert process.pid is not None  # a started process has one
        self.workers[process.pid] = _Worker(process)

    def start(self, timeout_s: float) -> None:
        """Start the workers and wait until one has its models loaded (or report why none could)."""
        for _ in range(self.config.workers):
            self._spawn()
        deadline = time.monotonic() + timeout_s
        while not self.ready_count():
            self._drain_events(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            if self.load_error:
                self.close()
                raise RuntimeError(f"the workers could not load the models: {self.load_error}")
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"no worker loaded the models within {timeout_s:.0f} s")
            if not any(w.process.is_alive() for w in self.workers.values()):
                self._drain_events(timeout=0.5)
                self.close()
                raise RuntimeError(f"the workers exited before loading the models: {self.load_error or 'no reason'}")
        self._thread = threading.Thread(target=self._supervise, name="deepfake-serve-supervisor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the workers: SIGTERM (each finishes its job), SIGKILL after ``serve.shutdown_grace_s``; jobs cut
        short are released (queued again for the next start, or failed past ``serve.max_attempts``)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for worker in self.workers.values():
            if worker.process.is_alive():
                worker.process.terminate()
        deadline = time.monotonic() + self.config.shutdown_grace_s
        for worker in self.workers.values():
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
        self._spawner.close()
        for job in self.jobs.running():  # stopped mid-job: the next start runs it again
            self.jobs.release(job.id, "interrupted by a server shutdown", self.config.max_attempts)
        self.events.close()
        self.jobs.close()

    def ready_count(self) -> int:
        """Workers with their models loaded (from request threads: a copy, as the supervisor edits the dict)."""
        return sum(1 for w in list(self.workers.values()) if w.ready and w.process.is_alive())

    # ---- supervision ----------------------------------------------------------------------------

    def _drain_events(self, timeout: float = 0.0) -> None:
        try:
            kind, pid, text = self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
        except queue.Empty:
            return
        while True:
            if kind == "ready" and pid in self.workers:
                self.workers[pid].ready = True
            elif kind == "failed":
                self.load_error = text
                logger.error("worker %d could not load the models: %s", pid, text)
            try:
                kind, pid, text = self.events.get_nowait()
            except queue.Empty:
                return

    def _supervise(self) -> None:
        while not self._halt.wait(SUPERVISE_S):
            try:
                self.check()
            except Exception:
                logger.exception("supervisor pass failed")

    def check(self) -> None:
        """One supervision pass: dead workers, timed-out jobs, finished-job metrics, expired analyses."""
        self._drain_events()
        now = time.time()
        running = {job.worker: job for job in self.jobs.running()}
        for pid, worker in list(self.workers.items()):
            job = running.get(pid)
            if worker.process.is_alive() and job is not None and now - (job.started or now) > self.config.job_timeout_s:
                logger.error(
                    "analysis %s ran past %.0f s: its worker %d is replaced", job.id, self.config.job_timeout_s, pid
                )
                worker.process.kill()
                worker.process.join(timeout=5)
                self.jobs.fail(job.id, f"timed out after {self.config.job_timeout_s:.0f} s (serve.job_timeout_s)")
                self.metrics.failure("timeout")
            if not worker.process.is_alive():
                code = worker.process.exitcode
                del self.workers[pid]
                logger.warning(
                    "worker %d exited (exit code %s); %s",
                    pid,
                    code,
                    "replacing it" if not self._halt.is_set() else "stopping",
                )
                current = self.jobs.get(job.id) if job is not None else None
                if current is not None and current.status == "running":
                    # failed, never queued again: what killed this worker would kill the next one (a poison video)
                    self.jobs.fail(current.id, f"error: the worker died while analysing it ({_death(code)})")
                    self.metrics.failure("worker_died")
                    logger.error("worker %d died (exit code %s) during %s: failed", pid, code, current.id)
                if not self._halt.is_set() and self.load_error is None:
                    self._spawn()
        for job in self.jobs.finished_since(self._last_finished):
            self._last_finished = max(self._last_finished, job.finished or now)
            self.metrics.finished(job)
        if now - self._last_janitor > JANITOR_S:
            self._last_janitor = now
            self.expire(now)

    def expire(self, now: float) -> int:
        """Delete the analyses finished more than ``serve.retention_hours`` ago, with their files."""
        expired = self.jobs.expired(now - self.config.retention_s)
        for job_id in expired:
            self.jobs.delete(job_id)
        if expired:
            logger.info("deleted %d analyses past their retention", len(expired))
        return len(expired)
