"""Stage folds: one row per crop with its fold, landmarks and diff/mask paths (the training index)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from deepfake.fileio import write_bytes_atomic, write_json_atomic
from deepfake.folds import FoldsConfig, LeakageError, assign_folds, find_leaks, leak_units
from deepfake.pipeline.crops import INDEX_COLUMNS, read_index

logger = logging.getLogger(__name__)

FOLDS_COLUMNS = [*INDEX_COLUMNS, "fold", "landmarks", "diff", "mask"]


def _existing(root: Path, relative: pd.Series) -> pd.Series:
    """``relative`` where ``root/relative`` exists, else an empty string."""
    return relative.where(relative.map(lambda r: (root / r).is_file()), "")


def build_table(
    crops_dir: Path, landmarks_dir: Path, diffs_dir: Path, masks_dir: Path, parts: list[str]
) -> pd.DataFrame:
    """All parts' crop indexes joined with the per-crop landmark, diff and mask files that exist.

    Fakes take their original's landmarks (same frame, same face); paths are relative to each root.
    """
    table = pd.concat([read_index(crops_dir / part) for part in parts], ignore_index=True)
    if table.empty:
        return pd.DataFrame(columns=FOLDS_COLUMNS)
    stem = table["file"].str.rsplit("/", n=1).str[-1].str.removesuffix(".png")
    original_stem = table["original"].str.removesuffix(".mp4")
    landmarks = table["part"] + "/" + original_stem + "/" + stem + ".npy"
    table["landmarks"] = _existing(landmarks_dir, landmarks)
    fake_file = table["file"].where(table["label"] == "FAKE", "")
    table["diff"] = _existing(diffs_dir, fake_file).where(fake_file != "", "")
    table["mask"] = _existing(masks_dir, fake_file).where(fake_file != "", "")
    return table


def run(
    crops_dir: Path,
    landmarks_dir: Path,
    diffs_dir: Path,
    masks_dir: Path,
    parts: list[str],
    out_csv: Path,
    report_path: Path,
    config: FoldsConfig,
) -> dict[str, Any]:
    started = time.perf_counter()
    table = build_table(crops_dir, landmarks_dir, diffs_dir, masks_dir, parts)
    table["fold"] = assign_folds(table, config)
    leaks = find_leaks(table, config.identity)
    if leaks:
        identity_leak = any(k.startswith("identity:") for k in leaks)
        hint = " (folds.identity: false accepts identity leaks)" if identity_leak else ""
        raise LeakageError(f"{len(leaks)} originals or identities straddle folds{hint}, e.g. {leaks[:5]}")
    table = table.sort_values(["fold", "part", "original", "video", "frame", "face"], kind="stable")
    write_bytes_atomic(out_csv, table[FOLDS_COLUMNS].to_csv(index=False, lineterminator="\n").encode())
    per_fold = {
        str(fold): {
            "crops": len(rows),
            "videos": int(rows["video"].nunique()),
            "originals": int(rows["original"].nunique()),
            "fake_crops": int((rows["label"] == "FAKE").sum()),
        }
        for fold, rows in table.groupby("fold")
    }
    report = {
        "stage": "folds",
        "strategy": config.strategy,
        "holdout_fold": 0,
        "crops": len(table),
        "videos": int(table["video"].nunique()),
        "leaking_groups": len(leaks),
        "identities": int(table["identity"].replace("", pd.NA).nunique()) if "identity" in table else 0,
        "leak_free_units": int(leak_units(table, config.identity).nunique()),
        "crops_with_landmarks": int((table["landmarks"] != "").sum()),
        "fake_crops_with_mask": int((table["mask"] != "").sum()),
        "folds": per_fold,
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(report_path, report)
    logger.info("folds: %d crops in %d folds, no leakage", len(table), len(per_fold))
    return report
