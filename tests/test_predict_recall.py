"""Prediction's detector finds the faces a verdict needs: a small face, a blurred face, a face entering late.

Tiny videos made here from the bundled photos; the detector runs with the real ``predict_detector`` params
(not the unit tests' shrunk thresholds), so these are the settings ``deepfake predict`` ships with.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from deepfake.apps.predict import PredictConfig, prepare_video
from deepfake.media.face_input import FaceInput
from deepfake.media.faces import Detection
from tests.conftest import FACES, PARAMS_YAML, as_params, tiny_params, write_video

FRAMES = 24
REAL_DETECTOR = yaml.safe_load(PARAMS_YAML.read_text())["predict_detector"]


def config_for(tmp_path: Path, detector: dict | None = None, **changes: object) -> PredictConfig:
    raw = tiny_params(tmp_path, **({"predict__frames": 12} | changes))
    raw["predict_detector"] = dict(detector or REAL_DETECTOR)  # what predict ships with, not the tests' shrunk one
    return PredictConfig.from_params(as_params(raw))


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, seeded texture: something for the detector to reject, unlike a flat canvas."""
    texture = np.random.default_rng(seed).integers(40, 200, size=(5, 9, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 15)


def photo(name: str, height: int) -> np.ndarray:
    image = cv2.imread(str(FACES / name), cv2.IMREAD_COLOR)
    return cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), height), interpolation=cv2.INTER_AREA)


def paste(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> np.ndarray:
    out = canvas.copy()
    out[y : y + image.shape[0], x : x + image.shape[1]] = image
    return out


def motion_blur(frame: np.ndarray, length: int, angle: float) -> np.ndarray:
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(frame, -1, kernel / kernel.sum())


def face_share(boxes: list[list[float]], shorter: int) -> float:
    return max(max(b[2] - b[0], b[3] - b[1]) for b in boxes) / shorter


def faces_per_frame(video: Path, config: PredictConfig) -> list[list[list[float]]]:
    """The boxes predict keeps in each sampled frame (detected or carried along a track)."""
    prepared = prepare_video(video, config, FaceInput(64, 0.3333))
    assert prepared.record["status"] == "ok", prepared.record["status"]
    return [[face["box"] for face in frame["faces"]] for frame in prepared.record["frames"]]


def training_detector() -> dict:
    """The bboxes stage's detector settings in the predict_detector section's shape."""
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    return {key: raw["bboxes"][key] for key in REAL_DETECTOR}


@pytest.mark.slow
def test_a_small_face_of_a_distant_person_is_found_in_every_frame(tmp_path: Path) -> None:
    """A face of about 5.3 % of a 1080p frame's shorter side (the small-face class of the benchmark), walking
    across a textured background: found in every sampled frame, where the training detector's settings
    (whose pyramid stops at larger faces) lose it in some."""
    width, height = 1920, 1080
    person = photo("astronaut.jpg", 263)  # its face box is 0.22 of the photo's height: ~57 px, 5.3 % of 1080
    canvas = background(width, height)
    frames = [paste(canvas, person, 100 + 40 * i, 600) for i in range(FRAMES)]  # 40 px a frame: fast for its size
    video = write_video(tmp_path / "small.mp4", frames)
    found = faces_per_frame(video, config_for(tmp_path))
    assert all(len(boxes) == 1 for boxes in found), [len(b) for b in found]
    shares = [face_share(boxes, height) for boxes in found]
    assert min(shares) >= 0.045 and max(shares) <= 0.065, shares  # the size the test means to check
    training = faces_per_frame(video, config_for(tmp_path, training_detector()))
    assert any(not boxes for boxes in training), "the case the test is for"


@pytest.mark.slow
def test_a_motion_blurred_face_is_found_in_every_frame(tmp_path: Path) -> None:
    """A shaking camera's blur (33 px, turning): found in every frame; training's thresholds lose most."""
    width, height = 640, 360
    person = photo("grace_hopper.jpg", height)
    canvas = background(width, height, seed=1)
    x = (width - person.shape[1]) // 2
    frames = [motion_blur(paste(canvas, person, x + 2 * i, 0), 33, 30 + 40 * math.sin(i / 3)) for i in range(FRAMES)]
    video = write_video(tmp_path / "blurred.mp4", frames)
    found = faces_per_frame(video, config_for(tmp_path))
    assert all(len(boxes) == 1 for boxes in found), [len(b) for b in found]
    training = faces_per_frame(video, config_for(tmp_path, training_detector()))
    assert any(not boxes for boxes in training), "the case the test is for"


@pytest.mark.slow
def test_a_face_entering_late_is_found_from_the_first_frame_it_shows(tmp_path: Path) -> None:
    """Nothing for the first frames, then a person steps in: every sampled frame from the entry on has the
    face, including one the detector would skip (between two detector slots) before the face's track began."""
    width, height = 640, 360
    person = photo("astronaut.jpg", height)
    canvas = background(width, height, seed=2)
    enter = 11  # an odd position of the 24: after sampling, it lands between two detector frames
    frames = [canvas if i < enter else paste(canvas, person, (width - person.shape[1]) // 2, 0) for i in range(FRAMES)]
    video = write_video(tmp_path / "late.mp4", frames)
    config = config_for(tmp_path, predict__frames=FRAMES)
    prepared = prepare_video(video, config, FaceInput(64, 0.3333))
    records = prepared.record["frames"]
    shown = [r for r in records if r["frame"] >= enter]
    assert [r["frame"] for r in records if r["faces"]] == [r["frame"] for r in shown]
    first = shown[0]
    assert first["frame"] % 2 == 1 and first["faces"][0]["detected"], "the entry frame is detected, not skipped"


def test_prediction_detects_with_its_own_section_not_the_training_detectors(tmp_path: Path) -> None:
    raw = tiny_params(tmp_path)
    raw["predict_detector"]["thresholds"] = [0.5, 0.6, 0.6]
    raw["bboxes"]["thresholds"] = [0.9, 0.95, 0.95]
    params = as_params(raw)
    config = PredictConfig.from_params(params)
    assert config.detection == Detection.from_section(params.predict_detector)
    assert config.detection.detector.thresholds == (0.5, 0.6, 0.6)
    assert Detection.from_params(params).detector.thresholds == (0.9, 0.95, 0.95)  # the bboxes stage's


@pytest.mark.slow
def test_a_carried_box_is_kept_only_where_onet_confirms_a_face(tmp_path: Path) -> None:
    """The person steps out for a moment between two detector frames: the track's box there is checked by
    O-Net, rejected, the frame detected, and left without a face rather than a box cut from the background.
    The frames of other gaps keep their boxes, carried and confirmed (not detected)."""
    width, height = 640, 360
    person = photo("astronaut.jpg", height)
    canvas = background(width, height, seed=3)
    away = range(9, 12)  # video frames without the person: sampled slot 5 of 12, between two detector slots
    x = (width - person.shape[1]) // 2
    frames = [canvas if i in away else paste(canvas, person, x, 0) for i in range(FRAMES)]
    video = write_video(tmp_path / "away.mp4", frames)
    config = config_for(tmp_path)
    every = config.detect_every
    assert every > 1 and 5 % every, "slot 5 lies between two detector slots"
    records = prepare_video(video, config, FaceInput(64, 0.3333)).record["frames"]
    empty = [slot for slot, r in enumerate(records) if not r["faces"]]
    assert empty and all(records[slot]["frame"] in away for slot in empty), [
        (r["frame"], len(r["faces"])) for r in records
    ]
    assert any(slot % every for slot in empty), "the case the test is for: a frame between detections"
    assert all(len(r["faces"]) == 1 for r in records if r["frame"] not in away)
    carried = records[1:every]  # between the first two detector slots, away from the gap O-Net rejected
    assert not any(r["faces"][0]["detected"] for r in carried)
    assert all(r["faces"][0]["detector_score"] > REAL_DETECTOR["thresholds"][2] for r in carried)  # O-Net's score
