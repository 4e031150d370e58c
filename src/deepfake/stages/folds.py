"""Stage folds: one row per crop of every dataset with its fold, landmarks and diff/mask paths (the
training and evaluation index). Official splits are kept: test -> holdout fold, val -> val fold
(``deepfake.modeling.splits``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from deepfake.core.errors import LeakageError
from deepfake.core.fileio import write_bytes_atomic, write_json_atomic
from deepfake.core.params import Params
from deepfake.core.vocabulary import FAKE
from deepfake.media.crop_index import INDEX_COLUMNS, read_index
from deepfake.modeling.splits import FoldsConfig, assign_folds, find_leaks, leak_units, official_splits

logger = logging.getLogger(__name__)

FOLDS_COLUMNS = [*INDEX_COLUMNS, "fold", "landmarks", "diff", "mask"]


def _existing(root: Path, relative: pd.Series) -> pd.Series:
    """``relative`` where ``root/relative`` exists, else an empty string."""
    return relative.where(relative.map(lambda r: (root / r).is_file()), "")


def build_table(
    crops_dir: Path, landmarks_dir: Path, diffs_dir: Path, masks_dir: Path, parts: list[str]
) -> pd.DataFrame:
    """All datasets' crop indexes joined with the per-crop landmark, diff and mask files that exist.

    Fakes take their original's landmarks (same frame, same face); paths are relative to each root.
    """
    table = pd.concat([read_index(crops_dir / part) for part in parts], ignore_index=True)
    if table.empty:
        return pd.DataFrame(columns=FOLDS_COLUMNS)
    stem = table["file"].str.rsplit("/", n=1).str[-1].str.removesuffix(".png")
    original_stem = table["original"].str.removesuffix(".mp4")
    landmarks = table["part"] + "/" + original_stem + "/" + stem + ".npy"
    table["landmarks"] = _existing(landmarks_dir, landmarks)
    fake_file = table["file"].where(table["label"] == FAKE, "")
    table["diff"] = _existing(diffs_dir, fake_file).where(fake_file != "", "")
    table["mask"] = _existing(masks_dir, fake_file).where(fake_file != "", "")
    return table


@dataclass(frozen=True)
class Config:
    parts: tuple[str, ...]
    split: FoldsConfig

    @classmethod
    def from_params(cls, params: Params) -> Config:
        return cls(parts=tuple(params.data.datasets), split=FoldsConfig.from_params(params))


@dataclass(frozen=True)
class Paths:
    crops: Path
    landmarks: Path
    diffs: Path
    masks: Path
    out_csv: Path  # data/folds.csv
    report: Path


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Every dataset's crops with their folds, landmarks, diffs and masks into ``folds.csv``; returns the report."""
    started = time.perf_counter()
    table = build_table(paths.crops, paths.landmarks, paths.diffs, paths.masks, list(config.parts))
    split = config.split
    table["fold"] = assign_folds(table, split)
    official = official_splits(table, split.identity) if split.strategy == "original" else None
    leaks = find_leaks(table, split.identity, official.unfollowed_identities if official else ())
    if leaks:
        identity_leak = any(k.startswith("identity:") for k in leaks)
        hint = " (folds.identity: false accepts identity leaks)" if identity_leak else ""
        raise LeakageError(f"{len(leaks)} originals or identities straddle folds{hint}, e.g. {leaks[:5]}")
    table = table.sort_values(["fold", "part", "original", "video", "frame", "face"], kind="stable")
    write_bytes_atomic(paths.out_csv, table[FOLDS_COLUMNS].to_csv(index=False, lineterminator="\n").encode())
    per_fold = {
        str(fold): {
            "crops": len(rows),
            "videos": int(rows["video"].nunique()),
            "originals": int(rows["original"].nunique()),
            "fake_crops": int((rows["label"] == FAKE).sum()),
        }
        for fold, rows in table.groupby("fold")
    }
    per_dataset = {
        str(dataset): {
            "crops": len(rows),
            "videos": int(rows["video"].nunique()),
            "crops_per_fold": {str(f): int(n) for f, n in rows["fold"].value_counts().sort_index().items()},
            "official_split_crops": {
                (s or "none"): int(n) for s, n in rows["split"].value_counts().sort_index().items()
            },
        }
        for dataset, rows in table.groupby("part")
    }
    report = {
        "stage": "folds",
        "strategy": split.strategy,
        "holdout_fold": split.holdout_fold,
        "val_fold": split.val_fold,
        "crops": len(table),
        "videos": int(table["video"].nunique()),
        "leaking_groups": len(leaks),
        "identities": int(table["identity"].replace("", pd.NA).nunique()) if "identity" in table else 0,
        "leak_free_units": int(leak_units(table, split.identity).nunique()),
        "crops_with_landmarks": int((table["landmarks"] != "").sum()),
        "fake_crops_with_mask": int((table["mask"] != "").sum()),
        "folds": per_fold,
        "datasets": per_dataset,
        "rows_moved_to_their_originals_split": official.moved_rows if official else 0,
        "identities_split_by_official_protocol": list(official.unfollowed_identities) if official else [],
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(paths.report, report)
    logger.info("folds: %d crops in %d folds, no leakage", len(table), len(per_fold))
    return report
