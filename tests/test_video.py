import contextlib
import errno
import io
import os
import struct
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np
import pytest

from deepfake.media import video as video_module
from deepfake.media.video import (
    FrameSampling,
    SpanReader,
    SpanSampling,
    VideoError,
    iter_sampled_frames,
    probe,
)
from tests.conftest import write_av, write_raw_h264, write_video

SAMPLING = FrameSampling(stride=3, max_frames=1000, max_pixels=10**7)


def read_sampled_frames(path: Path, sampling: FrameSampling) -> dict[int, np.ndarray]:
    """Every frame ``iter_sampled_frames`` yields, by frame index."""
    return dict(iter_sampled_frames(path, sampling))


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


# ------------------------------------------------------------------------------------- PyAV specifics


def noisy_frames(n: int, size: tuple[int, int] = (128, 96)) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for i in range(n)]


def long_video(path: Path, gop: int) -> Path:
    """20 minutes at 1 fps, 32x32: dark for the first 100 s, bright after (the late face the bug report lost)."""
    frames = [np.full((32, 32, 3), 40 if second < 100 else 200, np.uint8) for second in range(1200)]
    return write_av(path, frames, fps=1, options={"g": str(gop), "preset": "ultrafast"})


ALL = FrameSampling(stride=1, max_frames=1000, max_pixels=10**7)


def test_a_name_that_is_not_utf8_decodes(tmp_path: Path) -> None:
    path = tmp_path / os.fsdecode(b"caf\xe9.mp4")
    write_av(tmp_path / "v.mp4", numbered_frames(6)).rename(path)
    assert probe(path).codec == "h264"
    assert list(read_sampled_frames(path, SAMPLING)) == [0, 3]
    assert [f.index for f in SpanReader(path, SpanSampling(frames=3, max_decoded=100, max_pixels=10**7))] == [0, 2, 4]


def test_a_name_ffmpeg_would_interpret_is_only_a_local_file(tmp_path: Path) -> None:
    write_av(tmp_path / "a.mp4", numbered_frames(3))
    write_av(tmp_path / "b.mp4", numbered_frames(5))
    odd = tmp_path / "concat:a.mp4|b.mp4"
    write_av(tmp_path / "c.mp4", numbered_frames(7)).rename(odd)
    assert len(read_sampled_frames(odd, ALL)) == 7  # its own 7 frames, not 3 + 5


def test_a_concat_list_named_mp4_is_refused(tmp_path: Path) -> None:
    write_av(tmp_path / "a.mp4", numbered_frames(3))
    (tmp_path / "list.mp4").write_text("ffconcat version 1.0\nfile a.mp4\n")
    with pytest.raises(VideoError, match="cannot be opened as a video"):
        read_sampled_frames(tmp_path / "list.mp4", ALL)


@pytest.mark.parametrize(
    "size, codec, suffix, pix_fmt",
    [
        ((2, 2), "libx264", "mp4", "yuv420p"),
        ((8, 8), "libx264", "mp4", "yuv420p"),
        ((8, 8), "mpeg4", "mp4", "yuv420p"),
        ((2, 2), "rawvideo", "avi", "bgr24"),
    ],
)
def test_tiny_videos_decode(tmp_path: Path, size: tuple[int, int], codec: str, suffix: str, pix_fmt: str) -> None:
    path = write_av(tmp_path / f"v.{suffix}", numbered_frames(5, size), codec=codec, pix_fmt=pix_fmt)
    frames = read_sampled_frames(path, ALL)
    assert list(frames) == [0, 1, 2, 3, 4]
    assert frames[4].shape == (size[1], size[0], 3)
    assert abs(float(frames[4].mean()) - 40) < 6


@pytest.mark.parametrize(("max_decoded", "method"), [(1200, "sequential"), (400, "seek"), (60, "seek")])
def test_a_long_video_is_sampled_over_its_whole_duration(tmp_path: Path, max_decoded: int, method: str) -> None:
    path = long_video(tmp_path / "long.mp4", gop=1200 if method == "sequential" else 10)
    reader = SpanReader(path, SpanSampling(frames=16, max_decoded=max_decoded, max_pixels=10**7))
    frames = list(reader)
    coverage = reader.coverage
    assert coverage["method"] == method and coverage["duration_s"] == pytest.approx(1200)
    assert [f.index for f in frames] == [int(f.time_s) for f in frames]  # 1 fps: the index is the second
    if max_decoded >= 400:
        assert [f.time_s for f in frames] == [75.0 * k for k in range(16)]
        assert coverage["note"] is None and coverage["last_s"] == 1125
    else:  # 3 decoded frames per target: the nearest frame the share reaches, within a GOP before the target
        assert all(75 * k - 10 < f.time_s <= 75 * k for k, f in enumerate(frames)) and coverage["note"]
    assert all((f.image.mean() > 150) == (f.time_s >= 100) for f in frames)  # the late frames are seen
    assert coverage["frames_sampled"] == len(frames) == 16 and coverage["first_s"] == 0
    assert 16 <= coverage["frames_decoded"] <= max_decoded


def test_a_huge_gop_cannot_blow_the_decode_bound(tmp_path: Path) -> None:
    path = long_video(tmp_path / "long.mp4", gop=1200)  # one keyframe: every seek decodes from frame 0
    reader = SpanReader(path, SpanSampling(frames=16, max_decoded=200, max_pixels=10**7))
    frames = list(reader)
    assert reader.coverage["method"] == "seek" and reader.coverage["frames_decoded"] <= 200
    assert frames and reader.coverage["note"]
    times = [f.time_s for f in frames]
    assert times == sorted(set(times))


def test_a_matroska_without_frame_count_is_sampled_by_time(tmp_path: Path) -> None:
    path = write_av(tmp_path / "v.mkv", numbered_frames(24, (32, 32)), fps=8, codec="libvpx-vp9")
    assert probe(path).frame_count == 0 and probe(path).duration_s == pytest.approx(3, abs=0.01)
    reader = SpanReader(path, SpanSampling(frames=4, max_decoded=1000, max_pixels=10**7))
    frames = list(reader)
    assert [f.time_s for f in frames] == pytest.approx([0, 0.75, 1.5, 2.25], abs=0.01)
    assert [f.index for f in frames] == [0, 6, 12, 18]
    assert abs(float(frames[-1].image.mean()) - 180) < 8


def test_without_any_duration_frames_are_picked_evenly_from_what_was_decoded(tmp_path: Path) -> None:
    class NoSeek(io.RawIOBase):  # a pipe: the muxer cannot go back to write the duration or the cues
        def __init__(self, fh: io.BufferedWriter) -> None:
            self.fh = fh

        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            return self.fh.write(data)

    path = tmp_path / "v.mkv"
    with open(path, "wb") as fh:
        write_av(NoSeek(fh), numbered_frames(20, (32, 32)), fps=8, fmt="matroska")  # type: ignore[arg-type]
    reader = SpanReader(path, SpanSampling(frames=5, max_decoded=1000, max_pixels=10**7))
    indices = [f.index for f in reader]
    coverage = reader.coverage
    assert coverage["method"] == "sequential-unknown-duration" and coverage["duration_s"] is None
    assert indices[0] == 0 and indices[-1] == 19 and len(indices) == 5
    assert coverage["frames_decoded"] == 40  # counted, then decoded again to the last pick: one frame held at a time
    assert "no duration" in coverage["note"]


def test_a_text_file_named_mp4_names_the_container_problem(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="not a video, or an unknown or corrupt container"):
        list(SpanReader(path, SpanSampling(frames=4, max_decoded=100, max_pixels=10**7)))


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_a_truncated_file_is_a_video_error_or_fewer_frames(tmp_path: Path, suffix: str) -> None:
    path = write_av(tmp_path / f"v.{suffix}", noisy_frames(30))
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    indices: list[int] = []
    with contextlib.suppress(VideoError):
        indices = [i for i, _ in iter_sampled_frames(path, ALL)]
    assert len(indices) < 30 and indices == list(range(len(indices)))
    try:
        frames = list(SpanReader(path, SpanSampling(frames=8, max_decoded=100, max_pixels=10**7)))
    except VideoError:
        pass
    else:
        assert 0 < len(frames) <= 8


def test_decoder_threads_do_not_change_the_pixels(tmp_path: Path) -> None:
    path = write_av(tmp_path / "v.mp4", noisy_frames(48), options={"g": "12", "bf": "2"})
    sampling = FrameSampling(stride=5, max_frames=1000, max_pixels=10**7)
    one, auto = (list(iter_sampled_frames(path, sampling, threads=t)) for t in (1, 0))
    assert [i for i, _ in one] == [i for i, _ in auto] and all(
        np.array_equal(a, b) for (_, a), (_, b) in zip(one, auto, strict=True)
    )
    for max_decoded in (48, 20):  # sequential, then seeking
        span = SpanSampling(frames=6, max_decoded=max_decoded, max_pixels=10**7)
        one_frames, auto_frames = (list(SpanReader(path, span, threads=t)) for t in (1, 0))
        assert [f.index for f in one_frames] == [f.index for f in auto_frames] and len(one_frames) == 6
        assert all(np.array_equal(a.image, b.image) for a, b in zip(one_frames, auto_frames, strict=True))


def test_span_frames_are_rgb_and_stage_frames_bgr(tmp_path: Path) -> None:
    red = [np.tile(np.array([200, 0, 0], np.uint8), (32, 32, 1))] * 3
    path = write_av(tmp_path / "v.mkv", red, codec="ffv1", pix_fmt="bgr0")
    assert read_sampled_frames(path, ALL)[0][0, 0].tolist() == [0, 0, 200]
    assert next(iter(SpanReader(path, SpanSampling(1, 10, 10**7)))).image[0, 0].tolist() == [200, 0, 0]


def test_an_io_error_inside_ffmpeg_stays_an_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_av(tmp_path / "v.mkv", noisy_frames(40))
    real_open = open

    class Failing(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            if self.tell() > 50_000:
                raise OSError(self.errno, os.strerror(self.errno), str(path))
            return super().read(size)

    for code, expected in ((errno.EIO, OSError), (errno.ESTALE, VideoError)):
        Failing.errno = code  # type: ignore[attr-defined]
        monkeypatch.setattr(video_module, "open", lambda p, mode: Failing(p, mode.replace("b", "")), raising=False)
        with pytest.raises(expected) as caught:
            list(iter_sampled_frames(path, ALL))
        assert not isinstance(caught.value, av.error.FFmpegError)
        if expected is OSError:
            assert caught.value.errno == errno.EIO
    monkeypatch.setattr(video_module, "open", real_open, raising=False)


# ------------------------------------------------------------------------------ classes of hostile input


def test_frames_that_grow_past_the_header_are_refused_as_they_are_decoded(tmp_path: Path) -> None:
    # small frames first, then frames over max_pixels: the decoder refuses them before allocating (FFmpeg's own
    # max_pixels), and the error says why, for predict's reader and the stages' alike
    path = write_raw_h264(tmp_path / "grow.h264", [(32, 32, 6), (128, 96, 3)])
    limit = 64 * 64
    with pytest.raises(VideoError, match=r"frame \d+ is 128x96, over max_pixels=4096 \(the stream changes"):
        list(SpanReader(path, SpanSampling(frames=4, max_decoded=100, max_pixels=limit)))
    with pytest.raises(VideoError, match="128x96, over max_pixels"):
        read_sampled_frames(path, FrameSampling(stride=1, max_frames=100, max_pixels=limit))
    assert len(list(SpanReader(path, SpanSampling(frames=4, max_decoded=100, max_pixels=128 * 96)))) == 4


def set_display_matrix(path: Path, a: int, b: int, c: int, d: int) -> None:
    """Write the rotation part of an MP4 track's matrix (tkhd), as phones do instead of turning the pixels."""
    data = bytearray(path.read_bytes())
    box = data.index(b"tkhd")
    version = data[box + 4]
    matrix = box + 8 + (32 if version == 1 else 20) + 16  # after version/flags, times, ids, duration, layer...
    for offset, value in ((0, a), (4, b), (12, c), (16, d)):
        data[matrix + offset : matrix + offset + 4] = (value << 16).to_bytes(4, "big", signed=True)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "matrix, rotation, turns",
    [((0, 1, -1, 0), -90, -1), ((0, -1, 1, 0), 90, 1), ((-1, 0, 0, -1), -180, 2)],
    ids=["phone-portrait", "portrait-other-way", "upside-down"],
)
def test_a_rotated_phone_clip_is_read_upright(
    tmp_path: Path, matrix: tuple[int, int, int, int], rotation: int, turns: int
) -> None:
    upright = np.zeros((48, 64, 3), np.uint8)
    upright[:16, :16] = 250  # a bright block at the top left of the scene
    # the camera stores the scene turned; the display matrix says how players turn it back
    stored = np.ascontiguousarray(np.rot90(upright, k=-turns))
    path = write_av(tmp_path / "phone.mp4", [stored] * 3)
    set_display_matrix(path, *matrix)
    assert next(av.open(str(path)).decode(video=0)).rotation == rotation  # what FFmpeg reads from the matrix
    reader = SpanReader(path, SpanSampling(frames=2, max_decoded=100, max_pixels=10**7))
    frames = [f.image for f in reader] + [
        cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in read_sampled_frames(path, SAMPLING).values()
    ]
    assert reader.coverage["rotation"] == rotation
    for image in frames:
        assert image.shape == upright.shape
        assert image[:16, :16].mean() > 200 and image[16:, 16:].mean() < 30


def test_of_several_video_streams_the_default_one_is_read_and_named(tmp_path: Path) -> None:
    path = tmp_path / "two.mp4"
    with av.open(str(path), "w") as container:
        preview = container.add_stream("libx264", rate=10)
        main = container.add_stream("libx264", rate=10)
        for stream, (width, height) in ((preview, (32, 32)), (main, (64, 48))):
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        preview.disposition, main.disposition = av.stream.Disposition(0), av.stream.Disposition.default
        for i, image in enumerate(numbered_frames(6, (64, 48))):
            for stream in (preview, main):
                frame = av.VideoFrame.from_ndarray(image[: stream.height, : stream.width].copy(), format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
        for stream in (preview, main):
            container.mux(stream.encode())
    reader = SpanReader(path, SpanSampling(frames=3, max_decoded=100, max_pixels=10**7))
    assert {f.image.shape for f in reader} == {(48, 64, 3)}
    assert reader.coverage["stream"] == {"index": 1, "video_streams": 2, "codec": "h264"}
    assert {f.shape for f in read_sampled_frames(path, SAMPLING).values()} == {(48, 64, 3)}


def test_a_header_claiming_less_than_the_stream_holds_is_not_the_only_word(tmp_path: Path) -> None:
    frames = [np.full((32, 32, 3), 10 * (i % 25), np.uint8) for i in range(80)]
    path = write_av(tmp_path / "v.mkv", frames, fps=8, codec="libvpx-vp9")  # 10 s
    data = bytearray(path.read_bytes())
    duration = data.index(b"\x44\x89\x88")  # Matroska's Duration element, an 8-byte float in milliseconds
    data[duration + 3 : duration + 11] = struct.pack(">d", 2000.0)  # the header now claims 2 s
    path.write_bytes(bytes(data))
    assert probe(path).duration_s == pytest.approx(2.0)
    reader = SpanReader(path, SpanSampling(frames=4, max_decoded=1000, max_pixels=10**7))
    assert [f.time_s for f in reader] == pytest.approx([0, 2.5, 5, 7.5], abs=0.01)  # the whole 10 s, not 2
    assert reader.coverage["duration_s"] == pytest.approx(10, abs=0.01)
    assert "the stream holds 10.000s where its header claims 2.000s" in reader.coverage["note"]


@pytest.mark.parametrize("fmt", ["mp4", "matroska"])
def test_a_cover_picture_or_a_still_first_stream_is_not_what_is_scored(tmp_path: Path, fmt: str) -> None:
    # a still picture as the first stream (MP4 keeps it as cover art, attached_pic; Matroska as a plain
    # one-frame stream with no default mark): the moving stream is read, FFmpeg's best where nothing is marked
    path = tmp_path / f"cover.{'mp4' if fmt == 'mp4' else 'mkv'}"
    with av.open(str(path), "w", format=fmt) as container:
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 96, 96, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        moving = container.add_stream("libx264", rate=10)
        moving.width, moving.height, moving.pix_fmt = 64, 48, "yuv420p"
        moving.disposition = av.stream.Disposition(0)
        still = av.VideoFrame.from_ndarray(np.full((96, 96, 3), 200, np.uint8), format="rgb24")
        still.pts = 0
        container.mux(cover.encode(still))
        container.mux(cover.encode())
        for i, image in enumerate(numbered_frames(6, (64, 48))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(moving.encode(frame))
        container.mux(moving.encode())
    reader = SpanReader(path, SpanSampling(frames=3, max_decoded=100, max_pixels=10**7))
    assert {f.image.shape for f in reader} == {(48, 64, 3)} and reader.coverage["frames_sampled"] == 3
    assert reader.coverage["stream"]["video_streams"] == 2 and reader.coverage["stream"]["codec"] == "h264"


def panning_frames(n: int, size: tuple[int, int] = (128, 96)) -> list[np.ndarray]:
    """A smooth texture panning 2 px a frame: content x264 codes with B-frames (noise it would not)."""
    noise = np.random.default_rng(0).integers(0, 255, (size[1], size[0] + 2 * n, 3), dtype=np.uint8)
    texture = cv2.GaussianBlur(noise, (0, 0), 3)
    return [np.ascontiguousarray(texture[:, 2 * i : 2 * i + size[0]]) for i in range(n)]


def _every_frame(path: Path) -> list[np.ndarray]:
    """The reference: every frame as a decoder that skips nothing gives them, counted one by one, in display
    order (converted as the stages convert them)."""
    everything = FrameSampling(stride=1, max_frames=10**6, max_pixels=10**7)
    return [image for _, image in video_module._sampled_frames(path, everything, 1, None)]


def _decoded_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the frames that come out of the decoder (one entry per decoded packet)."""
    counts: list[int] = []
    original = video_module._decode_packet

    def counting(stream: Any, packet: Any) -> list[Any]:
        frames = original(stream, packet)
        counts.append(len(frames))
        return frames

    monkeypatch.setattr(video_module, "_decode_packet", counting)
    return counts


@pytest.mark.parametrize("threads", [1, 3])
def test_unsampled_b_frames_are_not_decoded_and_the_sampled_ones_are_exact(
    tmp_path: Path, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """H.264 with B-frames: the stages' frames (any stride, any decoder threads) are those of a decoder that skips
    nothing, at the same indices, bit for bit, while frames nothing references and nothing samples are never
    decoded."""
    path = write_av(tmp_path / "b.mp4", panning_frames(60), options={"g": "30", "bf": "3"})
    reference = _every_frame(path)
    for stride in (1, 4, 7):
        counts = _decoded_frames(monkeypatch)
        sampling = FrameSampling(stride=stride, max_frames=1000, max_pixels=10**7)
        got = list(iter_sampled_frames(path, sampling, threads=threads))
        assert [i for i, _ in got] == list(range(0, 60, stride))
        assert all(np.array_equal(image, reference[i]) for i, image in got)
        if stride > 1:
            assert sum(counts) < 60, "unsampled non-reference frames are skipped"
    bounded = list(iter_sampled_frames(path, FrameSampling(stride=4, max_frames=30, max_pixels=10**7)))
    assert [i for i, _ in bounded] == list(range(0, 30, 4))


def test_a_sampled_frame_that_does_not_come_out_sends_the_rest_to_a_counting_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the decoder not give a frame where the packets' times put a sampled one (a frame it drops), the
    ranked pass stops there and the rest comes from a decode that counts every frame, as before ranks."""
    path = write_av(tmp_path / "b.mp4", panning_frames(40), options={"g": "20", "bf": "3"})
    ranks = video_module._display_ranks(path, 1000)
    assert ranks is not None and len(ranks) == 40
    dropped = sorted(ranks)[16]  # the frame at display position 16: sampled at stride 4
    original = video_module._decode_packet

    def dropping(stream: Any, packet: Any) -> list[Any]:
        return [frame for frame in original(stream, packet) if frame.pts != dropped]

    monkeypatch.setattr(video_module, "_decode_packet", dropping)
    sampling = FrameSampling(stride=4, max_frames=1000, max_pixels=10**7)
    counted = list(video_module._sampled_frames(path, sampling, 1, None))  # what a counting decode gives
    got = list(iter_sampled_frames(path, sampling))
    assert [i for i, _ in got] == [i for i, _ in counted] == list(range(0, 40, 4))[:10]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, counted, strict=True))


def test_streams_without_trustworthy_times_are_decoded_counting_every_frame(tmp_path: Path) -> None:
    """Not H.264/HEVC, or a raw stream without presentation times: no ranks, every frame decoded and counted."""
    mpeg4 = write_video(tmp_path / "v.mp4", numbered_frames(10))
    assert video_module._display_ranks(mpeg4, 1000) is None
    raw = write_raw_h264(tmp_path / "v.h264", [(64, 48, 12)])
    assert video_module._display_ranks(raw, 1000) is None
    assert [i for i, _ in iter_sampled_frames(raw, SAMPLING)] == [0, 3, 6, 9]
