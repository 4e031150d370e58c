"""Stage crops: face crops of every video of one part; fakes reuse their original's boxes."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from deepfake.faces import expand_box, load_boxes
from deepfake.fileio import atomic_dir, write_bytes_atomic, write_png_atomic
from deepfake.metadata import VideoEntry, load_metadata
from deepfake.params import section
from deepfake.pipeline.common import map_videos
from deepfake.report import SKIPPED, StageReport, VideoResult
from deepfake.video import FrameSampling, iter_sampled_frames

logger = logging.getLogger(__name__)

INDEX_NAME = "index.csv"
INDEX_COLUMNS = ["video", "file", "label", "original", "part", "frame", "face", "identity"]


def crop_name(frame: int, face: int) -> str:
    return f"{frame}_{face}"


@dataclass(frozen=True)
class CropsConfig:
    sampling: FrameSampling
    margin: float
    workers: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> CropsConfig:
        sect = section(params, "crops")
        config = cls(
            sampling=FrameSampling.from_params(section(params, "video")),
            margin=float(sect["margin"]),
            workers=int(sect["workers"]),
        )
        if not 0.0 <= config.margin <= 2.0:
            raise ValueError(f"crops.margin must be in [0, 2], got {config.margin}")
        return config


@dataclass(frozen=True)
class CropsTask:
    entry: VideoEntry
    video: Path
    boxes: Path  # the original's boxes file
    out: Path  # folder for this video's crops
    config: CropsConfig


def crop_video(task: CropsTask) -> VideoResult:
    """Write ``<frame>_<face>.png`` crops of one video; its index rows ride on ``result.records``."""
    entry = task.entry
    if not task.boxes.is_file():
        source = "its own" if not entry.is_fake else f"its original {entry.original}'s"
        return VideoResult.skipped(entry.name, f"no boxes for {source} faces (skipped by bboxes; see its report)")
    boxes = load_boxes(task.boxes)
    result = VideoResult(video=entry.name, counts={"crops": 0, "frames": 0})
    wanted = {index for index, rows in boxes.frames.items() if rows}
    for index, frame in iter_sampled_frames(task.video, task.config.sampling):
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
            rect = expand_box(box, task.config.margin, width, height)
            if rect is None:
                continue
            left, top, right, bottom = rect
            name = crop_name(index, face)
            write_png_atomic(task.out / f"{name}.png", frame[top:bottom, left:right])
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
                }
            )
    if wanted:
        result.notes.append(f"{len(wanted)} frames with boxes could not be decoded: {sorted(wanted)[:10]}")
    if result.counts["crops"] == 0:
        return VideoResult.skipped(entry.name, "no crop could be taken (no decodable frame with a face)")
    return result


def read_index(crops_part_dir: Path) -> pd.DataFrame:
    path = crops_part_dir / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run the crops stage for this part first")
    dtypes = {"video": str, "file": str, "label": str, "original": str, "part": str, "identity": str}
    index = pd.read_csv(path, dtype=dtypes, keep_default_na=False)
    if "identity" not in index.columns:  # indexes written before the optional identity label
        index["identity"] = ""
    return index


def run(part_dir: Path, boxes_dir: Path, out_dir: Path, report_path: Path, config: CropsConfig) -> dict[str, Any]:
    """Crops of every listed video of ``part_dir`` into ``out_dir``, plus ``out_dir/index.csv``."""
    metadata = load_metadata(part_dir)
    report = StageReport("crops", metadata.part)
    for name, reason in metadata.refused.items():
        report.refuse(name, reason)
    with atomic_dir(out_dir) as tmp:
        tasks = [
            (
                e.name,
                CropsTask(
                    entry=e,
                    video=metadata.video_path(e.name),
                    boxes=boxes_dir / f"{Path(e.source).stem}.json",
                    out=tmp / e.stem,
                    config=config,
                ),
            )
            for e in metadata.entries.values()
        ]
        rows: list[dict[str, Any]] = []
        for (_, task), result in zip(
            tasks, map_videos(crop_video, tasks, config.workers, f"crops {metadata.part}"), strict=True
        ):
            report.add(result)
            rows.extend(result.records)
            if result.status == SKIPPED:  # a video skipped midway leaves no orphan crops behind
                shutil.rmtree(task.out, ignore_errors=True)
        index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
        write_bytes_atomic(tmp / INDEX_NAME, index.to_csv(index=False, lineterminator="\n").encode())
    summary = report.write(report_path)
    logger.info("crops %s: %d crops from %d videos", metadata.part, len(rows), summary["videos_done"])
    return summary
