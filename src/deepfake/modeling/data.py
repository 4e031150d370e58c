"""Training data: folds.csv rows -> tensors, and DFDC-1st's per-epoch balanced sampling."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from deepfake.core.errors import InputError
from deepfake.core.vocabulary import FAKE
from deepfake.media.face_input import fit_transform, normalize_image
from deepfake.modeling.augment import (
    AugmentConfig,
    hull_cutout,
    landmark_cutout,
    quadrant_cutout,
    self_blend,
    train_transform,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataRoots:
    crops: Path
    landmarks: Path
    masks: Path


@dataclass(frozen=True)
class ModelStagePaths:
    """``Paths`` of the stages that turn trained models into deployable ones (export, quantize,
    build_trt, compile_dpu): the training index and crops (parity checks, calibration), the
    ``models/`` root of the model store, and the stage's report."""

    folds: Path
    roots: DataRoots
    models: Path
    report: Path


def read_folds(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: not found; run the folds stage (dvc repro folds)")
    text = ("video", "file", "label", "original", "part", "identity", "method", "compression", "split")
    table = pd.read_csv(
        path, keep_default_na=False, dtype={**dict.fromkeys(text, str), "landmarks": str, "diff": str, "mask": str}
    )
    missing = {"video", "file", "label", "original", "fold", "landmarks", "mask"} - set(table.columns)
    if missing:
        raise InputError(f"{path}: missing columns {sorted(missing)}")
    return table


def select_training_data(table: pd.DataFrame, datasets: Sequence[str], holdout_methods: Sequence[str]) -> pd.DataFrame:
    """Rows of ``datasets`` (all when empty) minus the fakes of ``holdout_methods`` (the unseen methods)."""
    rows = table
    if datasets:
        known = set(table["part"])
        missing = sorted(set(datasets) - known)
        if missing:
            raise InputError(f"train.datasets {missing} have no crops in the folds table (datasets: {sorted(known)})")
        rows = rows[rows["part"].isin(list(datasets))]
    if holdout_methods and "method" in rows.columns:
        rows = rows[~((rows["label"] == FAKE) & rows["method"].isin(list(holdout_methods)))]
    return rows


def select_folds(table: pd.DataFrame, folds: list[int], drop_unmasked_fakes: bool = True) -> pd.DataFrame:
    """Rows of ``folds``; fakes without a mask (no original crop to compare) are left out of training."""
    rows = table[table["fold"].isin(folds)]
    if drop_unmasked_fakes:
        unmasked = (rows["label"] == FAKE) & (rows["mask"] == "")
        if unmasked.any():
            logger.info("leaving out %d fake crops without a diff mask", int(unmasked.sum()))
        rows = rows[~unmasked]
    return rows.reset_index(drop=True)


def epoch_indices(labels: np.ndarray, epoch: int, seed: int, blend_share: float) -> np.ndarray:
    """All reals plus as many randomly chosen fakes, shuffled; seeded by ``(epoch + 1) * seed``.

    With ``blend_share`` > 0 that share of the fake slots (all of them when the data hold no fakes)
    goes to self-blended reals, returned as ``len(labels) + real_index`` (see ``CropDataset``).
    """
    rng = np.random.default_rng((epoch + 1) * seed)
    reals, fakes = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if blend_share > 0 and len(reals):
        n_blend = len(reals) if not len(fakes) else round(blend_share * len(reals))
        blended = rng.choice(reals, size=n_blend, replace=False) + len(labels)
        fakes = rng.choice(fakes, size=min(len(fakes), len(reals) - n_blend), replace=False)
        fakes = np.concatenate([fakes, blended])
    elif len(reals) and len(fakes) > len(reals):
        fakes = rng.choice(fakes, size=len(reals), replace=False)
    indices = np.concatenate([reals, fakes])
    rng.shuffle(indices)
    return indices


def shard(indices: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This replica's share; padded by wrapping so every replica runs the same number of steps."""
    if world_size <= 1:
        return indices
    total = -(-len(indices) // world_size) * world_size
    padded = np.resize(indices, total)
    return padded[rank::world_size]


class CropDataset(Dataset):
    """Face crops with label, validity, binarised mask and (for training) augmentations.

    Each sample's randomness is seeded by ``(seed, epoch, index)``, so augmentations do not
    depend on the number of data-loader workers or replicas. When training with self-blending,
    index ``len(rows) + i`` is real row ``i`` turned into a fake (``augment.self_blend``).
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        roots: DataRoots,
        image_size: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        min_changed_pixels: int | None = None,
    ) -> None:
        self.rows = rows.reset_index(drop=True)
        self.roots = roots
        self.augment = augment
        self.transform = train_transform(image_size, augment) if augment else fit_transform(image_size)
        self.seed = seed
        self.epoch = 0
        # augment.min_changed_pixels: a fake crop whose mask changes fewer pixels is not counted as fake;
        # None (evaluation, export, calibration) marks every crop valid: nothing there reads the flag
        self.min_changed = augment.min_changed_pixels if augment else min_changed_pixels

    def __len__(self) -> int:
        blending = self.augment is not None and self.augment.self_blend > 0
        return len(self.rows) * (2 if blending else 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def labels(self) -> np.ndarray:
        return (self.rows["label"] == FAKE).to_numpy(dtype=np.int64)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        row = self.rows.iloc[index]
        path = self.roots.crops / row["file"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"{path}: crop missing or unreadable (dvc repro or dvc pull the crops)")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        mask = np.zeros(image.shape[:2], np.uint8)
        if row["label"] == FAKE and row["mask"]:
            stored = cv2.imread(str(self.roots.masks / row["mask"]), cv2.IMREAD_GRAYSCALE)
            if stored is None or stored.shape != mask.shape:
                raise InputError(f"{self.roots.masks / row['mask']}: mask missing or of another size")
            mask = (stored > 0).astype(np.uint8)
        # landmarks only guide training augmentations; evaluation and export never read them
        landmarks = np.load(self.roots.landmarks / row["landmarks"]) if self.augment and row["landmarks"] else None
        return image, mask, landmarks

    def _cutouts(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        landmarks: np.ndarray | None,
        is_fake: bool,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        config = self.augment
        assert config is not None
        if landmarks is not None and rng.random() < config.landmark_cutout:
            return landmark_cutout(image, landmarks, rng), mask
        if landmarks is not None and rng.random() < config.hull_cutout:
            return hull_cutout(image, landmarks, rng), mask
        if rng.random() < config.quadrant_cutout:
            return quadrant_cutout(image, mask, is_fake, config.min_changed_pixels, rng)
        return image, mask

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        row_index = index % len(self.rows)
        image, mask, landmarks = self._read(row_index)
        is_fake = self.rows.iloc[row_index]["label"] == FAKE
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if index >= len(self.rows):
                if is_fake:
                    raise IndexError(f"index {index}: only real crops are self-blended (row {row_index} is FAKE)")
                image, mask = self_blend(image, landmarks, rng)
                is_fake = True
            image, mask = self._cutouts(image, mask, landmarks, is_fake, rng)
            self.transform.set_random_seed(int(rng.integers(2**31)))
        # a fake crop whose diff shows (almost) no change carries no fake evidence: not counted
        valid = (not is_fake) or self.min_changed is None or np.count_nonzero(mask) > self.min_changed
        out = self.transform(image=image, mask=mask)
        return {
            "image": torch.from_numpy(normalize_image(out["image"])),
            "mask": torch.from_numpy(out["mask"].astype(np.float32))[None],
            "label": torch.tensor(float(is_fake)),
            "valid": torch.tensor(float(valid)),
            "index": torch.tensor(index),
        }


def calibration_rows(table: pd.DataFrame, holdout_fold: int, count: int, seed: int) -> pd.DataFrame:
    """Up to ``count`` crops of the training folds (never the holdout), reals and fakes alike.

    int8 calibration (Quark, TensorRT, Vitis AI) draws from these, so no holdout crop shapes a scale.
    """
    rows = select_folds(table, sorted(set(table["fold"]) - {holdout_fold}), drop_unmasked_fakes=False)
    if rows.empty:
        raise InputError("folds.csv: no crops outside the holdout fold to calibrate on")
    if len(rows) > count:
        rows = rows.sample(n=count, random_state=seed)
    return rows.reset_index(drop=True)


def calibration_batches(dataset: CropDataset, batch_size: int) -> list[torch.Tensor]:
    """The dataset's images stacked in batches of ``batch_size`` (the last one may be smaller)."""
    return [
        torch.stack([dataset[i]["image"] for i in range(start, min(start + batch_size, len(dataset)))])
        for start in range(0, len(dataset), batch_size)
    ]
