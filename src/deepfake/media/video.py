"""Video decoding with PyAV: only the sampled frames are converted, and a lying header cannot exhaust memory.

Every video is opened by Python (``open(path, "rb")``) and the file object handed to FFmpeg, so FFmpeg never
interprets the name (``concat:``, ``http:``, bytes that are not UTF-8 are all just local file names), and an
environment fault reading the file stays the ``OSError`` it is (see ``deepfake.core.errors``). Only the
demuxers of ``VIDEO_CONTAINERS`` are allowed: a playlist or an ``ffconcat`` list named ``.mp4`` would make
FFmpeg open other files.

Two ways to sample:

- ``iter_sampled_frames`` (preprocessing stages): frames 0, s, 2s, ... below ``max_frames``, BGR.
- ``SpanReader`` (``deepfake predict``): N frames spread over the whole duration, RGB, with a bound on the
  frames decoded and a ``coverage`` record saying what was seen.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np

from deepfake.core.errors import InputError, reading_input
from deepfake.core.params import Params

# FFmpeg demuxers a video may be read with (names as in ``ffmpeg -demuxers``). Anything else (concat, hls,
# dash, image2, tee, ...) is refused: those read other files or URLs named inside the "video".
VIDEO_CONTAINERS = (
    "mov,mp4,matroska,webm,avi,flv,mpegts,mpeg,mpegvideo,asf,ogg,yuv4mpegpipe,h264,hevc,m4v,mjpeg,ivf,nut,mxf,dv,"
    "obu,gif,h263,vc1,rm"
)

# In SpanReader, decode sequentially (no seeking) when the video has at most this many frames per wanted
# frame and the GOP length is unknown: seeking in a long-GOP H.264 stream decodes about half a GOP per target.
SEQUENTIAL_FRAMES_PER_TARGET = 64


class VideoError(InputError):
    """The video cannot be decoded at all (missing, empty, truncated, not a video, too large).

    An ``InputError``: a per-video loop records it as that video's skip. Reading a video never turns an
    environment fault (disk I/O error, permission denied; see ``deepfake.core.errors``) into one.
    """


@dataclass(frozen=True)
class FrameSampling:
    stride: int  # use frames 0, stride, 2*stride, ...
    max_frames: int  # never read at or past this frame index
    max_pixels: int  # refuse frames with more pixels than this

    @classmethod
    def from_params(cls, params: Params) -> FrameSampling:
        """From the validated ``video`` section: every stage that reads videos samples alike."""
        video = params.video
        return cls(stride=video.frame_stride, max_frames=video.max_frames, max_pixels=video.max_pixels)

    def wanted(self, index: int) -> bool:
        return index % self.stride == 0


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frame_count: int  # as the header claims (0 when it does not say); never trusted for allocation
    fps: float  # 0.0 when unknown
    duration_s: float | None = None  # the stream's (else the container's) duration; None when unknown
    codec: str = ""  # FFmpeg's decoder name, e.g. "h264"
    container: str = ""  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"


@dataclass(frozen=True)
class SpanSampling:
    """What ``SpanReader`` samples: ``frames`` frames evenly spaced over the whole duration."""

    frames: int  # frames wanted, evenly spaced over the duration
    max_decoded: int  # bound on the frames decoded for one video (the work bound)
    max_pixels: int  # refuse frames with more pixels than this
    skip_nonref: bool = False  # let the decoder drop frames no other frame references (never sampled then)

    def __post_init__(self) -> None:
        if self.frames < 1 or self.max_decoded < 1 or self.max_pixels < 1:
            raise ValueError(f"SpanSampling needs positive values, got {self}")


@dataclass(frozen=True)
class SampledFrame:
    """One frame sampled by ``SpanReader``.

    ``index`` is the decode-order position when the video was decoded sequentially, and an estimate
    (``round((time_s - start) * fps)``) when it was reached by seeking (``coverage["method"] == "seek"``).
    """

    index: int
    time_s: float  # presentation time in seconds, as the stream stamps it
    image: np.ndarray  # RGB uint8, height x width x 3


# ------------------------------------------------------------------------------------------- opening


class _Source:
    """The Python file object FFmpeg reads through; remembers an OSError so it is not lost inside FFmpeg."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self.fault: OSError | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self._fh.read(size)
        except OSError as err:
            self.fault = err
            raise

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._fh.seek(offset, whence)
        except OSError as err:
            self.fault = err
            raise

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True


@contextmanager
def _translating(path: Path, source: _Source, what: str) -> Iterator[None]:
    """Around PyAV calls: an FFmpeg error becomes this video's ``VideoError`` saying ``what`` failed, and an
    OSError from the file itself (which FFmpeg may have seen only as an error code) is re-raised as it was,
    through ``reading_input``: an environment fault stops the stage, a vanished file is this video's skip."""
    try:
        yield
    except av.error.FFmpegError as err:  # before OSError: some FFmpegError classes are OSErrors too
        if source.fault is not None:
            fault = source.fault
            with reading_input(path, VideoError):
                raise fault from err
        raise VideoError(f"{path}: {what}: {_reason(err)}") from err
    except OSError:  # raised by the Python file object and passed through by PyAV
        with reading_input(path, VideoError):
            raise


def _reason(err: av.error.FFmpegError) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


@contextmanager
def _opened(path: Path) -> Iterator[tuple[_Source, Any]]:
    """Open ``path`` as a local file and then as a container; any trouble with this one file is a ``VideoError``.

    The file is opened by Python first, so an environment fault (EACCES, EIO, ...) surfaces as the ``OSError``
    it is and stops the stage, instead of becoming a skip. A missing file, a folder, a dangling link or an
    empty file is this video's ``VideoError``.
    """
    with reading_input(path, VideoError):
        if not path.is_file():
            raise VideoError(f"{path}: file not found")
        fh = open(path, "rb")  # noqa: SIM115 (closed below; tests patch this module's ``open``)
    try:
        with reading_input(path, VideoError):
            if os.fstat(fh.fileno()).st_size == 0:
                raise VideoError(f"{path}: empty file (0 bytes)")
            fh.read(1)
            fh.seek(0)
        source = _Source(fh)
        with _translating(
            path, source, "cannot be opened as a video (not a video, or an unknown or corrupt container)"
        ):
            container = av.open(source, mode="r", container_options={"format_whitelist": VIDEO_CONTAINERS})
        try:
            yield source, container
        finally:
            container.close()
    finally:
        fh.close()


def _video_stream(path: Path, container: Any) -> Any:
    """The video stream to score, with a decoder; a ``VideoError`` naming what is missing otherwise.

    A container may hold several video streams (a phone's second camera, a cover picture, a preview track):
    the one its author marked default, else the one FFmpeg ranks best (``av_find_best_stream``: the most
    frames and pixels); a still picture attached as cover art never, unless it is all there is.
    """
    streams = list(container.streams.video)
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"{path}: no video stream in the {container.format.name} container (streams: {kinds})")
    moving = [s for s in streams if not s.disposition & av.stream.Disposition.attached_pic] or streams
    defaults = [s for s in moving if s.disposition & av.stream.Disposition.default]
    if len(moving) == 1:
        stream = moving[0]
    elif len(defaults) == 1:
        stream = defaults[0]
    else:
        best = container.streams.best("video")
        stream = best if best in moving else moving[0]
    if stream.codec_context is None:
        raise VideoError(
            f"{path}: the video codec of its {container.format.name} container has no decoder here ({stream!r})"
        )
    return stream


def stream_choice(container: Any, stream: Any) -> dict[str, Any]:
    """What a record says about the stream it scored: its index, how many video streams there were, its codec."""
    return {
        "index": int(stream.index),
        "video_streams": len(container.streams.video),
        "codec": str(stream.codec_context.name),
    }


def _header_size(stream: Any) -> tuple[int, int]:
    return int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)


def _check_header_pixels(path: Path, stream: Any, max_pixels: int) -> None:
    width, height = _header_size(stream)
    if width * height > max_pixels:
        raise VideoError(f"{path}: {width}x{height} frames exceed max_pixels={max_pixels}")


def _check_frame_pixels(path: Path, frame: Any, max_pixels: int) -> None:
    if frame.width * frame.height > max_pixels:
        raise VideoError(f"{path}: decoded frame {frame.width}x{frame.height} exceeds max_pixels={max_pixels}")


def _limit_decoder(stream: Any, max_pixels: int) -> None:
    """FFmpeg's own ``max_pixels``: the decoder refuses a larger frame before allocating it, so a stream whose
    header says 64x64 and whose later frames are 8192x4320 never costs gigabytes (the header check alone
    cannot see those frames; a check after decoding is too late for the decoder's frame pool)."""
    stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(max_pixels)}


def _set_threads(stream: Any, threads: int) -> None:
    """Decoder threading (frame and slice); ``threads=0`` lets FFmpeg choose. Decoders are exact, so the
    pixels do not depend on it."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads


def _decode_packet(stream: Any, packet: Any) -> list[Any]:
    """One packet through the decoder (a module function: the tests make it fail)."""
    return stream.decode(packet)


def _fps(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _duration_s(stream: Any, container: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _start_s(stream: Any) -> float:
    if stream.start_time is not None and stream.time_base:
        return float(stream.start_time * stream.time_base)
    return 0.0


class _Frames:
    """Decoded frames of one stream, in decode order, counted; errors name the frame they happened at.

    Every frame's size is checked as it leaves the decoder, before anything keeps it.
    """

    def __init__(self, path: Path, source: _Source, container: Any, stream: Any, max_pixels: int) -> None:
        self.path, self.source, self.container, self.stream = path, source, container, stream
        self.max_pixels = max_pixels
        self.decoded = 0  # frames out of the decoder, over every restart
        self._codec = f"{stream.codec_context.name} in {container.format.name}"
        # packet -> whether the decoder may drop its frame when nothing references it (AVDISCARD_NONREF, set per
        # packet; FFmpeg's frame threads copy it with each packet); None: the decoder's own setting throughout
        self.may_skip: Callable[[Any], bool] | None = None

    def run(self) -> Generator[Any, None, None]:
        """Demux and decode from the current position (after a seek: from the keyframe it landed on)."""
        packets = self.container.demux(self.stream)
        while True:
            with _translating(self.path, self.source, f"demuxing fails after frame {self.decoded} ({self._codec})"):
                packet = next(packets, None)
            if packet is None:
                # a frame refused for its size may vanish without an error (frame threads drop it): the size the
                # decoder last saw still says so
                self._check_size_change()
                return
            if self.may_skip is not None:
                self.stream.codec_context.skip_frame = "NONREF" if self.may_skip(packet) else "DEFAULT"
            try:
                with _translating(self.path, self.source, f"frame {self.decoded} cannot be decoded ({self._codec})"):
                    frames = _decode_packet(self.stream, packet)
            except VideoError:
                self._check_size_change()
                raise
            for frame in frames:
                _check_frame_pixels(self.path, frame, self.max_pixels)
                self.decoded += 1
                yield frame

    def _check_size_change(self) -> None:
        """After a decode error: say so when the cause is a frame size past the limit (FFmpeg's ``max_pixels``
        refusal reads only "invalid data")."""
        width, height = _header_size(self.stream)
        if width * height > self.max_pixels:
            raise VideoError(
                f"{self.path}: frame {self.decoded} is {width}x{height}, over max_pixels={self.max_pixels}"
                " (the stream changes its frame size after its header)"
            )


def _decoder(
    path: Path, source: _Source, container: Any, max_pixels: int, threads: int, skip_nonref: bool = False
) -> _Frames:
    """The chosen stream of an opened container, checked and set up to decode: size limits, threads."""
    stream = _video_stream(path, container)
    _check_header_pixels(path, stream, max_pixels)
    _limit_decoder(stream, max_pixels)
    _set_threads(stream, threads)
    if skip_nonref:
        # FFmpeg's AVDISCARD_NONREF: frames nothing else predicts from (most B-frames) are not
        # decoded at all; every decoded frame is exact, and a target takes the next decoded one
        stream.codec_context.skip_frame = "NONREF"
    return _Frames(path, source, container, stream, max_pixels)


def upright(frame: Any, image: np.ndarray) -> np.ndarray:
    """``image`` (converted from ``frame``) turned as the video's display matrix says, so a phone clip filmed
    upright is scored upright, as players show it (a face detector misses sideways faces). A rotation that
    is not a multiple of 90 degrees is left alone (no camera writes one)."""
    rotation = frame.rotation or 0
    turns = round(rotation / 90)
    if turns % 4 == 0 or abs(rotation - 90 * turns) > 1:
        return image
    # the display matrix turns the stored frame counterclockwise by `rotation` degrees, as np.rot90 does
    return np.ascontiguousarray(np.rot90(image, k=turns % 4))


# ------------------------------------------------------------------------------------ the stages' API


_I420 = {"bgr24": cv2.COLOR_YUV2BGR_I420, "rgb24": cv2.COLOR_YUV2RGB_I420}


def to_image(frame: Any, fmt: str) -> np.ndarray:
    """A decoded frame as a ``bgr24`` or ``rgb24`` array.

    Planar 4:2:0 (what H.264, HEVC, VP9 and MPEG-4 give almost always) is converted by OpenCV, several
    times faster than FFmpeg's swscale at the same BT.601 limited-range matrix (pixels within 3 grey
    levels of it); any other pixel format, full range or odd size goes through swscale.
    """
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), _I420[fmt])
    return frame.to_ndarray(format=fmt)


def probe(path: Path | str) -> VideoInfo:
    """Read the container header only (what it claims; see VideoInfo)."""
    path = Path(path)
    with _opened(path) as (_, container):
        stream = _video_stream(path, container)
        width, height = _header_size(stream)
        return VideoInfo(
            width=width,
            height=height,
            frame_count=int(stream.frames or 0),
            fps=_fps(stream),
            duration_s=_duration_s(stream, container),
            codec=str(stream.codec_context.name),
            container=str(container.format.name),
        )


def iter_sampled_frames(
    path: Path | str, sampling: FrameSampling, *, threads: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, BGR frame)`` for frames 0, stride, 2*stride, ... below ``max_frames``, in order.

    Frame indices are display-order positions in the stream, as a decoder that outputs every frame counts
    them. Skipped frames are not converted, and decoding stops after the last frame the sampling can use, so
    the cost follows ``max_frames``. Where each frame's position is known before decoding (``_display_ranks``:
    H.264 or HEVC with a presentation time on every packet), a frame that is not sampled and that no other
    frame references (most B-frames) is not decoded at all; every frame decoded is bit-identical either way.
    Should the decoder's output ever disagree with those positions, the rest is decoded counting every frame.
    Raises VideoError when the file is missing or unreadable as a video, when its frames are too large, when
    the decoder fails on its stream, or when not a single frame can be decoded; an environment fault stays an
    ``OSError``.
    """
    path = Path(path)
    ranks = _display_ranks(path, sampling.max_frames)
    last = -1
    if ranks is not None:
        try:
            for index, image in _sampled_frames(path, sampling, threads, ranks):
                last = index
                yield index, image
        except _RanksDisagree:
            ranks = None  # decode again, counting every frame, past what the ranked pass gave
    if ranks is None:
        for index, image in _sampled_frames(path, sampling, threads, None):
            if index > last:
                last = index
                yield index, image
    if last < 0:
        raise VideoError(f"{path}: no frame could be decoded")


class _RanksDisagree(Exception):
    """The decoder gave a frame at a display position the packets' presentation times did not predict."""


# Codecs whose every packet holds exactly one frame, so a frame's display position is its packet's rank by
# presentation time; frames are reordered over at most a few packets (H.264 and HEVC allow 16).
RANKED_CODECS = ("h264", "hevc")
REORDER_PACKETS = 64  # packets read past max_frames for the ranks of the frames below it


def _display_ranks(path: Path, max_frames: int) -> dict[int, int] | None:
    """Each packet's display position by presentation time (pts -> rank), from the first ``max_frames`` +
    ``REORDER_PACKETS`` packets, read without decoding; None where those positions cannot be trusted: another
    codec, a packet without a time, two with the same, one the demuxer marks to be discarded or corrupt, or a
    stream that does not start on a keyframe (the decoder drops what comes before it)."""
    times: list[int] = []
    try:
        with _opened(path) as (source, container):
            stream = _video_stream(path, container)
            if stream.codec_context.name not in RANKED_CODECS:
                return None
            with _translating(path, source, "its packets cannot be read"):
                for packet in container.demux(stream):
                    if packet.size == 0:
                        continue  # the demuxer's end-of-stream flush packet
                    if packet.pts is None or packet.is_discard or packet.is_corrupt:
                        return None
                    if not times and not packet.is_keyframe:
                        return None
                    times.append(int(packet.pts))
                    if len(times) >= max_frames + REORDER_PACKETS:
                        break
    except VideoError:
        return None  # decoding counts every frame, and reports what is wrong with the file as it always did
    if not times or len(set(times)) != len(times):
        return None
    return {pts: rank for rank, pts in enumerate(sorted(times))}


def _sampled_frames(
    path: Path, sampling: FrameSampling, threads: int, ranks: dict[int, int] | None
) -> Iterator[tuple[int, np.ndarray]]:
    """The sampled frames, indexed by ``ranks`` (unsampled frames nothing references are not decoded) or, with
    None, by counting every decoded frame."""

    def sampled(index: int) -> bool:
        return index < sampling.max_frames and sampling.wanted(index)

    with _opened(path) as (source, container):
        frames = _decoder(path, source, container, sampling.max_pixels, threads)
        if ranks is not None:
            frames.may_skip = lambda packet: packet.pts in ranks and not sampled(ranks[packet.pts])
        last, expected = -1, 0  # the last index given, the next sampled one
        for position, frame in enumerate(frames.run()):
            index = position if ranks is None else ranks.get(-1 if frame.pts is None else int(frame.pts))
            if index is None or index <= last:
                raise _RanksDisagree  # a frame the packets did not announce, or out of display order
            if expected < sampling.max_frames and index > expected:
                raise _RanksDisagree  # a sampled frame did not come out where its time put it
            last = index
            if index >= sampling.max_frames:
                break
            if index != expected:
                continue
            expected += sampling.stride
            yield index, upright(frame, to_image(frame, "bgr24"))
        if ranks is not None and expected < min(sampling.max_frames, len(ranks)):
            raise _RanksDisagree  # the stream ended before a frame its packets announced


# ------------------------------------------------------------------------------------- predict's API


class SpanReader:
    """Frames spread over the WHOLE duration of a video, so a face that appears late is still seen.

    Iterate it for ``SampledFrame`` s (RGB, in time order, no frame twice); ``coverage`` is filled as it goes
    and complete once the iteration ends:

    - ``frames_wanted``, ``frames_sampled``, ``frames_decoded`` (every frame out of the decoder, skipped
      ones included; at most ``max_decoded``), ``bound_hit`` (decoding stopped at ``max_decoded``),
    - ``first_s``, ``last_s`` (times of the first and last sampled frame), ``start_s``, ``duration_s``
      (from the header: the stream's duration, else the container's, else frame count / rate, extended to
      the stream's last packet when that differs; None when unknown), ``fps``, ``threads``,
    - ``stream`` (which video stream was read: ``stream_choice``), ``rotation`` (the display matrix's
      rotation in degrees; frames come upright),
    - ``method``: ``"sequential"`` (decode from the start, take the first frame at or after each target
      time), ``"seek"`` (seek to the keyframe before each target and decode forward to it), or
      ``"sequential-unknown-duration"`` (no duration known: decode up to ``max_decoded`` frames and pick
      evenly among them),
    - ``note``: what went wrong with the header or the bound, or None.

    Targets are ``start + k * duration / frames`` for k = 0..frames-1. Sequential decoding is chosen when
    the video is short (all of it costs less than seeking: at most ``max_decoded`` frames and at most
    about half a GOP per target, the GOP from the container's index or SEQUENTIAL_FRAMES_PER_TARGET);
    otherwise each target is reached by seeking, with at most its share of the remaining budget decoded
    per target, so a huge GOP cannot blow the work bound. The header's frame count is never used to size
    anything. Raises VideoError like ``iter_sampled_frames``; an environment fault stays an ``OSError``.
    """

    def __init__(self, path: Path | str, sampling: SpanSampling, *, threads: int = 0) -> None:
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.path = Path(path)
        self.sampling = sampling
        self.threads = threads
        self.coverage: dict[str, Any] = {}
        self._notes: list[str] = []
        self._gop: float = SEQUENTIAL_FRAMES_PER_TARGET  # mean frames per keyframe, from the index if known

    def __iter__(self) -> Iterator[SampledFrame]:
        path, sampling = self.path, self.sampling
        self._notes = []
        with _opened(path) as (source, container):
            frames = _decoder(path, source, container, sampling.max_pixels, self.threads, sampling.skip_nonref)
            stream = frames.stream
            fps, start = _fps(stream), _start_s(stream)
            duration = _duration_s(stream, container)
            if duration is None and stream.frames and fps:
                duration = stream.frames / fps
            if duration is not None:
                duration = self._checked_duration(stream, start, duration, fps)
            method = self._method(stream, duration, fps)
            self.coverage = {
                "frames_wanted": sampling.frames,
                "frames_sampled": 0,
                "frames_decoded": 0,
                "bound_hit": False,
                "first_s": None,
                "last_s": None,
                "start_s": start,
                "duration_s": duration,
                "fps": fps or None,
                "method": method,
                "threads": self.threads,
                "skip_nonref": sampling.skip_nonref,
                "stream": stream_choice(container, stream),
                "rotation": 0,
                "note": None,
            }
            if method == "seek":
                assert duration is not None
                chosen = self._seek(frames, start, duration, fps)
            elif method == "sequential":
                assert duration is not None
                chosen = self._sequential(frames, start, duration, fps)
            else:
                self._notes.append("the header gives no duration: picked evenly among the frames decoded")
                chosen = self._unknown_duration(frames, start, fps)
            yield from self._converted(chosen, frames)
            self._finish(frames)
            if self.coverage["frames_sampled"] == 0:
                raise VideoError(f"{path}: no frame could be decoded")

    # ---------------------------------------------------------------------------------------- choices

    def _checked_duration(self, stream: Any, start: float, duration: float, fps: float) -> float:
        """The header's duration, unless the stream's own last packet says otherwise by more than a frame and a
        half: then what the stream holds, so the frames span all of it and no target lies past its end (a
        container's duration may be another stream's, its audio's, or simply wrong)."""
        end = _stream_end_s(self.path, stream.index, self.sampling.max_decoded)
        frame = 1 / fps if fps else 0.0
        if end is None or end < start or abs(end + frame - (start + duration)) <= max(1.5 * frame, 0.05):
            return duration
        self._notes.append(
            f"the stream holds {end + frame - start:.3f}s where its header claims {duration:.3f}s: sampled over"
            " what it holds"
        )
        return end + frame - start

    def _method(self, stream: Any, duration: float | None, fps: float) -> str:
        if duration is None:
            return "sequential-unknown-duration"
        if not fps:
            return "sequential"  # targets by time; the frame count is unknown, the work bound still holds
        estimated = duration * fps
        gop = _mean_gop(stream, estimated)
        self._gop = gop or SEQUENTIAL_FRAMES_PER_TARGET
        seek_cost = self.sampling.frames * (gop / 2 + 2) if gop else self.sampling.frames * SEQUENTIAL_FRAMES_PER_TARGET
        if estimated <= self.sampling.max_decoded and estimated <= seek_cost:
            return "sequential"
        return "seek"

    # ------------------------------------------------------------------------------------- strategies

    def _sequential(self, frames: _Frames, start: float, duration: float, fps: float) -> Iterator[tuple[int, Any]]:
        """Decode from the start; the first frame at or after each target is chosen (one frame, once)."""
        targets = _targets(start, duration, self.sampling.frames)
        slack = 0.5 / fps if fps else 0.0
        next_target = 0
        last_time = None
        for position, frame in enumerate(frames.run()):
            time_s = _frame_time(frame, start, position, fps)
            # dropped frames leave gaps in the decode order: the index then comes from the timestamp
            index = round((time_s - start) * fps) if self.sampling.skip_nonref and fps else position
            last_time = time_s
            if time_s + slack >= targets[next_target]:
                while next_target < len(targets) and time_s + slack >= targets[next_target]:
                    next_target += 1
                yield index, frame
                if next_target == len(targets):
                    return
            if frames.decoded >= self.sampling.max_decoded:
                self._bound_hit()
                return
        if last_time is not None:
            self._notes.append(
                f"the stream ends at {last_time:.3f}s, before the {start + duration:.3f}s its header claims"
                f" ({frames.decoded} frames decoded, header frame count {frames.stream.frames or 'not given'})"
            )

    def _seek(self, frames: _Frames, start: float, duration: float, fps: float) -> Iterator[tuple[int, Any]]:
        """Seek to the keyframe before each target, decode forward to the first frame at or after it."""
        sampling, stream = self.sampling, frames.stream
        targets = _targets(start, duration, sampling.frames)
        slack = 0.5 / fps
        position: float | None = None  # time of the last frame decoded: the decoder sits just after it
        running: Generator[Any, None, None] | None = None
        last_yielded: float | None = None
        respaced = False
        k = 0
        while k < len(targets):
            left = sampling.max_decoded - frames.decoded
            if left <= 0:
                self._bound_hit()
                return
            share = max(1, left // (len(targets) - k))
            target = targets[k]
            # decoding on costs `ahead` frames; a seek lands up to a GOP before the target
            ahead = (target - position) * fps if position is not None else math.inf
            if running is None or not 0 <= ahead <= min(share, self._gop):
                if running is not None:
                    running.close()
                with _translating(frames.path, frames.source, f"seeking to {target:.3f}s fails"):
                    frames.container.seek(
                        math.floor(target / stream.time_base), stream=stream, backward=True, any_frame=False
                    )
                running = frames.run()
            chosen = None
            for spent, frame in enumerate(running, start=1):
                position = _frame_time(frame, start, None, fps)
                if position + slack >= target:
                    chosen = frame
                    break
                if spent >= share or frames.decoded >= sampling.max_decoded:
                    chosen = frame  # the nearest frame before the target the budget reaches
                    self._notes.append(f"a target's share of the budget ({share} frames) ended before it")
                    break
            if chosen is None:  # the stream ended before the target: the header's duration is wrong
                running = None
                end = position if position is not None else start
                self._notes.append(
                    f"the stream ends near {end:.3f}s, before the {start + duration:.3f}s its header claims"
                )
                low = last_yielded if last_yielded is not None else start
                if respaced or end <= low:
                    return
                respaced = True  # spread the remaining targets over what the stream really holds
                remaining = len(targets) - k
                targets[k:] = [low + (j + 1) * (end - low) / remaining for j in range(remaining)]
                continue
            chosen_time = _frame_time(chosen, start, None, fps)
            if last_yielded is None or chosen_time > last_yielded:
                last_yielded = chosen_time
                yield round((chosen_time - start) * fps), chosen
            k += 1
            while k < len(targets) and targets[k] <= chosen_time + slack:
                k += 1  # targets the chosen frame already stands for

    def _unknown_duration(self, frames: _Frames, start: float, fps: float) -> Iterator[tuple[int, Any]]:
        """No duration: count the frames (decode up to ``max_decoded``, keeping none), then decode again from
        the start and take N evenly spread among them. One decoded frame is held at a time, so a stream
        with no duration costs twice the decoding, never memory that grows with it."""
        counted = 0
        for _ in frames.run():
            counted += 1
            if frames.decoded >= self.sampling.max_decoded:
                self._bound_hit()
                break
        if not counted:
            return
        wanted = self.sampling.frames
        picks = sorted({round(i * (counted - 1) / max(wanted - 1, 1)) for i in range(min(wanted, counted))})
        first_pass = frames.decoded
        sampling = self.sampling
        with _opened(self.path) as (source, container):
            again = _decoder(self.path, source, container, sampling.max_pixels, self.threads, sampling.skip_nonref)
            following = iter(picks)
            pick = next(following)
            for index, frame in enumerate(again.run()):
                frames.decoded = first_pass + again.decoded
                if index == pick:
                    yield index, frame
                    pick = next(following, -1)
                    if pick < 0:
                        return

    # ------------------------------------------------------------------------------------------ helpers

    def _converted(self, chosen: Iterator[tuple[int, Any]], frames: _Frames) -> Iterator[SampledFrame]:
        start, fps = self.coverage["start_s"], self.coverage["fps"] or 0.0
        for index, frame in chosen:
            time_s = _frame_time(frame, start, index, fps)
            coverage = self.coverage
            coverage["rotation"] = int(frame.rotation or 0)
            coverage["frames_sampled"] += 1
            coverage["frames_decoded"] = frames.decoded
            if coverage["first_s"] is None:
                coverage["first_s"] = time_s
            coverage["last_s"] = time_s
            yield SampledFrame(index=index, time_s=time_s, image=upright(frame, to_image(frame, "rgb24")))

    def _bound_hit(self) -> None:
        self.coverage["bound_hit"] = True
        self._notes.append(f"stopped at max_decoded={self.sampling.max_decoded} decoded frames")

    def _finish(self, frames: _Frames) -> None:
        self.coverage["frames_decoded"] = frames.decoded
        self.coverage["note"] = "; ".join(dict.fromkeys(self._notes)) or None


def _stream_end_s(path: Path, index: int, max_packets: int) -> float | None:
    """The time of the last packet of stream ``index``, from the stream itself: seek to its last keyframe and
    demux to the end (packets only, nothing decoded; at most ``max_packets``). None where the container cannot
    seek there or stamps no time; an environment fault reading the file stays the ``OSError`` it is."""
    with _opened(path) as (source, container):
        stream = container.streams[index]
        last: float | None = None
        try:
            with _translating(path, source, "seeking to the stream's end fails"):
                container.seek(2**62, stream=stream, backward=True, any_frame=False)
                for count, packet in enumerate(container.demux(stream)):
                    if count >= max_packets:
                        return None  # the seek did not land near the end: no word from the stream
                    if packet.pts is not None and packet.time_base:
                        last = max(last or 0.0, float(packet.pts * packet.time_base))
        except VideoError:
            return None  # the container cannot seek there: the header keeps the word
        return last


def _targets(start: float, duration: float, count: int) -> list[float]:
    return [start + k * duration / count for k in range(count)]


def _frame_time(frame: Any, start: float, index: int | None, fps: float) -> float:
    """The frame's presentation time; from its index and the rate when the stream does not stamp it."""
    if frame.pts is not None and frame.time_base:
        return float(frame.pts * frame.time_base)
    if index is not None and fps:
        return start + index / fps
    return start


def _mean_gop(stream: Any, estimated_frames: float) -> float | None:
    """Mean frames per keyframe from the container's index (MP4 sample table, Matroska cues), if it has one."""
    entries = stream.index_entries
    if not entries:
        return None
    keyframes = sum(1 for entry in entries if entry.is_keyframe)
    return estimated_frames / keyframes if keyframes else None
