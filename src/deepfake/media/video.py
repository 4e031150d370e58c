"""Video decoding: only the sampled frames are converted, and a lying header cannot exhaust memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.core.errors import InputError, reading_input


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
    def from_params(cls, params: Any) -> FrameSampling:
        """From the validated ``video`` section: every stage that reads videos samples alike."""
        video = params.video
        return cls(stride=video.frame_stride, max_frames=video.max_frames, max_pixels=video.max_pixels)

    def wanted(self, index: int) -> bool:
        return index % self.stride == 0


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frame_count: int  # as the header claims; never trusted for allocation
    fps: float


def _open(path: Path) -> cv2.VideoCapture:
    """Open ``path`` for decoding; any trouble with this one file is a ``VideoError``.

    The file is first opened by Python, so an environment fault (EACCES, EIO, ...) surfaces as the
    ``OSError`` it is and stops the stage, instead of OpenCV's silent "cannot open" becoming a skip.
    A missing file, a folder or a dangling link is this video's ``VideoError``.
    """
    with reading_input(path, VideoError):
        if not path.is_file():
            raise VideoError(f"{path}: file not found")
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise VideoError(f"{path}: empty file (0 bytes)")
            fh.read(1)
    try:
        capture = cv2.VideoCapture(str(path))
        opened = capture.isOpened()
    except cv2.error as err:
        raise VideoError(f"{path}: cannot be opened as a video: {_cv2_message(err)}") from err
    if not opened:
        capture.release()
        raise VideoError(f"{path}: cannot be opened as a video (corrupt, truncated or not a video)")
    return capture


def _cv2_message(err: cv2.error) -> str:
    return " ".join(str(err).split())


def _grab(capture: cv2.VideoCapture, path: Path, index: int) -> bool:
    try:
        return bool(capture.grab())
    except cv2.error as err:  # a decoder failing on a bad stream is this video's problem
        raise VideoError(f"{path}: frame {index} cannot be decoded: {_cv2_message(err)}") from err


def _retrieve(capture: cv2.VideoCapture, path: Path, index: int) -> np.ndarray | None:
    try:
        ok, frame = capture.retrieve()
    except cv2.error as err:
        raise VideoError(f"{path}: frame {index} cannot be decoded: {_cv2_message(err)}") from err
    return frame if ok else None


def probe(path: Path | str) -> VideoInfo:
    """Read the container header only."""
    capture = _open(Path(path))
    try:
        return VideoInfo(
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            frame_count=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
        )
    finally:
        capture.release()


def iter_sampled_frames(path: Path | str, sampling: FrameSampling) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, BGR frame)`` for the sampled frames, in order.

    Skipped frames are only grabbed (demuxed and decoded, not converted or copied), and reading
    stops after the last frame the sampling can use, so the cost follows the frames sampled.
    Frame indices are the true positions in the stream, even when a frame fails to decode.
    Raises VideoError when the file is missing or unreadable as a video, when OpenCV fails on its
    stream, or when not a single frame can be decoded; an environment fault stays an ``OSError``.
    """
    path = Path(path)
    capture = _open(path)
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > sampling.max_pixels:
            raise VideoError(f"{path}: {width}x{height} frames exceed max_pixels={sampling.max_pixels}")
        decoded = 0
        for index in range(sampling.max_frames):
            if not _grab(capture, path, index):
                break
            if not sampling.wanted(index):
                continue
            frame = _retrieve(capture, path, index)
            if frame is None:
                continue
            if frame.shape[0] * frame.shape[1] > sampling.max_pixels:
                raise VideoError(f"{path}: decoded frame {frame.shape[1]}x{frame.shape[0]} exceeds max_pixels")
            decoded += 1
            yield index, frame
        if decoded == 0:
            raise VideoError(f"{path}: no frame could be decoded")
    finally:
        capture.release()


def read_sampled_frames(path: Path | str, sampling: FrameSampling) -> dict[int, np.ndarray]:
    """All sampled frames of a video, by frame index (see iter_sampled_frames)."""
    return dict(iter_sampled_frames(path, sampling))
