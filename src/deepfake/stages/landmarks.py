"""Stage landmarks: 5-point MTCNN landmarks on the crops of the REAL videos of one part.

Fakes reuse their original's landmarks at training time, as in DFDC-1st: the swapped face sits
where the original's was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.core.fileio import write_npy_atomic
from deepfake.core.parallel import LOCAL, ExecutorConfig, cached, map_videos
from deepfake.core.params import Params
from deepfake.core.report import StageReport, VideoResult
from deepfake.core.vocabulary import REAL
from deepfake.media.crop_index import read_index
from deepfake.media.faces import DetectorConfig, FaceDetector, pick_central_face

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    detector: DetectorConfig
    workers: int
    torch_threads: int
    executor: ExecutorConfig = LOCAL  # where the crops are processed; the output does not depend on it

    @classmethod
    def from_params(cls, params: Params) -> Config:
        sect = params.landmarks
        return cls(
            DetectorConfig.from_section(sect),
            workers=sect.workers,
            torch_threads=sect.torch_threads,
            executor=ExecutorConfig.from_params(params),
        )


@dataclass(frozen=True)
class Paths:
    crops: Path  # the crops root (data/crops)
    part: str
    out: Path  # <original>/<frame>_<face>.npy
    report: Path


@dataclass(frozen=True)
class LandmarksTask:
    video: str
    crops: tuple[Path, ...]
    out: Path  # this video's folder of .npy files
    config: Config


def landmarks_video(task: LandmarksTask) -> VideoResult:
    """One ``<frame>_<face>.npy`` (5x2 float32, crop pixels) per crop where a face is found."""
    detector = cached(
        ("mtcnn", task.config.detector), lambda: FaceDetector(task.config.detector, task.config.torch_threads)
    )
    result = VideoResult(video=task.video, counts={"crops": len(task.crops), "landmarks": 0})
    for crop_path in task.crops:
        image = cv2.imread(str(crop_path), cv2.IMREAD_COLOR)
        if image is None:
            result.notes.append(f"{crop_path.name}: unreadable crop")
            continue
        boxes, points = detector.landmarks(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        face = pick_central_face(boxes, image.shape[1], image.shape[0])
        if face is None:
            continue
        write_npy_atomic(task.out / f"{crop_path.stem}.npy", np.round(points[face], 2).astype(np.float32))
        result.counts["landmarks"] += 1
    result.counts["crops_without_landmarks"] = result.counts["crops"] - result.counts["landmarks"]
    return result


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Landmarks for the REAL crops listed in ``paths.crops/<part>/index.csv`` into ``paths.out``."""
    index = read_index(paths.crops / paths.part)
    reals = index[index["label"] == REAL]
    report = StageReport("landmarks", paths.part)
    with report.outputs(paths.out, paths.report) as tmp:
        tasks = [
            (
                video,
                LandmarksTask(
                    video=video,
                    crops=tuple(paths.crops / f for f in rows["file"]),
                    out=tmp / Path(video).stem,
                    config=config,
                ),
            )
            for video, rows in reals.groupby("video", sort=True)
        ]
        desc = f"landmarks {paths.part}"
        # torch's threads need fixing only where the nets run on it: on ONNX Runtime the workers never import it
        torch_threads = config.torch_threads if config.detector.net_runtime == "torch" else None
        for result in map_videos(landmarks_video, tasks, config.workers, desc, torch_threads, executor=config.executor):
            report.add(result)
    summary = report.summary
    assert summary is not None  # report.outputs() set it when it committed the folder
    logger.info("landmarks %s: %s of %s crops", paths.part, summary.get("landmarks", 0), summary.get("crops", 0))
    return summary
