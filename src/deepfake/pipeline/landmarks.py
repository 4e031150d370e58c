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

from deepfake.faces import DetectorConfig, FaceDetector, pick_central_face
from deepfake.fileio import atomic_dir, write_npy_atomic
from deepfake.params import section
from deepfake.pipeline.common import cached, map_videos
from deepfake.pipeline.crops import read_index
from deepfake.report import StageReport, VideoResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandmarksConfig:
    detector: DetectorConfig
    workers: int
    torch_threads: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> LandmarksConfig:
        sect = section(params, "landmarks")
        return cls(
            detector=DetectorConfig.from_params(sect),
            workers=int(sect["workers"]),
            torch_threads=int(sect["torch_threads"]),
        )


@dataclass(frozen=True)
class LandmarksTask:
    video: str
    crops: tuple[Path, ...]
    out: Path  # this video's folder of .npy files
    config: LandmarksConfig


def landmarks_video(task: LandmarksTask) -> VideoResult:
    """One ``<frame>_<face>.npy`` (5x2 float32, crop pixels) per crop where a face is found."""
    detector = cached(("mtcnn", task.config.detector), lambda: FaceDetector(task.config.detector))
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


def run(crops_dir: Path, part: str, out_dir: Path, report_path: Path, config: LandmarksConfig) -> dict[str, Any]:
    """Landmarks for the REAL crops listed in ``crops_dir/<part>/index.csv`` into ``out_dir``."""
    index = read_index(crops_dir / part)
    reals = index[index["label"] == "REAL"]
    report = StageReport("landmarks", part)
    with atomic_dir(out_dir) as tmp:
        tasks = [
            (
                video,
                LandmarksTask(
                    video=video,
                    crops=tuple(crops_dir / f for f in rows["file"]),
                    out=tmp / Path(video).stem,
                    config=config,
                ),
            )
            for video, rows in reals.groupby("video", sort=True)
        ]
        for result in map_videos(landmarks_video, tasks, config.workers, f"landmarks {part}", config.torch_threads):
            report.add(result)
    summary = report.write(report_path)
    logger.info("landmarks %s: %s of %s crops", part, summary.get("landmarks", 0), summary.get("crops", 0))
    return summary
