"""The face-to-model-input contract: the one owner of how a detected face becomes a model input.

Every consumer goes through this module: the crops stage (crop with margin), training and evaluation
(resize + pad, normalisation), export and quantization (written into the manifest), prediction,
explanation and every runtime backend (logits to probabilities). A deployed model carries the same
contract in its manifest (``FaceInput.manifest()``), so a reader needs nothing else.

The contract, in order:
1. crop: the detector's box plus ``margin`` of its width/height on each side, clipped to the frame
   (DFDC-1st's 1/3), at native resolution;
2. fit: the longer side resized to ``image_size`` (INTER_AREA), then zero padding to a centred square;
3. normalise: RGB, ImageNet mean/std on 0-255 values, NCHW float32;
4. score: the models output logits; P(fake) is the sigmoid, computed in float64 on the CPU.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from deepfake.core.errors import InputError

if TYPE_CHECKING:
    import albumentations as A

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN_255 = np.array(IMAGENET_MEAN, np.float32) * 255
_STD_255 = np.array(IMAGENET_STD, np.float32) * 255

RESIZE_DESCRIPTION = "longest side to image_size (INTER_AREA), zero pad to a centred square"


def expand_box(box: Sequence[float], margin: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer crop ``(x1, y1, x2, y2)`` around ``box`` with ``margin`` of its size on each side.

    Clipped to the frame; None when nothing of the box lies inside the frame.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    pad_w, pad_h = (x2 - x1) * margin, (y2 - y1) * margin
    left = max(0, math.floor(x1 - pad_w))
    top = max(0, math.floor(y1 - pad_h))
    right = min(width, math.ceil(x2 + pad_w))
    bottom = min(height, math.ceil(y2 + pad_h))
    if right - left < 2 or bottom - top < 2:
        return None
    return left, top, right, bottom


def crop_face(frame: np.ndarray, box: Sequence[float], margin: float) -> np.ndarray | None:
    """The face of ``box`` with its margin, cut from ``frame`` (a view); None when it lies outside."""
    height, width = frame.shape[:2]
    rect = expand_box(box, margin, width, height)
    if rect is None:
        return None
    left, top, right, bottom = rect
    return frame[top:bottom, left:right]


def resize_and_pad(image_size: int, interpolation: int = cv2.INTER_AREA) -> list[A.BasicTransform]:
    """Isotropic resize of the longer side to ``image_size``, then zero padding to a square.

    Training composes these with its augmentations (and other interpolations); inference uses them as is.
    albumentations is imported here, not at the top: it imports torch (seconds), which the stages that only
    crop (crops, diffs) and the ones that only read manifests (triton) never need.
    """
    import albumentations as A

    return [
        A.LongestMaxSize(max_size=image_size, interpolation=interpolation, mask_interpolation=cv2.INTER_NEAREST),
        A.PadIfNeeded(
            min_height=image_size, min_width=image_size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0
        ),
    ]


@functools.lru_cache(maxsize=8)
def fit_transform(image_size: int) -> A.Compose:
    """Step 2 of the contract as one albumentations transform (image and, for training data, mask).

    Built once per size: it has no randomness, and prediction calls it per face (building it costs
    about twice the resize itself)."""
    import albumentations as A

    return A.Compose(resize_and_pad(image_size))


def fit_image(image: np.ndarray, image_size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """``resize_and_pad`` on one image without albumentations: the longer side scaled to ``image_size`` (each
    side ``max(1, round(side * scale))``, as ``A.LongestMaxSize``), then zeros around it to a square, the odd
    pixel below and right (as ``A.PadIfNeeded``'s centre position)."""
    height, width = image.shape[:2]
    scale = image_size / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image if size == (width, height) else cv2.resize(image, size, interpolation=interpolation)
    top, left = (image_size - size[1]) // 2, (image_size - size[0]) // 2
    bottom, right = image_size - size[1] - top, image_size - size[0] - left
    if not (top or bottom or left or right):
        return resized.copy()
    return cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """One model-sized RGB uint8 image (H, W, 3) to the normalised (3, H, W) float32 input."""
    return np.ascontiguousarray(((image.astype(np.float32) - _MEAN_255) / _STD_255).transpose(2, 0, 1))


def normalize_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """Model-sized RGB uint8 images to the normalised NCHW float32 batch."""
    return np.ascontiguousarray(np.stack([normalize_image(image) for image in images]), dtype=np.float32)


def to_picture(image: np.ndarray) -> np.ndarray:
    """A normalised (3, H, W) input back to the BGR uint8 picture the model saw (for explanations)."""
    rgb = np.clip(image * _STD_255[:, None, None] + _MEAN_255[:, None, None], 0, 255).astype(np.uint8)
    return cv2.cvtColor(rgb.transpose(1, 2, 0), cv2.COLOR_RGB2BGR)


def probabilities(logits: Any) -> np.ndarray:
    """P(fake) from logits: the sigmoid in float64 (the graphs end in logits; DPU and TensorRT alike)."""
    values = np.asarray(logits, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp(1000) is inf and 1 / inf is the exact 0.0 wanted
        return 1.0 / (1.0 + np.exp(-values))


@dataclass(frozen=True)
class FaceInput:
    """The contract's two numbers: the crop margin and the model's input side."""

    image_size: int
    margin: float

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise InputError(f"image_size must be at least 8, got {self.image_size}")
        if not (math.isfinite(self.margin) and 0 <= self.margin <= 2):
            raise InputError(f"margin must be in [0, 2], got {self.margin}")

    def fit(self, crop: np.ndarray) -> np.ndarray:
        """A native-size RGB crop resized and padded to the model size (a copy: it never pins a frame).

        ``fit_transform``'s two steps written with OpenCV alone, pixel for pixel (tests/test_face_input.py
        holds them equal over crop shapes): prediction then never imports albumentations, which imports torch
        (three of a first verdict's seconds)."""
        return fit_image(crop, self.image_size)

    def manifest(self) -> dict[str, Any]:
        """The contract as a deployed model's manifest records it."""
        return {
            "layout": "NCHW",
            "dtype": "float32",
            "channels": "RGB",
            "image_size": self.image_size,
            "margin": self.margin,
            "resize": RESIZE_DESCRIPTION,
            "mean": [round(float(v), 4) for v in _MEAN_255],
            "std": [round(float(v), 4) for v in _STD_255],
            "output": "logit; P(fake) = sigmoid(logit)",
        }

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any], source: str = "manifest") -> FaceInput:
        """The contract a manifest records; one written under another contract is refused."""
        try:
            spec = cls(image_size=int(entry["image_size"]), margin=float(entry["margin"]))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(f"{source}: no valid input contract (image_size, margin): {err}") from err
        mine = spec.manifest()
        differing = [k for k in ("layout", "channels", "resize", "mean", "std") if entry.get(k) != mine[k]]
        if differing:
            raise InputError(f"{source}: preprocessing {differing} differs from this version's face-input contract")
        return spec
