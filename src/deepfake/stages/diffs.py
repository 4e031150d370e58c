"""Stage diffs: SSIM difference maps and binarised masks for every fake crop of one part."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from deepfake.core.fileio import atomic_dir, write_png_atomic
from deepfake.core.parallel import map_videos
from deepfake.core.report import SKIPPED, StageReport, VideoResult
from deepfake.media.crop_index import read_index
from deepfake.media.masks import binarize, ssim_difference

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    win_size: int
    mask_threshold: int
    workers: int

    @classmethod
    def from_params(cls, params: Any) -> Config:
        sect = params.diffs
        return cls(sect.win_size, sect.mask_threshold, sect.workers)


@dataclass(frozen=True)
class Paths:
    crops: Path  # the crops root (data/crops)
    part: str
    diffs_out: Path  # <fake>/<frame>_<face>.png SSIM difference maps
    masks_out: Path  # <fake>/<frame>_<face>.png binarised masks
    report: Path


@dataclass(frozen=True)
class DiffsTask:
    video: str
    pairs: tuple[tuple[Path, Path], ...]  # (fake crop, original crop at the same frame and face)
    diff_out: Path
    mask_out: Path
    config: Config


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
        if min(fake.shape[:2]) < task.config.win_size:  # a face clipped at the frame edge to a sliver
            result.notes.append(f"{fake_path.name}: {fake.shape[1]}x{fake.shape[0]} px, below the SSIM window")
            result.counts["pairs_missing"] += 1
            continue
        difference = ssim_difference(original, fake, task.config.win_size)
        write_png_atomic(task.diff_out / fake_path.name, difference)
        write_png_atomic(task.mask_out / fake_path.name, binarize(difference, task.config.mask_threshold))
        result.counts["pairs_found"] += 1
    if result.counts["pairs_found"] == 0:
        return VideoResult(task.video, SKIPPED, "no crop pair with its original", result.counts, result.notes)
    return result


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Diff maps into ``diffs_out/<fake>/`` and masks into ``masks_out/<fake>/``, same file names as crops."""
    crops_dir, part = paths.crops, paths.part
    index = read_index(crops_dir / part)
    fakes = index[index["label"] == "FAKE"]
    report = StageReport("diffs", part)
    # the diffs folder is renamed last: a failure before it keeps the previous diffs, masks and report
    with atomic_dir(paths.diffs_out) as diff_tmp, report.outputs(paths.masks_out, paths.report) as mask_tmp:
        tasks = []
        for video, rows in fakes.groupby("video", sort=True):
            stem = Path(video).stem
            original_stem = Path(rows["original"].iloc[0]).stem
            pairs = tuple((crops_dir / f, crops_dir / part / original_stem / Path(f).name) for f in rows["file"])
            tasks.append((video, DiffsTask(video, pairs, diff_tmp / stem, mask_tmp / stem, config)))
        for result in map_videos(diff_video, tasks, config.workers, f"diffs {part}"):
            report.add(result)
    summary = report.summary
    logger.info("diffs %s: %s pairs, %s missing", part, summary.get("pairs_found", 0), summary.get("pairs_missing", 0))
    return summary
