"""Video perturbations for the robustness protocol: DeeperForensics-1.0's seven families, and two of platforms.

Each family has five levels (1 mildest, 5 harshest); the level -> parameter tables below are module constants
with their source. Level 0 (or the family ``none``) is the baseline: the same decode and re-encode with no
perturbation, so a detector's score at a level is compared against a video that went through the same codec.

The seven families of DeeperForensics-1.0 (Jiang et al., CVPR 2020; ``perturbation/distortions.py`` and
``add_distortion_to_video.py`` of github.com/EndlessSora/DeeperForensics-1.0), reimplemented here with their
definitions and level parameters:

- ``color_saturation`` (their CS): both chroma components of YCbCr scaled by the parameter about neutral
  grey, luma kept; level 5 is greyscale.
- ``color_contrast`` (their CC): every RGB value multiplied by the parameter. That is what their code does:
  it darkens towards black, and the spread of the values (the contrast) shrinks with it.
- ``block_wise`` (their BW): ``parameter * (short side // 256)`` grey (128) squares of 8x8 pixels at random
  places, new places every frame.
- ``gaussian_noise_color`` (their GNC): white Gaussian noise of variance ``parameter`` added to each of Y, Cb
  and Cr scaled to [0, 1] over their video ranges (219 luma codes, 224 chroma codes).
- ``gaussian_blur`` (their GB): a Gaussian of ``parameter`` x ``parameter`` pixels, sigma ``parameter / 6``.
- ``down_up_scaling`` (their "JPEG"): their code does not JPEG-compress at all; it shrinks each side to
  ``1 / parameter`` and stretches the frame back, both bilinear (OpenCV's default). The result is a loss of
  resolution (a soft, slightly aliased frame), not JPEG's 8x8 blocks and not a blocky pixelation either (the
  upscale is bilinear), so it is named for what it does.
- ``video_compression`` (their VC): H.264 at constant rate factor ``parameter`` (they ran ``ffmpeg -crf``).

Two families of what platforms do to an upload:

- ``downscale``: the frame shrunk to a rung of the usual streaming ladder (720p, 480p, 360p, 240p, 144p
  against a 1080p source, as YouTube offers), as a ratio of each side so any source shrinks alike.
- ``reencode``: H.264 re-encoded at a fixed bit rate, from what a 1080p stream gets down to a 240p one.

Every output is H.264 in MP4, yuv420p, ``Encoding``'s settings (CRF, preset, pinned threads, so the bytes are
deterministic), the source's frame count and frame rate, and the source's timestamps where they are usable.
Audio is dropped: no detector here reads it, and keeping it would add a second codec to the comparison.
Frames are streamed (decode one, perturb it, encode it): memory does not grow with the video's length.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import av
import cv2
import numpy as np

from deepfake.core.fileio import atomic_path
from deepfake.media.video import VideoError, _decoder, _opened, to_image, upright

# ----------------------------------------------------------------------------------- level tables
# Level n uses entry n - 1. DeeperForensics-1.0 tables: ``get_distortion_parameter`` in their
# perturbation/add_distortion_to_video.py (values as published there).

COLOR_SATURATION_LEVELS = (0.4, 0.3, 0.2, 0.1, 0.0)  # chroma scale (1 = unchanged); DF "CS"
COLOR_CONTRAST_LEVELS = (0.85, 0.725, 0.6, 0.475, 0.35)  # RGB scale (1 = unchanged); DF "CC"
BLOCK_WISE_LEVELS = (16, 32, 48, 64, 80)  # blocks per 256 pixels of the short side; DF "BW"
GAUSSIAN_NOISE_COLOR_LEVELS = (0.001, 0.002, 0.005, 0.01, 0.05)  # noise variance on [0, 1] YCbCr; DF "GNC"
GAUSSIAN_BLUR_LEVELS = (7, 9, 13, 17, 21)  # kernel side in pixels (sigma = side / 6); DF "GB"
DOWN_UP_SCALING_LEVELS = (2, 3, 4, 5, 6)  # each side divided by this, then scaled back; DF "JPEG"
VIDEO_COMPRESSION_LEVELS = (30, 32, 35, 38, 40)  # H.264 constant rate factor; DF "VC"

# The streaming ladder's rungs below 1080p (YouTube's 720p, 480p, 360p, 240p, 144p; Apple's HLS authoring
# guide and most players use the same heights) over 1080, the height of DFDC's and DeeperForensics' videos:
# the resolutions a viewer or a re-uploader actually meets. Applied as a ratio of each side, so 1920x1080
# gives exactly 1280x720, 854x480, 640x360, 426x240, 256x144.
LADDER_REFERENCE_HEIGHT = 1080
DOWNSCALE_LEVELS = tuple(h / LADDER_REFERENCE_HEIGHT for h in (720, 480, 360, 240, 144))

# kbit/s, a halving ladder over the range platforms deliver and re-upload at: about 4 Mbit/s is a 1080p30
# H.264 stream (Apple's HLS authoring guide ladders put 1080p at 4.5-7.8 Mbit/s and 720p at 2-4.5 Mbit/s;
# YouTube's 1080p and messaging apps' recompressed videos are around 2-4 Mbit/s), 1 Mbit/s and 500 kbit/s
# are 480p and 360p streams, and 250 kbit/s is a 240p one or a heavily recompressed share. The source keeps
# its own size, so the low rates are what a full-size video looks like when squeezed to a low-quality stream.
REENCODE_LEVELS = (4000, 2000, 1000, 500, 250)

LEVELS = 5  # every family has levels 1..LEVELS; 0 is the baseline
BASELINE = "none"  # the family name of the baseline (level 0): the re-encode alone

# block_wise: DeeperForensics' 8x8 mid-grey squares, ``level parameter`` of them per 256 px of the short side
BLOCK_SIDE = 8
BLOCK_GREY = 128
BLOCK_UNIT_SIDE = 256

# gaussian_noise_color: YCbCr video range spans 219 luma and 224 chroma codes (BT.601: Y 16..235, C 16..240);
# DeeperForensics adds the noise on those ranges scaled to [0, 1], so in 0..255 codes of full-range YCrCb its
# standard deviation is sqrt(variance) * 255 * 255 / span.
FULL_SCALE = 255.0
LUMA_SPAN = 219.0
CHROMA_SPAN = 224.0

# gaussian_blur: DeeperForensics' sigma is a sixth of the kernel side (the kernel spans +-3 sigma)
BLUR_SIGMAS_PER_KERNEL = 6.0

# x264 settings beyond the preset. MB-tree off: with it on, the same frames encoded twice in one process gave
# different bytes on an AVX-512 machine (x264's AVX-512 MB-tree code; bit-identical with AVX2 or SSE only, and
# with MB-tree off), so a rerun would not reproduce its videos. The cost is a few per cent of compression
# efficiency, the same for the baseline and every level.
X264_PARAMS = "mbtree=0"

# the decoder refuses frames larger than this unless told otherwise (8K UHD): no real test set comes near it,
# and a lying header cannot make the decoder allocate gigabytes
DEFAULT_MAX_PIXELS = 7680 * 4320

Kind = Literal["frame", "encode", "resize"]


@dataclass(frozen=True)
class Family:
    """One perturbation family: its five level parameters, how it is applied, and where the values come from.

    ``kind``: ``"frame"`` changes each frame in place (same size), ``"resize"`` returns a smaller frame,
    ``"encode"`` is applied by the H.264 encoder's settings (no frame operation).
    """

    name: str
    levels: tuple[float | int, ...]
    kind: Kind
    unit: str  # what the parameter means, for ``describe``
    source: str

    def __post_init__(self) -> None:
        if len(self.levels) != LEVELS:
            raise ValueError(f"{self.name}: {LEVELS} levels needed, got {self.levels}")

    def parameter(self, level: int) -> float | int | None:
        """The parameter of ``level`` (1..5); None for level 0, the baseline."""
        check_level(level, allow_baseline=True)
        return None if level == 0 else self.levels[level - 1]

    def describe(self, level: int) -> str:
        """One line for reports: ``"gaussian_blur level 3: kernel side 13 px (DeeperForensics-1.0 GB)"``."""
        value = self.parameter(level)
        if value is None:
            return f"{self.name} level 0: baseline (re-encode only)"
        return f"{self.name} level {level}: {self.unit} {value:g} ({self.source})"


DF = "DeeperForensics-1.0"
FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        f.name: f
        for f in (
            Family("color_saturation", COLOR_SATURATION_LEVELS, "frame", "chroma scale", f"{DF} CS"),
            Family("color_contrast", COLOR_CONTRAST_LEVELS, "frame", "RGB scale", f"{DF} CC"),
            Family("block_wise", BLOCK_WISE_LEVELS, "frame", "8x8 blocks per 256 px of short side", f"{DF} BW"),
            Family("gaussian_noise_color", GAUSSIAN_NOISE_COLOR_LEVELS, "frame", "YCbCr noise variance", f"{DF} GNC"),
            Family("gaussian_blur", GAUSSIAN_BLUR_LEVELS, "frame", "kernel side px", f"{DF} GB"),
            Family("down_up_scaling", DOWN_UP_SCALING_LEVELS, "frame", "down/up factor", f"{DF} 'JPEG'"),
            Family("video_compression", VIDEO_COMPRESSION_LEVELS, "encode", "H.264 CRF", f"{DF} VC"),
            Family("downscale", DOWNSCALE_LEVELS, "resize", "side ratio", "streaming ladder 720p..144p of 1080p"),
            Family("reencode", REENCODE_LEVELS, "encode", "H.264 kbit/s", "platform bit rates 4 Mbit/s..250 kbit/s"),
        )
    }
)


@dataclass(frozen=True)
class Encoding:
    """How every output is encoded (the families ``video_compression`` and ``reencode`` override the rate).

    ``crf`` 18 is x264's "visually lossless" point, so the baseline and the frame-wise families differ from
    the source by little more than the perturbation. ``threads`` is pinned: x264 is deterministic for fixed
    settings, but its output depends on the thread count, which must therefore not follow the machine.
    """

    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"  # x264's and FFmpeg's default, which DeeperForensics' ``ffmpeg -crf`` used
    threads: int = 4

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"Encoding.threads must be pinned to >= 1 (deterministic bytes), got {self.threads}")


# ----------------------------------------------------------------------------------- the grid


def get_family(name: str) -> Family:
    """The family called ``name``; a ValueError naming the closest valid names otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        valid = [*FAMILIES, BASELINE]
        close = difflib.get_close_matches(str(name), valid, n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(f"unknown perturbation family {name!r}{hint}; valid: {', '.join(FAMILIES)}") from None


def check_level(level: int, *, allow_baseline: bool = False) -> None:
    """A ValueError unless ``level`` is an int in 1..5 (or 0 with ``allow_baseline``)."""
    low = 0 if allow_baseline else 1
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or not low <= level <= LEVELS:
        raise ValueError(f"perturbation level must be an integer in {low}..{LEVELS}, got {level!r}")


def parse_grid(spec: Mapping[str, Sequence[int]]) -> list[tuple[str, int]]:
    """The ``(family, level)`` pairs of ``{family: [levels]}``, in ``FAMILIES`` order then level order.

    A ValueError for an unknown family (naming the close valid ones), a level outside 1..5, a level given
    twice, or a family with no levels: the stage's params must say exactly what runs.
    """
    for name, levels in spec.items():
        get_family(name)
        if isinstance(levels, str | bytes) or not isinstance(levels, Sequence) or not levels:
            raise ValueError(f"{name}: a non-empty list of levels in 1..{LEVELS} is needed, got {levels!r}")
        for level in levels:
            check_level(level)
        if len(set(levels)) != len(levels):
            raise ValueError(f"{name}: a level is listed twice in {list(levels)}")
    return [(name, int(level)) for name in FAMILIES if name in spec for level in sorted(spec[name])]


# ----------------------------------------------------------------------------------- frame operations


def block_count(height: int, width: int, level: int) -> int:
    """How many 8x8 blocks ``block_wise`` draws on a ``width`` x ``height`` frame at ``level``.

    DeeperForensics' ``parameter * (short side // 256)``, but at least ``parameter`` blocks: their formula
    gives none below 256 px (their videos never were), and a perturbation that does nothing would pass
    unnoticed as a robust detector.
    """
    check_level(level)
    return int(BLOCK_WISE_LEVELS[level - 1]) * max(1, min(height, width) // BLOCK_UNIT_SIDE)


def block_positions(height: int, width: int, level: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The top-left corners ``(y, x)`` of the blocks ``block_wise`` draws, from ``rng`` (blocks may overlap).

    Corners are uniform over ``0 .. side - 1 - 8``, as DeeperForensics draws them (the last pixel row and
    column are never covered).
    """
    count = block_count(height, width, level)
    if height <= BLOCK_SIDE or width <= BLOCK_SIDE:
        raise ValueError(f"block_wise needs frames larger than {BLOCK_SIDE} px, got {width}x{height}")
    ys = rng.integers(0, height - BLOCK_SIDE, size=count)  # high is exclusive: 0 .. height - 1 - BLOCK_SIDE
    xs = rng.integers(0, width - BLOCK_SIDE, size=count)
    return [(int(y), int(x)) for y, x in zip(ys, xs, strict=True)]


def downscaled_size(height: int, width: int, level: int) -> tuple[int, int]:
    """``(height, width)`` of ``downscale`` at ``level``: each side times the ratio, rounded to the nearest
    even number (yuv420p stores chroma at half size, so H.264 needs even sides), at least 2."""
    check_level(level)
    ratio = DOWNSCALE_LEVELS[level - 1]
    return _even(height * ratio), _even(width * ratio)


def _even(side: float) -> int:
    return max(2, 2 * round(side / 2))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip to 0..255 (DeeperForensics truncates; rounding avoids its half-code darkening)."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _color_saturation(frame: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    ycrcb = cv2.cvtColor(frame, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    neutral = 128.0  # the 8-bit chroma zero of OpenCV's YCrCb
    ycrcb[..., 1:] = neutral + (ycrcb[..., 1:] - neutral) * scale
    return cv2.cvtColor(_to_uint8(ycrcb), cv2.COLOR_YCrCb2RGB)


def _color_contrast(frame: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    return _to_uint8(frame.astype(np.float32) * scale)


def _block_wise(frame: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    out = frame.copy()
    for y, x in block_positions(frame.shape[0], frame.shape[1], level, rng):
        out[y : y + BLOCK_SIDE, x : x + BLOCK_SIDE] = BLOCK_GREY
    return out


def _gaussian_noise_color(frame: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    # float YCrCb in 0..255 (OpenCV offsets float chroma by 0.5, undone by the inverse: the offset cancels)
    ycrcb = cv2.cvtColor(frame.astype(np.float32), cv2.COLOR_RGB2YCrCb)
    sigma = math.sqrt(variance) * FULL_SCALE * FULL_SCALE
    spans = np.array([LUMA_SPAN, CHROMA_SPAN, CHROMA_SPAN], np.float32)
    noise = rng.standard_normal(ycrcb.shape, dtype=np.float32) * (sigma / spans)
    return _to_uint8(cv2.cvtColor(ycrcb + noise, cv2.COLOR_YCrCb2RGB))


def _gaussian_blur(frame: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(frame, (side, side), side / BLUR_SIGMAS_PER_KERNEL)


def _down_up_scaling(frame: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _downscale(frame: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    height, width = downscaled_size(frame.shape[0], frame.shape[1], level)
    # INTER_AREA averages the pixels each output pixel covers: the anti-aliased shrink scalers do
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


# name -> (frame, level parameter or level, rng) -> frame; block_wise and downscale take the level itself
_FRAME_OPS: dict[str, tuple[Callable[[np.ndarray, Any, np.random.Generator], np.ndarray], bool]] = {
    "color_saturation": (_color_saturation, False),
    "color_contrast": (_color_contrast, False),
    "block_wise": (_block_wise, True),
    "gaussian_noise_color": (_gaussian_noise_color, False),
    "gaussian_blur": (_gaussian_blur, False),
    "down_up_scaling": (_down_up_scaling, False),
    "downscale": (_downscale, True),
}


def perturb_frame(frame: np.ndarray, family: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """``frame`` (RGB uint8, height x width x 3) perturbed by a frame-wise family at ``level``.

    Same size out, except ``downscale`` (the smaller frame). Level 0 or the family ``none`` return ``frame``
    itself. ``rng`` gives the random draws (noise, block places). The encoder families (``video_compression``,
    ``reencode``) have no frame operation: a ValueError, as for an unknown family or level.
    """
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"perturb_frame needs an RGB uint8 height x width x 3 frame, got {frame.dtype} {frame.shape}")
    chosen = _checked(family, level)
    if chosen is None or level == 0:
        return frame
    if chosen.kind == "encode":
        raise ValueError(f"{family} is applied by the encoder: use perturb_video")
    operation, takes_level = _FRAME_OPS[family]
    return operation(frame, level if takes_level else chosen.levels[level - 1], rng)


# ----------------------------------------------------------------------------------- videos


def perturb_video(
    source: Path,
    dest: Path,
    family: str,
    level: int,
    seed: int,
    encoding: Encoding = Encoding(),  # frozen: one shared default is safe
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Decode every frame of ``source``, perturb it, and write ``dest`` as H.264 MP4 (yuv420p); a report back.

    The frame-wise families and ``downscale`` encode with ``encoding`` (as the baseline, level 0 or family
    ``none``, does), ``video_compression`` with the level's CRF and ``reencode`` with the level's bit rate (one
    pass, the VBV capped at that rate with a two-second buffer, as streaming encoders run). The frame count,
    frame rate and (where usable) timestamps of the source are kept; audio is dropped. Frames come upright
    as players show them (the display matrix applied). Sides of odd length lose their last row or column
    (yuv420p needs even sides; a crop changes no other pixel). Randomness: frame ``i`` draws from the
    ``i``-th child of ``np.random.default_rng(seed)``, so the same call writes the same bytes.

    ``dest`` appears complete or not at all (written beside it, then renamed). A source that cannot be
    decoded raises ``VideoError`` (an ``InputError``) naming it; an environment fault stays an ``OSError``.
    Report: family, level, parameter, frames, width, height, fps, bytes.
    """
    source, dest = Path(source), Path(dest)
    chosen = _checked(family, level)
    parameter = None if chosen is None else chosen.parameter(level)
    frame_wise = chosen is not None and chosen.kind != "encode" and level > 0
    options = _codec_options(chosen, level, encoding)
    root = np.random.default_rng(seed)

    with atomic_path(dest, suffix=".mp4") as tmp, _opened(source) as (reader, container):
        frames = _decoder(source, reader, container, max_pixels, threads=0)
        rate = _frame_rate(source, frames.stream)
        timing = _Timing(frames.stream.time_base, rate)
        writer: _Writer | None = None
        with tmp.open("wb") as out_file, av.open(out_file, "w", format="mp4") as output:
            for frame in frames.run():
                image = _even_crop(upright(frame, to_image(frame, "rgb24")))
                if frame_wise:
                    image = perturb_frame(image, family, level, root.spawn(1)[0])
                if writer is None:
                    writer = _Writer(output, image.shape, rate, timing.time_base, encoding, options)
                    writer.tag_colours(frames.stream)
                elif image.shape != (writer.height, writer.width, 3):
                    raise VideoError(f"{source}: the frame size changes at frame {writer.frames}")
                writer.write(image, timing.next(frame.pts))
            if writer is None:
                raise VideoError(f"{source}: no frame could be decoded")
            writer.finish()
        size = tmp.stat().st_size
    return {
        "family": family,
        "level": level,
        "parameter": parameter,
        "frames": writer.frames,
        "width": writer.width,
        "height": writer.height,
        "fps": float(rate),
        "bytes": size,
    }


def _checked(family: str, level: int) -> Family | None:
    """The family (None for the baseline ``none``), after checking ``level`` (0..5; ``none`` has 0 only)."""
    check_level(level, allow_baseline=True)
    if family != BASELINE:
        return get_family(family)
    if level != 0:
        raise ValueError(f"the baseline family {BASELINE!r} has level 0 only, got {level}")
    return None


def _frame_rate(path: Path, stream: Any) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise VideoError(f"{path}: the frame rate of its video stream is unknown")
    return Fraction(rate)


def _even_crop(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return image[: height - height % 2, : width - width % 2] if (height | width) % 2 else image


class _Timing:
    """Output timestamps in the source stream's time base, starting at 0: the source's own where they rise
    (a variable frame rate stays variable), else one nominal frame after the previous one."""

    def __init__(self, time_base: Fraction | None, rate: Fraction) -> None:
        self.time_base = Fraction(time_base) if time_base else 1 / rate
        self.tick = max(1, round(1 / (rate * self.time_base)))  # one frame, in time-base units
        self.first: int | None = None
        self.last: int | None = None

    def next(self, pts: int | None) -> int:
        if pts is not None and self.first is None:
            self.first = pts
        if pts is not None and self.first is not None and (self.last is None or pts - self.first > self.last):
            self.last = pts - self.first
        else:
            self.last = 0 if self.last is None else self.last + self.tick
        return self.last


def _codec_options(chosen: Family | None, level: int, encoding: Encoding) -> dict[str, str]:
    """x264's options: the encoding's CRF, or the level's CRF (video_compression) or bit rate (reencode)."""
    options = {"preset": encoding.preset, "crf": str(encoding.crf), "x264-params": X264_PARAMS}
    if chosen is not None and level > 0 and chosen.name == "video_compression":
        options["crf"] = str(chosen.levels[level - 1])
    elif chosen is not None and level > 0 and chosen.name == "reencode":
        kbits = int(chosen.levels[level - 1])
        del options["crf"]
        # one-pass average bit rate, capped by a VBV of the same rate and a two-second buffer
        options.update({"b": f"{kbits}k", "maxrate": f"{kbits}k", "bufsize": f"{2 * kbits}k"})
    return options


class _Writer:
    """The H.264 stream of the output: RGB frames in, converted to yuv420p by OpenCV (BT.601 limited range,
    the matrix ``to_image`` decodes with, so an unperturbed frame round-trips)."""

    def __init__(
        self,
        output: Any,
        shape: tuple[int, ...],
        rate: Fraction,
        time_base: Fraction,
        encoding: Encoding,
        options: dict[str, str],
    ) -> None:
        self.height, self.width = int(shape[0]), int(shape[1])
        self.output, self.time_base, self.frames = output, time_base, 0
        self.stream = output.add_stream(encoding.codec, rate=rate, options=options)
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.width, self.height, "yuv420p"
        self.stream.time_base = time_base
        context = self.stream.codec_context
        context.time_base = time_base
        # frame threads, pinned in number: deterministic bytes whatever the machine (x264's default is
        # deterministic for a given thread count, and frame threads compress better than slice threads)
        context.thread_type = "FRAME"
        # a bit-rate target (reencode) is met by a VBV that frame threads update in whatever order they finish:
        # different bytes from run to run with more than one thread (seen here), so one thread there
        context.thread_count = 1 if "b" in options else encoding.threads

    def tag_colours(self, source_stream: Any) -> None:
        """The source's colour matrix, primaries and transfer tags (the YUV values round-trip, so players must
        read them as the source's were); the range is limited, as the conversion writes it."""
        src, dst = source_stream.codec_context, self.stream.codec_context
        for name in ("colorspace", "color_primaries", "color_trc"):
            setattr(dst, name, getattr(src, name))
        dst.color_range = av.video.reformatter.ColorRange.MPEG

    def write(self, image: np.ndarray, pts: int) -> None:
        planar = cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420).astype(np.uint8, copy=False)
        frame = av.VideoFrame.from_ndarray(planar, format="yuv420p")
        frame.pts, frame.time_base = pts, self.time_base
        self.output.mux(self.stream.encode(frame))
        self.frames += 1

    def finish(self) -> None:
        self.output.mux(self.stream.encode(None))
