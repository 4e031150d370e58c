"""Stage diffs: SSIM difference maps and binarised masks for every fake crop of one part."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from deepfake.fileio import atomic_dir, write_png_atomic
from deepfake.masks import binarize, ssim_difference
from deepfake.params import section
from deepfake.pipeline.common import map_videos
from deepfake.pipeline.crops import read_index
from deepfake.report import SKIPPED, StageReport, VideoResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffsConfig:
    win_size: int
    mask_threshold: int
    workers: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DiffsConfig:
        sect = section(params, "diffs")
        config = cls(int(sect["win_size"]), int(sect["mask_threshold"]), int(sect["workers"]))
        if config.win_size < 3 or config.win_size % 2 == 0:
            raise ValueError(f"diffs.win_size must be an odd number >= 3, got {config.win_size}")
        if not 0 <= config.mask_threshold <= 255:
            raise ValueError(f"diffs.mask_threshold must be in [0, 255], got {config.mask_threshold}")
        return config


@dataclass(frozen=True)
class DiffsTask:
    video: str
    pairs: tuple[tuple[Path, Path], ...]  # (fake crop, original crop at the same frame and face)
    diff_out: Path
    mask_out: Path
    config: DiffsConfig


def diff_video(task: DiffsTask) -> VideoResult:
    result = VideoResult(video=task.video, counts={"pairs_found": 0, "pairs_missing": 0})
    for fake_path, original_path in task.pairs:
        fake = cv2.imread(str(fake_path), cv2.IMREAD_COLOR)
        original = cv2.imread(str(original_path), cv2.IMREAD_COLOR) if original_path.is_file() else None
        if fake is None or original is None or fake.shape != original.shape:
            why = "original crop missing" if original is None else "unreadable or different size"
            result.notes.append(f"{fake_path.name}: {why}")
            result.counts["pairs_missing"] += 1
            continue
        difference = ssim_difference(original, fake, task.config.win_size)
        write_png_atomic(task.diff_out / fake_path.name, difference)
        write_png_atomic(task.mask_out / fake_path.name, binarize(difference, task.config.mask_threshold))
        result.counts["pairs_found"] += 1
    if result.counts["pairs_found"] == 0:
        return VideoResult(task.video, SKIPPED, "no crop pair with its original", result.counts, result.notes)
    return result


def run(
    crops_dir: Path, part: str, diffs_out: Path, masks_out: Path, report_path: Path, config: DiffsConfig
) -> dict[str, Any]:
    """Diff maps into ``diffs_out/<fake>/`` and masks into ``masks_out/<fake>/``, same file names as crops."""
    index = read_index(crops_dir / part)
    fakes = index[index["label"] == "FAKE"]
    report = StageReport("diffs", part)
    with atomic_dir(diffs_out) as diff_tmp, atomic_dir(masks_out) as mask_tmp:
        tasks = []
        for video, rows in fakes.groupby("video", sort=True):
            stem = Path(video).stem
            original_stem = Path(rows["original"].iloc[0]).stem
            pairs = tuple((crops_dir / f, crops_dir / part / original_stem / Path(f).name) for f in rows["file"])
            tasks.append((video, DiffsTask(video, pairs, diff_tmp / stem, mask_tmp / stem, config)))
        for result in map_videos(diff_video, tasks, config.workers, f"diffs {part}"):
            report.add(result)
    summary = report.write(report_path)
    logger.info("diffs %s: %s pairs, %s missing", part, summary.get("pairs_found", 0), summary.get("pairs_missing", 0))
    return summary
