"""Clip animation: how a still photo becomes a moving clip.

Each clip is its photo under a smooth per-frame similarity transform (pan, zoom, small rotation) with a
lighting drift (gain and gamma), all sine waves drawn from the clip's generator. The faces that must stay
in view do, with a margin; the ``leaves_frame`` clip's face leaves the canvas for a stretch of the clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from deepfake.core.errors import InputError
from deepfake.media.manipulations import apply_affine
from deepfake.sample.annotations import subject_face

__all__ = ["ClipMotion", "Motion", "animate_clip", "leave_profile"]

# Detections below this score are not "faces that must stay in view" (t1_person2 has a hand at 0.79).
CONFIDENT_FACE = 0.95
# Subject face width as a fraction of the canvas's shorter side, before zoom.
FACE_FRACTION = (0.28, 0.36)
ZOOM_AMPLITUDE = (0.03, 0.08)  # keeps the face within about 25-40 % of the shorter side
ROTATION_DEG = (2.0, 6.0)
PAN_SLACK_USE = (0.3, 0.9)  # fraction of the free room the pan may use
WAVE_FREQ = (0.3, 1.0)  # cycles per clip: slow, smooth motion
GAIN_AMPLITUDE = (0.03, 0.10)
GAMMA_AMPLITUDE = (0.03, 0.12)
MARGIN = 0.03  # of the shorter side, kept between a face that must stay in view and the border
# The leaving clip: the face is fully off the canvas for t in [LEAVE_START, LEAVE_END] (t = i / frames).
LEAVE_START, LEAVE_END, LEAVE_RAMP = 0.35, 0.55, 0.15


def _similarity(scale: float, angle: float, anchor: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix that scales and rotates (radians) about ``anchor`` and moves it to ``target``."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    linear = np.array([[c, -s], [s, c]])
    return np.hstack([linear, (np.asarray(target) - linear @ np.asarray(anchor))[:, None]])


def _box_corners(box: list[float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


@dataclass(frozen=True)
class Motion:
    """The random draws of one clip: smooth waves for zoom, rotation, pan and lighting."""

    face_fraction: float
    zoom: float
    rotation: float  # radians
    pan: tuple[float, float]  # fraction of the free room used, x and y
    gain: float
    gamma: float
    freqs: np.ndarray  # 6 waves: zoom, rotation, pan x, pan y, gain, gamma
    phases: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Motion:
        return cls(
            face_fraction=float(rng.uniform(*FACE_FRACTION)),
            zoom=float(rng.uniform(*ZOOM_AMPLITUDE)),
            rotation=math.radians(float(rng.uniform(*ROTATION_DEG))),
            pan=(float(rng.uniform(*PAN_SLACK_USE)), float(rng.uniform(*PAN_SLACK_USE))),
            gain=float(rng.uniform(*GAIN_AMPLITUDE)),
            gamma=float(rng.uniform(*GAMMA_AMPLITUDE)),
            freqs=rng.uniform(*WAVE_FREQ, size=6),
            phases=rng.uniform(0.0, 2.0 * np.pi, size=6),
        )

    def waves(self, frames: int) -> np.ndarray:
        """(6, frames) sine waves in -1..1, smooth in time."""
        t = np.arange(frames) / frames
        return np.sin(2.0 * np.pi * self.freqs[:, None] * t[None, :] + self.phases[:, None])


@dataclass(frozen=True)
class ClipMotion:
    """One clip's animation, per frame."""

    transforms: np.ndarray  # (frames, 2, 3): photo -> canvas
    gains: np.ndarray  # (frames,)
    gammas: np.ndarray  # (frames,)
    landmarks: np.ndarray  # (frames, 5, 2): the subject's landmarks on the canvas
    visible: np.ndarray  # (frames,) bool: the subject's box overlaps the canvas


def _smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def leave_profile(frames: int) -> np.ndarray:
    """0 -> 1 -> 0 per frame: 1 (face off-screen) for t = i / frames in [LEAVE_START, LEAVE_END]."""
    t = np.arange(frames) / frames
    going = _smootherstep((t - (LEAVE_START - LEAVE_RAMP)) / LEAVE_RAMP)
    coming = _smootherstep((LEAVE_END + LEAVE_RAMP - t) / LEAVE_RAMP)
    return np.minimum(going, coming)


def _keep_boxes(annotations: dict, photo: str, role: str, photo_shape: tuple[int, ...]) -> list[list[float]]:
    """Boxes that must stay in view: the subject, plus every confident face in the two-face clip."""
    entry = annotations[photo]
    boxes = [subject_face(annotations, photo)["box"]]
    if role == "two_faces":
        others = [f for i, f in enumerate(entry["faces"]) if i != entry["subject"] and f["score"] >= CONFIDENT_FACE]
        if not others:
            raise InputError(f"{photo} should hold a second confident face (score >= {CONFIDENT_FACE})")
        height, width = photo_shape[:2]
        # A face cut by the photo's edge can only be kept in view as far as the photo goes.
        boxes += [
            [max(b[0], 0.0), max(b[1], 0.0), min(b[2], width), min(b[3], height)] for b in (o["box"] for o in others)
        ]
    return boxes


def _clip_transforms(
    motion: Motion,
    keep: list[list[float]],
    face_width: float,
    size: tuple[int, int],
    frames: int,
    leaves: bool,
) -> np.ndarray:
    """(frames, 2, 3) photo -> canvas similarity transforms for one clip."""
    width, height = size
    short = min(width, height)
    margin = MARGIN * short
    corners = np.concatenate([_box_corners(b) for b in keep])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    anchor, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    cos_r, sin_r = math.cos(motion.rotation), math.sin(motion.rotation)
    # Half extents of the kept boxes on the canvas per unit scale, at the largest rotation.
    reach = np.array([half[0] * cos_r + half[1] * sin_r, half[0] * sin_r + half[1] * cos_r])
    top_zoom = 1.0 + motion.zoom
    fits = float(min((width / 2.0 - margin) / reach[0], (height / 2.0 - margin) / reach[1])) / top_zoom
    scale = min(motion.face_fraction * short / face_width, fits)
    extent = reach * scale * top_zoom
    room = np.maximum(np.array([width / 2.0, height / 2.0]) - margin - extent, 0.0)
    amplitude = room * np.array(motion.pan)
    waves = motion.waves(frames)
    shift_x = amplitude[0] * waves[2]
    if leaves:
        # Push the face past the right edge, beyond any pan: its nearest edge clears the canvas by margin.
        shift_x = shift_x + leave_profile(frames) * (width / 2.0 + extent[0] + margin + amplitude[0])
    centre = np.array([width / 2.0, height / 2.0])
    return np.stack(
        [
            _similarity(
                scale * (1.0 + motion.zoom * waves[0, i]),
                motion.rotation * waves[1, i],
                anchor,
                centre + np.array([shift_x[i], amplitude[1] * waves[3, i]]),
            )
            for i in range(frames)
        ]
    )


def _box_on_canvas(matrix: np.ndarray, box: list[float], size: tuple[int, int]) -> tuple[bool, bool]:
    """(fully inside, overlapping) for a photo box mapped onto the canvas."""
    pts = apply_affine(matrix, _box_corners(box))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    inside = bool(lo[0] >= 0 and lo[1] >= 0 and hi[0] <= size[0] and hi[1] <= size[1])
    overlaps = bool(hi[0] > 0 and hi[1] > 0 and lo[0] < size[0] and lo[1] < size[1])
    return inside, overlaps


def _check_motion(
    photo: str,
    role: str,
    size: tuple[int, int],
    transforms: np.ndarray,
    keep: list[list[float]],
    subject_box: list[float],
    frames: int,
) -> None:
    """Guard the promises the tests and users rely on; a failure here is a bug in the motion plan."""
    out = leave_profile(frames) >= 1.0
    for i, matrix in enumerate(transforms):
        inside = all(_box_on_canvas(matrix, box, size)[0] for box in keep)
        off = not _box_on_canvas(matrix, subject_box, size)[1]
        if role == "leaves_frame" and out[i] and not off:
            raise RuntimeError(f"{photo}'s clip: the face should be off the canvas in frame {i}")
        if (role != "leaves_frame" or i in (0, frames - 1)) and not inside:
            raise RuntimeError(f"{photo}'s clip: a face that must stay in view leaves it in frame {i}")


def animate_clip(
    rng: np.random.Generator,
    annotations: dict,
    photo: str,
    role: str,
    size: tuple[int, int],
    photo_shape: tuple[int, ...],
    frames: int,
) -> ClipMotion:
    """The clip of ``photo`` on a ``size`` (width, height) canvas in its ``role``: draws its motion from ``rng``."""
    subject = subject_face(annotations, photo)
    keep = _keep_boxes(annotations, photo, role, photo_shape)
    motion = Motion.draw(rng)
    face_width = subject["box"][2] - subject["box"][0]
    transforms = _clip_transforms(motion, keep, face_width, size, frames, role == "leaves_frame")
    waves = motion.waves(frames)
    landmarks = np.stack([apply_affine(m, subject["landmarks"]) for m in transforms])
    visible = np.array([_box_on_canvas(m, subject["box"], size)[1] for m in transforms])
    _check_motion(photo, role, size, transforms, keep, subject["box"], frames)
    return ClipMotion(
        transforms=transforms,
        gains=1.0 + motion.gain * waves[4],
        gammas=np.exp(motion.gamma * waves[5]),
        landmarks=landmarks,
        visible=visible,
    )
