"""deepfake.zoo.download against a local HTTP server: redirects, ranges, truncation, checksums, faults."""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deepfake.core.errors import InputError
from deepfake.zoo.download import (
    ChecksumMismatch,
    DownloadError,
    download,
    partial_path,
    sha256_of,
    verify_recorded,
)

PAYLOAD = hashlib.shake_256(b"zoo-download-test").digest(300_000)  # deterministic, a few hundred KB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
OTHER = bytes(reversed(PAYLOAD))  # what /tampered serves: same size, another hash


def fetch(
    url: str, dest: Path, sha256: str | None, *, timeout: float = 2.0, retries: int = 2, progress: bool = False
) -> str:
    """``download`` with the tests' settings: small timeouts and chunks, no backoff sleep."""
    return download(
        url, dest, sha256, timeout=timeout, retries=retries, progress=progress, backoff_s=0.0, chunk_bytes=16_384
    )


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD under a few behaviours; counts every request and records its Range header."""

    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.hits[path] += 1
            hit = self.server.hits[path]
            self.server.ranges.setdefault(path, []).append(self.headers.get("Range"))
        if path == "/file":  # ignores Range: always 200 and the whole file
            self._send(PAYLOAD, ranged=False)
        elif path == "/ranged":
            self._send(PAYLOAD, ranged=True)
        elif path == "/redirect":
            self._redirect("/file")
        elif path == "/release":  # a release link: 302 to a signed URL that works only once
            self._redirect(f"/signed/{hit}")
        elif path.startswith("/signed/"):
            with self.server.lock:
                used = path in self.server.signed_used
                self.server.signed_used.add(path)
            if used:
                self._status(403)
            else:
                self._send(PAYLOAD, ranged=True, cut=path == "/signed/1")  # the first one is cut
        elif path == "/truncated":  # the first answer stops halfway through the announced length
            self._send(PAYLOAD, ranged=True, cut=hit == 1)
        elif path == "/tampered":
            self._send(OTHER, ranged=True)
        elif path == "/error500":
            self._status(500)
        elif path == "/slow":
            time.sleep(0.6)
            self._send(PAYLOAD, ranged=False)
        else:
            self._status(404)

    def _send(self, body: bytes, *, ranged: bool, cut: bool = False) -> None:
        start = 0
        header = self.headers.get("Range")
        if ranged and header:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes" if ranged else "none")
        self.end_headers()
        self.wfile.write(part[: len(part) // 2] if cut else part)
        self.wfile.flush()
        self.close_connection = True

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests assert on the counts, not the log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.ranges: dict[str, list[str | None]] = {}
        self.signed_used: set[str] = set()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the read-timeout test) is expected; anything else is reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_writes_the_file_and_returns_its_hash(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "weights" / "model.pth"
    digest = fetch(f"{server.base}/file", dest, PAYLOAD_SHA)
    assert digest == PAYLOAD_SHA == sha256_of(dest)
    assert dest.read_bytes() == PAYLOAD
    assert not partial_path(dest).exists()
    assert server.hits["/file"] == 1


def test_without_a_recorded_hash_the_hash_is_returned_to_record(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    assert fetch(f"{server.base}/file", dest, None) == PAYLOAD_SHA
    verify_recorded(f"{server.base}/file", None, PAYLOAD_SHA)  # nothing recorded yet: accepted
    verify_recorded(f"{server.base}/file", PAYLOAD_SHA.upper(), PAYLOAD_SHA)


def test_verify_recorded_refuses_another_hash_in_one_line() -> None:
    with pytest.raises(ChecksumMismatch) as caught:
        verify_recorded("http://example.invalid/w.pth", "a" * 64, "b" * 64)
    message = str(caught.value)
    assert "http://example.invalid/w.pth" in message and "a" * 64 in message and "b" * 64 in message
    assert "\n" not in message
    assert isinstance(caught.value, DownloadError) and isinstance(caught.value, InputError)


def test_redirect_is_followed(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    assert fetch(f"{server.base}/redirect", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert server.hits["/redirect"] == 1 and server.hits["/file"] == 1


def test_resume_after_a_cut_asks_the_original_url_again(server: _Server, tmp_path: Path) -> None:
    """The first signed URL is cut halfway and then expires (403): the resume must go through the
    release link again (a fresh signed URL) with a Range header."""
    dest = tmp_path / "model.pth"
    assert fetch(f"{server.base}/release", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert server.hits["/release"] == 2
    assert server.hits["/signed/1"] == 1 and server.hits["/signed/2"] == 1
    assert server.ranges["/release"] == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert server.ranges["/signed/2"] == [f"bytes={len(PAYLOAD) // 2}-"]


def test_an_existing_partial_is_resumed_with_a_range(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    partial_path(dest).write_bytes(PAYLOAD[:100_000])
    assert fetch(f"{server.base}/ranged", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges["/ranged"] == ["bytes=100000-"]
    assert not partial_path(dest).exists()


def test_a_server_ignoring_ranges_starts_over(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    partial_path(dest).write_bytes(b"stale bytes from some other file")
    assert fetch(f"{server.base}/file", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert server.hits["/file"] == 1


def test_416_with_a_whole_verified_partial_completes_it(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    partial_path(dest).write_bytes(PAYLOAD)
    assert fetch(f"{server.base}/ranged", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges["/ranged"] == [f"bytes={len(PAYLOAD)}-"]


def test_416_with_a_bad_partial_starts_over(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    partial_path(dest).write_bytes(PAYLOAD + b"extra")  # longer than the file
    assert fetch(f"{server.base}/ranged", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges["/ranged"] == [f"bytes={len(PAYLOAD) + 5}-", None]


def test_truncated_transfer_is_retried_with_a_range(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    assert fetch(f"{server.base}/truncated", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges["/truncated"] == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_truncation_on_the_last_try_keeps_the_partial(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError) as caught:
        fetch(f"{server.base}/truncated", dest, PAYLOAD_SHA, retries=0)
    message = str(caught.value)
    assert f"{server.base}/truncated" in message
    assert f"received {len(PAYLOAD) // 2} of {len(PAYLOAD)} bytes" in message
    assert "\n" not in message
    assert partial_path(dest).read_bytes() == PAYLOAD[: len(PAYLOAD) // 2]
    assert not dest.exists()
    # the next run resumes from it
    assert fetch(f"{server.base}/truncated", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert server.ranges["/truncated"] == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_checksum_mismatch_keeps_the_existing_dest_and_drops_the_partial(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"an older, corrupt copy")
    before = dest.read_bytes()
    url = f"{server.base}/tampered"
    with pytest.raises(ChecksumMismatch) as caught:
        fetch(url, dest, PAYLOAD_SHA)
    message = str(caught.value)
    assert url in message and PAYLOAD_SHA in message and hashlib.sha256(OTHER).hexdigest() in message
    assert "\n" not in message
    assert dest.read_bytes() == before
    assert not partial_path(dest).exists()
    assert server.hits["/tampered"] == 1  # a mismatch is not retried


def test_a_good_existing_dest_is_not_downloaded_again(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    dest.write_bytes(PAYLOAD)
    assert fetch(f"{server.base}/file", dest, PAYLOAD_SHA.upper()) == PAYLOAD_SHA
    assert sum(server.hits.values()) == 0


def test_an_existing_dest_without_a_recorded_hash_is_refused(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"whatever is there")
    with pytest.raises(DownloadError) as caught:
        fetch(f"{server.base}/file", dest, None)
    message = str(caught.value)
    assert hashlib.sha256(b"whatever is there").hexdigest() in message and "no checksum" in message
    assert "\n" not in message
    assert dest.read_bytes() == b"whatever is there"
    assert sum(server.hits.values()) == 0


def test_a_wrong_existing_dest_is_replaced_by_the_verified_file(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    dest.write_bytes(b"corrupt")
    assert fetch(f"{server.base}/file", dest, PAYLOAD_SHA) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD


def test_server_error_is_retried_then_one_line(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    url = f"{server.base}/error500"
    with pytest.raises(DownloadError) as caught:
        fetch(url, dest, PAYLOAD_SHA, retries=3)
    assert str(caught.value) == f"cannot download {url}: HTTP 500 Internal Server Error after 4 tries"
    assert server.hits["/error500"] == 4
    assert not dest.exists()


def test_not_found_is_not_retried(server: _Server, tmp_path: Path) -> None:
    url = f"{server.base}/missing"
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "model.pth", None, retries=3)
    assert str(caught.value) == f"cannot download {url}: HTTP 404 Not Found"
    assert server.hits["/missing"] == 1


def test_read_timeout_is_retried_then_one_line(server: _Server, tmp_path: Path) -> None:
    url = f"{server.base}/slow"
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "model.pth", None, timeout=0.2, retries=1)
    assert str(caught.value) == f"cannot download {url}: no data for 0.2 s (read timeout) after 2 tries"
    assert server.hits["/slow"] == 2


def test_offline_closed_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pth"
    dest = tmp_path / "model.pth"
    with pytest.raises(DownloadError) as caught:
        fetch(url, dest, None, retries=1)
    message = str(caught.value)
    assert message == f"cannot download {url}: connection refused after 2 tries"
    assert "\n" not in message and "Pool" not in message and " object at " not in message
    assert not dest.exists() and not partial_path(dest).exists()


def test_dns_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    url = "http://weights.example.invalid/model.pth"
    with pytest.raises(DownloadError) as caught:
        fetch(url, tmp_path / "model.pth", None, retries=0)
    message = str(caught.value)
    assert message == f"cannot download {url}: cannot resolve the host name (Name or service not known) after 1 try"


def test_a_malformed_recorded_hash_is_refused_before_any_request(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="not 64 hex digits"):
        fetch(f"{server.base}/file", tmp_path / "model.pth", "abc")
    assert sum(server.hits.values()) == 0


def test_progress_bar_on_does_not_change_the_file(server: _Server, tmp_path: Path) -> None:
    dest = tmp_path / "model.pth"
    assert fetch(f"{server.base}/file", dest, PAYLOAD_SHA, progress=True) == PAYLOAD_SHA
    assert dest.read_bytes() == PAYLOAD


def test_retries_back_off_exponentially(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("deepfake.zoo.download.time.sleep", slept.append)
    with pytest.raises(DownloadError):
        download(f"{server.base}/error500", tmp_path / "model.pth", None, retries=3, progress=False, backoff_s=0.5)
    assert slept == [0.5, 1.0, 2.0]
    assert server.hits["/error500"] == 4
