"""SSIM difference masks between a fake crop and its original's crop (DFDC-1st's diffs)."""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import structural_similarity


def ssim_difference(original_bgr: np.ndarray, fake_bgr: np.ndarray, win_size: int) -> np.ndarray:
    """Grey uint8 map, ``(1 - SSIM) * 255`` per pixel: bright where the fake differs.

    Both crops must have the same shape (the fake reuses the original's boxes).
    """
    if original_bgr.shape != fake_bgr.shape:
        raise ValueError(f"crop shapes differ: original {original_bgr.shape}, fake {fake_bgr.shape}")
    if min(original_bgr.shape[:2]) < win_size:
        raise ValueError(f"crop {original_bgr.shape[:2]} smaller than the SSIM window {win_size}")
    _, similarity = structural_similarity(
        original_bgr, fake_bgr, win_size=win_size, channel_axis=-1, data_range=255, full=True
    )
    difference = np.clip((1.0 - similarity) * 255.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(difference, cv2.COLOR_BGR2GRAY)


def binarize(difference: np.ndarray, threshold: int) -> np.ndarray:
    """Manipulation mask for segmentation training: 255 where ``difference > threshold``, else 0."""
    return np.where(difference > threshold, 255, 0).astype(np.uint8)
