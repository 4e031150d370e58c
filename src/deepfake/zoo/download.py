"""Fetching published model weights: resumable, verified, and never a half file in place.

Published weights are hundreds of megabytes behind links that redirect (a GitHub release asset answers
302 to a short-lived signed URL), servers that drop connections, and publishers that may or may not
give a checksum. ``download`` streams into ``<dest>.partial``, resumes it with an HTTP range after an
interruption (always asking the original URL again, never the expired signed one), retries what another
try may cure (connection errors, timeouts, 5xx, a body cut short) and not what it cannot (4xx), checks
the SHA-256 and only then moves the file into place with ``os.replace``: ``dest`` is either absent,
the previous file, or the whole verified new one.

Every failure is a ``DownloadError`` (an ``InputError``: one bad input item) whose message is one line,
``cannot download <url>: <short reason>``; a command prints it without a traceback.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from deepfake.core.errors import InputError, one_line

log = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_MAX_BACKOFF_S = 30.0
_MAX_REASON_CHARS = 200
# what reading the body may raise when the network, not this machine, fails (writes stay outside these)
_STREAM_FAULTS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)
# modules whose exceptions wrap the real cause in a long repr: their text is never shown to the user
_WRAPPER_MODULES = ("requests", "urllib3")


class DownloadError(InputError):
    """A file could not be fetched (offline, HTTP error, cut short after every try); one line."""


class ChecksumMismatch(DownloadError):
    """The fetched file's SHA-256 is not the recorded one: a changed or tampered publication."""


class _Retry(Exception):
    """One try failed in a way another may cure; ``received``/``expected`` are set when the body was cut short."""

    def __init__(self, reason: str, *, received: int | None = None, expected: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received
        self.expected = expected


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks (weights do not fit comfortably in memory twice)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_recorded(url: str, recorded: str | None, received: str) -> None:
    """Refuse a file whose hash differs from the one recorded at its first download (``recorded`` None:
    nothing recorded yet, the caller records ``received``)."""
    if recorded is not None and recorded.lower() != received.lower():
        raise ChecksumMismatch(_mismatch_message(url, recorded.lower(), received.lower()))


def download(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    progress: bool = True,
    session: requests.Session | None = None,
    chunk_bytes: int = 1 << 20,
    backoff_s: float = 1.0,
) -> str:
    """Fetch ``url`` into ``dest`` and return the file's SHA-256 hex digest.

    ``sha256`` is the expected digest (a mismatch raises ``ChecksumMismatch`` and leaves ``dest`` as it
    was); None when the publisher gives none, and the returned digest is the caller's to record. An
    existing ``dest`` with the expected digest is kept without any request; an existing ``dest`` with no
    expected digest is refused, since it could only be replaced blindly. ``timeout`` bounds the connect
    and every read; ``retries`` is how many more tries follow a failed one (the k-th after a sleep of
    ``backoff_s * 2**(k-1)`` s, at most 30 s); a try after a cut-short body resumes it with a range.
    """
    expected = _normalised_hash(url, sha256)
    if dest.exists():
        have = sha256_of(dest)
        if expected is None:
            raise DownloadError(
                f"cannot download {url}: {dest} already exists with sha256 {have} and no checksum is recorded"
                " for it; record that hash to keep the file, or delete the file to fetch it again"
            )
        if have == expected:
            return have
    partial = partial_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    http = session if session is not None else requests.Session()
    try:
        _fetch_with_retries(
            http,
            url,
            partial,
            expected,
            timeout=timeout,
            retries=retries,
            backoff_s=backoff_s,
            progress=progress,
            chunk_bytes=chunk_bytes,
            label=dest.name,
        )
    finally:
        if session is None:
            http.close()
    received = sha256_of(partial)
    if expected is not None and received != expected:
        partial.unlink(missing_ok=True)  # the next run starts afresh instead of resuming wrong bytes
        raise ChecksumMismatch(_mismatch_message(url, expected, received))
    os.replace(partial, dest)
    return received


def partial_path(dest: Path) -> Path:
    """Where the bytes of ``dest`` collect until they are complete and verified."""
    return dest.with_name(dest.name + ".partial")


def _normalised_hash(url: str, sha256: str | None) -> str | None:
    """The expected digest in lower case; a value that is no SHA-256 digest is the caller's mistake."""
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _SHA256_HEX.fullmatch(value):
        raise DownloadError(f"cannot download {url}: the recorded sha256 {sha256!r} is not 64 hex digits")
    return value


def _mismatch_message(url: str, expected: str, received: str) -> str:
    return f"checksum mismatch for {url}: expected sha256 {expected}, received {received}"


def _fetch_with_retries(
    http: requests.Session,
    url: str,
    partial: Path,
    expected: str | None,
    *,
    timeout: float,
    retries: int,
    backoff_s: float,
    progress: bool,
    chunk_bytes: int,
    label: str,
) -> None:
    """Try up to ``retries + 1`` times until ``partial`` holds the whole body; one line if none succeeds."""
    tries = max(retries, 0) + 1
    last: _Retry | None = None
    for attempt in range(tries):
        if attempt:
            delay = min(backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S)
            log.warning("download of %s failed (%s); try %d of %d in %g s", url, last, attempt + 1, tries, delay)
            time.sleep(delay)
        try:
            _fetch_once(
                http, url, partial, expected, timeout=timeout, progress=progress, chunk_bytes=chunk_bytes, label=label
            )
            return
        except _Retry as err:
            last = err
    assert last is not None  # the loop runs at least once
    raise DownloadError(_failure_message(url, last, tries, partial)) from last


def _failure_message(url: str, last: _Retry, tries: int, partial: Path) -> str:
    """``cannot download <url>: <reason> after <n> tries``, saying what is kept for the next resume."""
    after = f"after {tries} {'try' if tries == 1 else 'tries'}"
    if last.received is not None and last.expected is not None:
        return (
            f"cannot download {url}: received {last.received} of {last.expected} bytes {after}"
            f" (kept in {partial}; run again to resume)"
        )
    kept = partial.stat().st_size if partial.exists() else 0
    resume = f" ({kept} bytes kept in {partial}; run again to resume)" if kept else ""
    return f"cannot download {url}: {last.reason} {after}{resume}"


def _fetch_once(
    http: requests.Session,
    url: str,
    partial: Path,
    expected: str | None,
    *,
    timeout: float,
    progress: bool,
    chunk_bytes: int,
    label: str,
) -> None:
    """One request for the rest of ``url`` (always the original URL: a redirect's signed target expires),
    appended to ``partial``; raises ``_Retry`` for what another try may cure, ``DownloadError`` otherwise."""
    offset = partial.stat().st_size if partial.exists() else 0
    # identity: the bytes on disk are the bytes served, so ranges and Content-Length count the same bytes
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = http.get(url, headers=headers, stream=True, timeout=(timeout, timeout))
    except (requests.ConnectionError, requests.Timeout) as err:
        raise _Retry(_short_reason(err, timeout)) from err
    except requests.RequestException as err:  # too many redirects, a malformed URL: no try can cure them
        raise DownloadError(f"cannot download {url}: {_short_reason(err, timeout)}") from err
    with response:
        status = response.status_code
        if status == 416 and offset:
            if expected is not None and sha256_of(partial) == expected:
                return  # the partial file was already whole: nothing left to send
            partial.unlink()  # longer than the file, or unverifiable: start over (no Range, so no second 416)
        elif status >= 500:
            raise _Retry(f"HTTP {status} {response.reason}")
        elif status not in (200, 206):
            raise DownloadError(f"cannot download {url}: HTTP {status} {response.reason}")
        else:
            start, total = _body_span(response, offset, partial)
            _write_body(
                response,
                partial,
                start,
                total,
                timeout=timeout,
                progress=progress,
                chunk_bytes=chunk_bytes,
                label=label,
            )
            return
    _fetch_once(http, url, partial, expected, timeout=timeout, progress=progress, chunk_bytes=chunk_bytes, label=label)


def _body_span(response: requests.Response, offset: int, partial: Path) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's whole size (None: not announced). A 200 is the
    whole file (the server ignored the range: start over); a 206 must start where the partial file ends."""
    length = _int_header(response, "Content-Length")
    if response.status_code == 200:
        return 0, length
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match is None or int(match[1]) != offset:
        partial.unlink(missing_ok=True)
        raise _Retry(f"the server sent a range other than bytes {offset}- (starting over)")
    if match[3] != "*":
        return offset, int(match[3])
    return offset, None if length is None else offset + length


def _int_header(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _write_body(
    response: requests.Response,
    partial: Path,
    start: int,
    total: int | None,
    *,
    timeout: float,
    progress: bool,
    chunk_bytes: int,
    label: str,
) -> None:
    """Stream the body onto ``partial`` from byte ``start``; a body cut short keeps what arrived (the next
    try resumes from it) and raises ``_Retry`` with the counts."""
    received = start
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not show)
    with bar, partial.open("ab" if start else "wb") as out:
        chunks = response.raw.stream(chunk_bytes, decode_content=False)
        while True:
            try:  # only the network read: a failed write (disk full) is an environment fault, not retried
                chunk = next(chunks, None)
            except _STREAM_FAULTS as err:
                out.flush()
                raise _Retry(_short_reason(err, timeout), received=received, expected=total) from err
            if chunk is None:
                break
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    if total is not None and received > total:
        partial.unlink()
        raise _Retry(f"received {received} bytes, more than the {total} announced (starting over)")
    if total is not None and received < total:
        raise _Retry("the transfer ended early", received=received, expected=total)


def _short_reason(err: BaseException, timeout: float) -> str:
    """A few words for a network fault, found among the causes it wraps: never the wrappers' reprs."""
    if isinstance(err, requests.ConnectTimeout):
        return f"connection timed out after {timeout:g} s"
    causes = _causes(err)
    if any(isinstance(cause, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError) for cause in causes):
        return f"no data for {timeout:g} s (read timeout)"
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name ({cause.strerror or 'name resolution failed'})"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    for cause in causes:
        if isinstance(cause, OSError) and isinstance(cause.strerror, str) and not _is_wrapper(cause):
            return _clip(cause.strerror)
    for cause in reversed(causes):
        if not _is_wrapper(cause) and one_line(cause):
            return _clip(one_line(cause))
    text = one_line(err)
    if text and "Caused by" not in text and " object at " not in text:
        return _clip(text)
    return type(err).__name__


def _causes(err: BaseException) -> list[BaseException]:
    """``err`` and what it wraps (``reason``, ``__cause__``, ``__context__``, exception arguments),
    breadth first, each once, at most 32."""
    found: list[BaseException] = []
    queue: list[BaseException] = [err]
    while queue and len(found) < 32:
        current = queue.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        links = (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args)
        queue.extend(link for link in links if isinstance(link, BaseException))
    return found


def _is_wrapper(err: BaseException) -> bool:
    return type(err).__module__.split(".")[0] in _WRAPPER_MODULES


def _clip(text: str) -> str:
    text = one_line(text)
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."
