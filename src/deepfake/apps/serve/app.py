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
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from deepfake.apps.package_check import check_package
from deepfake.apps.serve.metrics import Metrics
from deepfake.apps.serve.settings import ApiKeys, Caller, ServeConfig, is_loopback
from deepfake.apps.serve.store import Job, JobStore
from deepfake.apps.serve.uploads import (
    UploadError,
    VideoLimits,
    bounded,
    check_video,
    queue_full,
    receive,
    too_large,
)
from deepfake.apps.serve.workers import WorkerPool
from deepfake.core.errors import ParamsError
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


KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})  # others count as "other"
STATE_CHANGING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
READY_CACHE_S = 5.0  # /readyz probes the store at most this often, whatever the number of probes


def _hostname(authority: str) -> str | None:
    """The host name of a Host header or an origin's authority, lower-cased, without port or brackets."""
    try:
        return urlsplit("//" + authority).hostname
    except ValueError:  # a malformed port or bracket
        return None


def host_allowed(host_header: str, allowed: tuple[str, ...]) -> bool:
    """Is the request's Host one this service answers to (``serve.allowed_hosts``; ``*``: any)?"""
    if "*" in allowed:
        return True
    name = _hostname(host_header)
    return name is not None and name in {a.strip("[]").lower() for a in allowed}


def origin_allowed(origin: str | None, host_header: str, cors_origins: tuple[str, ...]) -> bool:
    """A state-changing request from a browser must come from this service's own page or a configured origin.

    No Origin header: not a cross-site browser request (browsers send one with every cross-site POST)."""
    if origin is None:
        return True
    if origin in cors_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def _secure(response: Response, path: str) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    if path.startswith("/v1/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


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
        # the three-way call from the package's operating points, its calibrated probability, what it means
        "verdict": job.record.get("verdict") if job.record else None,
        # the file's C2PA content credentials, beside the verdict and never part of it
        "credentials": job.record.get("credentials") if job.record else None,
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
        self.keys = ApiKeys.load(config.api_keys_file)  # first: a keys file with no key refuses to start
        if not self.keys.enabled and not is_loopback(config.host) and not config.allow_anonymous_remote:
            raise ParamsError(
                f"serve.host {config.host} is not loopback and no API key is configured: anyone who reaches the port "
                "could use the service; set serve.api_keys_file (deepfake serve-key), or allow it explicitly with "
                "serve.allow_anonymous_remote (--allow-anonymous-remote)"
            )
        if start_workers:  # then the models: one line naming what is missing (a store-only app has none)
            check_package(config.models, config.backend)
        self.limiter = RateLimiter(config.rate_limit_per_minute)
        self.metrics = Metrics()
        self.limits = VideoLimits(config.max_pixels, config.max_duration_s, config.max_frames)
        self.card = package_card(config.models)  # a bad card stops the service before it starts
        self._local = threading.local()
        self.start_workers = start_workers
        self.pool: WorkerPool | None = None
        self.started = False
        self._quota_lock = threading.Lock()
        self.reserved_bytes = 0  # quota held by uploads still streaming
        self._ready_lock = threading.Lock()
        self._ready_checked = -math.inf
        self._store_writable = False

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
        """Recover the store, sweep what a killed server left, start the workers; once (``deepfake serve`` runs
        it before uvicorn, so a model that cannot load is one line, not a traceback from the lifespan)."""
        if self.started:
            return
        recovered = self.jobs.recover(self.config.max_attempts)
        if any(recovered.values()):
            logger.warning("jobs a previous server left running: %s", recovered)
        swept = self.jobs.sweep_orphans()
        if swept:
            logger.warning("removed %d files no analysis owns (uploads cut short by a previous server)", swept)
        if self.start_workers:
            self.pool = WorkerPool(self.config, self.metrics)
            self.pool.start(self.config.start_timeout_s)
        self.metrics.watch(lambda: self.jobs.counts(), self.ready_workers)
        self.started = True

    def models_failed(self) -> bool:
        """No worker has the models and a respawned one could not load them: uploads would wait forever."""
        return self.pool is not None and self.pool.load_error is not None and not self.ready_workers()

    def store_writable(self) -> bool:
        """The store's writability, probed at most every READY_CACHE_S whatever the number of probes."""
        with self._ready_lock:
            now = time.monotonic()
            if now - self._ready_checked >= READY_CACHE_S:
                self._store_writable = self.jobs.writable()
                self._ready_checked = now
            return self._store_writable

    def reserve(self, used: int, wanted: int) -> bool:
        """Hold ``wanted`` bytes of the disk quota for an upload about to stream (False: it would not fit)."""
        with self._quota_lock:
            if used + self.reserved_bytes + wanted > self.config.disk_quota_bytes:
                return False
            self.reserved_bytes += wanted
            return True

    def unreserve(self, wanted: int) -> None:
        with self._quota_lock:
            self.reserved_bytes -= wanted

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def ready_workers(self) -> int:
        return self.pool.ready_count() if self.pool is not None else 0

    def identity(self, request: Request) -> Caller | None:
        """The caller (keys on) or None (keys off); 401 for a missing or wrong key."""
        if not self.keys.enabled:
            return None
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        caller = self.keys.check(key)
        if caller is None:
            raise HTTPException(
                401, "a valid API key is required (Authorization: Bearer <key>)", {"WWW-Authenticate": "Bearer"}
            )
        return caller


class Problem(BaseModel):
    """Every refusal and error: one sentence saying what is wrong and what to do."""

    detail: str


class Queued(BaseModel):
    id: str
    url: str
    status: str


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these refusal codes, each a ``Problem``; the codes every route can give
    (401 with keys on, 400 for a host name not served, 403 for a cross-site state change) included."""
    common = (400, 401, 403, 422)
    return {code: {"model": Problem, "description": PROBLEM_TEXT[code]} for code in sorted({*codes, *common})}


PROBLEM_TEXT = {
    400: "a host name not served, a form without a video, or a client that went away",
    401: "API keys are on and the key is missing or wrong",
    403: "a cross-site state change (serve.cors_origins)",
    404: "no such analysis for this key, or no such file for it",
    408: "the upload sent nothing for serve.read_timeout_s",
    409: "the analysis is running",
    413: "the upload passes serve.max_upload_mb",
    422: "not a decodable video, past the limits, or a parameter out of range",
    429: "the queue is full or the rate limit is reached (Retry-After)",
    503: "no worker can load the models",
    507: "the disk quota is used up",
}
# the request body of an upload, which the route streams itself (so FastAPI cannot describe it)
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {"video": {"type": "string", "format": "binary"}},
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _service(request: Request) -> Service:
    return request.app.state.service


def _caller(request: Request) -> Caller | None:
    return _service(request).identity(request)


CallerDep = Annotated[Caller | None, Depends(_caller)]  # the key's caller (keys on), None (keys off); 401 otherwise


def _owner(caller: Caller | None) -> str | None:
    return caller.owner if caller is not None else None


def _job_or_404(service: Service, job_id: str, caller: Caller | None) -> Job:
    """The analysis, if it exists and belongs to the caller's key (keys off: every analysis); else 404, the same
    answer for another key's analysis as for none, so ids cannot be probed."""
    job = service.jobs.get(job_id) if len(job_id) <= 64 else None
    if job is None or (caller is not None and job.client != caller.owner):
        raise HTTPException(404, f"no analysis {job_id[:64]!r} (deleted, expired, never created, or not yours)")
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
    async def guard_headers_and_metrics(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host", "")
        if not host_allowed(host, config.allowed_hosts):  # DNS rebinding: a name this service was not given
            response: Response = JSONResponse({"detail": "this host name is not served (serve.allowed_hosts)"}, 400)
        elif request.method in STATE_CHANGING and not origin_allowed(
            request.headers.get("origin"), host, config.cors_origins
        ):  # a cross-site page posting to a service on someone's machine
            response = JSONResponse({"detail": "cross-origin request refused (serve.cors_origins)"}, 403)
        else:
            response = await call_next(request)
        _secure(response, request.url.path)
        # labels from fixed sets: made-up methods and paths must not grow the metrics without bound
        route = request.scope.get("route")
        method = request.method if request.method in KNOWN_METHODS else "other"
        service.metrics.requests.labels(method, getattr(route, "path", "other"), str(response.status_code)).inc()
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> Response:
        # one sentence like every other refusal (clients read `detail` as text), naming the parameter
        what = "; ".join(f"{'.'.join(str(part) for part in e['loc'][1:])}: {e['msg']}" for e in err.errors()[:3])
        return _secure(JSONResponse({"detail": f"invalid request: {what}"}, 422), request.url.path)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> Response:
        # the traceback goes to the log (Starlette logs it); the client gets no server detail
        return _secure(
            JSONResponse({"detail": "internal error; the server log has the details"}, 500), request.url.path
        )

    _add_api(app, service)
    _declare_keys(app, service)
    _add_page(app)
    return app


def _refuse(service: Service, err: UploadError) -> JSONResponse:
    service.metrics.rejected.labels(err.kind).inc()
    headers = {"Retry-After": str(err.retry_after or 1)} if err.status == 429 else None
    return JSONResponse({"detail": err.reason}, status_code=err.status, headers=headers)


def _add_api(app: FastAPI, service: Service) -> None:
    config = service.config

    @app.post(
        "/v1/analyses",
        status_code=202,
        summary="Upload a video for analysis",
        response_model=Queued,
        responses=_problems(408, 413, 429, 503, 507),
        openapi_extra=UPLOAD_BODY,
    )
    async def create_analysis(
        request: Request,
        caller: CallerDep,
        filename: Annotated[str | None, Query(description="display name for a raw-body upload")] = None,
    ) -> Response:
        if service.models_failed():
            reason = "no worker can load the models; the operator has been told (the server log)"
            return _refuse(service, UploadError(503, reason, "unavailable"))
        # the socket's peer, or what a trusted proxy (serve.trusted_proxies) says it is: never a client's header
        identity = caller.owner if caller else (request.client.host if request.client else "unknown")
        wait = service.limiter.retry_after(identity)
        if wait:
            reason = f"rate limit: {config.rate_limit_per_minute} uploads a minute; retry in {wait} s"
            return _refuse(service, UploadError(429, reason, "rate_limited", wait))
        declared = request.headers.get("content-length")
        size = int(declared) if declared and declared.isdigit() else None
        if size is not None and size > config.max_upload_bytes + FORM_OVERHEAD:
            return _refuse(service, too_large(config.max_upload_bytes))  # refused before a byte is read
        counts = await service.query("counts")
        if counts["queued"] >= config.queue_size:
            return _refuse(service, queue_full(config.queue_size, _queue_wait(service)))
        used = await service.query("bytes_used")
        wanted = min(size, config.max_upload_bytes) if size is not None else config.max_upload_bytes
        if not service.reserve(used, wanted):  # held before a byte streams: parallel uploads cannot pass the quota
            reason = "the disk quota for uploads and results is used up (serve.disk_quota_mb); delete analyses"
            return _refuse(service, UploadError(507, reason, "quota"))
        try:
            return await _stream_upload(request, service, caller, filename)
        finally:
            service.unreserve(wanted)

    async def _stream_upload(
        request: Request, service: Service, caller: Caller | None, filename: str | None
    ) -> Response:
        jobs = service.jobs  # this thread's connection: paths here; queries go through service.query
        job_id = uuid.uuid4().hex
        part = jobs.uploads / f"{job_id}.part"
        body = bounded(request.stream(), config.max_upload_bytes + FORM_OVERHEAD, config.read_timeout_s)
        try:
            received = await receive(
                body, request.headers.get("content-type", ""), filename, part, config.max_upload_bytes
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
        added = await service.query("add", job_id, received.filename, received.size, _owner(caller), config.queue_size)
        if not added:  # the queue filled while this upload streamed
            jobs.upload_path(job_id).unlink(missing_ok=True)
            return _refuse(service, queue_full(config.queue_size, _queue_wait(service)))
        url = f"/v1/analyses/{job_id}"
        return JSONResponse({"id": job_id, "url": url, "status": "queued"}, status_code=202, headers={"Location": url})

    @app.get("/v1/analyses", summary="Recent analyses, newest first", responses=_problems())
    def list_analyses(caller: CallerDep, limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = 20) -> dict[str, Any]:
        jobs = service.jobs.recent(limit, owner=_owner(caller))
        return {"analyses": [job_view(j, with_record=False) for j in jobs]}

    @app.get(
        "/v1/analyses/{job_id}",
        summary="An analysis: status, progress and, when done, the predict record",
        responses=_problems(404),
    )
    def get_analysis(job_id: str, caller: CallerDep) -> dict[str, Any]:
        return job_view(_job_or_404(service, job_id, caller))

    @app.get(
        "/v1/analyses/{job_id}/explanation",
        summary="The explanation montage (PNG)",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}}, **_problems(404)},
    )
    def get_explanation(job_id: str, caller: CallerDep) -> FileResponse:
        return _result_file(service, job_id, caller, "montage.png", "image/png")

    @app.get(
        "/v1/analyses/{job_id}/overlay",
        summary="The overlay video (MP4, H.264)",
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}}}, **_problems(404)},
    )
    def get_overlay(job_id: str, caller: CallerDep) -> FileResponse:
        return _result_file(service, job_id, caller, "overlay.mp4", "video/mp4")

    @app.delete(
        "/v1/analyses/{job_id}",
        status_code=204,
        summary="Delete an analysis and its files",
        response_class=Response,
        responses=_problems(404, 409),
    )
    def delete_analysis(job_id: str, caller: CallerDep) -> Response:
        job = _job_or_404(service, job_id, caller)
        if job.status == "running":
            raise HTTPException(409, "the analysis is running; delete it once it is done or failed")
        service.jobs.delete(job_id)
        return Response(status_code=204)

    @app.get("/healthz", summary="Alive", responses=_problems())
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/readyz",
        summary="Models loaded, store writable, queue not full",
        responses={503: {"description": "not ready: `problems` says why"}, **_problems()},
    )
    def readyz() -> JSONResponse:
        counts = service.jobs.counts()
        checks = {
            "workers_ready": service.ready_workers(),
            "store_writable": service.store_writable(),
            "queue": f"{counts['queued']}/{config.queue_size}",
        }
        problems = []
        if service.models_failed():
            problems.append("no worker can load the models (the server log says why)")
        elif not checks["workers_ready"]:
            problems.append("no worker has its models loaded")
        if not checks["store_writable"]:
            problems.append(f"the job store {config.data} is not writable")
        if counts["queued"] >= config.queue_size:
            problems.append("the queue is full")
        body = {"ready": not problems, "problems": problems, **checks, "model": service.card.reference()}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, **_problems()},
    )
    def metrics(caller: CallerDep) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def _declare_keys(app: FastAPI, service: Service) -> None:
    """With keys on, the schema says which operations need one (and how to send it), so a client generated
    from it sends the key, and a schema-driven test checks that those routes refuse a request without one."""
    built = app.openapi
    # the routes that take a caller (CallerDep), so the schema can never disagree with what asks for a key
    needs_key = {
        route.path
        for route in app.routes
        if isinstance(route, APIRoute) and any(d.call is _caller for d in route.dependant.dependencies)
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = built()
            if service.keys.enabled:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                }
                for path in needs_key & set(schema["paths"]):
                    for operation in schema["paths"][path].values():
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        return app.openapi_schema  # type: ignore[return-value]  # set by the first call of `built`

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the schema


def _queue_wait(service: Service) -> int:
    """Retry-After for a full queue: about when the next place frees up (the recent mean job time over the
    workers), in [1, 300] s."""
    mean = service.jobs.mean_job_seconds() or FIRST_JOB_GUESS_S
    return int(min(300, max(1, math.ceil(mean / service.config.workers))))


def _result_file(service: Service, job_id: str, caller: Caller | None, name: str, media_type: str) -> FileResponse:
    job = _job_or_404(service, job_id, caller)
    path = service.jobs.result_dir(job.id) / name
    if job.status != "done" or not path.is_file():
        reason = job.error or (job.record or {}).get("status") or job.status
        raise HTTPException(404, f"analysis {job.id} has no {name} ({reason})")
    return FileResponse(path, media_type=media_type)


def _add_page(app: FastAPI) -> None:
    from deepfake.apps.serve.docs_ui import mount_docs

    mount_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")
