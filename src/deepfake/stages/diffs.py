"""Stage diffs: difference maps and binarised manipulation masks for every fake crop of one dataset.

The mask, the segmentation target, comes from the dataset's own mask video where it ships one
(FaceForensics++ ``masks/videos``): the mask frame is cropped with the same box as the face and
binarised. Elsewhere (DFDC, Celeb-DF, ...) it is DFDC-1st's SSIM difference against the original's
crop at the same frame and face, binarised. The SSIM difference map is written whenever the original's
crop exists. A fake whose original the layout does not name (DFDC test, DFDC preview) has neither:
it is skipped with that reason, and never trains (training needs a mask for a fake).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.core.errors import InputError
from deepfake.core.fileio import atomic_dir, write_png
from deepfake.core.parallel import LOCAL, ExecutorConfig, map_videos
from deepfake.core.params import Params
from deepfake.core.report import SKIPPED, StageReport, VideoResult
from deepfake.core.vocabulary import FAKE
from deepfake.media.crop_index import read_index
from deepfake.media.face_input import crop_face
from deepfake.media.faces import load_boxes
from deepfake.media.layouts import load_dataset
from deepfake.media.masks import binarize, ssim_difference
from deepfake.media.video import FrameSampling, iter_sampled_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    win_size: int
    mask_threshold: int
    workers: int
    sampling: FrameSampling  # mask videos are read at the frames the crops were taken from
    margin: float  # and cropped with the crops' margin
    executor: ExecutorConfig = LOCAL  # where the videos are processed; the output does not depend on it

    @classmethod
    def from_params(cls, params: Params) -> Config:
        sect = params.diffs
        return cls(
            sect.win_size,
            sect.mask_threshold,
            sect.workers,
            FrameSampling.from_params(params),
            params.crops.margin,
            ExecutorConfig.from_params(params),
        )


@dataclass(frozen=True)
class Paths:
    crops: Path  # the crops root (data/crops)
    part: str  # the dataset
    diffs_out: Path  # <fake>/<frame>_<face>.png SSIM difference maps
    masks_out: Path  # <fake>/<frame>_<face>.png binarised masks
    report: Path
    index: Path | None = None  # the dataset's canonical index: needed for its mask videos
    root: Path | None = None  # the dataset root (mask video paths are relative to it)
    boxes: Path | None = None  # the bboxes stage's folder for the dataset (mask videos are cropped with them)
    extra_roots: tuple[Path, ...] = ()


@dataclass(frozen=True)
class DiffsTask:
    video: str
    pairs: tuple[tuple[Path, Path | None], ...]  # (fake crop, original crop at the same frame and face or None)
    diff_out: Path
    mask_out: Path
    config: Config
    mask_video: Path | None = None  # the dataset's mask video for this fake, when it ships one
    boxes: Path | None = None  # the boxes the fake's crops were cut with (its original's)


def _masks_from_video(task: DiffsTask, result: VideoResult) -> set[str]:
    """Write the binarised, cropped mask-video frames for the fake's crops; return the crop names done."""
    assert task.mask_video is not None and task.boxes is not None
    wanted = {fake.name: fake for fake, _ in task.pairs}
    boxes = load_boxes(task.boxes)
    done: set[str] = set()
    for index, frame in iter_sampled_frames(task.mask_video, task.config.sampling):
        if (frame.shape[1], frame.shape[0]) != (boxes.width, boxes.height):
            result.notes.append(
                f"mask video is {frame.shape[1]}x{frame.shape[0]}, the boxes {boxes.width}x{boxes.height}"
            )
            return done
        for face, box in enumerate(boxes.frames.get(index, [])):
            name = f"{index}_{face}.png"
            if name not in wanted:
                continue
            crop = crop_face(frame, box, task.config.margin)
            if crop is None:
                continue
            grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY)
            write_png(task.mask_out / name, binarize(grey, task.config.mask_threshold))
            done.add(name)
    result.counts["masks_from_video"] += len(done)
    return done


def diff_video(task: DiffsTask) -> VideoResult:
    result = VideoResult(video=task.video, counts={"pairs_found": 0, "pairs_missing": 0, "masks_from_video": 0})
    from_video = _masks_from_video(task, result) if task.mask_video is not None else set()
    for fake_path, original_path in task.pairs:
        if original_path is None:  # no original named: the mask video is the only source
            continue
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
        write_png(task.diff_out / fake_path.name, difference)  # in the stage's temporary folders
        if fake_path.name not in from_video:
            write_png(task.mask_out / fake_path.name, binarize(difference, task.config.mask_threshold))
        result.counts["pairs_found"] += 1
    if result.counts["pairs_found"] == 0 and not from_video:
        return VideoResult(task.video, SKIPPED, "no crop pair with its original", result.counts, result.notes)
    return result


def _mask_sources(paths: Paths) -> dict[str, tuple[Path, Path]]:
    """fake video -> (its mask video, the boxes its crops were cut with), for fakes that ship a mask video."""
    if paths.index is None:
        return {}
    if paths.root is None or paths.boxes is None:
        raise InputError("diffs: a dataset index needs its root and boxes folder too (--root, --boxes)")
    dataset = load_dataset(paths.index, paths.root, paths.part, paths.extra_roots)
    sources = {}
    for entry in dataset.fakes:
        mask = dataset.mask_path(entry.name)
        if mask is not None:
            sources[entry.name] = (mask, paths.boxes / f"{Path(entry.source).stem}.json")
    return sources


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Diff maps into ``diffs_out/<fake>/`` and masks into ``masks_out/<fake>/``, same file names as crops."""
    crops_dir, part = paths.crops, paths.part
    index = read_index(crops_dir / part)
    fakes = index[index["label"] == FAKE]
    mask_sources = _mask_sources(paths)
    report = StageReport("diffs", part)
    # the diffs folder is renamed last: a failure before it keeps the previous diffs, masks and report
    with atomic_dir(paths.diffs_out) as diff_tmp, report.outputs(paths.masks_out, paths.report) as mask_tmp:
        tasks = []
        for video, rows in fakes.groupby("video", sort=True):
            stem = Path(video).stem
            original_stem = Path(rows["original"].iloc[0]).stem
            if original_stem == stem and video not in mask_sources:
                report.add(VideoResult.skipped(video, "no original named and no mask video: nothing to compare"))
                continue
            no_original = original_stem == stem
            pairs = tuple(
                (crops_dir / f, None if no_original else crops_dir / part / original_stem / Path(f).name)
                for f in rows["file"]
            )
            mask_video, boxes = mask_sources.get(video, (None, None))
            task = DiffsTask(video, pairs, diff_tmp / stem, mask_tmp / stem, config, mask_video, boxes)
            tasks.append((video, task))
        # threads: PNG coding and SSIM (numpy, OpenCV) release the GIL; no process start-up
        desc = f"diffs {part}"
        for result in map_videos(diff_video, tasks, config.workers, desc, pool="threads", executor=config.executor):
            report.add(result)
    summary = report.summary
    assert summary is not None  # report.outputs() set it when it committed the folder
    logger.info("diffs %s: %s pairs, %s missing", part, summary.get("pairs_found", 0), summary.get("pairs_missing", 0))
    return summary
