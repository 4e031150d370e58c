"""Rendering the sample's videos: each person's real clip and its manipulations, each rendered once into a
render cache, encoded as mp4v and read back before it is kept.

A manipulation (:mod:`deepfake.media.manipulations`) is a face swap (the donor's face rendered by a
face-swap generator at ``generator_size`` pixels, or ``hq_generator_size`` for the improved generators),
an expression reenactment (Face2Face) or a re-rendered lower-face texture (NeuralTextures). Each has its
own generator, seeded from ``seed`` and its people, so it does not depend on the render order.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from deepfake.core.fileio import atomic_path
from deepfake.media.manipulations import (
    TextureStyle,
    expression_drive,
    reenact_face,
    render_generator_face,
    retexture_face,
    swap_face,
)
from deepfake.sample.annotations import subject_face
from deepfake.sample.plan import ClipPlan, SampleConfig, SamplePlan

__all__ = [
    "KINDS",
    "RenderKey",
    "cache_name",
    "manipulation_rng",
    "render_all",
    "render_cache",
    "render_manipulation",
    "render_real",
]

logger = logging.getLogger(__name__)

FOURCC = "mp4v"


class RenderKey(NamedTuple):
    """One video to render once: a person's real clip, or one manipulation of it."""

    kind: str  # "real", "swap", "reenact" or "retexture"
    target: str  # the photo whose clip it is
    source: str = ""  # swap: the donor; reenact: the driver; retexture: the pair partner
    size: int = 0  # swap: the generator's face size


KINDS = ("real", "swap", "reenact", "retexture")


def _lighting_lut(gain: float, gamma: float) -> np.ndarray:
    levels = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.rint(255.0 * gain * levels**gamma), 0, 255).astype(np.uint8)


def render_real(photo: np.ndarray, clip: ClipPlan) -> list[np.ndarray]:
    """The real clip's frames (BGR uint8), before encoding."""
    frames = []
    for matrix, gain, gamma in zip(clip.transforms, clip.gains, clip.gammas, strict=True):
        # REPLICATE, never REFLECT: a mirrored copy of a face would be a second face.
        frame = cv2.warpAffine(photo, matrix, clip.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        frames.append(cv2.LUT(frame, _lighting_lut(float(gain), float(gamma))))
    return frames


def manipulation_rng(config: SampleConfig, key: RenderKey, people: tuple[str, ...]) -> np.random.Generator:
    """The generator of one manipulation: from the seed and its people, whatever the render order."""
    source = people.index(key.source) if key.source else len(people)
    return np.random.default_rng([config.seed, KINDS.index(key.kind), people.index(key.target), source, key.size])


def render_manipulation(
    real: list[np.ndarray],
    key: RenderKey,
    plan: SamplePlan,
    photos: dict[str, np.ndarray],
    annotations: dict,
    config: SampleConfig,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The frames (BGR uint8) and soft masks (float32 0..1) of the fake ``key`` of the clip ``real``."""
    clip = plan.clip(key.target)
    empty = np.zeros(clip.size[::-1], dtype=np.float32)
    if key.kind == "swap":
        donor_landmarks = np.asarray(subject_face(annotations, key.source)["landmarks"])
        face, face_landmarks = render_generator_face(photos[key.source], donor_landmarks, key.size)

        def one(frame: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
            return swap_face(frame, clip.landmarks[i], face, face_landmarks)

    elif key.kind == "reenact":
        drive = expression_drive(
            plan.clip(key.source).landmarks, manipulation_rng(config, key, plan.people), config.fps
        )

        def one(frame: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
            return reenact_face(frame, clip.landmarks[i], drive[i])

    elif key.kind == "retexture":
        style = TextureStyle.draw(manipulation_rng(config, key, plan.people))

        def one(frame: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
            return retexture_face(frame, clip.landmarks[i], style)

    else:
        raise ValueError(f"not a manipulation: {key}")
    frames, masks = [], []
    for i, frame in enumerate(real):
        fake, mask = one(frame, i) if clip.visible[i] else (frame.copy(), empty)
        frames.append(fake)
        masks.append(mask)
    return frames, masks


def _mask_video_frames(masks: list[np.ndarray]) -> list[np.ndarray]:
    """FF++'s mask videos: white where the frame was manipulated, black elsewhere."""
    return [cv2.cvtColor(np.where(m > 0, 255, 0).astype(np.uint8), cv2.COLOR_GRAY2BGR) for m in masks]


def _write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Encode frames as mp4v under a temporary name, check it reads back, then rename."""
    height, width = frames[0].shape[:2]
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter.fourcc(*FOURCC), float(fps), (width, height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot open an {FOURCC} writer for {path}")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()
        _verify_video(tmp, len(frames), (width, height))


def _verify_video(path: Path, frames: int, size: tuple[int, int]) -> None:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise OSError(f"OpenCV cannot read back {path}")
        got = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    if count != frames or got != size:
        raise OSError(f"{path} reads back as {count} frames of {got}, expected {frames} of {size}")


def cache_name(key: RenderKey, people: tuple[str, ...], mask: bool = False) -> str:
    """The file name of a render (or of its mask video) in the render cache."""
    source = people.index(key.source) if key.source else "-"
    return f"{key.kind}_{people.index(key.target)}_{source}_{key.size}{'_mask' if mask else ''}.mp4"


@contextmanager
def render_cache(out_root: Path) -> Iterator[Path]:
    """A scratch folder for the renders, beside the outputs (copies stay on one file system).

    Its name is fixed, so a run killed midway leaves at most one, which the next run clears.
    """
    cache = out_root / ".sample-renders.partial"
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    try:
        yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def render_all(
    cache: Path,
    videos: set[RenderKey],
    masks: set[RenderKey],
    plan: SamplePlan,
    photos: dict[str, np.ndarray],
    annotations: dict,
    config: SampleConfig,
) -> dict[str, int]:
    """Render every video and every mask video asked for, each once, into ``cache``; count them by kind."""
    done: Counter[str] = Counter()
    for person in plan.people:
        keys = sorted(k for k in videos | masks if k.target == person)
        if not keys:
            continue
        clip = plan.clip(person)
        real = render_real(photos[person], clip)
        for key in keys:
            if key.kind == "real":
                _write_video(cache / cache_name(key, plan.people), real, config.fps)
                done["real"] += 1
                continue
            frames, soft = render_manipulation(real, key, plan, photos, annotations, config)
            if key in videos:
                _write_video(cache / cache_name(key, plan.people), frames, config.fps)
                done[key.kind] += 1
            if key in masks:
                _write_video(cache / cache_name(key, plan.people, mask=True), _mask_video_frames(soft), config.fps)
                done["mask"] += 1
        logger.debug("rendered %s: %s", person, [tuple(k) for k in keys])
    return dict(sorted(done.items()))
