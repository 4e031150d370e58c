"""Video decoding: only the sampled frames are converted, and a lying header cannot exhaust memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np


class VideoError(RuntimeError):
    """The video cannot be decoded at all (empty, truncated, not a video, too large)."""


@dataclass(frozen=True)
class FrameSampling:
    stride: int  # use frames 0, stride, 2*stride, ...
    max_frames: int  # never read at or past this frame index
    max_pixels: int  # refuse frames with more pixels than this

    @classmethod
    def from_params(cls, section: dict[str, Any]) -> FrameSampling:
        sampling = cls(
            stride=int(section["frame_stride"]),
            max_frames=int(section["max_frames"]),
            max_pixels=int(section["max_pixels"]),
        )
        if sampling.stride < 1 or sampling.max_frames < 1 or sampling.max_pixels < 1:
            raise ValueError(f"video params must be positive: {sampling}")
        return sampling

    def wanted(self, index: int) -> bool:
        return index % self.stride == 0


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frame_count: int  # as the header claims; never trusted for allocation
    fps: float


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: cannot be opened as a video (corrupt, truncated or not a video)")
    return capture


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
    Raises VideoError when not a single frame can be decoded.
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
            if not capture.grab():
                break
            if not sampling.wanted(index):
                continue
            ok, frame = capture.retrieve()
            if not ok or frame is None:
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
