"""Score videos: sampled frames -> MTCNN -> crops -> a backend's ensemble -> one probability per video.

Per video (DFDC-1st's inference): ``predict.frames`` evenly spaced frames, batched face detection
with the pipeline's ``bboxes`` detector params, then the models' face-input contract
(``deepfake.media.face_input``: the training margin, resize + pad, normalisation; read from the
exported manifest), one batched forward per ensemble member through a runtime backend
(``deepfake.backends``), the ``evaluate`` aggregation per member (confident strategy by default), and the mean over
members. A video that cannot be decoded or shows no face gets a status saying so; its CSV row
carries 0.5 because the submission format needs a number, never silently.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.backends.base import Backend
from deepfake.core.errors import InputError
from deepfake.core.fileio import atomic_path, write_json_atomic
from deepfake.media.face_input import FaceInput, crop_face, normalize_batch, probabilities
from deepfake.media.faces import Detection, FaceDetector
from deepfake.media.video import FrameSampling, VideoError, iter_sampled_frames, probe
from deepfake.modeling.scoring import Aggregation

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FALLBACK_PROBABILITY = 0.5  # what the CSV must carry for a video without a score (status says why)


@dataclass(frozen=True)
class PredictConfig:
    """What ``deepfake predict`` and ``deepfake explain`` read from params: detection as the bboxes stage
    does it, the video bounds every stage uses, the evaluate stage's aggregation."""

    frames: int
    batch_size: int  # crops per forward pass
    detection: Detection
    max_frames: int
    max_pixels: int
    aggregation: Aggregation

    @classmethod
    def from_params(cls, params: Any) -> PredictConfig:
        return cls(
            frames=params.predict.frames,
            batch_size=params.predict.batch_size,
            detection=Detection.from_params(params),
            max_frames=params.video.max_frames,
            max_pixels=params.video.max_pixels,
            aggregation=Aggregation.from_params(params),
        )


# ---- one video --------------------------------------------------------------------------------------


def even_stride(frame_count: int, frames: int, max_frames: int) -> int:
    """The stride that spreads ``frames`` samples over the video (its header count, capped)."""
    usable = min(frame_count, max_frames) if frame_count > 0 else max_frames
    return max(1, usable // frames)


def sample_frames(path: Path, config: PredictConfig) -> Iterator[tuple[int, np.ndarray]]:
    """Up to ``config.frames`` evenly spaced RGB frames, decoded one at a time (VideoError when none decodes)."""
    info = probe(path)
    stride = even_stride(info.frame_count, config.frames, config.max_frames)
    sampling = FrameSampling(stride=stride, max_frames=config.max_frames, max_pixels=config.max_pixels)
    for count, (index, frame) in enumerate(iter_sampled_frames(path, sampling), start=1):
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count >= config.frames:
            return


def frame_batches(frames: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Detector batches as frames arrive; a frame of another size (a mid-stream change) starts a new batch."""
    batch: list[tuple[int, np.ndarray]] = []
    for item in frames:
        if batch and (item[1].shape != batch[0][1].shape or len(batch) >= batch_size):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def detect_batch(detector: FaceDetector, frames: Sequence[np.ndarray], config: PredictConfig) -> list[np.ndarray]:
    """Boxes per frame for frames of one size, at the detection scale the bboxes stage uses."""
    height, width = frames[0].shape[:2]
    return detector.detect(list(frames), config.detection.scale_for(width, height))


def detect(detector: FaceDetector, frames: Sequence[tuple[int, np.ndarray]], config: PredictConfig) -> list[np.ndarray]:
    """Boxes per frame for frames already in memory (explain keeps them to draw on)."""
    found: list[np.ndarray] = []
    for batch in frame_batches(frames, config.detection.batch_size):
        found.extend(detect_batch(detector, [frame for _, frame in batch], config))
    return found


def predict_video(path: Path, detector: FaceDetector, backend: Backend, config: PredictConfig) -> dict[str, Any]:
    """One video's record: probability, label, status, and per-frame per-face boxes and scores.

    Frames stream through detection one detector batch at a time and each face is resized to the
    model's input as soon as it is cut out, so memory follows ``bboxes.batch_size`` full-size frames,
    not the video's length, its resolution times ``predict.frames``, or the faces' size.
    """
    record: dict[str, Any] = {
        "filename": path.name,
        "path": str(path),
        "probability": None,
        "label": None,
        "status": "ok",
    }
    timings = dict.fromkeys(("decode", "detect", "crop", "infer", "aggregate"), 0.0)
    face_input = backend.face_input
    crops: list[np.ndarray] = []  # model-sized uint8 faces
    owners: list[tuple[int, int]] = []
    frame_records: list[dict[str, Any]] = []
    try:
        batches = frame_batches(sample_frames(path, config), config.detection.batch_size)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            timings["decode"] += time.perf_counter() - started
            if batch is None:
                break
            started = time.perf_counter()
            boxes = detect_batch(detector, [frame for _, frame in batch], config)
            timings["detect"] += time.perf_counter() - started
            started = time.perf_counter()
            for index, faces in _crop_batch(batch, boxes, face_input, crops):
                owners.extend((len(frame_records), face) for face in range(len(faces)))
                frame_records.append({"frame": index, "faces": faces})
            timings["crop"] += time.perf_counter() - started
            del batch, boxes  # the full-size frames go (no other reference holds them); the crops stay
    except VideoError as err:
        return {**record, "status": f"unreadable: {err}", "frames": [], "ms": {}}
    record["frames"] = frame_records
    if not crops:
        return {
            **record,
            "status": f"no_face: no face found in {len(frame_records)} sampled frames",
            "ms": _ms(timings),
        }

    started = time.perf_counter()
    logits: dict[str, list[np.ndarray]] = {m: [] for m in backend.members}
    for start in range(0, len(crops), config.batch_size):
        batch_in = normalize_batch(crops[start : start + config.batch_size])
        for member, values in backend.logits(batch_in).items():
            logits[member].append(values)
    probs = {m: probabilities(np.concatenate(v)) for m, v in logits.items()}
    timings["infer"] = time.perf_counter() - started

    started = time.perf_counter()
    for crop_index, (frame_slot, face_slot) in enumerate(owners):
        face = frame_records[frame_slot]["faces"][face_slot]
        face["scores"] = {m: round(float(p[crop_index]), 5) for m, p in probs.items()}
    per_member = {m: config.aggregation(p) for m, p in probs.items()}
    probability = float(np.mean(list(per_member.values())))
    timings["aggregate"] = time.perf_counter() - started
    if not math.isfinite(probability):
        return {**record, "status": "error: the models returned a non-finite score", "ms": _ms(timings)}
    return {
        **record,
        "probability": probability,
        "label": "FAKE" if probability >= 0.5 else "REAL",
        "members": {m: round(v, 5) for m, v in per_member.items()},
        "crops": len(crops),
        "ms": _ms(timings),
    }


def _crop_batch(
    batch: Sequence[tuple[int, np.ndarray]],
    boxes: Sequence[np.ndarray],
    face_input: FaceInput,
    crops: list[np.ndarray],
) -> list[tuple[int, list[dict[str, Any]]]]:
    """Append each face, cut out and fitted to the model input (so its frame can be freed), to ``crops``."""
    out = []
    for (index, frame), frame_boxes in zip(batch, boxes, strict=True):
        faces = []
        for box in frame_boxes:
            crop = crop_face(frame, box, face_input.margin)
            if crop is None:
                continue
            faces.append({"box": [round(float(v), 1) for v in box[:4]], "detector_score": round(float(box[4]), 4)})
            crops.append(face_input.fit(crop))
        out.append((index, faces))
    return out


def _ms(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v * 1000, 1) for k, v in timings.items()}


# ---- many videos --------------------------------------------------------------------------------------


def collect_videos(inputs: Iterable[Path]) -> list[Path]:
    """Video files among ``inputs``; a folder contributes its video files (not recursive), sorted."""
    videos: list[Path] = []
    for item in inputs:
        if item.is_dir():
            videos.extend(sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES))
        elif item.exists():
            videos.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    if not videos:
        raise InputError("no video files found in the given inputs")
    return videos


def write_submission(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """DFDC submission CSV ``filename,label`` (label = P(fake)); unscored videos carry 0.5."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"])
        for r in records:
            value = r["probability"] if r["probability"] is not None else FALLBACK_PROBABILITY
            writer.writerow([r["filename"], f"{value:.6f}"])


def predict_videos(
    inputs: Sequence[Path],
    backend: Backend,
    config: PredictConfig,
    csv_path: Path,
    json_path: Path,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
) -> dict[str, Any]:
    """Score every video; writes the CSV and JSON; returns the summary (videos/s, statuses)."""
    videos = collect_videos(inputs)
    detector = FaceDetector(config.detection.detector)
    started = time.perf_counter()
    records = [predict_video(v, detector, backend, config) for v in (progress(videos) if progress else videos)]
    seconds = time.perf_counter() - started
    summary = {
        "backend": backend.name,
        "members": backend.members,
        "videos": len(records),
        "scored": sum(r["probability"] is not None for r in records),
        "not_scored": {r["filename"]: r["status"] for r in records if r["probability"] is None},
        "seconds": round(seconds, 2),
        "videos_per_s": round(len(records) / seconds, 3) if seconds > 0 else None,
    }
    write_submission(csv_path, records)
    write_json_atomic(json_path, {"summary": summary, "videos": records})
    return summary
