"""The verdict service: a FastAPI app (OpenAPI at /docs) in front of the job store and the worker pool.

``create_app(config)`` builds it; the worker processes start with the app (FastAPI's lifespan) and
``deepfake serve`` runs it under uvicorn. Endpoints: docs/service.md.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from deepfake.apps.serve.metrics import Metrics
from deepfake.apps.serve.settings import ApiKeys, ServeConfig
from deepfake.apps.serve.store import Job, JobStore
from deepfake.apps.serve.uploads import UploadError, VideoLimits, check_video, queue_full, receive, too_large
from deepfake.apps.serve.workers import WorkerPool
from deepfake.modeling.card import package_card

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
LIST_LIMIT = 100
FIRST_JOB_GUESS_S = 10.0  # Retry-After's job time before any job has finished
FORM_OVERHEAD = 64 << 10  # multipart headers and boundaries around the video's bytes
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _iso(seconds: float | None) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") if seconds else None


def job_view(job: Job, with_record: bool = True) -> dict[str, Any]:
    """An analysis as the API returns it."""
    base = f"/v1/analyses/{job.id}"
    view = {
        "id": job.id,
        "url": base,
        "filename": job.filename,
        "status": job.status,
        "step": job.step,
        "progress": job.progress,
        "error": job.error,
        "created": _iso(job.created),
        "started": _iso(job.started),
        "finished": _iso(job.finished),
        "attempts": job.attempts,
        "probability": job.record.get("probability") if job.record else None,
        "label": job.record.get("label") if job.record else None,
        "threshold": job.record.get("threshold") if job.record else None,  # the label's cut: P(fake) >= it is FAKE
        "model": job.record.get("model") if job.record else None,  # the card reference of the model that gave it
        "explanation": f"{base}/explanation" if job.explanation else None,
        "overlay": f"{base}/overlay" if job.overlay else None,
    }
    if with_record:
        view["record"] = job.record
    return view


class RateLimiter:
    """At most ``per_minute`` events per identity in any 60 s window (0: no limit); memory stays bounded
    by forgetting identities idle for a minute."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.events: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def retry_after(self, identity: str, now: float | None = None) -> int:
        """0 and the event counted when allowed, else the seconds until it would be."""
        if not self.per_minute:
            return 0
        now = time.monotonic() if now is None else now
        with self.lock:
            for key in [k for k, q in self.events.items() if q and now - q[-1] > self.WINDOW_S]:
                del self.events[key]
            window = self.events.setdefault(identity, deque())
            while window and now - window[0] >= self.WINDOW_S:
                window.popleft()
            if len(window) >= self.per_minute:
                return max(1, math.ceil(self.WINDOW_S - (now - window[0])))
            window.append(now)
            return 0


class Service:
    """What the endpoints share: settings, keys, limits, metrics, the pool, one job-store connection per thread."""

    def __init__(self, config: ServeConfig, start_workers: bool = True) -> None:
        self.config = config
        self.keys = ApiKeys.load(config.api_keys_file)
        self.limiter = RateLimiter(config.rate_limit_per_minute)
        self.metrics = Metrics()
        self.limits = VideoLimits(config.max_pixels, config.max_duration_s, config.max_frames)
        self.card = package_card(config.models)  # a bad card stops the service before it starts
        self._local = threading.local()
        self.start_workers = start_workers
        self.pool: WorkerPool | None = None

    @property
    def jobs(self) -> JobStore:
        store = getattr(self._local, "jobs", None)
        if store is None:
            store = self._local.jobs = JobStore(self.config.data)
        return store

    async def query(self, method: str, *args: Any) -> Any:
        """A job-store call from async code: run in a worker thread on that thread's own connection (one
        SQLite connection is never shared by two threads, whose transactions would interleave)."""
        return await run_in_threadpool(lambda: getattr(self.jobs, method)(*args))

    def start(self) -> None:
        recovered = self.jobs.recover(self.config.max_attempts)
        if any(recovered.values()):
            logger.warning("jobs a previous server left running: %s", recovered)
        if self.start_workers:
            self.pool = WorkerPool(self.config, self.metrics)
            self.pool.start(self.config.start_timeout_s)
        self.metrics.watch(lambda: self.jobs.counts(), self.ready_workers)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def ready_workers(self) -> int:
        return self.pool.ready_count() if self.pool is not None else 0

    def identity(self, request: Request) -> str | None:
        """The caller's key label (keys on) or None (keys off); 401 for a missing or wrong key."""
        if not self.keys.enabled:
            return None
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        label = self.keys.check(key)
        if label is None:
            raise HTTPException(
                401, "a valid API key is required (Authorization: Bearer <key>)", {"WWW-Authenticate": "Bearer"}
            )
        return label


def _service(request: Request) -> Service:
    return request.app.state.service


def _caller(request: Request) -> str | None:
    return _service(request).identity(request)


Caller = Annotated[str | None, Depends(_caller)]  # the key's label (keys on), None (keys off); 401 otherwise


def _job_or_404(service: Service, job_id: str) -> Job:
    job = service.jobs.get(job_id) if len(job_id) <= 64 else None
    if job is None:
        raise HTTPException(404, f"no analysis {job_id!r} (deleted, expired, or never created)")
    return job


def create_app(config: ServeConfig, start_workers: bool = True) -> FastAPI:
    """The app; ``start_workers`` False serves the API over the store alone (no models; for tests)."""
    service = Service(config, start_workers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(service.start)
        try:
            yield
        finally:
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="deepfake verdict service",
        version="1",
        description="Upload a video; get P(fake), the per-face scores and an explanation of why.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )

    @app.middleware("http")
    async def headers_and_metrics(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        if request.url.path.startswith("/v1/"):
            response.headers.setdefault("Cache-Control", "no-store")
        route = request.scope.get("route")
        service.metrics.requests.labels(
            request.method, getattr(route, "path", "unmatched"), str(response.status_code)
        ).inc()
        return response

    _add_api(app, service)
    _add_page(app)
    return app


def _refuse(service: Service, err: UploadError) -> JSONResponse:
    service.metrics.rejected.labels(err.kind).inc()
    headers = {"Retry-After": str(err.retry_after or 1)} if err.status == 429 else None
    return JSONResponse({"detail": err.reason}, status_code=err.status, headers=headers)


def _add_api(app: FastAPI, service: Service) -> None:
    config = service.config

    @app.post("/v1/analyses", status_code=202, summary="Upload a video for analysis")
    async def create_analysis(
        request: Request,
        caller: Caller,
        filename: Annotated[str | None, Query(description="display name for a raw-body upload")] = None,
    ) -> Response:
        identity = caller or (request.client.host if request.client else "unknown")
        wait = service.limiter.retry_after(identity)
        if wait:
            reason = f"rate limit: {config.rate_limit_per_minute} uploads a minute; retry in {wait} s"
            return _refuse(service, UploadError(429, reason, "rate_limited", wait))
        declared = request.headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else None
        if size is not None and size > config.max_upload_bytes + FORM_OVERHEAD:
            return _refuse(service, too_large(config.max_upload_bytes))  # refused before a byte is read
        jobs = service.jobs  # this thread's connection: paths here; queries go through service.query
        counts = await service.query("counts")
        if counts["queued"] >= config.queue_size:
            return _refuse(service, queue_full(config.queue_size, _queue_wait(service)))
        used = await service.query("bytes_used")
        if used + (size or config.max_upload_bytes) > config.disk_quota_bytes:
            reason = "the disk quota for uploads and results is used up (serve.disk_quota_mb); delete analyses"
            return _refuse(service, UploadError(507, reason, "quota"))
        job_id = uuid.uuid4().hex
        part = jobs.uploads / f"{job_id}.part"
        try:
            received = await receive(
                request.stream(), request.headers.get("content-type", ""), filename, part, config.max_upload_bytes
            )
            await run_in_threadpool(check_video, part, service.limits)
        except UploadError as err:
            part.unlink(missing_ok=True)
            return _refuse(service, err)
        except ClientDisconnect:
            part.unlink(missing_ok=True)
            return _refuse(service, UploadError(400, "the client went away before the upload ended", "disconnected"))
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        part.replace(jobs.upload_path(job_id))
        added = await service.query("add", job_id, received.filename, received.size, caller, config.queue_size)
        if not added:  # the queue filled while this upload streamed
            jobs.upload_path(job_id).unlink(missing_ok=True)
            return _refuse(service, queue_full(config.queue_size, _queue_wait(service)))
        url = f"/v1/analyses/{job_id}"
        return JSONResponse({"id": job_id, "url": url, "status": "queued"}, status_code=202, headers={"Location": url})

    @app.get("/v1/analyses", summary="Recent analyses, newest first")
    def list_analyses(caller: Caller, limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = 20) -> dict[str, Any]:
        return {"analyses": [job_view(j, with_record=False) for j in service.jobs.recent(limit)]}

    @app.get("/v1/analyses/{job_id}", summary="An analysis: status, progress and, when done, the predict record")
    def get_analysis(job_id: str, caller: Caller) -> dict[str, Any]:
        return job_view(_job_or_404(service, job_id))

    @app.get("/v1/analyses/{job_id}/explanation", summary="The explanation montage (PNG)", response_class=FileResponse)
    def get_explanation(job_id: str, caller: Caller) -> FileResponse:
        return _result_file(service, job_id, "montage.png", "image/png")

    @app.get("/v1/analyses/{job_id}/overlay", summary="The overlay video (MP4, H.264)", response_class=FileResponse)
    def get_overlay(job_id: str, caller: Caller) -> FileResponse:
        return _result_file(service, job_id, "overlay.mp4", "video/mp4")

    @app.delete("/v1/analyses/{job_id}", status_code=204, summary="Delete an analysis and its files")
    def delete_analysis(job_id: str, caller: Caller) -> Response:
        job = _job_or_404(service, job_id)
        if job.status == "running":
            raise HTTPException(409, "the analysis is running; delete it once it is done or failed")
        service.jobs.delete(job_id)
        return Response(status_code=204)

    @app.get("/healthz", summary="Alive")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", summary="Models loaded, store writable, queue not full")
    def readyz() -> JSONResponse:
        counts = service.jobs.counts()
        checks = {
            "workers_ready": service.ready_workers(),
            "store_writable": service.jobs.writable(),
            "queue": f"{counts['queued']}/{config.queue_size}",
        }
        problems = []
        if not checks["workers_ready"]:
            problems.append("no worker has its models loaded")
        if not checks["store_writable"]:
            problems.append(f"the job store {config.data} is not writable")
        if counts["queued"] >= config.queue_size:
            problems.append("the queue is full")
        body = {"ready": not problems, "problems": problems, **checks, "model": service.card.reference()}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def metrics(caller: Caller) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _queue_wait(service: Service) -> int:
    """Retry-After for a full queue: about when the next place frees up (the recent mean job time over the
    workers), in [1, 300] s."""
    mean = service.jobs.mean_job_seconds() or FIRST_JOB_GUESS_S
    return int(min(300, max(1, math.ceil(mean / service.config.workers))))


def _result_file(service: Service, job_id: str, name: str, media_type: str) -> FileResponse:
    job = _job_or_404(service, job_id)
    path = service.jobs.result_dir(job.id) / name
    if job.status != "done" or not path.is_file():
        reason = job.error or (job.record or {}).get("status") or job.status
        raise HTTPException(404, f"analysis {job_id} has no {name} ({reason})")
    return FileResponse(path, media_type=media_type)


def _add_page(app: FastAPI) -> None:
    from deepfake.apps.serve.docs_ui import mount_docs

    mount_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")
