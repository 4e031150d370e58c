"""Stage bboxes: MTCNN face boxes on the sampled frames of one dataset's REAL videos, and of its FAKE
videos whose original the layout does not name (DFDC test, DFDC preview): those have no boxes to borrow."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.core.parallel import LOCAL, ExecutorConfig, cached, map_videos
from deepfake.core.params import Params
from deepfake.core.report import SKIPPED, StageReport, VideoResult
from deepfake.media.faces import Detection, FaceDetector, boxes_to_json, save_boxes
from deepfake.media.layouts import load_dataset
from deepfake.media.video import FrameSampling, iter_sampled_frames, probe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    sampling: FrameSampling
    detection: Detection
    workers: int
    torch_threads: int
    executor: ExecutorConfig = LOCAL  # where the videos are processed; the output does not depend on it

    @classmethod
    def from_params(cls, params: Params) -> Config:
        sect = params.bboxes
        return cls(
            FrameSampling.from_params(params),
            Detection.from_params(params),
            sect.workers,
            sect.torch_threads,
            ExecutorConfig.from_params(params),
        )


@dataclass(frozen=True)
class Paths:
    dataset: str  # its name (data.datasets key)
    index: Path  # its canonical index (the ingest stage's data/index/<dataset>.csv)
    root: Path  # its root folder (index paths are relative to it)
    out: Path  # <video>.json box files
    report: Path
    extra_roots: tuple[Path, ...] = ()  # folders besides root that videos may lie in (DeeperForensics' FF++ reals)


@dataclass(frozen=True)
class BboxesTask:
    video: Path
    out: Path
    config: Config


def _expected_frames(frame_count: int, sampling: FrameSampling) -> int:
    readable = min(max(frame_count, 0), sampling.max_frames)
    return math.ceil(readable / sampling.stride)


def detect_video(task: BboxesTask) -> VideoResult:
    """Detect faces on the sampled frames of one video and write its boxes file."""
    config = task.config
    detector = cached(
        ("mtcnn", config.detection.detector), lambda: FaceDetector(config.detection.detector, config.torch_threads)
    )
    info = probe(task.video)
    scale = config.detection.scale_for(info.width, info.height)
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
        if len(batch) >= config.detection.batch_size:
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


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Boxes for every detected video of the dataset into ``paths.out/<video>.json``; returns the report."""
    metadata = load_dataset(paths.index, paths.root, paths.dataset, paths.extra_roots)
    report = StageReport("bboxes", metadata.part)
    for name, reason in metadata.refused.items():
        report.refuse(name, reason)
    with report.outputs(paths.out, paths.report) as tmp:
        tasks = [
            (e.name, BboxesTask(video=metadata.video_path(e.name), out=tmp / f"{e.stem}.json", config=config))
            for e in metadata.detected
        ]
        desc = f"bboxes {metadata.part}"
        # torch's threads need fixing only where the nets run on it: on ONNX Runtime the workers never import it
        torch_threads = config.torch_threads if config.detection.detector.net_runtime == "torch" else None
        for result in map_videos(detect_video, tasks, config.workers, desc, torch_threads, executor=config.executor):
            report.add(result)
    summary = report.summary
    assert summary is not None  # report.outputs() set it when it committed the folder
    logger.info("bboxes %s: %d done, %d skipped", metadata.part, summary["videos_done"], summary["videos_skipped"])
    return summary
