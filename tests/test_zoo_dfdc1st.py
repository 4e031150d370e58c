"""The DFDC winner's layout and inference (deepfake.zoo.dfdc1st): checkpoint reading, the confident strategy,
and parity with the winner's own code (docs/zoo/dfdc1st-reference-b0.json, made by scripts/dfdc1st_reference.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from deepfake.core.errors import CheckpointError
from deepfake.core.params import load_params
from deepfake.modeling.io_names import LOGIT
from deepfake.modeling.models import create_model
from deepfake.zoo import dfdc1st
from tests.conftest import PARAMS_YAML, ROOT

SMALL = "tf_efficientnet_b0"
REFERENCE = ROOT / "docs" / "zoo" / "dfdc1st-reference-b0.json"
TOLERANCE = 1e-4


def project_model(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = create_model("classifier", encoder=SMALL, dropout=0.0, input_filter="none")
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dfdc1st") / "final_1_DeepFakeClassifier_tf_efficientnet_b0_0"
    dfdc1st.write_checkpoint(path, SMALL, seed=1)
    return path


# ----------------------------------------------------------------------------- checkpoints


def test_round_trip_loads_strictly_into_the_project_classifier(small_file: Path) -> None:
    state, meta = dfdc1st.read_checkpoint(small_file)
    assert meta == {"epoch": 2, "bce_best": pytest.approx(0.101)}
    assert isinstance(meta["bce_best"], float)
    assert not dfdc1st.DROPPED_KEYS & set(state)
    model = project_model(state)
    with torch.serialization.safe_globals(list(dfdc1st.ALLOWED_GLOBALS)):
        raw = torch.load(small_file, weights_only=True)
    assert set(raw["state_dict"]) == {f"module.{k}" for k in state} | {f"module.{k}" for k in dfdc1st.DROPPED_KEYS}
    assert isinstance(raw["bce_best"], np.float64)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, raw["state_dict"][f"module.{name}"]), name


def test_file_is_the_publishers_layout_and_seeded(small_file: Path, tmp_path: Path) -> None:
    data = small_file.read_bytes()
    assert not data.startswith(b"PK")  # the legacy (non-zip) torch.save format
    assert b"cnumpy.core.multiarray\nscalar\n" in data and b"numpy._core" not in data
    first = dfdc1st.read_checkpoint(small_file)[0]
    dfdc1st.write_checkpoint(tmp_path / "again", SMALL, seed=1)
    again = dfdc1st.read_checkpoint(tmp_path / "again")[0]
    assert all(torch.equal(first[k], again[k]) for k in first)  # the bytes differ: storages are named by address
    dfdc1st.write_checkpoint(tmp_path / "other", SMALL, seed=2)
    other = dfdc1st.read_checkpoint(tmp_path / "other")[0]
    assert not torch.equal(first["fc.weight"], other["fc.weight"])


def test_a_numpy2_file_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "numpy2"
    dfdc1st.write_checkpoint(path, SMALL, seed=3, numpy1_names=False)
    assert b"numpy._core.multiarray" in path.read_bytes()
    state, meta = dfdc1st.read_checkpoint(path)
    assert meta["epoch"] == 4
    project_model(state)
    zipped = tmp_path / "zipped"  # the current torch.save format, as the publisher's newer torch writes it
    head = {"module.fc.weight": torch.ones(1, 2), "module.fc.bias": torch.zeros(1)}
    torch.save({"epoch": 1, "bce_best": np.float64(0.2), "state_dict": head}, zipped)
    assert dfdc1st.read_checkpoint(zipped)[1] == {"epoch": 1, "bce_best": 0.2}


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for zipped in (False, True):
        path = tmp_path / f"payload-{zipped}"
        torch.save(
            {"epoch": 1, "bce_best": _Payload(marker), "state_dict": {}}, path, _use_new_zipfile_serialization=zipped
        )
        with pytest.raises(CheckpointError, match="refused to load"):
            dfdc1st.read_checkpoint(path)
    raw = io.BytesIO()
    pickle.dump(_Payload(marker), raw, protocol=2)
    (tmp_path / "plain").write_bytes(raw.getvalue())
    with pytest.raises(CheckpointError):
        dfdc1st.read_checkpoint(tmp_path / "plain")
    assert not marker.exists()


def _save(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"epoch": 1, "bce_best": np.float64(0.3), "state_dict": state}, path)
    return path


def test_unexpected_or_missing_keys_are_refused(tmp_path: Path) -> None:
    head = {"module.fc.weight": torch.ones(1, 4), "module.fc.bias": torch.zeros(1)}
    with pytest.raises(CheckpointError, match=r"outside the DFDC-1st layout: \['avg_pool\.weight'\]"):
        dfdc1st.read_checkpoint(_save(tmp_path / "a", {**head, "module.avg_pool.weight": torch.ones(1)}))
    with pytest.raises(CheckpointError, match="missing"):
        dfdc1st.read_checkpoint(_save(tmp_path / "b", {"module.encoder.conv_stem.weight": torch.ones(1)}))
    with pytest.raises(CheckpointError, match="not found"):
        dfdc1st.read_checkpoint(tmp_path / "absent")
    torch.save({"state_dict": head}, tmp_path / "c")
    with pytest.raises(CheckpointError, match="epoch"):
        dfdc1st.read_checkpoint(tmp_path / "c")
    state, _ = dfdc1st.read_checkpoint(
        _save(tmp_path / "d", {**head, "module.encoder.classifier.weight": torch.ones(1)})
    )
    assert set(state) == {"fc.weight", "fc.bias"}


def test_an_extra_encoder_key_fails_the_strict_load(small_file: Path) -> None:
    state, _ = dfdc1st.read_checkpoint(small_file)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        project_model({**state, "encoder.extra": torch.ones(1)})


# ----------------------------------------------------------------------------- inference pieces

# params' zoo.dfdc1st (the publisher's numbers: test_params_hold_the_publishers_numbers) at the reference's 380 px
CONFIG = dfdc1st.Dfdc1stConfig.from_params(load_params(PARAMS_YAML).zoo.dfdc1st, 380)


def test_params_hold_the_publishers_numbers() -> None:
    """predict_folder.py: 32 frames at 380 px; kernel_utils.py: MTCNN thresholds, the halving, a third of the
    box, the 4 x 32 batch (one slot unused), confident_strategy's numbers."""
    assert (
        dfdc1st.Dfdc1stConfig(
            frames=32,
            thresholds=(0.7, 0.8, 0.8),
            downscale=2,
            margin_divisor=3,
            image_size=380,
            max_faces=4 * 32 - 1,
            confident_threshold=0.8,
            confident_min_count=11,
            confident_fraction_divisor=2.5,
            real_threshold=0.2,
            real_fraction=0.9,
        )
        == CONFIG
    )


@pytest.mark.parametrize(
    ("probs", "expected"),
    [
        ([0.9] * 12 + [0.5] * 18, 0.66),  # 12 confident fakes, not > 30 // 2.5 = 12: the mean of all
        ([0.9] * 13 + [0.5] * 17, 0.9),  # 13 > 12 and > 11: the mean of the confident fakes
        ([0.95] * 12, 0.95),  # 12 > 12 // 2.5 = 4 and > 11
        ([0.95] * 11, 0.95),  # 11 is not > 11; but not real either: the mean of all (0.95)
        ([0.1] * 19 + [0.6], 0.1),  # 19 > 0.9 * 20 = 18 confident reals: their mean
        ([0.1] * 18 + [0.6] * 2, (0.1 * 18 + 1.2) / 20),  # 18 is not > 18: the mean of all
        ([0.5], 0.5),
    ],
)
def test_confident_strategy(probs: list[float], expected: float) -> None:
    assert dfdc1st.confident_strategy(probs, CONFIG) == pytest.approx(expected)


def test_confident_strategy_numbers_come_from_the_config() -> None:
    probs = [0.7] * 5 + [0.3] * 5
    assert dfdc1st.confident_strategy(probs, CONFIG) == pytest.approx(0.5)
    loose = dfdc1st.Dfdc1stConfig(**{**CONFIG.__dict__, "confident_threshold": 0.6, "confident_min_count": 3})
    assert dfdc1st.confident_strategy(probs, loose) == pytest.approx(0.7)


def test_resize_and_pad_follow_the_publisher() -> None:
    wide = np.full((30, 60, 3), 200, np.uint8)
    square = dfdc1st.pad_to_square(dfdc1st.isotropic_resize(wide, 40), 40)
    assert square.shape == (40, 40, 3)
    assert (square[:10] == 0).all() and (square[10:30] == 200).all() and (square[30:] == 0).all()
    tall = dfdc1st.isotropic_resize(np.zeros((33, 10, 3), np.uint8), 100)  # up: 10 * 100 / 33 -> 30
    assert tall.shape == (100, 30, 3)
    batch = dfdc1st.model_inputs([wide], dfdc1st.Dfdc1stConfig(**{**CONFIG.__dict__, "image_size": 40}))
    assert batch.shape == (1, 3, 40, 40) and batch.dtype == np.float32
    assert batch[0, 0, 0, 0] == pytest.approx((0 - 0.485) / 0.229)


def test_frame_indices_and_a_failed_video(tmp_path: Path) -> None:
    assert dfdc1st.frame_indices(64, 32)[:4] == [0, 2, 4, 6] and dfdc1st.frame_indices(64, 32)[-1] == 63
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    record = dfdc1st.predict_video(broken, lambda x: {"m": np.zeros(len(x))}, None, CONFIG)
    assert record["status"] == "unreadable" and record["probability"] is None


# ----------------------------------------------------------------------------- parity with the winner's code


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return json.loads(REFERENCE.read_text())


# Three of the reference's videos, committed (tests/data/dfdc1st/README.md): the parity holds for the bytes the
# winner's code saw, whatever another machine's build of the sample would give
PARITY_VIDEOS = ROOT / "tests" / "data" / "dfdc1st"


@pytest.fixture(scope="module")
def sample_videos(reference: dict[str, Any]) -> dict[str, Path]:
    """The committed reference videos, checked against the hashes the reference recorded."""
    videos = {p.name: p for p in sorted(PARITY_VIDEOS.glob("*.mp4"))}
    assert len(videos) >= 3, f"{PARITY_VIDEOS}: the parity clips are missing"
    for name, path in videos.items():
        assert _sha(path) == reference["videos"][name]["sha256"], f"{path}: not the bytes the reference scored"
    return videos


@pytest.mark.slow
def test_parity_with_the_winners_code(
    reference: dict[str, Any], sample_videos: dict[str, Path], tmp_path: Path
) -> None:
    """The pipeline with the project's classifier (torch, float32, NCHW, no package in between) gives the
    smallest clip the probability the winner's predict_folder.py gave it, within 1e-4. The other clips go
    the whole way (fetch, convert, deepfake predict on ONNX) in
    tests/test_zoo.py::test_fetch_convert_predict_gives_the_winners_probabilities."""
    path = tmp_path / "weights"
    dfdc1st.write_checkpoint(path, reference["encoder"], reference["seed"])
    model = project_model(dfdc1st.read_checkpoint(path)[0])

    def score(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {"winner": model(torch.from_numpy(batch))[LOGIT].squeeze(1).numpy()}

    detector = dfdc1st.build_detector(CONFIG)
    gaps = {}
    smallest = min(sample_videos, key=lambda name: sample_videos[name].stat().st_size)
    for name, video in {smallest: sample_videos[smallest]}.items():
        expected = reference["videos"][name]
        record = dfdc1st.predict_video(video, score, detector, CONFIG)
        if expected["their_error"]:
            continue  # their 0.5 fallback: nothing to compare
        assert record["status"] == "ok", (name, record)
        gaps[name] = abs(record["probability"] - expected["probability"])
    assert gaps and max(gaps.values()) <= TOLERANCE, gaps
