"""Training augmentations: albumentations (DFDC-1st's list) plus its face-part cutouts.

The cutouts work on the native-size crop before resizing, with the crop's 5-point landmarks
(eyes, nose, mouth corners) and, for fakes, the binarised SSIM mask:
- landmark cutout: black out the eyes, the nose or the mouth with a thick line;
- hull cutout: black out one half (left/right/top/bottom) of the face region around the landmarks;
- quadrant cutout: keep a half or diagonal pair of quadrants, chosen so a fake keeps changed pixels.
Self-blending (Shiohara & Yamasaki, CVPR 2022, "SBI") turns a real crop into a training fake: a
colour-, resampling- and position-jittered copy of the face is blended back into the same crop
through a soft face mask, so the only evidence left is the blending boundary and resampling trace
every face swap leaves, not a second person's identity.
All randomness comes from the ``rng`` passed in, so a sample's augmentation is set by its seed.

Params set how often each augmentation applies and the albumentations strengths (``augment``). The cutouts'
shapes and the self-blend recipe's ranges below are fixed: they define those augmentations (after DFDC-1st's
cutouts and the SBI paper's source-target jitter), and ``augment.*_cutout`` / ``augment.self_blend`` set how
much of them training sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

from deepfake.core.params import Params
from deepfake.media.face_input import resize_and_pad


@dataclass(frozen=True)
class AugmentConfig:
    jpeg: float
    jpeg_quality: tuple[int, int]
    noise: float
    noise_std: tuple[float, float]  # share of the pixel range
    blur: float
    blur_kernel: tuple[int, int]  # odd sides
    flip: float
    color: float
    gray: float
    affine: float
    affine_shift: float  # share of the side, each way
    affine_scale: tuple[float, float]
    affine_rotate: int  # degrees, each way
    landmark_cutout: float
    hull_cutout: float
    quadrant_cutout: float
    self_blend: float  # share of each epoch's fake slots filled with self-blended real crops
    min_changed_pixels: int  # a fake crop whose mask has fewer changed pixels does not count as fake

    @classmethod
    def from_params(cls, params: Params) -> AugmentConfig:
        """From the validated ``augment`` section (probabilities are checked there)."""
        sect = params.augment
        low, high = sect.jpeg_quality
        names: tuple[str, ...] = ("jpeg", "noise", "blur", "flip", "color", "gray", "affine")
        names += ("landmark_cutout", "hull_cutout", "quadrant_cutout", "self_blend")
        probabilities = {name: float(getattr(sect, name)) for name in names}
        return cls(
            jpeg_quality=(int(low), int(high)),
            noise_std=(float(sect.noise_std[0]), float(sect.noise_std[1])),
            blur_kernel=(int(sect.blur_kernel[0]), int(sect.blur_kernel[1])),
            affine_shift=float(sect.affine_shift),
            affine_scale=(float(sect.affine_scale[0]), float(sect.affine_scale[1])),
            affine_rotate=int(sect.affine_rotate),
            min_changed_pixels=sect.min_changed_pixels,
            **probabilities,
        )


def train_transform(image_size: int, config: AugmentConfig) -> A.Compose:
    """DFDC-1st's training augmentations, probabilities and strengths from params."""
    resize = A.OneOf(
        [
            A.Compose(resize_and_pad(image_size, cv2.INTER_AREA)),
            A.Compose(resize_and_pad(image_size, cv2.INTER_LINEAR)),
            A.Compose(resize_and_pad(image_size, cv2.INTER_CUBIC)),
        ],
        p=1.0,
    )
    return A.Compose(
        [
            A.ImageCompression(quality_range=config.jpeg_quality, p=config.jpeg),
            A.GaussNoise(std_range=config.noise_std, p=config.noise),
            A.GaussianBlur(blur_limit=config.blur_kernel, p=config.blur),
            A.HorizontalFlip(p=config.flip),
            resize,
            A.OneOf([A.RandomBrightnessContrast(), A.FancyPCA(), A.HueSaturationValue()], p=config.color),
            A.ToGray(p=config.gray),
            A.Affine(
                translate_percent=(-config.affine_shift, config.affine_shift),
                scale=config.affine_scale,
                rotate=(-config.affine_rotate, config.affine_rotate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=config.affine,
            ),
        ]
    )


def _line_width(landmarks: np.ndarray) -> int:
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    return max(2, int(eye_distance / 3))


def landmark_cutout(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Black out the eyes, the nose or the mouth (DFDC-1st's remove_eyes/nose/mouth)."""
    out = image.copy()
    points = np.round(landmarks).astype(int)
    part = int(rng.integers(3))
    width = _line_width(landmarks)
    if part == 0:  # eyes
        start, end = points[0], points[1]
    elif part == 1:  # nose: from the nose tip to the middle of the mouth
        start, end = points[2], (points[3] + points[4]) // 2
    else:  # mouth
        start, end = points[3], points[4]
    cv2.line(out, tuple(int(v) for v in start), tuple(int(v) for v in end), (0, 0, 0), width)
    return out


def hull_cutout(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Black out one half of the face region (an ellipse around the landmarks, grown to the face)."""
    centre = landmarks.mean(axis=0)
    eye_distance = max(float(np.linalg.norm(landmarks[1] - landmarks[0])), 2.0)
    face = np.zeros(image.shape[:2], np.uint8)
    axes = (int(eye_distance * 1.1), int(eye_distance * 1.5))
    cv2.ellipse(face, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 1, -1)
    half = np.zeros_like(face)
    cx, cy = int(centre[0]), int(centre[1])
    side = int(rng.integers(4))
    if side == 0:
        half[:, :cx] = 1
    elif side == 1:
        half[:, cx:] = 1
    elif side == 2:
        half[:cy] = 1
    else:
        half[cy:] = 1
    out = image.copy()
    out[(face & half) > 0] = 0
    return out


def quadrant_masks(height: int, width: int) -> list[np.ndarray]:
    """DFDC-1st's six bit masks: keep one half (4 ways) or one diagonal pair of quadrants (2 ways)."""
    mid_h, mid_w = height // 2, width // 2
    masks = []
    for region in (
        (slice(None, mid_h), slice(None)),
        (slice(mid_h, None), slice(None)),
        (slice(None), slice(None, mid_w)),
        (slice(None), slice(mid_w, None)),
    ):
        keep = np.ones((height, width), np.uint8)
        keep[region] = 0
        masks.append(keep)
    diagonal = np.ones((height, width), np.uint8)
    diagonal[:mid_h, :mid_w] = 0
    diagonal[mid_h:, mid_w:] = 0
    masks.extend([diagonal, 1 - diagonal])
    return masks


def quadrant_cutout(
    image: np.ndarray, mask: np.ndarray, is_fake: bool, min_changed: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Zero out part of the crop; for a fake only if enough changed pixels survive (tries each mask once)."""
    candidates = quadrant_masks(*image.shape[:2])
    for index in rng.permutation(len(candidates)):
        keep = candidates[index]
        if not is_fake or np.count_nonzero(mask * keep) > min_changed:
            return image * keep[..., None], mask * keep
    return image, mask


def _face_ellipse(shape: tuple[int, int], landmarks: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """A float mask (0/1) of a jittered ellipse over the face: from the landmarks, else the crop centre."""
    height, width = shape
    if landmarks is not None:
        centre = landmarks.mean(axis=0)
        eye_distance = max(float(np.linalg.norm(landmarks[1] - landmarks[0])), 2.0)
        axes = np.array([eye_distance * 1.1, eye_distance * 1.5])
    else:  # crops are the face box plus a margin on each side: the face sits in the middle
        centre = np.array([width / 2, height / 2])
        axes = np.array([width * 0.3, height * 0.36])
    axes = axes * rng.uniform(0.8, 1.15, size=2)
    centre = centre + rng.uniform(-0.05, 0.05, size=2) * axes
    mask = np.zeros(shape, np.float32)
    cv2.ellipse(
        mask,
        (round(float(centre[0])), round(float(centre[1]))),
        (max(int(axes[0]), 2), max(int(axes[1]), 2)),
        float(rng.uniform(-15, 15)),
        0,
        360,
        1.0,
        -1,
    )
    return mask


def _jitter_source(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "other face": the same crop with a colour shift, a resampling or sharpening, a small move."""
    source: np.ndarray = image.astype(np.float32)
    source = source * rng.uniform(0.9, 1.1) + rng.uniform(-12, 12, size=3)  # contrast, per-channel shift
    height, width = image.shape[:2]
    kind = int(rng.integers(3))
    if kind == 0:  # downscale and upscale back: what a generator's low output resolution leaves
        factor = rng.uniform(0.25, 0.7)
        small_size = (max(int(width * factor), 4), max(int(height * factor), 4))
        small = cv2.resize(source, small_size, interpolation=cv2.INTER_AREA)
        source = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    elif kind == 1:
        source = cv2.GaussianBlur(source, (0, 0), rng.uniform(0.6, 1.6))
    else:  # unsharp masking
        source = cv2.addWeighted(source, 1.6, cv2.GaussianBlur(source, (0, 0), 1.5), -0.6, 0)
    scale = rng.uniform(0.96, 1.04)
    shift = rng.uniform(-0.02, 0.02, size=2) * (width, height)
    matrix: np.ndarray = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += shift
    source = cv2.warpAffine(source, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    return source


def self_blend(
    image: np.ndarray, landmarks: np.ndarray | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """SBI: blend a jittered copy of a real face into itself. Returns (fake image, binary mask).

    The blend weight is a blurred face ellipse times a random ratio; the returned mask marks the
    pixels where the blend weight reaches half its maximum (the U-YNet target).
    """
    height, width = image.shape[:2]
    weight = _face_ellipse((height, width), landmarks, rng)
    sigma = max(min(height, width) * rng.uniform(0.01, 0.05), 0.5)
    weight = cv2.GaussianBlur(weight, (0, 0), sigma)
    peak = float(weight.max())
    if peak <= 0:
        return image.copy(), np.zeros((height, width), np.uint8)
    weight = weight / peak * float(rng.choice([0.5, 0.75, 1.0, 1.0, 1.0]))
    source = _jitter_source(image, rng)
    blended = source * weight[..., None] + image.astype(np.float32) * (1 - weight[..., None])
    mask = (weight >= 0.5 * weight.max()).astype(np.uint8)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8), mask
