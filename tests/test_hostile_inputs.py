"""Hostile videos: headers that lie about size and length, every bad input through `deepfake predict`, and
the memory predict holds while it streams frames."""

from __future__ import annotations

import copy
import json
import shutil
import struct
import subprocess
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from deepfake.apps import predict as infer
from deepfake.backends.base import create_backend
from deepfake.core.parallel import cached
from deepfake.media.faces import FaceDetector
from deepfake.media.video import FrameSampling, SpanReader, SpanSampling, VideoError, iter_sampled_frames, probe
from deepfake.stages import bboxes, crops
from tests.conftest import as_params, face_frames, ingest_part, set_key, tamper, tiny_params

LIE = 2**31 - 1  # what a hostile header claims as its frame count
GIANT = 16000  # pixels per side a hostile header claims: 256 Mpx, over 1 GB per decoded BGR frame


def write_giant(path: Path) -> Path:
    """A YUV4MPEG stream whose header claims 16000x16000 frames but holds 1 kB (named .mp4 like DFDC files)."""
    path.write_bytes(f"YUV4MPEG2 W{GIANT} H{GIANT} F30:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + b"\x80" * 1000)
    return path


def write_endless(path: Path, frames: list[np.ndarray]) -> Path:
    """A real MJPEG AVI whose header claims 2**31 - 1 frames (avih dwTotalFrames and strh dwLength)."""
    scratch = path.with_suffix(".avi")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(scratch), cv2.VideoWriter_fourcc(*"MJPG"), 15, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    data = bytearray(scratch.read_bytes())
    scratch.unlink()
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8 + 16, LIE)  # MainAVIHeader.dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, LIE)  # AVIStreamHeader.dwLength
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def lying_part(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lying") / "dfdc_train_part_0"
    folder.mkdir()
    real = face_frames("grace_hopper.jpg")
    write_giant(folder / "giant.mp4")
    write_endless(folder / "endless.mp4", real)
    write_endless(folder / "fakeendless.mp4", tamper(real))
    metadata = {
        "giant.mp4": {"label": "REAL", "split": "train", "original": None},
        "endless.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakeendless.mp4": {"label": "FAKE", "split": "train", "original": "endless.mp4"},
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def test_the_hostile_headers_really_lie(lying_part: Path) -> None:
    giant, endless = probe(lying_part / "giant.mp4"), probe(lying_part / "endless.mp4")
    assert (giant.width, giant.height) == (GIANT, GIANT)
    assert endless.frame_count == LIE and (endless.width, endless.height) == (320, 180)


def test_a_giant_header_is_refused_before_any_frame_is_decoded(lying_part: Path) -> None:
    sampling = FrameSampling(stride=1, max_frames=10, max_pixels=4096 * 2160)
    with pytest.raises(VideoError, match="exceed max_pixels"):
        next(iter_sampled_frames(lying_part / "giant.mp4", sampling))


def test_an_endless_header_reads_the_real_frames_and_stops(lying_part: Path) -> None:
    sampling = FrameSampling(stride=4, max_frames=1200, max_pixels=4096 * 2160)
    assert [i for i, _ in iter_sampled_frames(lying_part / "endless.mp4", sampling)] == [0, 4, 8, 12]


def test_span_reading_refuses_the_giant_and_spreads_over_the_endless_real_frames(lying_part: Path) -> None:
    sampling = SpanSampling(frames=8, max_decoded=200, max_pixels=4096 * 2160)
    with pytest.raises(VideoError, match="exceed max_pixels"):
        next(iter(SpanReader(lying_part / "giant.mp4", sampling)))
    reader = SpanReader(lying_part / "endless.mp4", sampling)
    frames = list(reader)
    header = probe(lying_part / "endless.mp4")
    # the header claims 2^31 - 1 frames; the stream's last packet says what it holds, and that is sampled
    assert reader.coverage["duration_s"] < 60 < LIE / header.fps
    assert f"where its header claims {LIE / header.fps:.3f}s" in reader.coverage["note"]
    assert reader.coverage["frames_decoded"] <= 200
    indices = [f.index for f in frames]
    assert indices[0] == 0 and indices == sorted(set(indices)) and len(indices) == 8  # spread over the real frames


def test_stages_skip_the_giant_and_process_the_endless(lying_part: Path, tmp_path: Path) -> None:
    params = as_params(tiny_params(lying_part.parent))
    index = ingest_part(lying_part, tmp_path / "index")
    paths = {"dataset": lying_part.name, "index": index, "root": lying_part}
    report = bboxes.run(
        bboxes.Config.from_params(params), bboxes.Paths(**paths, out=tmp_path / "bboxes", report=tmp_path / "b.json")
    )
    reasons = {s["video"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"giant.mp4"} and "max_pixels" in reasons["giant.mp4"]
    boxes = json.loads((tmp_path / "bboxes" / "endless.json").read_text())
    assert sorted(int(k) for k in boxes["frames"]) == [0, 4, 8, 12]
    report = crops.run(
        crops.Config.from_params(params),
        crops.Paths(**paths, boxes=tmp_path / "bboxes", out=tmp_path / "crops", report=tmp_path / "c.json"),
    )
    index = pd.read_csv(tmp_path / "crops" / "index.csv")
    assert set(index["video"]) == {"endless.mp4", "fakeendless.mp4"}
    assert {s["video"] for s in report["skipped"]} <= {"giant.mp4"}


def test_predict_gives_every_bad_input_a_status_and_loses_nothing(
    models_root: dict, hostile_part: Path, lying_part: Path, tmp_path: Path
) -> None:
    """Every video of the hostile part (the foundation's bad inputs) and the lying headers, in one batch."""
    folder = tmp_path / "in"
    folder.mkdir()
    videos = sorted(p for p in [*hostile_part.glob("*.mp4"), *lying_part.glob("*.mp4")] if p.is_file())
    for video in videos:
        shutil.copy(video, folder / video.name)
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    out = infer.Outputs(tmp_path / "p.csv", tmp_path / "p.json", tmp_path / "p.jsonl")
    summary = infer.predict_videos([folder], backend, config, out)
    records = {v["filename"]: v for v in json.loads((tmp_path / "p.json").read_text())["videos"]}
    assert sorted(records) == sorted(v.name for v in videos) and summary["videos"] == len(videos)
    status = {name: record["status"] for name, record in records.items()}
    for name in ("zero.mp4", "truncated.mp4", "notvideo.mp4", "giant.mp4"):
        assert status[name].startswith("unreadable"), (name, status[name])
    assert "empty" in status["zero.mp4"] and "max_pixels" in status["giant.mp4"]
    for name in ("noface.mp4", "fakenoface.mp4"):
        assert status[name].startswith("no_face"), (name, status[name])
    for name in ("reala.mp4", "fakea.mp4", "realb.mp4", "fakeb.mp4", "fakemissing.mp4", "endless.mp4"):
        assert status[name] == "ok", (name, status[name])
        assert 0.0 <= records[name]["probability"] <= 1.0
    for record in records.values():  # unscored means null, never a silent default
        assert (record["probability"] is None) == (record["verdict"] is None) == (record["status"] != "ok")
    csv = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert sorted(csv["filename"]) == sorted(records) and csv["label"].between(0, 1).all()
    unscored = csv["status"] != "ok"
    assert (csv.loc[unscored, "verdict"] == "").all()  # the CSV's 0.5 is never made into a verdict


def test_predict_holds_one_detector_batch_of_frames_at_a_time(
    models_root: dict, hostile_part: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming, checked structurally: when the detector runs, earlier batches' frames are already freed."""
    raw = copy.deepcopy(models_root["raw"])
    set_key(raw, "predict.frames", 12)
    set_key(raw, "predict.detect_every", 1)
    set_key(raw, "predict_detector.batch_size", 4)
    params = as_params(raw)
    config = infer.PredictConfig.from_params(params)
    backend = create_backend("onnx", models_root["store"], params)
    detector = cached(("mtcnn", config.detection.detector), lambda: FaceDetector(config.detection.detector))
    seen: list[weakref.ref] = []
    alive_at_detect: list[int] = []
    real_detect = detector.detect

    def counting_detect(frames: list[np.ndarray], scale: float = 1.0) -> list[np.ndarray]:
        seen.extend(weakref.ref(frame) for frame in frames)
        alive_at_detect.append(sum(ref() is not None for ref in seen))
        return real_detect(frames, scale)

    monkeypatch.setattr(detector, "detect", counting_detect)
    prepared = infer.prepare_video(hostile_part / "reala.mp4", config, backend.face_input)
    record = prepared.record
    assert record["status"] == "ok" and len(record["frames"]) == 12 and len(seen) == 12
    assert len(alive_at_detect) == 3
    # the batch being detected (4 frames) and at most the next batch's first frame, decoded as look-ahead
    assert max(alive_at_detect) <= 4 + 1
    assert len(prepared.crops) >= 12


PEAK_RSS = """
import json, resource, sys
from pathlib import Path
from deepfake.apps import predict as infer
from deepfake.backends.base import create_backend
from deepfake.core.params import validate_params
from deepfake.modeling.store import ModelStore
raw, models, out = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
videos = [Path(v) for v in sys.argv[4:]]
params = validate_params(raw, "peak_rss_mb")
backend, config = create_backend("onnx", ModelStore(models), params), infer.PredictConfig.from_params(params)
out = infer.Outputs(out / "m.csv", out / "m.json", out / "m.jsonl")
infer.predict_videos(videos, backend, config, out)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def peak_rss_mb(params: dict, models: Path, out: Path, videos: list[Path]) -> int:
    """Peak RSS of a fresh process that scores ``videos`` (its outputs in ``out``); ``params`` is the raw
    params dict (JSON-able)."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, json.dumps(params), str(models), str(out), *map(str, videos)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_lying_headers_do_not_raise_peak_memory(
    models_root: dict, hostile_part: Path, lying_part: Path, tmp_path: Path
) -> None:
    """Decoding one giant frame would take over 1 GB; the refusal keeps predict's peak where a normal video puts it."""
    params, models = models_root["raw"], models_root["root"]
    runs = ([hostile_part / "reala.mp4"], [hostile_part / "reala.mp4", *sorted(lying_part.glob("*.mp4"))])
    # two fresh processes, each measuring its own peak, so they may run side by side
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        baseline, hostile = pool.map(lambda k: peak_rss_mb(params, models, tmp_path / str(k), runs[k]), range(2))
    assert hostile - baseline < 200, (baseline, hostile)
