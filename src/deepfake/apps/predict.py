"""Score videos: frames over the whole duration -> MTCNN -> face tracks -> a backend's ensemble -> P(fake).

Per video (``prepare_video``, run in worker processes ahead of inference):

- ``predict.frames`` frames spread over the video's whole duration (``deepfake.media.video.SpanReader``,
  PyAV; bounded by ``predict.max_decoded`` decoded frames, the bound and the span covered recorded);
- MTCNN with prediction's own ``predict_detector`` params on every ``predict.detect_every``-th sampled frame and
  the last; face tracks (``deepfake.modeling.tracks``) link the boxes over time and carry them to the
  frames between detections;
- each face cut out with the training margin and fitted to the model input (``deepfake.media.face_input``).

Then, in the predict process (``Engine``): one batched forward per ensemble member over the crops of
as many videos as fill ``predict.batch_size``, the ``evaluate`` aggregation (confident strategy) per
member within each face track, the member mean, and the video's score from its most-fake track, so one
swapped face among real ones is not diluted by them.

A video that cannot be decoded, shows no face, or fails in any other way gets a status saying so and
its record carries no probability; the batch goes on. Every record names the model that gave it
(``model``: the package card's name, version and demonstration flag, ``deepfake.modeling.card``).
Records are appended to a JSON Lines file as they are produced (``--resume`` skips the videos already
there); the CSV and the JSON are written together at the end from the same records.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.backends.base import Backend
from deepfake.core.errors import InputError, ParamsError
from deepfake.core.fileio import atomic_path, json_bytes
from deepfake.core.parallel import (
    ExecutorConfig,
    cached,
    dask_client,
    reuse_freed_memory,
    set_torch_threads,
    torch_threads,
    usable_cores,
)
from deepfake.core.params import Params
from deepfake.media.face_input import FaceInput, crop_face, normalize_batch, probabilities
from deepfake.media.faces import Detection, FaceDetector
from deepfake.media.video import SampledFrame, SpanReader, SpanSampling
from deepfake.modeling.calibration import VERDICTS, Decision, no_verdict, package_decision
from deepfake.modeling.scoring import Aggregation
from deepfake.modeling.tracks import (
    bridge_gap,
    carry_boxes,
    import_in_background,
    link_tracks,
    score_tracks,
    track_of,
    unlinked_gaps,
)

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
# The CSV's P(fake) for a video without a score (its status says why, its verdict is empty): DFDC's sample
# submission's value, the uninformed guess (log loss ln 2 whatever the truth), fixed by that format; no verdict
# is ever made from it.
FALLBACK_PROBABILITY = 0.5
# DFDC's filename,label (P(fake)) first; then the three-way verdict, the status; path tells same names apart
CSV_COLUMNS = ("filename", "label", "verdict", "status", "path")
STEPS = ("decode", "detect", "crop", "infer", "aggregate")
# videos (and the progress wrapper) -> their records in input order: another pipeline than the project's own
RecordStream = Callable[[Sequence[Path], Callable[[Iterable[Path]], Iterable[Path]] | None], Iterator[dict[str, Any]]]


@dataclass(frozen=True)
class PredictConfig:
    """What ``deepfake predict`` and ``deepfake explain`` read from params: the predict_detector section, the
    video bounds every stage uses, the evaluate stage's aggregation, the predict section."""

    frames: int
    max_decoded: int
    max_pixels: int
    skip_nonref: bool
    detect_every: int
    track_iou: float
    track_max_gap: int  # detector frames a track may miss
    track_max_shift: float  # face sides per sampled frame a face may move across a gap IoU cannot link
    track_min_share: float
    batch_size: int  # crops per forward pass
    workers: int
    torch_threads: int  # intra-op threads in each process that prepares videos (its detector's too)
    inference_threads: int  # ONNX Runtime intra-op threads of the models' sessions; 0: ONNX Runtime's default
    detection: Detection
    aggregation: Aggregation
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    credentials: bool = False  # read each file's C2PA content credentials (predict.credentials)
    trust_anchors: str | None = None  # the PEM text of predict.trust_anchors: whose signers count as trusted

    @classmethod
    def from_params(cls, params: Params) -> PredictConfig:
        sect = params.predict
        return cls(
            frames=sect.frames,
            max_decoded=sect.max_decoded,
            max_pixels=params.video.max_pixels,
            skip_nonref=sect.skip_nonref,
            detect_every=sect.detect_every,
            track_iou=sect.track_iou,
            track_max_gap=sect.track_max_gap,
            track_max_shift=sect.track_max_shift,
            track_min_share=sect.track_min_share,
            batch_size=sect.batch_size,
            workers=sect.workers,
            torch_threads=sect.torch_threads,
            inference_threads=sect.inference_threads,
            detection=Detection.from_section(params.predict_detector),
            aggregation=Aggregation.from_params(params),
            executor=ExecutorConfig.from_params(params),
            credentials=sect.credentials,
            trust_anchors=_trust_anchors(sect.trust_anchors),
        )

    @property
    def sampling(self) -> SpanSampling:
        return SpanSampling(self.frames, self.max_decoded, self.max_pixels, skip_nonref=self.skip_nonref)


def _trust_anchors(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise ParamsError(f"predict.trust_anchors: cannot read the PEM file {path}: {err}") from err


def read_file_credentials(path: Path, config: PredictConfig) -> dict[str, Any] | None:
    """The C2PA content credentials of ``path`` (``media.credentials``) with a line a person can read, or None
    when ``predict.credentials`` is off. Shown beside the verdict, never part of the score."""
    if not config.credentials:
        return None
    from deepfake.media.credentials import describe, read_credentials

    found = read_credentials(path, config.trust_anchors)
    return {**found, "summary": describe(found)}


# ---- one video: frames -> boxes -> tracks -> model-sized crops (worker side) ---------------------------


@dataclass
class PreparedVideo:
    """A video's faces ready for the models, and its record so far (no scores yet)."""

    record: dict[str, Any]
    crops: np.ndarray  # (n, size, size, 3) uint8, the model input before normalisation
    crop_faces: list[tuple[int, int]] = field(default_factory=list)  # (frame slot, face) per crop
    crop_tracks: list[int] = field(default_factory=list)  # track id per crop


def path_text(path: Path) -> str:
    """A path as UTF-8 text for the CSV and JSON: bytes that are not UTF-8 (a name from another system) are
    written as ``\\xNN`` escapes rather than breaking the encoding of the whole output."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def base_record(path: Path) -> dict[str, Any]:
    return {
        "filename": path_text(Path(path.name)),
        "path": path_text(path),
        "probability": None,
        "verdict": None,
        "status": "ok",
    }


def detector_slots(count: int, every: int) -> list[int]:
    """Sampled-frame slots the detector runs on: every ``every``-th and the last (tracks never extrapolate)."""
    slots = list(range(0, count, every))
    if count and slots[-1] != count - 1:
        slots.append(count - 1)
    return slots


class _Timer:
    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STEPS, 0.0)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def ms(self) -> dict[str, float]:
        return {k: round(v * 1000, 1) for k, v in self.seconds.items()}


def _timed_frames(reader: SpanReader, timer: _Timer) -> Iterator[SampledFrame]:
    frames = iter(reader)
    while True:
        with timer.step("decode"):
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


class _FaceBoxes:
    """Detection on the detector slots, in batches as frames arrive; frames between wait for the next batch.

    A frame is kept only until its faces are cut out: at most ``predict_detector.batch_size * detect_every`` full
    frames are in memory, whatever ``predict.frames`` and the video's length.
    """

    def __init__(self, detector: FaceDetector, config: PredictConfig, face_input: FaceInput, timer: _Timer) -> None:
        self.detector, self.config, self.face_input, self.timer = detector, config, face_input, timer
        self.frames: list[SampledFrame] = []  # every sampled frame's index and time (images dropped when cut)
        self.images: dict[int, np.ndarray] = {}  # slot -> RGB frame, until cut
        self.boxes: dict[int, np.ndarray] = {}  # slot -> (n, 5) boxes (detected or carried)
        self.detected: set[int] = set()
        self.crops: dict[tuple[int, int], np.ndarray] = {}  # (slot, face) -> model-sized crop

    def add(self, frame: SampledFrame) -> None:
        slot = len(self.frames)
        self.frames.append(SampledFrame(frame.index, frame.time_s, np.empty((0, 0, 3), np.uint8)))
        self.images[slot] = frame.image
        if slot % self.config.detect_every == 0:
            waiting = [s for s in self.images if s % self.config.detect_every == 0 and s not in self.detected]
            if len(waiting) >= self.config.detection.batch_size:
                self._detect(waiting)

    def finish(self) -> None:
        """Detect on what is left (the last frame always), carry boxes to every frame between, cut all."""
        slots = set(detector_slots(len(self.frames), self.config.detect_every))
        waiting = [s for s in self.images if s in slots and s not in self.detected]
        if waiting:
            self._detect(waiting, final=True)
        else:
            self._carry(final=True)

    def _detect(self, slots: list[int], final: bool = False) -> None:
        by_size: dict[tuple[int, ...], list[int]] = {}
        for slot in slots:  # a mid-stream size change gets its own detector batch
            by_size.setdefault(self.images[slot].shape, []).append(slot)
        for group in by_size.values():
            height, width = self.images[group[0]].shape[:2]
            with self.timer.step("detect"):
                found = self.detector.detect(
                    [self.images[s] for s in group], self.config.detection.scale_for(width, height)
                )
            for slot, boxes in zip(group, found, strict=True):
                self.boxes[slot] = boxes
                self.detected.add(slot)
        self._carry(final)

    def _carry(self, final: bool) -> None:
        """Boxes for frames between two detected frames, predicted by the face tracks and confirmed by O-Net, then
        cut every ready frame.

        Across a gap every face's track crosses (IoU), each track's box is interpolated. Across a gap IoU does
        not link (``unlinked_gaps``: a small or fast face that moved more than its size, a face entering or
        leaving, a detection missed at one end, no face at either end), the faces at its two ends are paired by
        motion (``bridge_gap``) where they can be. O-Net then checks every predicted box (``FaceDetector.refine``:
        one crop per box, not the pyramid) and gives the box it regresses. A gap with no prediction, or with a
        box O-Net rejects, is detected instead: skipping the detector must never cost a face it would find."""
        detected = sorted(self.detected)
        between = [s for s in self.images if s not in self.boxes and detected and s < detected[-1]]
        if between:
            window = [s for s in detected if s >= _previous(detected, min(between))]
            tracks = link_tracks(
                [self.boxes[s] for s in window], self.config.track_iou, self.config.track_max_gap, slots=window
            )
            unlinked = set(unlinked_gaps(tracks, window))
            carried = carry_boxes(tracks, between)
            gaps: list[dict[int, np.ndarray]] = []  # per gap with frames to fill: slot -> predicted boxes
            redo: list[int] = []
            for a, b in itertools.pairwise(window):
                inner = [s for s in between if a < s < b]
                if not inner:
                    continue
                if (a, b) not in unlinked:
                    gaps.append({s: np.stack([box for _, box in carried[s]]) for s in inner})
                    continue
                bridged = bridge_gap(
                    self.boxes[a], self.boxes[b], a, b, inner, self.config.track_iou, self.config.track_max_shift
                )
                if bridged is None:
                    redo += inner
                else:
                    gaps.append(bridged)
            redo += self._confirm(gaps)
            if redo:
                self._detect(sorted(redo), final)  # then carries what is left (its gaps now confirmed or linked)
                return
        ready = [s for s in self.images if s in self.boxes]
        with self.timer.step("crop"):
            for slot in ready:
                image = self.images.pop(slot)
                for face, box in enumerate(self.boxes[slot]):
                    crop = crop_face(image, box, self.face_input.margin)
                    if crop is not None:
                        self.crops[(slot, face)] = self.face_input.fit(crop)
        if final:
            assert not self.images, "every sampled frame is cut once the video ends"

    def _confirm(self, gaps: list[dict[int, np.ndarray]]) -> list[int]:
        """O-Net's check of the predicted boxes: a gap whose every box it confirms takes the boxes O-Net
        regresses; the slots of the other gaps are returned, to be detected."""
        slots = [s for gap in gaps for s in gap]
        if not slots:
            return []
        height, width = self.images[slots[0]].shape[:2]
        if any(self.images[s].shape[:2] != (height, width) for s in slots):  # a mid-stream size change: detect all
            return slots
        with self.timer.step("detect"):
            refined = self.detector.refine(
                [self.images[s] for s in slots],
                [gap[s] for gap in gaps for s in gap],
                self.config.detection.scale_for(width, height),
            )
        checked = dict(zip(slots, refined, strict=True))
        threshold = self.config.detection.detector.thresholds[2]
        rejected: list[int] = []
        for gap in gaps:
            if all(len(checked[s]) and (checked[s][:, 4] > threshold).all() for s in gap):
                for slot in gap:
                    self.boxes[slot] = checked[slot].astype(np.float32)
            else:
                rejected += list(gap)
        return rejected


def _previous(detected: list[int], slot: int) -> int:
    """The last detected slot before ``slot`` (or the first detected slot)."""
    earlier = [s for s in detected if s < slot]
    return earlier[-1] if earlier else detected[0]


def prepare_video(path: Path, config: PredictConfig, face_input: FaceInput) -> PreparedVideo:
    """Decode, detect, track and cut one video (any process); an unreadable video is a status, not a raise."""
    record = base_record(path)
    record["credentials"] = read_file_credentials(path, config)
    timer = _Timer()
    detector = cached(
        ("mtcnn", config.detection.detector), lambda: FaceDetector(config.detection.detector, torch_threads())
    )
    reader = SpanReader(path, config.sampling, threads=1 if config.workers else 0)
    faces = _FaceBoxes(detector, config, face_input, timer)
    empty = np.zeros((0, face_input.image_size, face_input.image_size, 3), np.uint8)
    try:
        for frame in _timed_frames(reader, timer):
            faces.add(frame)
    except InputError as err:  # VideoError: not a video, codec, truncated, too large, ...
        if not faces.frames:
            record.update(status=f"unreadable: {err}", sampling=reader.coverage or None, frames=[], ms=timer.ms())
            return PreparedVideo(record, empty)
        # a stream broken midway: score the frames decoded before the break, and say so
        record["decode_error"] = f"{err} (after {len(faces.frames)} sampled frames)"
    faces.finish()
    slots = list(range(len(faces.frames)))
    tracks = link_tracks(
        [faces.boxes[s] for s in slots],
        config.track_iou,
        config.track_max_gap * config.detect_every,  # the gap in sampled frames
    )
    owner = track_of(tracks)
    frame_records, crop_faces, crop_list, crop_tracks = [], [], [], []
    for slot, frame in enumerate(faces.frames):
        frame_faces: list[dict[str, Any]] = []
        for face, box in enumerate(faces.boxes[slot]):
            crop = faces.crops.get((slot, face))
            if crop is None:
                continue  # a box whose crop is empty (off the frame)
            crop_faces.append((slot, len(frame_faces)))
            crop_list.append(crop)
            crop_tracks.append(owner[(slot, face)])
            frame_faces.append(
                {
                    "box": [round(float(v), 1) for v in box[:4]],
                    "detector_score": round(float(box[4]), 4),
                    "track": owner[(slot, face)],
                    "detected": slot in faces.detected,  # False: carried along its track between detections
                }
            )
        frame_records.append({"frame": frame.index, "t": round(frame.time_s, 3), "faces": frame_faces})
    record.update(sampling=reader.coverage, frames=frame_records, ms=timer.ms())
    record["tracks"] = [
        {"id": t.id, "frames": [faces.frames[s].index for s in sorted(set(t.slots()))], "crops": count}
        for t in tracks
        if (count := sum(k in faces.crops for k in t.detections))
    ]
    crops = np.stack(crop_list) if crop_list else empty
    return PreparedVideo(record, crops, crop_faces, crop_tracks)


# ---- scoring (predict process) ------------------------------------------------------------------------


def score_prepared(videos: Sequence[PreparedVideo], backend: Backend, config: PredictConfig) -> list[dict[str, Any]]:
    """One forward per member over the crops of ``videos`` (in ``batch_size`` chunks), then each video's score."""
    counts = [len(v.crops) for v in videos]
    total = sum(counts)
    started = time.perf_counter()
    logits: dict[str, list[np.ndarray]] = {m: [] for m in backend.members}
    if total:
        crops = np.concatenate([v.crops for v in videos if len(v.crops)])
        for start in range(0, total, config.batch_size):
            batch = normalize_batch(list(crops[start : start + config.batch_size]))
            for member, values in backend.logits(batch).items():
                logits[member].append(values)
    probs = {m: probabilities(np.concatenate(v)) if v else np.zeros(0) for m, v in logits.items()}
    infer_s = time.perf_counter() - started
    records, offset = [], 0
    for video, count in zip(videos, counts, strict=True):
        share = infer_s * count / total if total else 0.0
        member_probs = {m: p[offset : offset + count] for m, p in probs.items()}
        records.append(_score_video(video, member_probs, share, config))
        offset += count
    return records


def _score_video(
    video: PreparedVideo, member_probs: dict[str, np.ndarray], infer_s: float, config: PredictConfig
) -> dict[str, Any]:
    record = video.record
    if record["status"] != "ok":
        return record
    ms = record["ms"]
    ms["infer"] = round(infer_s * 1000, 1)
    if not len(video.crops):
        record["status"] = f"no_face: no face found in {len(record['frames'])} sampled frames"
        return record
    started = time.perf_counter()
    for crop, (slot, face) in enumerate(video.crop_faces):
        record["frames"][slot]["faces"][face]["scores"] = {m: round(float(p[crop]), 5) for m, p in member_probs.items()}
    scores = score_tracks(video.crop_tracks, member_probs, config.aggregation, config.track_min_share)
    for track in record["tracks"]:
        track["probability"] = round(scores.tracks[track["id"]], 5)
        track["members"] = {m: round(v[track["id"]], 5) for m, v in scores.members.items()}
        track["eligible"] = track["id"] in scores.eligible
    ms["aggregate"] = round((time.perf_counter() - started) * 1000, 1)
    probability = float(scores.probability)
    if not math.isfinite(probability):
        record["status"] = "error: the models returned a non-finite score"
        return record
    record.update(
        probability=probability,
        decided_by=scores.decided_by,
        members={m: round(v, 5) for m, v in scores.member_probabilities().items()},
        crops=len(video.crops),
    )
    return record


# ---- many videos ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputListing:
    """What the inputs hold: ``videos`` to score in order (``refused`` among them: a video's name on something
    that cannot be read as a file, with the reason, never opened), and ``skipped`` folder entries that are
    not videos, with the reason. Every entry of a folder is in one of them."""

    videos: list[Path]
    refused: dict[Path, str]
    skipped: dict[Path, str]


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` (named like a video) cannot be read as one without opening it; None for a regular file."""
    if path.is_symlink() and not path.exists():
        return f"a link that leads nowhere (to {os.readlink(path)})"
    if path.is_file():
        return None
    if path.is_dir():
        return "a folder named like a video (folders are not searched)"
    return "not a regular file (a pipe, socket or device: never opened)"


def list_inputs(inputs: Iterable[Path]) -> InputListing:
    """Videos among ``inputs``; a folder contributes every entry (not recursive), sorted: its files named like
    videos are scored (or refused with the reason, such as a link that leads nowhere), the rest are listed as
    skipped with the reason. The same file given twice (a file and its folder) is scored once."""
    videos: list[Path] = []
    refused: dict[Path, str] = {}
    skipped: dict[Path, str] = {}
    seen: set[Path] = set()
    for item in inputs:
        if item.is_dir():
            entries = sorted(item.iterdir())
            found = [p for p in entries if p.suffix.lower() in VIDEO_SUFFIXES]
            for entry in entries:
                if entry.suffix.lower() not in VIDEO_SUFFIXES:
                    kind = (
                        "a folder (not searched)" if entry.is_dir() else f"not a video file (suffix {entry.suffix!r})"
                    )
                    skipped[entry] = kind
        elif item.exists() or item.is_symlink():
            found = [item]
        else:
            raise InputError(f"{item}: no such file or folder")
        for path in found:
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            videos.append(path)
            reason = _not_a_file(path)
            if reason is not None:
                refused[path] = reason
    if not videos:
        raise InputError("no video files found in the given inputs")
    return InputListing(videos, refused, skipped)


def collect_videos(inputs: Iterable[Path]) -> list[Path]:
    """The readable video files among ``inputs`` (``list_inputs`` without the refused and skipped entries)."""
    listing = list_inputs(inputs)
    videos = [v for v in listing.videos if v not in listing.refused]
    if not videos:
        raise InputError("no readable video files in the given inputs")
    return videos


@dataclass(frozen=True)
class Outputs:
    """Where a predict run writes: the CSV and JSON of the whole run, and the JSON Lines written as it goes."""

    csv: Path
    json: Path
    jsonl: Path

    @property
    def partial_jsonl(self) -> Path:
        """Where the records go as they are scored; renamed ``jsonl`` with the CSV and JSON at the end."""
        return self.jsonl.with_name(self.jsonl.name + ".partial")

    def check(self, videos: Sequence[Path]) -> None:
        """Refuse, before any work, outputs that could not be written or would clobber an input."""
        paths = [self.csv, self.json, self.jsonl]
        if len({p.resolve() for p in paths}) != len(paths):
            raise InputError(f"--csv, --json and --jsonl must be three different files, got {[str(p) for p in paths]}")
        inputs = {v.resolve() for v in videos}
        for path in paths:
            if path.resolve() in inputs:
                raise InputError(f"{path}: is one of the input videos; choose another output path")
            if path.is_dir():
                raise InputError(f"{path}: is a folder; give a file path")
            folder = path.parent if str(path.parent) else Path(".")
            if not folder.is_dir():
                raise InputError(f"{path}: its folder {folder} does not exist")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{path}: cannot write into {folder}")


def read_done(jsonl: Path) -> dict[str, dict[str, Any]]:
    """Records of an earlier (killed) run by their path. A torn last line (killed mid-write) is cut off
    the file, so the records appended next start on a line of their own; that video is scored again."""
    done: dict[str, dict[str, Any]] = {}
    if not jsonl.exists():
        return done
    data = jsonl.read_bytes()
    lines = data.split(b"\n")
    kept = 0  # bytes of complete, valid records
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            if number == len(lines):  # no newline after it: the write was cut
                logger.warning("%s:%d: an incomplete last record (a killed run) is scored again", jsonl, number)
                break
            raise InputError(f"{jsonl}:{number}: not a JSON record ({err}); not a predict --jsonl file?") from err
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise InputError(f"{jsonl}:{number}: a record without a 'path'; not a predict --jsonl file?")
        done[record["path"]] = record
        kept += len(line) + 1
    if kept < len(data):
        os.truncate(jsonl, kept)
    elif kept > len(data):  # a whole record cut just before its newline
        with jsonl.open("ab") as handle:
            handle.write(b"\n")
    return done


def check_same_model(done: Mapping[str, dict[str, Any]], model: Mapping[str, Any], jsonl: Path) -> None:
    """Refuse to resume records that another model (or a run that named none) gave: one output, one model."""
    for path, record in done.items():
        if record.get("model") != dict(model):
            raise InputError(
                f"{jsonl}: the record of {path} was made by {record.get('model') or 'an unnamed model'}, this run "
                f"uses {dict(model)}; run without --resume or write to another --jsonl"
            )


def write_submission(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """DFDC submission CSV (``filename,label``; label = P(fake)) plus status and path; unscored carry
    ``FALLBACK_PROBABILITY``."""
    with atomic_path(path) as tmp:
        _write_csv(tmp, records)


def _write_csv(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for r in records:
            value = r["probability"] if r["probability"] is not None else FALLBACK_PROBABILITY
            call = (r.get("verdict") or {}).get("call") or ""  # empty: unscored, or a package without a decision
            writer.writerow([r["filename"], f"{value:.6f}", call, r["status"].split(":")[0], r["path"]])


def _path_key(path: Path) -> str:
    return path_text(path)


class _Sink:
    """Appends each finished record to the JSON Lines file and flushes it, so a killed run keeps it."""

    def __init__(self, path: Path, append: bool) -> None:
        self.handle = path.open("a" if append else "w", encoding="utf-8", errors="surrogateescape")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class _Inline:
    """A pool of no processes: the work runs in the predict process when its result is asked for."""

    def submit(self, func: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(func(*args))
        except Exception as err:  # noqa: BLE001 - handed to the caller, which records it as that video's error
            future.set_exception(err)
        return future


@contextmanager
def video_pool(config: PredictConfig, videos: int | None = None) -> Iterator[Any]:
    """Where ``prepare_video`` runs: in-process (workers 0), local spawned processes, or a Dask cluster.

    ``videos``: how many will be prepared, when known. One video has nothing to overlap, so it is prepared
    in-process without starting a worker (seconds of a first verdict), its detector on every core where that
    leaves its floats those a worker would give, and scipy (face tracks) imported meanwhile."""
    if config.executor.kind == "dask":
        with dask_client(config.executor, config.workers) as client:
            yield _DaskPool(client, config.torch_threads)
    elif config.workers == 0:
        set_torch_threads(max(1, os.cpu_count() or 1))  # the one process decodes, detects and infers: every core
        reuse_freed_memory()
        yield _Inline()
    elif videos is not None and videos <= 1:
        # every core for the one video's detector when its nets run on ONNX Runtime, whose CPU results do not
        # depend on the thread count (tests/test_faces.py checks it); torch's may, so torch keeps the workers'
        onnx_detector = config.detection.detector.net_runtime == "onnx"
        set_torch_threads(usable_cores() if onnx_detector else config.torch_threads)
        import_in_background()
        reuse_freed_memory()
        yield _Inline()
    else:
        import multiprocessing

        with ProcessPoolExecutor(
            max_workers=config.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(os.getpid(), config.torch_threads),
        ) as pool:
            yield pool


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def init_worker(parent: int, threads: int, on_parent_death: int = signal.SIGTERM) -> None:
    """``threads`` torch threads per worker (``predict.torch_threads``: fixed, so a verdict's floats never depend
    on the machine's core count); and a worker whose parent is killed (SIGKILL leaves no time to shut the pool
    down) is sent ``on_parent_death`` by the kernel instead of idling on with a detector in memory."""
    set_torch_threads(threads)
    reuse_freed_memory()
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, on_parent_death)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class _DaskPool:
    """Tasks on a Dask cluster; one whose worker died is rerun by the scheduler (``executor.retries``)."""

    def __init__(self, client: Any, threads: int) -> None:
        self.client, self.threads = client, threads

    def submit(self, func: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(_with_threads, self.threads, func, *args, pure=False)


def _with_threads(threads: int, func: Callable[..., Any], *args: Any) -> Any:
    set_torch_threads(threads)
    return func(*args)


def load_decision(models: Path) -> Decision | None:
    """The calibration and operating points of the model package under the ``models/`` root ``models`` (its
    ``onnx/calibration.json``), None when it has none."""
    from deepfake.modeling.store import ModelStore

    return package_decision(ModelStore(models).folder("onnx"))


def decide(record: dict[str, Any], decision: Decision | None) -> dict[str, Any]:
    """``record`` with its ``verdict``: the three-way call from the package's operating points on the record's
    score, its calibrated probability and which operating point decided (``modeling.calibration``); a package
    without them gives no call and says why; an unscored record gets none."""
    if record.get("probability") is None:
        record["verdict"] = None
    else:
        record["verdict"] = decision.verdict(float(record["probability"])) if decision is not None else no_verdict()
    return record


def _failed(path: Path, err: BaseException) -> dict[str, Any]:
    """A video whose preparation raised something other than bad input: a bug, recorded with its traceback."""
    trace = "".join(traceback.format_exception(err))
    logger.error("%s: failed:\n%s", path, trace)
    return {**base_record(path), "status": f"error: {type(err).__name__}: {err}", "frames": [], "traceback": trace}


def predict_videos(
    inputs: Sequence[Path],
    backend: Backend,
    config: PredictConfig,
    outputs: Outputs,
    resume: bool = False,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
    pool: AbstractContextManager[Any] | None = None,
    model: Mapping[str, Any] | None = None,
    stream: RecordStream | None = None,
    decision: Decision | None = None,
) -> dict[str, Any]:
    """Score every video; stream records to ``outputs.partial_jsonl``; then write the CSV, JSON and JSON Lines
    together (``commit_outputs``); return the summary.

    Videos are prepared (decode, detect, crop) by ``predict.workers`` processes a few videos ahead of
    inference, which batches crops across videos. Every per-video failure is that video's status;
    an environment fault (disk full, permission denied) stops the run, the records so far kept.
    ``stream``: the records of another pipeline a zoo package names (``deepfake.apps.zoo_predict``),
    instead of the project's own.
    ``model`` (the package card's ``reference()``) goes into every record and the summary; with ``resume``,
    records of an earlier run by another model are refused rather than mixed in. ``decision`` (the package's
    calibration and operating points, ``load_decision``) gives every scored record its verdict (``decide``).
    """
    listing = list_inputs(inputs)
    videos = listing.videos
    outputs.check(videos)
    partial = outputs.partial_jsonl
    source = partial if partial.exists() else outputs.jsonl  # a cut run's records, else a finished run's
    done = read_done(source) if resume else {}
    if model is not None:
        check_same_model(done, model, source)
    if done and source != partial:
        shutil.copyfile(source, partial)  # this run appends to them
    todo = [v for v in videos if _path_key(v) not in done and v not in listing.refused]
    refused = [v for v in videos if _path_key(v) not in done and v in listing.refused]
    if done:
        logger.info("resuming: %d of %d videos already in %s", len(videos) - len(todo), len(videos), source)
    sink = _Sink(partial, append=resume)
    started = time.perf_counter()
    fresh: dict[str, dict[str, Any]] = {}
    try:
        with contextlib.ExitStack() as stack:
            if stream is None:  # the project's own pipeline: prepared in worker processes, batched inference
                workers = stack.enter_context(pool if pool is not None else video_pool(config, len(todo)))
                records_ = score_stream(todo, backend, config, workers, progress)
            else:  # another pipeline a zoo package names (deepfake.apps.zoo_predict); the credentials are read here
                by_path = {path_text(v): v for v in todo}
                records_ = (
                    {**r, "credentials": read_file_credentials(by_path[r["path"]], config)}
                    if r["path"] in by_path
                    else r
                    for r in stream(todo, progress)
                )
            unreadable = (
                {**base_record(v), "status": f"unreadable: {listing.refused[v]}", "frames": []} for v in refused
            )
            for record in itertools.chain(unreadable, records_):
                decide(record, decision)
                if model is not None:
                    record["model"] = dict(model)
                sink.write(record)
                fresh[record["path"]] = record
    finally:
        sink.close()
    seconds = time.perf_counter() - started
    records = [fresh.get(_path_key(v)) or done[_path_key(v)] for v in videos]
    summary = {
        "backend": backend.name,
        "model": dict(model) if model is not None else None,
        "members": backend.members,
        "videos": len(records),
        "scored": sum(r["probability"] is not None for r in records),
        "resumed": sum(_path_key(v) in done for v in videos),
        "not_scored": {r["path"]: r["status"] for r in records if r["probability"] is None},
        "verdicts": {call: sum((r.get("verdict") or {}).get("call") == call for r in records) for call in VERDICTS},
        "errors": sum(r["status"].startswith("error") for r in records),
        "skipped": {path_text(p): reason for p, reason in listing.skipped.items()},  # folder entries: not videos
        "seconds": round(seconds, 2),
        "videos_per_s": round(len(todo) / seconds, 3) if seconds > 0 and todo else None,
    }
    commit_outputs(outputs, records, summary)
    return summary


def commit_outputs(outputs: Outputs, records: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """The run's CSV, JSON and JSON Lines, together: the CSV and JSON are written in full beside their places
    first, so a disk that fills (or any failure) leaves the previous run's complete set, and this run's
    records in the ``.partial`` JSON Lines for ``--resume``; only then three renames, which need no space."""
    with atomic_path(outputs.csv) as csv_tmp, atomic_path(outputs.json) as json_tmp:
        _write_csv(csv_tmp, records)
        json_tmp.write_bytes(json_bytes({"summary": summary, "videos": records}))
    os.replace(outputs.partial_jsonl, outputs.jsonl)


def score_stream(
    videos: Sequence[Path],
    backend: Backend,
    config: PredictConfig,
    pool: Any,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None,
) -> Iterator[dict[str, Any]]:
    """Records in input order; a few videos are prepared ahead, inference waits for a full batch of crops."""
    ahead = max(2, 2 * max(1, config.workers))
    queue: deque[tuple[Path, Any]] = deque()
    ready: list[PreparedVideo] = []
    face_input = backend.face_input
    listed = iter(progress(videos) if progress else videos)

    def fill() -> None:
        while len(queue) < ahead:
            path = next(listed, None)
            if path is None:
                return
            queue.append((path, pool.submit(prepare_video, path, config, face_input)))

    fill()
    while queue:
        path, future = queue.popleft()
        try:
            prepared = future.result()
        except InputError as err:
            prepared = PreparedVideo({**base_record(path), "status": f"unreadable: {err}", "frames": []}, np.zeros(0))
        except OSError:
            raise  # an environment fault stops the run; the JSON Lines keep what was scored
        except Exception as err:  # noqa: BLE001 - a bug in one video is its recorded error, the batch goes on
            prepared = PreparedVideo(_failed(path, err), np.zeros(0))
        fill()
        ready.append(prepared)
        if sum(len(v.crops) for v in ready) >= config.batch_size or not queue:
            yield from score_prepared(ready, backend, config)
            ready = []
