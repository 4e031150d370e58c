"""The face-input contract (deepfake.media.face_input): crop, fit, normalise, score, and its manifest."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfake.core.errors import InputError
from deepfake.media.face_input import (
    FaceInput,
    crop_face,
    expand_box,
    fit_transform,
    normalize_batch,
    normalize_image,
    probabilities,
    to_picture,
)
from deepfake.modeling.data import CropDataset, DataRoots

MARGIN = 1 / 3  # DFDC-1st's crop margin
# ImageNet's per-channel RGB mean and std on [0, 1] pixels, as published with torchvision's pretrained models
PUBLISHED_IMAGENET_MEAN = (0.485, 0.456, 0.406)
PUBLISHED_IMAGENET_STD = (0.229, 0.224, 0.225)


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ---- step 1: crop ----------------------------------------------------------------------------------


def test_expand_box_adds_margin_and_clips() -> None:
    assert expand_box([30, 30, 60, 90], 1 / 3, 200, 200) == (20, 10, 70, 110)
    assert expand_box([0, 0, 30, 30], 0.5, 40, 40) == (0, 0, 40, 40)
    assert expand_box([30, 30, 60, 90], 0, 200, 200) == (30, 30, 60, 90)
    assert expand_box([10.4, 10.6, 20.2, 20.9], 0, 40, 40) == (10, 10, 21, 21)  # outward to whole pixels
    assert expand_box([30, 30, 60, 90, 0.99], 1 / 3, 200, 200) == (20, 10, 70, 110)  # a score column is ignored


@pytest.mark.parametrize(
    "box",
    [
        [-50, -50, -10, -10],  # wholly left of and above the frame
        [50, 50, 90, 90],  # wholly right of and below it
        [10, 10, 5, 20],  # x2 < x1
        [10, 10, 20, 10],  # empty height
        [float("nan"), 0, 1, 1],
        [0, 0, float("inf"), 1],
    ],
)
def test_expand_box_refuses_boxes_outside_the_frame_or_malformed(box: list[float]) -> None:
    assert expand_box(box, 0.1, 40, 40) is None


def test_expand_box_refuses_a_sliver_under_two_pixels() -> None:
    assert expand_box([39.5, 0, 60, 10], 0, 40, 40) is None  # 1 px wide once clipped to the frame
    assert expand_box([38.5, 0, 60, 10], 0, 40, 40) == (38, 0, 40, 10)


def test_crop_face_cuts_the_margin_box_and_is_none_outside_the_frame() -> None:
    frame = _noise(120, 160)
    face = crop_face(frame, [40, 30, 100, 90], MARGIN)
    assert face is not None and face.shape == (100, 100, 3)
    assert np.array_equal(face, frame[10:110, 20:120]) and np.shares_memory(face, frame)  # a view, not a copy
    low = crop_face(frame, [40, 80, 100, 115], MARGIN)  # the margin runs past the bottom edge: clipped
    assert low is not None and np.array_equal(low, frame[68:120, 20:120])
    assert crop_face(frame, [200, 200, 260, 260], MARGIN) is None
    assert crop_face(frame, [-80, -80, -20, -20], MARGIN) is None
    assert crop_face(frame, [50, 50, 40, 60], MARGIN) is None


# ---- steps 2 and 3: fit and normalise, the same for training data and every consumer --------------


@pytest.mark.parametrize(("height", "width"), [(50, 37), (37, 50), (64, 64), (200, 90)])
def test_the_prepared_batch_equals_the_training_datasets_eval_path(tmp_path: Path, height: int, width: int) -> None:
    """The contract's point: a crop scored by predict/export/backends is the tensor evaluation saw."""
    frame = _noise(240, 320, seed=height * width)
    rgb = crop_face(frame, [100, 60, 100 + width * 0.6, 60 + height * 0.6], MARGIN)
    assert rgb is not None
    cv2.imwrite(str(tmp_path / "crop.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))  # the crops stage writes PNGs
    rows = pd.DataFrame({"video": ["v.mp4"], "file": ["crop.png"], "label": ["REAL"], "mask": [""], "landmarks": [""]})
    dataset = CropDataset(rows, DataRoots(tmp_path, tmp_path, tmp_path), 64)  # no augment: evaluation's path
    expected = dataset[0]["image"].numpy()
    spec = FaceInput(64, MARGIN)
    batch = normalize_batch([spec.fit(rgb)])  # predict's path: fit each crop, then normalise the batch
    assert batch.shape == (1, 3, 64, 64) and batch.dtype == np.float32 and batch.flags.c_contiguous
    assert np.array_equal(batch[0], expected)
    assert np.array_equal(normalize_image(fit_transform(64)(image=rgb)["image"]), expected)


def test_fit_resizes_the_longer_side_and_pads_centred_with_zeros() -> None:
    crop = np.full((40, 20, 3), 200, np.uint8)
    fitted = FaceInput(32, MARGIN).fit(crop)
    assert fitted.shape == (32, 32, 3) and fitted.dtype == np.uint8
    assert (fitted[:, 8:24] == 200).all()  # 40x20 -> 32x16, centred
    assert not fitted[:, :8].any() and not fitted[:, 24:].any()
    assert not np.shares_memory(FaceInput(40, MARGIN).fit(np.zeros((40, 40, 3), np.uint8)), crop)


def test_normalisation_is_imagenet_on_rgb_and_round_trips_to_the_picture() -> None:
    rgb = _noise(32, 48, seed=3)
    normal = normalize_image(rgb)
    assert normal.shape == (3, 32, 48) and normal.dtype == np.float32
    mean, std = np.array(PUBLISHED_IMAGENET_MEAN) * 255, np.array(PUBLISHED_IMAGENET_STD) * 255
    assert np.allclose(normal[:, 5, 7], (rgb[5, 7] - mean) / std, atol=1e-5)  # channel 0 is red
    picture = to_picture(normal)
    assert picture.shape == (32, 48, 3) and picture.dtype == np.uint8
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    assert np.abs(picture.astype(int) - bgr.astype(int)).max() <= 1
    extremes = np.array([[[0, 255, 128]]], np.uint8)
    assert np.abs(to_picture(normalize_image(extremes)).astype(int) - extremes[..., ::-1]).max() <= 1


# ---- step 4: score -----------------------------------------------------------------------------------


def test_probabilities_are_the_float64_sigmoid_and_finite_at_extremes() -> None:
    logits = np.array([-30.0, -2.5, -1e-3, 0.0, 1e-3, 0.7, 4.0, 30.0], np.float32)
    probs = probabilities(logits)
    assert probs.dtype == np.float64
    reference = np.array([1.0 / (1.0 + math.exp(-float(x))) for x in logits])
    assert np.allclose(probs, reference, rtol=1e-12, atol=0)
    assert probabilities(0.0) == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning escapes either
        extremes = probabilities([-1000.0, 1000.0])
    assert np.isfinite(extremes).all() and extremes.tolist() == [0.0, 1.0]
    assert probabilities([[1.0], [2.0]]).shape == (2, 1)


# ---- the contract in a manifest ------------------------------------------------------------------------


def test_manifest_round_trip_and_another_preprocessing_refused() -> None:
    spec = FaceInput(96, MARGIN)
    entry = spec.manifest()
    assert entry["image_size"] == 96 and entry["margin"] == MARGIN
    assert entry["channels"] == "RGB" and entry["layout"] == "NCHW" and entry["dtype"] == "float32"
    assert entry["mean"] == [123.675, 116.28, 103.53]  # the published ImageNet mean x 255
    assert entry["std"] == [58.395, 57.12, 57.375]  # the published ImageNet std x 255
    assert FaceInput.from_manifest(entry) == spec
    assert FaceInput.from_manifest({**entry, "name": "image"}) == spec  # the store adds the input name
    with pytest.raises(InputError, match=r"m\.json: preprocessing \['mean'\] differs"):
        FaceInput.from_manifest({**entry, "mean": [0.0, 0.0, 0.0]}, "m.json")
    with pytest.raises(InputError, match=r"preprocessing \['channels', 'std'\]"):
        FaceInput.from_manifest({**entry, "channels": "BGR", "std": [1.0, 1.0, 1.0]})
    with pytest.raises(InputError, match="no valid input contract"):
        FaceInput.from_manifest({k: v for k, v in entry.items() if k != "margin"})
    with pytest.raises(InputError, match="no valid input contract"):
        FaceInput.from_manifest({**entry, "image_size": "big"})
    with pytest.raises(InputError, match="image_size must be at least 8"):
        FaceInput.from_manifest({**entry, "image_size": 4})


@pytest.mark.parametrize(
    ("image_size", "margin", "message"),
    [
        (64, -0.1, "margin"),
        (64, 2.5, "margin"),
        (64, float("nan"), "margin"),
        (4, MARGIN, "image_size"),
    ],
)
def test_face_input_refuses_bad_numbers(image_size: int, margin: float, message: str) -> None:
    with pytest.raises(InputError, match=message):
        FaceInput(image_size, margin)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    height=st.integers(1, 700),
    width=st.integers(1, 700),
    image_size=st.sampled_from([8, 64, 224, 299, 380]),
    seed=st.integers(0, 2**16),
)
def test_predicts_opencv_fit_equals_the_albumentations_transform_training_uses(
    height: int, width: int, image_size: int, seed: int
) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = fit_transform(image_size)(image=image)["image"]
    assert np.array_equal(FaceInput(image_size, 0.3).fit(image), expected)


def test_the_prediction_path_imports_neither_torch_nor_albumentations() -> None:
    # a first verdict must not pay for what it does not use: torch (about 3 s on 2 cores, pulled in by
    # albumentations too), pandas, scipy; structure, not timing (the figures are in docs/benchmarks.md)
    script = (
        "import sys\n"
        "import deepfake.cli, deepfake.apps.predict, deepfake.backends.onnx_backend, deepfake.media.faces\n"
        "from deepfake.media.face_input import FaceInput\n"
        "import numpy as np\n"
        "FaceInput(64, 0.3).fit(np.zeros((50, 40, 3), np.uint8))\n"
        "print(sorted(m for m in ('torch', 'albumentations', 'pandas', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
