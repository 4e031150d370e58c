from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake.media.video import FrameSampling, VideoError, iter_sampled_frames, probe, read_sampled_frames
from tests.conftest import write_video

SAMPLING = FrameSampling(stride=3, max_frames=1000, max_pixels=10**7)


def numbered_frames(n: int, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """Frames whose brightness encodes their index, so a decoded frame can be identified."""
    return [np.full((size[1], size[0], 3), 10 * i, np.uint8) for i in range(n)]


def test_only_sampled_frames_come_back_with_true_indices(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", numbered_frames(10))
    frames = read_sampled_frames(path, SAMPLING)
    assert list(frames) == [0, 3, 6, 9]
    for index, frame in frames.items():
        assert abs(float(frame.mean()) - 10 * index) < 6  # the right frame, not a neighbour


def test_reading_stops_at_max_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", numbered_frames(10))
    frames = read_sampled_frames(path, FrameSampling(stride=2, max_frames=5, max_pixels=10**7))
    assert list(frames) == [0, 2, 4]


def test_oversized_frames_are_refused_before_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", numbered_frames(2, size=(320, 240)))
    with pytest.raises(VideoError, match="max_pixels"):
        read_sampled_frames(path, FrameSampling(stride=1, max_frames=10, max_pixels=320 * 240 - 1))


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"not a video at all" * 100, "cannot be opened"), (None, "not found")],
)
def test_unreadable_files_raise_video_error(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoError, match=message):
        read_sampled_frames(path, SAMPLING)
    with pytest.raises(VideoError):
        probe(path)


def test_truncated_stream_yields_the_frames_before_the_cut(tmp_path: Path) -> None:
    # MJPEG in AVI decodes without its trailing index, so a cut file still gives its first frames.
    path = tmp_path / "v.avi"
    frames = [np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8) for i in range(12)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for frame in frames:
        writer.write(frame)
    writer.release()
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    indices = [i for i, _ in iter_sampled_frames(path, FrameSampling(stride=1, max_frames=100, max_pixels=10**7))]
    assert 0 < len(indices) < 12
    assert indices == list(range(len(indices)))
