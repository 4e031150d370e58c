"""The robustness protocol's perturbations: each family does what its definition says, harder at each level,
and the videos keep the source's frames and rate, are deterministic, and are written atomically."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from deepfake.core.errors import InputError
from deepfake.media.perturbations import (
    BASELINE,
    BLOCK_GREY,
    BLOCK_SIDE,
    BLOCK_WISE_LEVELS,
    COLOR_CONTRAST_LEVELS,
    COLOR_SATURATION_LEVELS,
    DOWN_UP_SCALING_LEVELS,
    FAMILIES,
    GAUSSIAN_BLUR_LEVELS,
    GAUSSIAN_NOISE_COLOR_LEVELS,
    LEVELS,
    Encoding,
    block_count,
    block_positions,
    downscaled_size,
    parse_grid,
    perturb_frame,
    perturb_video,
)
from deepfake.media.video import to_image
from tests.conftest import write_av

WIDTH, HEIGHT, FRAMES, FPS = 192, 144, 10, 25
ALL_LEVELS = range(1, LEVELS + 1)
FRAME_FAMILIES = [name for name, fam in FAMILIES.items() if fam.kind != "encode"]
ENCODE_FAMILIES = [name for name, fam in FAMILIES.items() if fam.kind == "encode"]


def face_frame(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A face-like pattern (skin ellipse, eyes, mouth) on a coloured, textured background, moving a little:
    texture so that blur, resampling and rate control have detail to remove, colour for the chroma tests."""
    rng = np.random.default_rng(index)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (3, 3), 0.8)
    image = cv2.addWeighted(np.full_like(texture, (40, 90, 160)), 0.6, texture, 0.4, 0)
    cx, cy = width // 2 + index % 3, height // 2
    cv2.ellipse(image, (cx, cy), (width // 5, height // 3), 0, 0, 360, (210, 160, 130), -1)
    for dx in (-width // 12, width // 12):
        cv2.circle(image, (cx + dx, cy - height // 10), max(2, width // 40), (30, 20, 20), -1)
    cv2.line(image, (cx - width // 14, cy + height // 7), (cx + width // 14, cy + height // 7), (150, 40, 50), 2)
    return image


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("perturb")
    return write_av(folder / "clip.mp4", [face_frame(i) for i in range(FRAMES)], fps=FPS, options={"crf": "10"})


@pytest.fixture(scope="module")
def outputs(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], tuple[Path, dict]]:
    """``(family, level) -> (video, report)``, each written once per module."""
    folder = tmp_path_factory.mktemp("outputs")
    done: dict[tuple[str, int], tuple[Path, dict]] = {}

    def get(name: str, level: int) -> tuple[Path, dict]:
        if (name, level) not in done:
            dest = folder / f"{name}-{level}.mp4"
            done[name, level] = dest, perturb_video(clip, dest, name, level, seed=7, encoding=Encoding())
        return done[name, level]

    return get


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [to_image(frame, "rgb24") for frame in container.decode(video=0)]


def stream_facts(path: Path) -> tuple[int, Fraction, list[float]]:
    """Frame count, average rate, presentation times (s) of ``path``'s video stream, as decoded."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.time) for frame in container.decode(stream)]
        return len(times), Fraction(stream.average_rate), times


def ycrcb(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YCrCb) for f in frames]).astype(np.float64)


def chroma_spread(frames: list[np.ndarray]) -> float:
    return float(np.abs(ycrcb(frames)[..., 1:] - 128.0).mean())


def luma_std(frames: list[np.ndarray]) -> float:
    return float(ycrcb(frames)[..., 0].std())


def sharpness(frames: list[np.ndarray]) -> float:
    """High-frequency energy: the variance of the luma's Laplacian."""
    return float(np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames]))


def psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    mse = float(np.mean([np.mean((x.astype(np.float64) - y) ** 2) for x, y in zip(a, b, strict=True)]))
    return 10 * np.log10(255.0**2 / mse)


def distortion(original: np.ndarray, perturbed: np.ndarray) -> float:
    """Mean squared error against the original, a smaller frame first scaled back to the original's size."""
    if perturbed.shape != original.shape:
        perturbed = cv2.resize(perturbed, original.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    return float(np.mean((original.astype(np.float64) - perturbed) ** 2))


# ------------------------------------------------------------------------------------------ registry, grid


def test_the_registry_lists_deeperforensics_seven_then_the_platform_two() -> None:
    assert list(FAMILIES) == [
        "color_saturation",
        "color_contrast",
        "block_wise",
        "gaussian_noise_color",
        "gaussian_blur",
        "down_up_scaling",
        "video_compression",
        "downscale",
        "reencode",
    ]
    for fam in FAMILIES.values():
        assert len(fam.levels) == LEVELS and fam.source
        assert fam.describe(3).startswith(f"{fam.name} level 3: ") and f"{fam.levels[2]:g}" in fam.describe(3)
        assert "baseline" in fam.describe(0)
    assert FAMILIES["gaussian_blur"].describe(3).startswith("gaussian_blur level 3: kernel side px 13")


def test_parse_grid_orders_by_registry_then_level() -> None:
    grid = parse_grid({"reencode": [5, 1], "gaussian_blur": [2], "color_saturation": (1, 3)})
    assert grid == [
        ("color_saturation", 1),
        ("color_saturation", 3),
        ("gaussian_blur", 2),
        ("reencode", 1),
        ("reencode", 5),
    ]
    assert parse_grid({}) == []


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"gausian_blur": [1]}, "did you mean gaussian_blur"),
        ({"jpeg": [1]}, "valid: color_saturation"),
        ({"gaussian_blur": [0]}, "1..5"),
        ({"gaussian_blur": [6]}, "1..5"),
        ({"gaussian_blur": [True]}, "1..5"),
        ({"gaussian_blur": ["3"]}, "1..5"),
        ({"gaussian_blur": [2, 2]}, "twice"),
        ({"gaussian_blur": []}, "non-empty"),
        ({"gaussian_blur": 3}, "non-empty"),
    ],
)
def test_parse_grid_refuses(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_grid(spec)


def test_perturb_frame_refuses_what_it_cannot_do() -> None:
    frame = face_frame(0)
    rng = np.random.default_rng(0)
    for name in ENCODE_FAMILIES:
        with pytest.raises(ValueError, match="perturb_video"):
            perturb_frame(frame, name, 1, rng)
    with pytest.raises(ValueError, match="level 0 only"):
        perturb_frame(frame, BASELINE, 1, rng)
    with pytest.raises(ValueError, match=r"0\.\.5, got 6"):
        perturb_frame(frame, "gaussian_blur", 6, rng)
    with pytest.raises(ValueError, match="RGB uint8"):
        perturb_frame(frame.astype(np.float32), "gaussian_blur", 1, rng)
    assert perturb_frame(frame, BASELINE, 0, rng) is frame
    assert perturb_frame(frame, "gaussian_blur", 0, rng) is frame


# ------------------------------------------------------------------------------------------ frame operations


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_color_saturation_scales_chroma_and_keeps_luma(level: int) -> None:
    frame = face_frame(0)
    out = perturb_frame(frame, "color_saturation", level, np.random.default_rng(0))
    before, after = ycrcb([frame]), ycrcb([out])
    scale = COLOR_SATURATION_LEVELS[level - 1]
    assert np.abs(after[..., 1:] - 128 - (before[..., 1:] - 128) * scale).mean() < 1.0
    assert np.abs(after[..., 0] - before[..., 0]).mean() < 1.0
    if scale == 0:
        assert np.abs(out.astype(int) - out[..., :1]).max() <= 1  # grey: R = G = B


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_color_contrast_multiplies_every_value(level: int) -> None:
    frame = face_frame(0)
    out = perturb_frame(frame, "color_contrast", level, np.random.default_rng(0))
    scale = COLOR_CONTRAST_LEVELS[level - 1]
    np.testing.assert_array_equal(out, np.rint(frame * np.float32(scale)).astype(np.uint8))
    assert luma_std([out]) == pytest.approx(luma_std([frame]) * scale, rel=0.02)


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_block_wise_greys_exactly_its_blocks(level: int) -> None:
    frame = np.full((HEIGHT, WIDTH, 3), 30, np.uint8)
    out = perturb_frame(frame, "block_wise", level, np.random.default_rng(3))
    corners = block_positions(HEIGHT, WIDTH, level, np.random.default_rng(3))
    assert len(corners) == block_count(HEIGHT, WIDTH, level) == BLOCK_WISE_LEVELS[level - 1]  # short side < 256
    expected = np.zeros((HEIGHT, WIDTH), bool)
    for y, x in corners:
        assert 0 <= y <= HEIGHT - 1 - BLOCK_SIDE and 0 <= x <= WIDTH - 1 - BLOCK_SIDE
        expected[y : y + BLOCK_SIDE, x : x + BLOCK_SIDE] = True
    changed = (out != frame).any(axis=2)
    np.testing.assert_array_equal(changed, expected)
    assert (out[changed] == BLOCK_GREY).all()


def test_block_count_follows_the_short_side_as_deeperforensics() -> None:
    assert block_count(1080, 1920, 1) == 16 * 4
    assert block_count(720, 1280, 5) == 80 * 2
    assert block_count(480, 640, 3) == 48
    assert block_count(48, 64, 2) == 32  # below 256 px: at least the level's parameter, never none


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_gaussian_noise_has_deeperforensics_variance(level: int) -> None:
    frame = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)  # mid-grey: no clipping at the mild levels
    out = perturb_frame(frame, "gaussian_noise_color", level, np.random.default_rng(1))
    residual = ycrcb([out]) - ycrcb([frame])
    # variance v on [0, 1] video-range Y: std sqrt(v) * 255 * 255 / 219 in 8-bit full-range codes
    expected = np.sqrt(GAUSSIAN_NOISE_COLOR_LEVELS[level - 1]) * 255 * 255 / 219
    tolerance = 0.1 if level < LEVELS else 0.3  # level 5's noise clips at 0 and 255
    assert residual[..., 0].std() == pytest.approx(expected, rel=tolerance)


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_gaussian_blur_and_down_up_scaling_are_deeperforensics_operations(level: int) -> None:
    frame = face_frame(0)
    side = GAUSSIAN_BLUR_LEVELS[level - 1]
    blurred = perturb_frame(frame, "gaussian_blur", level, np.random.default_rng(0))
    np.testing.assert_array_equal(blurred, cv2.GaussianBlur(frame, (side, side), side / 6))
    factor = DOWN_UP_SCALING_LEVELS[level - 1]
    small = cv2.resize(frame, (WIDTH // factor, HEIGHT // factor), interpolation=cv2.INTER_LINEAR)
    rescaled = perturb_frame(frame, "down_up_scaling", level, np.random.default_rng(0))
    np.testing.assert_array_equal(rescaled, cv2.resize(small, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR))
    assert rescaled.shape == frame.shape
    assert sharpness([rescaled]) < sharpness([frame]) / 2
    assert sharpness([blurred]) < sharpness([frame]) / 2


def test_downscale_sizes_are_the_streaming_ladder() -> None:
    assert [downscaled_size(1080, 1920, level) for level in ALL_LEVELS] == [
        (720, 1280),
        (480, 854),
        (360, 640),
        (240, 426),
        (144, 256),
    ]
    assert downscaled_size(48, 64, 5) == (6, 8)  # rounded to even sides, for yuv420p
    assert downscaled_size(10, 10, 5) == (2, 2)
    out = perturb_frame(face_frame(0), "downscale", 3, np.random.default_rng(0))
    assert out.shape == (*downscaled_size(HEIGHT, WIDTH, 3), 3)


@pytest.mark.parametrize("name", FRAME_FAMILIES)
def test_severity_grows_with_the_level(name: str) -> None:
    frame = face_frame(0)
    errors = [distortion(frame, perturb_frame(frame, name, level, np.random.default_rng(5))) for level in ALL_LEVELS]
    assert errors[0] > 0
    assert all(a < b for a, b in itertools.pairwise(errors)), (name, errors)


# ------------------------------------------------------------------------------------------ videos


def _check_direction(values: list[float], falls: bool) -> None:
    """``values`` of the baseline, level 1, level 5: each falls (or rises) strictly from one to the next."""
    pairs = itertools.pairwise(values)
    assert all((a > b) if falls else (a < b) for a, b in pairs), values


# family -> (measure of the decoded frames against the baseline's, whether it falls with the level)
VIDEO_MEASURES: dict[str, tuple[Callable[[list[np.ndarray], list[np.ndarray]], float], bool]] = {
    "color_saturation": (lambda frames, _: chroma_spread(frames), True),
    "color_contrast": (lambda frames, _: luma_std(frames), True),
    "block_wise": (lambda frames, base: float(np.mean(np.abs(np.stack(frames) - np.stack(base).astype(int)))), False),
    "gaussian_noise_color": (lambda frames, base: float(np.std(np.stack(frames) - np.stack(base).astype(int))), False),
    "gaussian_blur": (lambda frames, _: sharpness(frames), True),
    "down_up_scaling": (lambda frames, _: sharpness(frames), True),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_changes_the_video_as_it_says(name: str, clip: Path, outputs: Callable) -> None:
    base_path, base_report = outputs(BASELINE, 0)
    base = decode(base_path)
    source_count, source_rate, source_times = stream_facts(clip)
    assert base_report["frames"] == len(base) == source_count == FRAMES
    reports = {level: outputs(name, level)[1] for level in (1, LEVELS)}
    videos = {level: decode(outputs(name, level)[0]) for level in (1, LEVELS)}
    for level, report in reports.items():
        count, rate, times = stream_facts(outputs(name, level)[0])
        assert (count, rate, report["frames"], report["fps"]) == (source_count, source_rate, FRAMES, FPS)
        assert times == pytest.approx(source_times)
        assert report["family"] == name and report["level"] == level
        assert report["parameter"] == FAMILIES[name].levels[level - 1]
        assert report["bytes"] == outputs(name, level)[0].stat().st_size
    if name in VIDEO_MEASURES:
        measure, falls = VIDEO_MEASURES[name]
        values = [measure(frames, base) for frames in (base, videos[1], videos[LEVELS])]
        _check_direction(values, falls)
    elif name == "downscale":
        for level, frames in videos.items():
            height, width = downscaled_size(HEIGHT, WIDTH, level)
            assert frames[0].shape == (height, width, 3)
            assert (reports[level]["width"], reports[level]["height"]) == (width, height)
    else:  # the encoder families: smaller files, further from the source
        source = decode(clip)
        quality = [psnr(source, frames) for frames in (base, videos[1], videos[LEVELS])]
        # CRF 30 is below the baseline's CRF 18; 4 Mbit/s is above what this small clip needs at CRF 18
        _check_direction(quality if name == "video_compression" else quality[1:], falls=True)
        assert reports[LEVELS]["bytes"] < reports[1]["bytes"]


@pytest.mark.parametrize("name", ENCODE_FAMILIES)
def test_the_encoder_families_get_monotonically_worse(name: str, clip: Path, outputs: Callable) -> None:
    source = decode(clip)
    runs = [outputs(name, level) for level in ALL_LEVELS]
    sizes = [report["bytes"] for _, report in runs]
    quality = [psnr(source, decode(path)) for path, _ in runs]
    assert all(a > b for a, b in itertools.pairwise(sizes)), sizes
    assert all(a > b for a, b in itertools.pairwise(quality)), quality


def test_the_baseline_is_close_to_the_source(clip: Path, outputs: Callable) -> None:
    assert psnr(decode(clip), decode(outputs(BASELINE, 0)[0])) > 35  # CRF 18: only the perturbation differs
    assert outputs("gaussian_blur", 0)[0].read_bytes() == outputs(BASELINE, 0)[0].read_bytes()


@pytest.mark.parametrize("name", ["gaussian_noise_color", "block_wise", "reencode"])
def test_the_same_call_writes_the_same_bytes(name: str, clip: Path, tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    perturb_video(clip, first, name, 3, seed=11, encoding=Encoding())
    perturb_video(clip, second, name, 3, seed=11, encoding=Encoding())
    assert first.read_bytes() == second.read_bytes()
    if FAMILIES[name].kind == "frame":
        perturb_video(clip, other, name, 3, seed=12, encoding=Encoding())
        assert other.read_bytes() != first.read_bytes()


def test_odd_sides_lose_their_last_row_and_column(tmp_path: Path) -> None:
    odd = write_av(tmp_path / "odd.mkv", [face_frame(i, 65, 49) for i in range(4)], codec="ffv1", pix_fmt="yuv444p")
    report = perturb_video(odd, tmp_path / "out.mp4", "gaussian_blur", 2, seed=0, encoding=Encoding())
    assert (report["width"], report["height"], report["frames"]) == (64, 48, 4)


def test_variable_frame_timing_is_kept(tmp_path: Path) -> None:
    source = tmp_path / "vfr.mp4"
    gaps = [0, 1, 2, 4, 5, 8]  # in 1/25 s: three frames dropped, as a phone drops them
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for pts in gaps:
            frame = av.VideoFrame.from_ndarray(face_frame(pts, 64, 48), format="rgb24")
            frame.pts = pts
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    dest = tmp_path / "out.mp4"
    perturb_video(source, dest, "color_contrast", 1, seed=0, encoding=Encoding())
    assert stream_facts(dest)[2] == pytest.approx([pts / FPS for pts in gaps])


def test_a_failure_leaves_no_video_behind(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 50)
    dest = tmp_path / "out" / "dest.mp4"
    with pytest.raises(InputError, match=r"broken\.mp4"):
        perturb_video(broken, dest, "gaussian_blur", 1, seed=0, encoding=Encoding())
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    dest.write_bytes(b"previous")
    with pytest.raises(InputError, match=r"missing\.mp4"):
        perturb_video(tmp_path / "missing.mp4", dest, BASELINE, 0, seed=0, encoding=Encoding())
    assert dest.read_bytes() == b"previous" and list(dest.parent.iterdir()) == [dest]


def test_bad_arguments_fail_before_anything_is_written(clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest.mp4"
    for name, level in [("gausian_blur", 1), ("gaussian_blur", 6), (BASELINE, 2)]:
        with pytest.raises(ValueError, match=r"gaussian_blur|0\.\.5|level 0 only"):
            perturb_video(clip, dest, name, level, seed=0, encoding=Encoding())
    assert list(tmp_path.iterdir()) == []
