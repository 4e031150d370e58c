"""Faces: the MTCNN detector, the detection-scale rule, box geometry and the boxes file format."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import cv2
import numpy as np

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.fileio import read_json_limited, write_json_atomic
from deepfake.core.params import DetectorParams, LandmarksParams, Params
from deepfake.media.mtcnn import Cascade

BOXES_FORMAT = 1
MAX_BOXES_FILE_BYTES = 16 * 1024 * 1024


class BoxesFileError(InputError):
    """A boxes JSON file is missing or malformed (an ``InputError``: the video using it is skipped)."""


def detection_scale(width: int, height: int, rule: Sequence[Sequence[float]], override: Any = "auto") -> float:
    """The factor frames are resized by before detection.

    ``rule`` is a list of ``[shorter_side_up_to, scale]``; the first row whose limit is at least
    the frame's shorter side wins (shorter side, so 1920x1080 and 1080x1920 get the same scale).
    A number in ``override`` replaces the rule.
    """
    if override != "auto":
        try:
            scale = float(override)
        except (TypeError, ValueError):
            scale = math.nan
        if not math.isfinite(scale) or scale <= 0:
            raise ParamsError(f"bboxes.scale must be 'auto' or a positive number, got {override!r}")
        return scale
    shorter = min(width, height)
    for limit, scale in rule:
        if shorter <= limit:
            return float(scale)
    raise ParamsError(f"bboxes.scale_rule has no row for a shorter side of {shorter} px: {rule}")


DETECTOR_RUNTIMES = ("onnx", "torch")


@dataclass(frozen=True)
class DetectorConfig:
    """MTCNN's settings: the ``bboxes`` section for detection, the ``landmarks`` section for landmarks."""

    thresholds: tuple[float, float, float]
    min_face_size: int  # in detector pixels (after the detection scale)
    min_face_share: float  # smallest face of interest as a share of the frame's shorter side (0 = no bound)
    runtime: str  # the P/R/O-nets on ONNX Runtime ("onnx") or PyTorch ("torch")
    device: str
    pyramid_factor: float  # each pyramid level's scale over the previous one's
    nms_thresholds: tuple[float, float, float, float]  # P-Net per level, P-Net across levels, R-Net, O-Net

    @classmethod
    def from_section(cls, section: DetectorParams | LandmarksParams) -> DetectorConfig:
        """From a validated params section with the fields above."""
        return cls(
            thresholds=tuple(float(t) for t in section.thresholds),  # type: ignore[arg-type]
            min_face_size=section.min_face_size,
            min_face_share=float(section.min_face_share),
            runtime=section.runtime,
            device=section.device,
            pyramid_factor=float(section.pyramid_factor),
            nms_thresholds=tuple(float(t) for t in section.nms_thresholds),  # type: ignore[arg-type]
        )

    @property
    def net_runtime(self) -> str:
        """Where the nets run: "torch" when asked for or on CUDA, else "onnx" (which needs no torch import)."""
        return "torch" if self.runtime == "torch" or self.device.startswith("cuda") else "onnx"

    @property
    def cascade(self) -> Cascade:
        """The cascade's numbers as ``deepfake.media.mtcnn.detect_faces`` takes them."""
        return Cascade(self.pyramid_factor, *self.nms_thresholds)

    def min_size(self, width: int, height: int) -> float:
        """The smallest face (detector pixels) looked for in a ``width x height`` detector input.

        The share drops the pyramid's finest levels (those of faces smaller than the share of the frame's
        shorter side): they cost the most (P-Net's cost falls with the square of the face size looked
        for), and a face that small is not one a verdict should rest on. The levels kept are those of
        the full ``min_face_size`` pyramid (``deepfake.media.mtcnn.pyramid_scales``).
        """
        return max(float(self.min_face_size), self.min_face_share * min(width, height))


@dataclass(frozen=True)
class Detection:
    """How faces are found in whole frames: the ``bboxes`` section for the bboxes stage (the faces training
    sees), the ``predict_detector`` section for ``deepfake predict``, ``explain`` and the service, whose
    thresholds trade a few false boxes for never leaving a video without a verdict."""

    detector: DetectorConfig
    batch_size: int  # frames per MTCNN call
    scale: str | float  # "auto" or a number
    scale_rule: tuple[tuple[float, float], ...]

    @classmethod
    def from_section(cls, sect: DetectorParams) -> Detection:
        rule = tuple((float(limit), float(scale)) for limit, scale in sect.scale_rule)
        return cls(DetectorConfig.from_section(sect), sect.batch_size, sect.scale, rule)

    @classmethod
    def from_params(cls, params: Params) -> Detection:
        """The bboxes stage's detection (training's faces)."""
        return cls.from_section(params.bboxes)

    def scale_for(self, width: int, height: int) -> float:
        return detection_scale(width, height, self.scale_rule, self.scale)


def _detector_inputs(frames_rgb: Sequence[np.ndarray], scale: float) -> list[np.ndarray]:
    """Equally sized frames as the detector sees them: resized by ``scale`` (area averaging down, bilinear up)."""
    height, width = frames_rgb[0].shape[:2]
    for index, frame in enumerate(frames_rgb):
        if frame.shape[:2] != (height, width):
            raise ValueError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first {width}x{height}")
    if scale == 1.0:
        return list(frames_rgb)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return [cv2.resize(frame, size, interpolation=interpolation) for frame in frames_rgb]


class FaceDetector:
    """MTCNN (``deepfake.media.mtcnn``: facenet-pytorch's weights) behind a small interface: RGB uint8
    frames in, full-resolution boxes out.

    ``runtime: onnx`` runs the P/R/O-nets on ONNX Runtime's CPU provider with ``threads`` intra-op threads
    (the stages' ``torch_threads``: fixed, so results are reproducible), or, when ``threads`` is None, as
    many as torch is set to in this process; on a CUDA ``device`` the torch nets run on the GPU.
    """

    def __init__(self, config: DetectorConfig, threads: int | None = None) -> None:
        from deepfake.media.mtcnn import load_nets

        if config.runtime not in DETECTOR_RUNTIMES:
            raise ParamsError(f"detector runtime must be one of {DETECTOR_RUNTIMES}, got {config.runtime!r}")
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        self.config = config
        self.runtime = config.net_runtime
        self._nets = load_nets(self.runtime, config.device, max(1, threads))

    def _run(self, images: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        from deepfake.media.mtcnn import CELL, detect_faces

        height, width = images.shape[1:3]
        min_size = self.config.min_size(width, height)
        if min(width, height) < max(min_size, CELL):  # the pyramid would be empty
            return [np.zeros((0, 5), np.float32)] * len(images), [np.zeros((0, 5, 2), np.float32)] * len(images)
        config = self.config
        return detect_faces(images, self._nets, config.min_face_size, min_size, config.thresholds, config.cascade)

    def detect(self, frames_rgb: Sequence[np.ndarray], scale: float = 1.0) -> list[np.ndarray]:
        """Detect faces in equally sized RGB frames; one ``(n, 5)`` array [x1,y1,x2,y2,score] per frame.

        Frames are resized by ``scale`` for detection and boxes are mapped back to the frames'
        own pixel coordinates. A frame too small to hold the smallest face looked for has no faces.
        """
        if not frames_rgb:
            return []
        boxes, _ = self._run(np.stack(_detector_inputs(frames_rgb, scale)))
        results = []
        for found in boxes:
            found = found.copy()
            found[:, :4] /= scale
            results.append(found)
        return results

    def refine(
        self, frames_rgb: Sequence[np.ndarray], boxes: Sequence[np.ndarray], scale: float = 1.0
    ) -> list[np.ndarray]:
        """O-Net's check of given boxes (``boxes[i]``: ``(k, 5)`` in frame ``i``'s pixels), at the detection
        ``scale``: per frame ``(k, 5)`` [x1 y1 x2 y2 score], each box as O-Net regresses it and its face score
        (``deepfake.media.mtcnn.refine_boxes``), in the frames' own pixels. Costs one O-Net crop per box, not
        the pyramid: for boxes a face track predicts."""
        from deepfake.media.mtcnn import integral, refine_boxes

        if not frames_rgb:
            return []
        images = _detector_inputs(frames_rgb, scale)
        rows = [np.asarray(found, np.float32).reshape(-1, 5)[:, :4] * scale for found in boxes]
        groups = [np.full(len(corners), index, np.int64) for index, corners in enumerate(rows)]
        tables = [integral(image) for image in images]
        refined = refine_boxes(tables, images[0].shape[:2], self._nets, np.concatenate(rows), np.concatenate(groups))
        refined[:, :4] /= scale
        return np.split(refined, np.cumsum([len(r) for r in rows])[:-1])

    def landmarks(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(n, 5)`` with scores and 5-point landmarks ``(n, 5, 2)`` for one image."""
        boxes, points = self._run(image_rgb[None])
        return boxes[0], points[0]


def pick_central_face(boxes: np.ndarray, width: int, height: int) -> int | None:
    """Index of the detection whose centre is nearest the image centre (crops are centred on a face)."""
    if not len(boxes):
        return None
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
    distance = np.hypot(centres[:, 0] - width / 2, centres[:, 1] - height / 2)
    return int(np.argmin(distance))


# ---- boxes file: one JSON per original video -------------------------------------------------


def boxes_to_json(video: str, width: int, height: int, scale: float, frames: dict[int, np.ndarray]) -> dict[str, Any]:
    return {
        "format": BOXES_FORMAT,
        "video": video,
        "width": width,
        "height": height,
        "detection_scale": scale,
        # frame index -> [[x1, y1, x2, y2, score], ...] in full-resolution pixels
        "frames": {
            str(index): [[round(float(v), 2) for v in row[:4]] + [round(float(row[4]), 4)] for row in boxes]
            for index, boxes in sorted(frames.items())
        },
    }


def save_boxes(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(path, data)


@dataclass(frozen=True)
class VideoBoxes:
    video: str
    width: int
    height: int
    frames: dict[int, list[list[float]]]  # frame index -> boxes [x1, y1, x2, y2, score]

    @property
    def faces(self) -> int:
        return sum(len(b) for b in self.frames.values())


# Box coordinates are pixels of the full-resolution frame; MTCNN boxes may overhang the frame a
# little, never by a million pixels. The bound keeps box arithmetic (expand_box) finite.
MAX_BOX_COORD = 1_000_000.0
# A frame key is a frame index as str(int) writes it: ASCII digits, no sign or leading zero, so two
# keys never name the same frame and int() never fails ("²".isdigit() is True; int("²") raises).
_FRAME_KEY = re.compile(r"0|[1-9][0-9]{0,9}")


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_boxes(path: Path) -> VideoBoxes:
    """Read and validate a boxes file written by the bboxes stage."""
    # duplicate keys, nesting too deep and oversized integers are BoxesFileErrors (read_json_limited)
    data = read_json_limited(path, MAX_BOXES_FILE_BYTES, BoxesFileError)
    if not isinstance(data, dict) or not _is_int(data.get("format")) or data["format"] != BOXES_FORMAT:
        raise BoxesFileError(f"{path}: not a boxes file of format {BOXES_FORMAT}")
    width, height, frames = data.get("width"), data.get("height"), data.get("frames")
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        raise BoxesFileError(f"{path}: width/height must be positive integers")
    if not isinstance(frames, dict):
        raise BoxesFileError(f"{path}: 'frames' must be an object")
    parsed: dict[int, list[list[float]]] = {}
    for key, boxes in frames.items():
        if not (isinstance(key, str) and _FRAME_KEY.fullmatch(key)) or not isinstance(boxes, list):
            raise BoxesFileError(f"{path}: frame {key!r} must be a frame index with a list of boxes")
        for box in boxes:
            if not (isinstance(box, list) and len(box) == 5 and all(_is_number(v) for v in box)):
                raise BoxesFileError(f"{path}: frame {key}: a box must be 5 finite numbers, got {box!r}")
            if not all(abs(v) <= MAX_BOX_COORD for v in box[:4]):
                raise BoxesFileError(f"{path}: frame {key}: box coordinates beyond {MAX_BOX_COORD:g} px: {box!r}")
        parsed[int(key)] = boxes
    return VideoBoxes(video=str(data.get("video", "")), width=width, height=height, frames=parsed)
