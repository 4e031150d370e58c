"""Stage bboxes: MTCNN face boxes on the REAL videos of one part, on the sampled frames only."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.faces import DetectorConfig, FaceDetector, boxes_to_json, detection_scale, save_boxes
from deepfake.fileio import atomic_dir
from deepfake.metadata import load_metadata
from deepfake.params import section
from deepfake.pipeline.common import cached, map_videos
from deepfake.report import SKIPPED, StageReport, VideoResult
from deepfake.video import FrameSampling, iter_sampled_frames, probe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BboxesConfig:
    sampling: FrameSampling
    detector: DetectorConfig
    batch_size: int
    scale: Any  # "auto" or a number
    scale_rule: tuple[tuple[float, float], ...]
    workers: int
    torch_threads: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BboxesConfig:
        sect = section(params, "bboxes")
        config = cls(
            sampling=FrameSampling.from_params(section(params, "video")),
            detector=DetectorConfig.from_params(sect),
            batch_size=int(sect["batch_size"]),
            scale=sect["scale"],
            scale_rule=tuple((float(a), float(b)) for a, b in sect["scale_rule"]),
            workers=int(sect["workers"]),
            torch_threads=int(sect["torch_threads"]),
        )
        detection_scale(640, 360, config.scale_rule, config.scale)  # validates scale and rule now
        if config.batch_size < 1:
            raise ValueError("bboxes.batch_size must be >= 1")
        return config


@dataclass(frozen=True)
class BboxesTask:
    video: Path
    out: Path
    config: BboxesConfig


def _expected_frames(frame_count: int, sampling: FrameSampling) -> int:
    readable = min(max(frame_count, 0), sampling.max_frames)
    return math.ceil(readable / sampling.stride)


def detect_video(task: BboxesTask) -> VideoResult:
    """Detect faces on the sampled frames of one video and write its boxes file."""
    config = task.config
    detector = cached(("mtcnn", config.detector), lambda: FaceDetector(config.detector))
    info = probe(task.video)
    scale = detection_scale(info.width, info.height, config.scale_rule, config.scale)
    found: dict[int, np.ndarray] = {}
    batch_index: list[int] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        for index, boxes in zip(batch_index, detector.detect(batch, scale), strict=True):
            found[index] = boxes
        batch_index.clear()
        batch.clear()

    height = width = 0
    for index, frame in iter_sampled_frames(task.video, config.sampling):
        if batch and frame.shape[:2] != batch[0].shape[:2]:
            flush()  # a mid-stream size change: MTCNN batches need equal sizes
        height, width = frame.shape[:2]
        batch_index.append(index)
        batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if len(batch) >= config.batch_size:
            flush()
    flush()

    faces = sum(len(b) for b in found.values())
    expected = _expected_frames(info.frame_count, config.sampling)
    result = VideoResult(
        video=task.video.name,
        counts={"frames": len(found), "faces": faces, "frames_without_face": sum(not len(b) for b in found.values())},
    )
    if expected and len(found) < expected:
        result.notes.append(f"decoded {len(found)} of {expected} sampled frames the header promises")
    if faces == 0:
        reason = f"no face detected in {len(found)} sampled frames"
        return VideoResult(task.video.name, SKIPPED, reason, counts=result.counts, notes=result.notes)
    save_boxes(task.out, boxes_to_json(task.video.name, width, height, scale, found))
    return result


def run(part_dir: Path, out_dir: Path, report_path: Path, config: BboxesConfig) -> dict[str, Any]:
    """Boxes for every REAL video of ``part_dir`` into ``out_dir/<video>.json``; returns the report."""
    metadata = load_metadata(part_dir)
    report = StageReport("bboxes", metadata.part)
    for name, reason in metadata.refused.items():
        report.refuse(name, reason)
    with atomic_dir(out_dir) as tmp:
        tasks = [
            (e.name, BboxesTask(video=metadata.video_path(e.name), out=tmp / f"{e.stem}.json", config=config))
            for e in metadata.reals
        ]
        for result in map_videos(detect_video, tasks, config.workers, f"bboxes {metadata.part}", config.torch_threads):
            report.add(result)
    summary = report.write(report_path)
    logger.info("bboxes %s: %d done, %d skipped", metadata.part, summary["videos_done"], summary["videos_skipped"])
    return summary
