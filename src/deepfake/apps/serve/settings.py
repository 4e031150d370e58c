"""The service's settings: the ``serve`` section of params, command-line overrides, and what the
workers need to load the models (picklable, so a spawned worker process gets them)."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deepfake.core.errors import ParamsError
from deepfake.core.params import Params

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
    explain: bool
    explain_faces: int  # faces explained per analysis at most
    montage_rows: int  # explain.montage_rows
    overlay_fps: float  # explain.overlay_fps
    api_keys_file: Path | None
    rate_limit_per_minute: int
    cors_origins: tuple[str, ...]
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
            explain=sect.explain,
            explain_faces=sect.explain_faces,
            montage_rows=params.explain.montage_rows,
            overlay_fps=params.explain.overlay_fps,
            api_keys_file=Path(sect.api_keys_file) if sect.api_keys_file else None,
            rate_limit_per_minute=sect.rate_limit_per_minute,
            cors_origins=tuple(sect.cors_origins),
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


class ApiKeys:
    """The accepted key hashes (from ``api_keys_file`` lines and ``DEEPFAKE_API_KEY_HASHES``); none: keys off."""

    def __init__(self, hashes: dict[str, str]) -> None:
        self.hashes = hashes  # digest -> a label for logs and rate limits (never the key)

    @classmethod
    def load(cls, path: Path | None, environ: dict[str, str] | None = None) -> ApiKeys:
        environ = dict(os.environ) if environ is None else environ
        lines: list[tuple[str, str]] = []
        if path is not None:
            try:
                text = path.read_text()
            except OSError as err:
                raise ParamsError(f"serve.api_keys_file {path}: cannot be read: {err}") from err
            lines += [(f"{path}:{n}", line) for n, line in enumerate(text.splitlines(), 1)]
        lines += [(KEY_HASHES_ENV, item) for item in environ.get(KEY_HASHES_ENV, "").split(",")]
        hashes = {}
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
        return cls(hashes)

    @property
    def enabled(self) -> bool:
        return bool(self.hashes)

    def check(self, key: str | None) -> str | None:
        """The key's label when ``key`` is accepted, else None (constant-time comparison per stored hash)."""
        if not key:
            return None
        digest = hash_key(key)
        found = None
        for stored, label in self.hashes.items():
            if hmac.compare_digest(stored, digest):
                found = label
        return found
