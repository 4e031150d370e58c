"""The service's settings: the ``serve`` section of params, command-line overrides, and what the
workers need to load the models (picklable, so a spawned worker process gets them)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deepfake.core.errors import ParamsError
from deepfake.core.params import Params

logger = logging.getLogger(__name__)

KEY_HASHES_ENV = "DEEPFAKE_API_KEY_HASHES"  # comma-separated SHA-256 hex digests, as in an api_keys_file
MB = 1 << 20


@dataclass(frozen=True)
class ServeConfig:
    host: str
    port: int
    models: Path
    data: Path
    backend: str
    triton_url: str | None
    workers: int
    queue_size: int
    max_upload_bytes: int
    max_duration_s: float
    max_frames: int
    max_pixels: int
    retention_s: float
    disk_quota_bytes: int
    max_attempts: int
    job_timeout_s: float
    worker_memory_bytes: int  # RLIMIT_DATA of each worker; 0: none
    explain: bool
    explain_faces: int  # faces explained per analysis at most
    montage_rows: int  # explain.montage_rows
    overlay_fps: float  # explain.overlay_fps
    api_keys_file: Path | None
    rate_limit_per_minute: int
    cors_origins: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    allow_anonymous_remote: bool
    trusted_proxies: tuple[str, ...]
    read_timeout_s: float
    max_connections: int
    torch_threads: int  # per worker, as predict's workers (predict.torch_threads)
    poll_s: float
    start_timeout_s: float
    shutdown_grace_s: int  # uvicorn's graceful shutdown, then the workers' (one value: they agree)
    params: Params  # validated Params the workers build the predict config and backend from

    @classmethod
    def from_params(cls, params: Params, **overrides: Any) -> ServeConfig:
        """The ``serve`` section, with every override that is not None applied on top."""
        sect = params.serve
        config = cls(
            host=sect.host,
            port=sect.port,
            models=Path(sect.models),
            data=Path(sect.data),
            backend=sect.backend,
            triton_url=sect.triton_url,
            workers=sect.workers,
            queue_size=sect.queue_size,
            max_upload_bytes=int(sect.max_upload_mb * MB),
            max_duration_s=sect.max_duration_s,
            max_frames=sect.max_frames,
            max_pixels=params.video.max_pixels,
            retention_s=sect.retention_hours * 3600,
            disk_quota_bytes=int(sect.disk_quota_mb * MB),
            max_attempts=sect.max_attempts,
            job_timeout_s=sect.job_timeout_s,
            worker_memory_bytes=sect.worker_memory_mb * MB,
            explain=sect.explain,
            explain_faces=sect.explain_faces,
            montage_rows=params.explain.montage_rows,
            overlay_fps=params.explain.overlay_fps,
            api_keys_file=Path(sect.api_keys_file) if sect.api_keys_file else None,
            rate_limit_per_minute=sect.rate_limit_per_minute,
            cors_origins=tuple(sect.cors_origins),
            allowed_hosts=tuple(sect.allowed_hosts),
            allow_anonymous_remote=sect.allow_anonymous_remote,
            trusted_proxies=tuple(sect.trusted_proxies),
            read_timeout_s=sect.read_timeout_s,
            max_connections=sect.max_connections,
            torch_threads=params.predict.torch_threads,
            poll_s=sect.poll_s,
            start_timeout_s=sect.start_timeout_s,
            shutdown_grace_s=sect.shutdown_grace_s,
            params=params,
        )
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        if config.backend == "triton" and not config.triton_url:
            raise ParamsError("serve.backend triton needs serve.triton_url (or --url): host:8000 or grpc://host:8001")
        return config


def hash_key(key: str) -> str:
    """What an api_keys_file stores for ``key``: its SHA-256 hex digest (keys are long random tokens, so a
    plain hash is enough; the key itself is never written down)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    import secrets

    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Caller:
    """Who made a request: ``owner`` is the key's SHA-256 digest (what an analysis belongs to), ``label`` the
    name logs and rate limits use. Keys off: there is no caller (None)."""

    owner: str
    label: str


def _parse_keys(lines: list[tuple[str, str]]) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for where, line in lines:
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        label, _, digest = entry.rpartition(" ")
        digest = digest.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ParamsError(
                f"{where}: expected '[label] <sha256 hex of the key>' (deepfake serve-key), got {entry!r}"
            )
        hashes[digest] = label.strip() or digest[:12]
    return hashes


class ApiKeys:
    """The accepted key hashes, from ``api_keys_file`` lines and ``DEEPFAKE_API_KEY_HASHES``.

    Keys are off only when neither is configured. A configured source that holds no valid key (the last
    key revoked, every line commented out) refuses to start; once running, the file is read again when it
    changes (size or modification time), so a revoked key stops working without a restart, and a file
    that becomes empty, unreadable or malformed accepts no key at all until it is fixed: keys fail closed.
    """

    def __init__(
        self, hashes: dict[str, str], path: Path | None = None, env_lines: list[tuple[str, str]] | None = None
    ) -> None:
        self.hashes = hashes  # digest -> a label for logs and rate limits (never the key)
        self.path = path
        self.env_lines = list(env_lines or [])
        self.configured = path is not None or bool(self.env_lines)
        self._stamp = self._file_stamp()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path | None, environ: dict[str, str] | None = None) -> ApiKeys:
        environ = dict(os.environ) if environ is None else environ
        env_lines = [(KEY_HASHES_ENV, item) for item in environ.get(KEY_HASHES_ENV, "").split(",") if item.strip()]
        lines = cls._file_lines(path) + env_lines
        keys = cls(_parse_keys(lines), path, env_lines)
        if keys.configured and not keys.hashes:
            source = f"serve.api_keys_file {path}" if path is not None else KEY_HASHES_ENV
            raise ParamsError(
                f"{source} holds no API key (every line empty or commented out): refusing to start without keys; "
                "add one (deepfake serve-key) or unset it to run keys-off on loopback"
            )
        return keys

    @staticmethod
    def _file_lines(path: Path | None) -> list[tuple[str, str]]:
        if path is None:
            return []
        try:
            text = path.read_text()
        except OSError as err:
            raise ParamsError(f"serve.api_keys_file {path}: cannot be read: {err}") from err
        return [(f"{path}:{n}", line) for n, line in enumerate(text.splitlines(), 1)]

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
        except OSError:
            return (-1, -1, -1)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def refresh(self) -> None:
        """Read the key file again if it changed since the last read (a stat per call: cheap)."""
        if self.path is None:
            return
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            try:
                hashes = _parse_keys(self._file_lines(self.path) + self.env_lines)
            except ParamsError as err:
                logger.error("API keys: %s; no key is accepted until the file is fixed", err)
                hashes = {}
            if not hashes:
                logger.error("API keys: %s holds no valid key; every request is refused (keys fail closed)", self.path)
            else:
                logger.info("API keys: %s read again: %d keys", self.path, len(hashes))
            self.hashes = hashes
            self._stamp = stamp

    @property
    def enabled(self) -> bool:
        return self.configured

    def check(self, key: str | None) -> Caller | None:
        """The caller when ``key`` is accepted, else None (constant-time comparison per stored hash)."""
        self.refresh()
        if not key:
            return None
        digest = hash_key(key)
        found = None
        for stored, label in list(self.hashes.items()):
            if hmac.compare_digest(stored, digest):
                found = Caller(owner=stored, label=label)
        return found


LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Is ``host`` (an address to listen on) reachable from this machine only?"""
    import ipaddress

    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere
