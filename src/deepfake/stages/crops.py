"""Stage crops: face crops of every video of one dataset; fakes reuse their original's boxes."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake.core.fileio import write_bytes_atomic, write_png
from deepfake.core.parallel import LOCAL, ExecutorConfig, map_videos, threads_per_worker
from deepfake.core.params import Params
from deepfake.core.report import SKIPPED, StageReport, VideoResult
from deepfake.media.crop_index import INDEX_NAME, crop_name, index_csv
from deepfake.media.face_input import crop_face
from deepfake.media.faces import load_boxes
from deepfake.media.layouts import load_dataset
from deepfake.media.metadata import VideoEntry
from deepfake.media.video import FrameSampling, iter_sampled_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    sampling: FrameSampling
    margin: float
    workers: int
    executor: ExecutorConfig = LOCAL  # where the videos are cropped; the output does not depend on it

    @classmethod
    def from_params(cls, params: Params) -> Config:
        return cls(
            sampling=FrameSampling.from_params(params),
            margin=params.crops.margin,
            workers=params.crops.workers,
            executor=ExecutorConfig.from_params(params),
        )


@dataclass(frozen=True)
class Paths:
    dataset: str  # its name (data.datasets key)
    index: Path  # its canonical index (the ingest stage's data/index/<dataset>.csv)
    root: Path  # its root folder (index paths are relative to it)
    boxes: Path  # the bboxes stage's folder for this part
    out: Path  # <video>/<frame>_<face>.png and index.csv
    report: Path
    extra_roots: tuple[Path, ...] = ()  # folders besides root that videos may lie in (DeeperForensics' FF++ reals)


@dataclass(frozen=True)
class CropsTask:
    entry: VideoEntry
    video: Path
    boxes: Path  # the original's boxes file
    out: Path  # folder for this video's crops
    config: Config
    decoder_threads: int = 1  # FFmpeg threads for this video: the cores shared out among the stage's workers


def crop_video(task: CropsTask) -> VideoResult:
    """Write ``<frame>_<face>.png`` crops of one video; its index rows ride on ``result.records``."""
    entry = task.entry
    if not task.boxes.is_file():
        source = "its own" if not entry.is_fake else f"its original {entry.original}'s"
        return VideoResult.skipped(entry.name, f"no boxes for {source} faces (skipped by bboxes; see its report)")
    boxes = load_boxes(task.boxes)
    result = VideoResult(video=entry.name, counts={"crops": 0, "frames": 0})
    wanted = {index for index, rows in boxes.frames.items() if rows}
    for index, frame in iter_sampled_frames(task.video, task.config.sampling, threads=task.decoder_threads):
        height, width = frame.shape[:2]
        if (width, height) != (boxes.width, boxes.height):
            return VideoResult.skipped(
                entry.name, f"frame size {width}x{height} differs from the boxes' {boxes.width}x{boxes.height}"
            )
        result.counts["frames"] += 1
        if index not in wanted:
            continue
        wanted.discard(index)
        for face, box in enumerate(boxes.frames[index]):
            crop = crop_face(frame, box, task.config.margin)
            if crop is None:
                continue
            name = crop_name(index, face)
            write_png(task.out / f"{name}.png", crop)  # in the stage's temporary folder, swapped in whole
            result.counts["crops"] += 1
            result.records.append(
                {
                    "video": entry.name,
                    "file": f"{entry.part}/{entry.stem}/{name}.png",
                    "label": entry.label,
                    "original": entry.source,
                    "part": entry.part,
                    "frame": index,
                    "face": face,
                    "identity": entry.identity,
                    "method": entry.method,
                    "compression": entry.compression,
                    "split": entry.split,
                }
            )
    if wanted:
        result.notes.append(f"{len(wanted)} frames with boxes could not be decoded: {sorted(wanted)[:10]}")
    if result.counts["crops"] == 0:
        return VideoResult.skipped(entry.name, "no crop could be taken (no decodable frame with a face)")
    return result


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Crops of every listed video of the part into ``paths.out``, plus ``paths.out/index.csv``."""
    metadata = load_dataset(paths.index, paths.root, paths.dataset, paths.extra_roots)
    report = StageReport("crops", metadata.part)
    for name, reason in metadata.refused.items():
        report.refuse(name, reason)
    # FFmpeg's own choice (a thread per core, per video) oversubscribes the cores when workers decode at once
    decoder_threads = 1 if config.executor.kind == "dask" else threads_per_worker(config.workers)
    with report.outputs(paths.out, paths.report) as tmp:
        tasks = [
            (
                e.name,
                CropsTask(
                    entry=e,
                    video=metadata.video_path(e.name),
                    boxes=paths.boxes / f"{Path(e.source).stem}.json",
                    out=tmp / e.stem,
                    config=config,
                    decoder_threads=decoder_threads,
                ),
            )
            for e in metadata.entries.values()
        ]
        rows: list[dict[str, Any]] = []
        # threads: decoding and PNG encoding release the GIL, and threads cost no process start-up
        results = map_videos(
            crop_video, tasks, config.workers, f"crops {metadata.part}", pool="threads", executor=config.executor
        )
        for (_, task), result in zip(tasks, results, strict=True):
            report.add(result)
            rows.extend(result.records)
            if result.status == SKIPPED:  # a video skipped midway leaves no orphan crops behind
                shutil.rmtree(task.out, ignore_errors=True)
        write_bytes_atomic(tmp / INDEX_NAME, index_csv(rows))
    summary = report.summary
    assert summary is not None  # report.outputs() set it when it committed the folder
    logger.info("crops %s: %d crops from %d videos", metadata.part, len(rows), summary["videos_done"])
    return summary
