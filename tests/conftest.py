"""Shared fixtures: tiny DFDC-format parts built with OpenCV, bad files included."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from deepfake import evaluate, export, quantize
from deepfake.data import DataRoots
from deepfake.folds import FoldsConfig
from deepfake.pipeline import bboxes, crops, diffs, folds, landmarks
from deepfake.train import TrainConfig, fit

FACES = Path(__file__).resolve().parents[1] / "src" / "deepfake" / "assets" / "faces"
SIZE = (320, 180)  # width, height: below 300 px on the short side, so detection runs at 2x
FRAMES = 16


def tiny_params(root: Path) -> dict:
    """A params dict shaped like params.yaml, sized for unit tests."""
    return {
        "data": {"root": str(root), "parts": ["dfdc_train_part_0"]},
        "video": {"frame_stride": 4, "max_frames": 1200, "max_pixels": 4096 * 2160},
        "bboxes": {
            "device": "cpu",
            "batch_size": 4,
            "thresholds": [0.6, 0.7, 0.7],
            "min_face_size": 20,
            "scale": "auto",
            "scale_rule": [[299, 2.0], [1000, 1.0], [1900, 0.5], [100000, 0.33]],
            "workers": 1,
            "torch_threads": 1,
        },
        "crops": {"margin": 0.3333, "workers": 1},
        "landmarks": {"device": "cpu", "thresholds": [0.6, 0.7, 0.7], "workers": 1, "torch_threads": 1},
        "diffs": {"win_size": 7, "mask_threshold": 102, "workers": 1},
        "folds": {
            "strategy": "original",
            "n_splits": 2,
            "seed": 1,
            "part_splits": 16,
            "parts_total": 50,
            "identity": True,
        },
        "models": ["classifier", "uynet"],
        "model": {
            "classifier": {"encoder": "mobilenetv3_small_050", "dropout": 0.0, "drop_path": 0.0},
            "uynet": {"encoder": "resnet18", "dropout": 0.0, "depth": 3},
        },
        "train": {
            "seed": 7,
            "holdout_fold": 0,
            "val_fold": 1,
            "image_size": 64,
            "epochs": 2,
            "batch_size": 4,
            "optimizer": "adamw",
            "lr": 0.001,
            "momentum": 0.9,
            "weight_decay": 0.0,
            "poly_power": 0.9,
            "grad_clip": 1.0,
            "label_clip": 0.01,
            "seg_weight": 0.5,
            "fake_weight": 1.4,
            "ignore_epochs": 0,
            "checkpoint_every": 1,
            "num_workers": 0,
            "device": "cpu",
        },
        "ensemble": {"seeds": [8]},
        "export": {"opset": 18, "parity_crops": 6, "tolerance": 1e-4},
        "predict": {"frames": 6, "batch_size": 8, "backend": "onnx"},
        "augment": {
            "jpeg": 0.5,
            "jpeg_quality": [60, 100],
            "noise": 0.1,
            "blur": 0.05,
            "flip": 0.5,
            "color": 0.7,
            "gray": 0.2,
            "affine": 0.5,
            "landmark_cutout": 0.7,
            "hull_cutout": 0.2,
            "quadrant_cutout": 0.1,
            "self_blend": 0.0,
            "min_changed_pixels": 32,
        },
    }


def face_frames(photo: str, frames: int = FRAMES, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """The photo scaled into a canvas, drifting a few pixels per frame."""
    image = cv2.imread(str(FACES / photo), cv2.IMREAD_COLOR)
    width, height = size
    scale = height / image.shape[0]
    out = []
    for i in range(frames):
        matrix = np.float32([[scale, 0, width / 2 - image.shape[1] * scale / 2 + i], [0, scale, 0]])
        out.append(cv2.warpAffine(image, matrix, size, borderMode=cv2.BORDER_REPLICATE))
    return out


def tamper(frames: list[np.ndarray]) -> list[np.ndarray]:
    """A crude 'fake': the central region blurred and tinted, the rest untouched."""
    out = []
    for frame in frames:
        fake = frame.copy()
        h, w = frame.shape[:2]
        region = fake[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3]
        region[:] = cv2.GaussianBlur(region, (15, 15), 0) // 2 + 60
        out.append(fake)
    return out


def write_video(path: Path, frames: list[np.ndarray], fps: int = 15) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def build_hostile_part(root: Path, part: str = "dfdc_train_part_0") -> Path:
    """A part with two good originals and their fakes, plus one of each kind of bad input."""
    folder = root / part
    folder.mkdir(parents=True)
    real_a, real_b = face_frames("grace_hopper.jpg"), face_frames("astronaut.jpg")
    write_video(folder / "reala.mp4", real_a)
    write_video(folder / "fakea.mp4", tamper(real_a))
    write_video(folder / "realb.mp4", real_b)
    write_video(folder / "fakeb.mp4", tamper(real_b))
    blank = [np.full((SIZE[1], SIZE[0], 3), 90 + i, np.uint8) for i in range(FRAMES)]
    write_video(folder / "noface.mp4", blank)
    write_video(folder / "fakenoface.mp4", blank)
    (folder / "zero.mp4").write_bytes(b"")
    whole = (folder / "reala.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notvideo.mp4").write_text("this is not a video\n")
    (folder / "fakemissing.mp4").write_bytes((folder / "fakea.mp4").read_bytes())
    metadata = {
        "reala.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakea.mp4": {"label": "FAKE", "split": "train", "original": "reala.mp4"},
        "realb.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakeb.mp4": {"label": "FAKE", "split": "train", "original": "realb.mp4"},
        "noface.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakenoface.mp4": {"label": "FAKE", "split": "train", "original": "noface.mp4"},
        "zero.mp4": {"label": "REAL", "split": "train", "original": None},
        "truncated.mp4": {"label": "REAL", "split": "train", "original": None},
        "notvideo.mp4": {"label": "FAKE", "split": "train", "original": "reala.mp4"},
        "missing.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakemissing.mp4": {"label": "FAKE", "split": "train", "original": "missing.mp4"},
        "orphan.mp4": {"label": "FAKE", "split": "train", "original": "ghost.mp4"},
        "../escape.mp4": {"label": "REAL", "split": "train", "original": None},
        "badlabel.mp4": {"label": "MAYBE", "split": "train", "original": None},
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@pytest.fixture(scope="session")
def hostile_part(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hostile_part(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def processed(hostile_part: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run every preprocessing stage once on the hostile part."""
    out = tmp_path_factory.mktemp("processed")
    params = tiny_params(hostile_part.parent)
    part = hostile_part.name
    reports = out / "reports"
    result = {"out": out, "part": part}
    result["bboxes"] = bboxes.run(
        hostile_part, out / "bboxes" / part, reports / "bboxes.json", bboxes.BboxesConfig.from_params(params)
    )
    result["crops"] = crops.run(
        hostile_part,
        out / "bboxes" / part,
        out / "crops" / part,
        reports / "crops.json",
        crops.CropsConfig.from_params(params),
    )
    result["landmarks"] = landmarks.run(
        out / "crops",
        part,
        out / "landmarks" / part,
        reports / "landmarks.json",
        landmarks.LandmarksConfig.from_params(params),
    )
    result["diffs"] = diffs.run(
        out / "crops",
        part,
        out / "diffs" / part,
        out / "masks" / part,
        reports / "diffs.json",
        diffs.DiffsConfig.from_params(params),
    )
    result["folds"] = folds.run(
        out / "crops",
        out / "landmarks",
        out / "diffs",
        out / "masks",
        [part],
        out / "folds.csv",
        reports / "folds.json",
        FoldsConfig.from_params(params),
    )
    return result


@pytest.fixture(scope="session")
def trained(processed: dict, hostile_part: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of every model and ensemble seed; reala trains, realb validates and is the holdout."""
    root = tmp_path_factory.mktemp("evaluate")
    out = processed["out"]
    table = pd.read_csv(out / "folds.csv", keep_default_na=False)
    table["fold"] = table["original"].map({"reala.mp4": 2, "realb.mp4": 1})
    table = pd.concat([table, table[table["fold"] == 1].assign(fold=0)])  # realb doubles as the holdout
    folds_csv = root / "folds.csv"
    table.to_csv(folds_csv, index=False)
    roots = DataRoots(out / "crops", out / "landmarks", out / "masks")
    params = tiny_params(hostile_part.parent)
    params["train"]["epochs"] = 1
    params["evaluate"] = {
        "aggregation": "confident",
        "batch_size": 8,
        "device": "cpu",
        "confident": {"threshold": 0.8, "min_fakes": 11},
    }
    for member in evaluate.ensemble_members(params, root / "models"):
        seed = None if member.name == member.model else int(member.name.rsplit("-", 1)[1])
        config = replace(TrainConfig.from_params(params, member.model, seed), batch_size=8)
        fit(config, folds_csv, roots, member.checkpoint.parent)
    return {"root": root, "params": params, "folds": folds_csv, "roots": roots}


@pytest.fixture(scope="session")
def models_root(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A models/ folder as the pipeline lays it out: train/, onnx/, int8/ (one classifier, one U-YNet)."""
    root = tmp_path_factory.mktemp("predict") / "models"
    shutil.copytree(trained["root"] / "models", root / "train")
    params = copy.deepcopy(trained["params"])
    params["ensemble"]["seeds"] = []
    params["quantize"] = {"config": "XINT8", "calib_crops": 8, "seed": 1, "batch_size": 8}
    export.run(params, trained["folds"], trained["roots"], root / "train", root / "onnx", root / "e.json")
    quantize.run(params, trained["folds"], trained["roots"], root / "onnx", root / "int8", root / "q.json")
    return {"root": root, "params": params}
