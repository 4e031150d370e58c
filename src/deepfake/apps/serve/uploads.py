"""Uploads: streamed to disk chunk by chunk and stopped at the size limit, then checked as a video by
decoding it. The client's file name is kept only as display text, never used as a path.

A body is either ``multipart/form-data`` with the video in the field ``video`` (a browser form, ``curl
-F video=@clip.mp4``) or the raw bytes (``curl --data-binary @clip.mp4 -H 'Content-Type: video/mp4'``,
name in ``?filename=``). The multipart body is parsed as it arrives by python-multipart's push parser.
"""

from __future__ import annotations

import asyncio
import errno
import os
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:  # python-multipart defines its callback types for type checkers only
    from python_multipart.multipart import MultipartCallbacks

from deepfake.core.errors import InputError

FIELD = "video"
MAX_NAME_CHARS = 200


class UploadError(Exception):
    """An upload refused with an HTTP status and a reason the client can act on."""

    def __init__(self, status: int, reason: str, kind: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.kind = kind  # the metrics label
        self.retry_after = retry_after  # seconds, for 429


def too_large(limit: int) -> UploadError:
    return UploadError(
        413, f"the upload is larger than the {limit / (1 << 20):g} MB limit (serve.max_upload_mb)", "too_large"
    )


def queue_full(queue_size: int, retry_after: int) -> UploadError:
    reason = f"the queue is full ({queue_size} analyses waiting); retry in about {retry_after} s"
    return UploadError(429, reason, "queue_full", retry_after)


@dataclass(frozen=True)
class Received:
    filename: str
    size: int


def display_name(raw: str | None) -> str:
    """A client's file name as display text: the last path component, printable characters, bounded."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C")
    return name.strip()[:MAX_NAME_CHARS] or "upload"


class _Sink:
    """The file being written and the byte count, with the limit checked on every chunk."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self.handle = path.open("wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(self.limit)
        self.handle.write(data)

    def close(self) -> None:
        if not self.handle.closed:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()


class _FormPart:
    """python-multipart callbacks that send the ``video`` field's bytes to the sink and ignore other fields."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.headers: dict[bytes, bytes] = {}
        self.field = b""
        self.value = b""
        self.in_video = False
        self.found = False
        self.filename: str | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.headers, self.in_video = {}, False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field, self.value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        if options.get(b"name") == FIELD.encode() and not self.found:
            self.in_video = self.found = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_video:
            self.sink.write(data[start:end])

    def on_part_end(self) -> None:
        self.in_video = False


async def bounded(chunks: AsyncIterator[bytes], body_limit: int, read_timeout_s: float) -> AsyncIterator[bytes]:
    """The body's chunks, ended with 413 past ``body_limit`` bytes in all (every multipart field, boundary and
    header counted, not just the video) and with 408 when no chunk arrives for ``read_timeout_s``."""
    total = 0
    iterator = chunks.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(iterator.__anext__(), read_timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadError(
                408, f"the upload sent nothing for {read_timeout_s:g} s (serve.read_timeout_s)", "timeout"
            ) from None
        total += len(chunk)
        if total > body_limit:
            raise UploadError(
                413,
                f"the request body is larger than {body_limit / (1 << 20):.1f} MB (serve.max_upload_mb)",
                "too_large",
            )
        yield chunk


async def receive(
    chunks: AsyncIterator[bytes], content_type: str, query_name: str | None, dest: Path, limit: int
) -> Received:
    """Write the upload to ``dest``; raises UploadError (400, 413, 415) and leaves no file behind then.
    ``chunks`` should come through ``bounded``, which limits the whole body and the wait for each chunk."""
    kind, options = parse_options_header(content_type or "")
    sink = _Sink(dest, limit)
    try:
        if kind == b"multipart/form-data":
            boundary = options.get(b"boundary")
            if not boundary:
                raise UploadError(400, "multipart/form-data without a boundary", "bad_request")
            part = _FormPart(sink)
            parser = MultipartParser(boundary, part.callbacks())
            try:
                async for chunk in chunks:
                    parser.write(chunk)
                parser.finalize()
            except MultipartParseError as err:
                raise UploadError(400, f"malformed multipart/form-data body: {err}", "bad_request") from err
            if not part.found:
                raise UploadError(
                    400, f"no '{FIELD}' file field in the form (curl -F {FIELD}=@clip.mp4)", "bad_request"
                )
            name = part.filename
        elif kind in (b"application/x-www-form-urlencoded",):
            raise UploadError(415, "send the video as multipart/form-data or as the raw body", "bad_request")
        else:
            async for chunk in chunks:
                sink.write(chunk)
            name = query_name
        sink.close()
    except BaseException as err:
        sink.close()
        dest.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            raise UploadError(507, "the server's disk is full; retry later", "disk_full") from err
        raise
    if sink.size == 0:
        dest.unlink(missing_ok=True)
        raise UploadError(422, "unreadable: the upload is empty (0 bytes)", "not_video")
    return Received(display_name(name), sink.size)


@dataclass(frozen=True)
class VideoLimits:
    max_pixels: int
    max_duration_s: float
    max_frames: int


def check_video(path: Path, limits: VideoLimits) -> dict[str, Any]:
    """Decode the upload's first frame and check its header against the limits; raises UploadError 422
    with predict's own wording (``unreadable: ...``) for anything that is not a decodable video."""
    from deepfake.media.video import SpanReader, SpanSampling, probe

    try:
        info = probe(path)
        if info.width * info.height > limits.max_pixels:
            raise UploadError(
                422,
                f"unreadable: {info.width}x{info.height} frames exceed video.max_pixels ({limits.max_pixels})",
                "limits",
            )
        if info.duration_s is not None and info.duration_s > limits.max_duration_s:
            raise UploadError(
                422, f"too long: {info.duration_s:.0f} s (serve.max_duration_s is {limits.max_duration_s:g})", "limits"
            )
        if info.frame_count > limits.max_frames:
            raise UploadError(
                422,
                f"too long: the header claims {info.frame_count} frames (serve.max_frames is {limits.max_frames})",
                "limits",
            )
        first = next(iter(SpanReader(path, SpanSampling(1, 64, limits.max_pixels, skip_nonref=False))), None)
    except InputError as err:  # VideoError: not a video, no video stream, codec, truncated, too large
        raise UploadError(422, f"unreadable: {err}".replace(str(path), "the upload"), "not_video") from err
    if first is None:
        raise UploadError(422, "unreadable: no frame could be decoded", "not_video")
    return {
        "width": info.width,
        "height": info.height,
        "duration_s": info.duration_s,
        "frames": info.frame_count,
        "codec": info.codec,
    }
