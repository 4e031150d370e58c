"""deepfake predict: backends agree, bad videos get explicit statuses, the CSV/JSON formats, clear failures."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import yaml

from deepfake.apps import predict as infer
from deepfake.backends import base
from deepfake.backends.base import create_backend
from deepfake.cli import main as cli_main
from deepfake.core.errors import InputError, ParamsError, ToolchainError
from deepfake.media.face_input import FaceInput
from deepfake.modeling.calibration import Calibration, Decision, OperatingPoint, VerdictRule
from tests.conftest import SIZE, as_params, face_frames, set_key, tiny_params, write_av, write_video


def outputs(folder: Path, name: str = "p") -> infer.Outputs:
    return infer.Outputs(folder / f"{name}.csv", folder / f"{name}.json", folder / f"{name}.jsonl")


def test_the_detector_runs_on_every_kth_sampled_frame_and_the_last() -> None:
    assert infer.detector_slots(7, 2) == [0, 2, 4, 6]
    assert infer.detector_slots(8, 3) == [0, 3, 6, 7]
    assert infer.detector_slots(1, 4) == [0]
    assert infer.detector_slots(0, 2) == []


def test_torch_onnx_and_int8_backends_score_alike(models_root: dict, hostile_part: Path, tmp_path: Path) -> None:
    params, store = models_root["params"], models_root["store"]
    config = infer.PredictConfig.from_params(params)
    results = {}
    for name in ("torch", "onnx", "onnx-int8"):
        backend = create_backend(name, store, params)
        assert backend.members == ["classifier", "uynet"]
        summary = infer.predict_videos(
            [hostile_part / "reala.mp4", hostile_part / "fakea.mp4"],
            backend,
            config,
            outputs(tmp_path, name),
        )
        assert summary["scored"] == 2 and summary["videos_per_s"] > 0
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())["videos"]
    for torch_video, onnx_video, int8_video in zip(
        results["torch"], results["onnx"], results["onnx-int8"], strict=True
    ):
        assert torch_video["status"] == "ok" and torch_video["crops"] >= 1
        assert abs(torch_video["probability"] - onnx_video["probability"]) < 1e-4
        assert abs(torch_video["probability"] - int8_video["probability"]) < 0.1  # int8 rounding, same model
        face = torch_video["frames"][0]["faces"][0]
        assert len(face["box"]) == 4 and set(face["scores"]) == {"classifier", "uynet"}
        assert set(torch_video["ms"]) == {"decode", "detect", "crop", "infer", "aggregate"}


def test_bad_videos_get_a_status_and_an_explicit_half(models_root: dict, hostile_part: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("zero.mp4", "notvideo.mp4", "noface.mp4", "reala.mp4"):
        shutil.copy(hostile_part / name, folder / name)
    (folder / "notes.txt").write_text("not a video, not listed")
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    summary = infer.predict_videos([folder], backend, config, outputs(tmp_path))
    assert summary["videos"] == 4 and summary["scored"] == 1
    statuses = {v["filename"]: v["status"] for v in json.loads((tmp_path / "p.json").read_text())["videos"]}
    assert statuses["zero.mp4"].startswith("unreadable") and "empty" in statuses["zero.mp4"]
    assert statuses["notvideo.mp4"].startswith("unreadable")
    assert statuses["noface.mp4"].startswith("no_face")
    assert statuses["reala.mp4"] == "ok"
    with (tmp_path / "p.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["filename"] for r in rows] == ["noface.mp4", "notvideo.mp4", "reala.mp4", "zero.mp4"]
    labels = {r["filename"]: float(r["label"]) for r in rows}
    assert labels["zero.mp4"] == labels["noface.mp4"] == 0.5
    assert 0.0 <= labels["reala.mp4"] <= 1.0 and np.isfinite(labels["reala.mp4"])


def test_absent_runtimes_fail_clearly(models_root: dict) -> None:
    params, store = models_root["params"], models_root["store"]
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(ToolchainError, match="tensorrt"):
            create_backend("tensorrt", store, params)
    if importlib.util.find_spec("vart") is None:
        with pytest.raises(ToolchainError, match="VART is not installed"):
            create_backend("vart", store, params)
    with pytest.raises(ParamsError, match="needs --url"):
        create_backend("triton", store, params)
    with pytest.raises(ToolchainError, match="no Triton server answers"):
        create_backend("triton", store, params, url="127.0.0.1:9")
    with pytest.raises(ParamsError, match="unknown backend"):
        create_backend("tpu", store, params)


def test_cli_names_the_missing_dvc_target(models_root: dict, hostile_part: Path, tmp_path: Path, caplog) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(models_root["raw"]))
    args = ["--params", str(params_file), "predict", str(hostile_part / "reala.mp4"), "--models", str(tmp_path)]
    assert cli_main([*args, "--csv", str(tmp_path / "a.csv"), "--json", str(tmp_path / "a.json"), "-q"]) == 2
    assert "dvc pull export" in caplog.text
    assert not (tmp_path / "a.csv").exists()
    ok = [*args[:-1], str(models_root["root"]), "--csv", str(tmp_path / "b.csv"), "--json", str(tmp_path / "b.json")]
    assert cli_main([*ok, "-q"]) == 0
    assert (tmp_path / "b.csv").read_text().startswith("filename,label,verdict,status,path\nreala.mp4,")
    with pytest.raises(SystemExit):
        cli_main([*args, "--backend", "gpu"])


def test_bench_predict_reports_stages_and_skips_absent_backends(
    models_root: dict, hostile_part: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from deepfake.apps.bench import run_predict_bench

    backends = ["onnx", "tensorrt"] if importlib.util.find_spec("tensorrt") is None else ["onnx"]
    results = run_predict_bench(models_root["params"], [hostile_part / "reala.mp4"], models_root["root"], backends)
    assert results["onnx"]["videos_per_s"] > 0
    assert set(results["onnx"]["ms_per_video"]) == {"decode", "detect", "crop", "infer", "aggregate"}
    printed = capsys.readouterr().out
    assert "videos/s" in printed
    if "tensorrt" in backends:
        assert "tensorrt" in results and "skipped" in results["tensorrt"]
        assert "tensorrt   skipped" in printed


def test_the_cli_offers_exactly_the_backends_create_backend_builds() -> None:
    """The CLI lists the registry itself (no second copy that could drift), in every command that takes one."""
    from deepfake import cli

    assert cli.BACKENDS is base.BACKENDS and tuple(base.REGISTRY) == base.BACKENDS
    commands = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    choices = {
        name: next(a for a in commands[name]._actions if a.dest == "backend").choices
        for name in ("predict", "bench-predict", "explain")
    }
    assert tuple(choices["predict"]) == tuple(choices["bench-predict"]) == base.BACKENDS
    assert tuple(choices["explain"]) == base.EXPLAIN_BACKENDS
    assert set(base.EXPLAIN_BACKENDS) <= set(base.BACKENDS)


# ---- predict validates params exactly as the stages do, before any model or video is read --------------


@pytest.fixture
def nothing_may_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the model store, building a backend or reading a video fails the test outright."""

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model or video was read before params were validated")

    monkeypatch.setattr("deepfake.modeling.store.ModelStore.__init__", forbidden)
    monkeypatch.setattr("deepfake.backends.base.create_backend", forbidden)
    monkeypatch.setattr("deepfake.apps.predict.collect_videos", forbidden)
    monkeypatch.setattr("deepfake.apps.predict.list_inputs", forbidden)
    monkeypatch.setattr("deepfake.apps.predict.SpanReader", forbidden)


def the_error_line(caplog: pytest.LogCaptureFixture) -> str:
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    return line


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("crops.margin", -0.1, "greater than or equal to 0"),
        ("video.max_frames", 0, "greater than or equal to 1"),
        ("predict.frames", 0, "greater than or equal to 1"),
    ],
)
def test_predict_refuses_bad_params_before_reading_anything(
    key: str,
    value: object,
    problem: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    nothing_may_be_read: None,
) -> None:
    raw = tiny_params(tmp_path / "raw")
    set_key(raw, key, value)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    out = ["--csv", str(tmp_path / "p.csv"), "--json", str(tmp_path / "p.json"), "-q"]
    videos, models = [str(tmp_path / "missing.mp4")], ["--models", str(tmp_path / "no-models")]
    assert cli_main(["--params", str(params_file), "predict", *videos, *models, *out]) == 2
    line = the_error_line(caplog)
    assert line.startswith("error: ParamsError: ") and f"{key}: " in line and problem in line, line
    assert str(params_file) in line
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.json").exists()


def test_explain_refuses_a_typo_naming_the_key_it_meant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, nothing_may_be_read: None
) -> None:
    raw = tiny_params(tmp_path / "raw")
    raw["bboxes"]["thresholdz"] = raw["bboxes"].pop("thresholds")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    args = ["--params", str(params_file), "explain", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "x")]
    assert cli_main([*args, "--models", str(tmp_path / "no-models")]) == 2
    line = the_error_line(caplog)
    assert line.startswith("error: ParamsError: ") and "bboxes.thresholdz" in line, line
    assert "did you mean thresholds" in line
    assert not (tmp_path / "x").exists()


# ---- the streaming engine: every failure is one video's status, outputs stream, resume, tracks ------------


def read_outputs(out: infer.Outputs) -> tuple[list[dict], list[dict], list[dict]]:
    with out.csv.open(encoding="utf-8", errors="surrogateescape") as handle:
        rows = list(csv.DictReader(handle))
    videos = json.loads(out.json.read_text(encoding="utf-8", errors="surrogateescape"))["videos"]
    lines = [json.loads(line) for line in out.jsonl.read_text(encoding="utf-8", errors="surrogateescape").splitlines()]
    return rows, videos, lines


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_every_entry_of_a_folder_is_accounted_for(models_root: dict, hostile_part: Path, tmp_path: Path) -> None:
    """A link that leads nowhere, a named pipe and a folder named like videos get a record saying why (the
    pipe never opened: it would block); other entries are listed as skipped, with the reason."""
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(hostile_part / "reala.mp4", folder / "good.mp4")
    (folder / "broken.mp4").symlink_to(tmp_path / "moved-away.mp4")
    os.mkfifo(folder / "pipe.mp4")
    (folder / "clips.mp4").mkdir()
    (folder / "notes.txt").write_text("not a video")
    (folder / "more").mkdir()
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    out = outputs(tmp_path)
    summary = infer.predict_videos([folder], backend, config, out)
    rows, videos, lines = read_outputs(out)
    status = {Path(v["path"]).name: v["status"] for v in videos}
    assert status["good.mp4"] == "ok"
    assert status["broken.mp4"].startswith("unreadable: a link that leads nowhere")
    assert status["pipe.mp4"].startswith("unreadable: not a regular file")
    assert status["clips.mp4"].startswith("unreadable: a folder named like a video")
    assert len(rows) == len(videos) == len(lines) == 4
    assert summary["skipped"] == {
        str(folder / "more"): "a folder (not searched)",
        str(folder / "notes.txt"): "not a video file (suffix '.txt')",
    }
    assert summary["not_scored"].keys() == {str(folder / n) for n in ("broken.mp4", "pipe.mp4", "clips.mp4")}


def test_every_per_video_failure_is_that_videos_status_and_the_batch_goes_on(
    models_root: dict, hostile_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiny frames, a non-UTF-8 name, two folders' same.mp4, an undecodable file and a bug in one video:
    every video gets a record, the good ones are scored, and the CSV, JSON and JSON Lines agree."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shutil.copy(hostile_part / "reala.mp4", first / "same.mp4")
    shutil.copy(hostile_part / "fakea.mp4", second / "same.mp4")
    odd_name = first / os.fsdecode(b"caf\xe9.mp4")  # not valid UTF-8: OpenCV died on it with SIGSEGV
    shutil.copy(hostile_part / "realb.mp4", odd_name)
    write_av(first / "tiny2.mp4", [np.full((2, 2, 3), 128, np.uint8)] * 4)
    write_av(first / "tiny8.mp4", [np.full((8, 8, 3), 128, np.uint8)] * 4)
    shutil.copy(hostile_part / "notvideo.mp4", first / "notvideo.mp4")
    shutil.copy(hostile_part / "fakeb.mp4", first / "buggy.mp4")
    real_prepare = infer.prepare_video

    def prepare(path: Path, *args: object) -> infer.PreparedVideo:
        if path.name == "buggy.mp4":
            raise ValueError("a bug in one video")
        return real_prepare(path, *args)

    monkeypatch.setattr(infer, "prepare_video", prepare)
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    out = outputs(tmp_path)
    summary = infer.predict_videos([first, second], backend, config, out)
    rows, videos, lines = read_outputs(out)
    status = {v["path"]: v["status"] for v in videos}
    assert status[str(first / "same.mp4")] == status[str(second / "same.mp4")] == "ok"
    assert status[infer.path_text(odd_name)] == "ok" and infer.path_text(odd_name).endswith("caf\\xe9.mp4")
    assert status[str(first / "tiny2.mp4")].startswith("no_face")
    assert status[str(first / "tiny8.mp4")].startswith("no_face")
    assert status[str(first / "notvideo.mp4")].startswith("unreadable")
    assert status[str(first / "buggy.mp4")] == "error: ValueError: a bug in one video"
    buggy = next(v for v in videos if v["filename"] == "buggy.mp4")
    assert "ValueError" in buggy["traceback"] and buggy["probability"] is None
    assert summary["errors"] == 1 and summary["scored"] == 3 and summary["videos"] == 7
    # one run, three views: the same videos, the same paths, the same scores
    assert [r["path"] for r in rows] == [v["path"] for v in videos]
    assert sorted(v["path"] for v in lines) == sorted(v["path"] for v in videos)
    assert len({r["path"] for r in rows}) == 7 and [r["filename"] for r in rows].count("same.mp4") == 2
    for row, video in zip(rows, videos, strict=True):
        # an unscored video is 0.5 in the CSV (README, docs/reliability.md: the CSV needs a number)
        expected = video["probability"] if video["probability"] is not None else 0.5
        assert float(row["label"]) == pytest.approx(expected, abs=1e-6)
        assert row["status"] == video["status"].split(":")[0]


def test_outputs_are_checked_before_any_video_is_read(
    models_root: dict, hostile_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a video was read before the outputs were checked")

    monkeypatch.setattr(infer, "SpanReader", forbidden)
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    video = [hostile_part / "reala.mp4"]
    bad = [
        (infer.Outputs(tmp_path / "no" / "p.csv", tmp_path / "p.json", tmp_path / "p.jsonl"), "does not exist"),
        (infer.Outputs(tmp_path / "p.csv", tmp_path / "p.csv", tmp_path / "p.jsonl"), "three different files"),
        (infer.Outputs(tmp_path, tmp_path / "p.json", tmp_path / "p.jsonl"), "is a folder"),
        (infer.Outputs(hostile_part / "reala.mp4", tmp_path / "p.json", tmp_path / "p.jsonl"), "input videos"),
    ]
    for out, problem in bad:
        with pytest.raises(InputError, match=problem):
            infer.predict_videos(video, backend, config, out)
    assert not list(tmp_path.iterdir())


def test_every_record_names_the_model_and_a_demonstration_is_announced(
    models_root: dict, hostile_part: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """predict's records and summary carry the package card's reference; a demonstration model gets one
    warning line on stderr; a resume onto another model's records is refused before any work."""
    from deepfake.modeling.card import CARD_FORMAT, DEMONSTRATION_WARNING, ModelCard, write_card

    package = tmp_path / "package"
    shutil.copytree(models_root["root"] / "onnx", package / "onnx")
    card = write_card(
        package / "onnx",
        ModelCard(
            format=CARD_FORMAT,
            name="sample-demo",
            version="",
            description="two networks",
            source="trained by this pipeline (dvc repro)",
            license="MIT",
            trained_on=["dfdc_train_part_0"],
            demonstration=True,
            evaluation=[],
            intended_use="a demonstration",
            warning=DEMONSTRATION_WARNING,
        ),
    )
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(models_root["raw"]))
    out = outputs(tmp_path)
    videos = [str(hostile_part / "reala.mp4"), str(hostile_part / "zero.mp4")]
    args = ["--params", str(params_file), "predict", *videos, "--models", str(package), "--backend", "onnx", "-q"]
    assert cli_main([*args, "--csv", str(out.csv), "--json", str(out.json)]) == 0
    expected = {"name": "sample-demo", "version": card.version, "demonstration": True}
    report = json.loads(out.json.read_text())
    assert report["summary"]["model"] == expected
    assert [r["model"] for r in report["videos"]] == [expected, expected]  # the unscored video's too
    assert [json.loads(line)["model"] for line in out.jsonl.read_text().splitlines()] == [expected, expected]
    warnings = [line for line in capsys.readouterr().err.splitlines() if DEMONSTRATION_WARNING in line]
    assert warnings == [f"warning: sample-demo {card.version}: {DEMONSTRATION_WARNING}"]
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    other = {**expected, "version": "0123456789ab"}
    with pytest.raises(InputError, match=r"made by .*sample-demo.*run without --resume"):
        infer.predict_videos([Path(v) for v in videos], backend, config, out, resume=True, model=other)


class Interrupted(Exception):
    """Stands in for a kill: raised from inside the run after some records are out."""


def test_a_killed_run_keeps_its_records_and_resume_scores_only_the_rest(
    models_root: dict, hostile_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = replace(infer.PredictConfig.from_params(models_root["params"]), batch_size=1)  # one video per batch
    videos = [hostile_part / n for n in ("reala.mp4", "fakea.mp4", "realb.mp4", "fakeb.mp4")]
    out = outputs(tmp_path)
    real_logits, calls = backend.logits, []

    def dying(images: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(images))
        if len(calls) > 6 * 2:  # six crops per video: the third video dies mid-inference
            raise Interrupted
        return real_logits(images)

    monkeypatch.setattr(backend, "logits", dying)
    with pytest.raises(Interrupted):
        infer.predict_videos(videos, backend, config, out)
    kept = [json.loads(line) for line in out.partial_jsonl.read_text().splitlines()]
    assert [r["filename"] for r in kept] == ["reala.mp4", "fakea.mp4"]
    # the CSV, JSON and JSON Lines only ever describe a finished run
    assert not out.csv.exists() and not out.json.exists() and not out.jsonl.exists()
    with out.partial_jsonl.open("a") as handle:
        handle.write('{"filename": "realb.mp4", "pa')  # a record torn by the kill
    monkeypatch.setattr(backend, "logits", real_logits)
    prepared: list[str] = []
    real_prepare = infer.prepare_video

    def counting(path: Path, *args: object) -> infer.PreparedVideo:
        prepared.append(path.name)
        return real_prepare(path, *args)

    monkeypatch.setattr(infer, "prepare_video", counting)
    summary = infer.predict_videos(videos, backend, config, out, resume=True)
    assert prepared == ["realb.mp4", "fakeb.mp4"] and summary["resumed"] == 2 and summary["scored"] == 4
    rows, records, _ = read_outputs(out)
    assert [r["filename"] for r in rows] == [r["filename"] for r in records] == [v.name for v in videos]
    assert records[0] == kept[0]


def test_a_disk_that_fills_leaves_one_runs_outputs(
    models_root: dict, hostile_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while the outputs are written: the CSV, JSON and JSON Lines stay the previous run's complete set,
    no temporary file is left, this run's records wait in the .partial JSON Lines, and --resume finishes."""
    import errno

    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    videos = [hostile_part / "reala.mp4", hostile_part / "fakea.mp4"]
    out = outputs(tmp_path)
    infer.predict_videos(videos[:1], backend, config, out)  # the previous run
    previous = {p.name: p.read_bytes() for p in (out.csv, out.json, out.jsonl)}

    def full(*args: object, **kwargs: object) -> bytes:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(infer, "json_bytes", full)
    with pytest.raises(OSError, match="No space left"):
        infer.predict_videos(videos, backend, config, out)
    assert {p.name: p.read_bytes() for p in (out.csv, out.json, out.jsonl)} == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.json", "p.jsonl", "p.jsonl.partial"]
    assert out.partial_jsonl.read_text().count("\n") == 2
    monkeypatch.undo()
    summary = infer.predict_videos(videos, backend, config, out, resume=True)
    assert summary["resumed"] == 2 and summary["videos"] == 2 and not out.partial_jsonl.exists()
    rows, records, lines = read_outputs(out)
    assert len(rows) == len(records) == len(lines) == 2


def test_a_face_late_in_a_long_video_is_found(models_root: dict, tmp_path: Path) -> None:
    """Two minutes of an empty room, then a face: frames spread over the whole duration reach it."""
    empty = [np.full((SIZE[1], SIZE[0], 3), 40, np.uint8)] * 100
    bgr = empty + face_frames("grace_hopper.jpg", frames=20)
    video = write_av(tmp_path / "late.mp4", [frame[:, :, ::-1] for frame in bgr], fps=1)
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    summary = infer.predict_videos([video], backend, config, outputs(tmp_path))
    [record] = json.loads((tmp_path / "p.json").read_text())["videos"]
    assert summary["scored"] == 1 and record["status"] == "ok"
    sampling = record["sampling"]
    assert sampling["last_s"] >= 100 and sampling["frames_sampled"] == config.frames
    assert sampling["frames_decoded"] <= config.max_decoded
    assert all(frame["t"] >= 100 for frame in record["frames"] if frame["faces"])


class SideBackend(infer.Backend):
    """Stands in for a model that spots the swapped face: crops get their logit by a lookup set per test."""

    name = "side"
    members: ClassVar[list[str]] = ["m"]

    def __init__(self, face_input: FaceInput, logits: np.ndarray) -> None:
        self.face_input, self.values = face_input, logits

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out, self.values = self.values[: len(images)], self.values[len(images) :]
        return {"m": out}


def test_two_faces_make_two_tracks_and_the_swapped_one_decides(models_root: dict, tmp_path: Path) -> None:
    """The sample's two-person photo: one track per person, boxes carried between detections, and a video
    where only the right-hand face scores fake is as fake as that face, not diluted by the real one."""
    video = write_video(tmp_path / "two.mp4", face_frames("t1_person2.jpg", frames=12, size=(480, 270)))
    # 10 frames: fewer confident crops than the confident strategy's min_fakes (11), as for a face seen briefly
    config = replace(infer.PredictConfig.from_params(models_root["params"]), frames=10, detect_every=2)
    face_input = FaceInput(64, 0.3333)
    prepared = infer.prepare_video(video, config, face_input)
    record = prepared.record
    # the two people; the photo also shows a face cut by its edge, which MTCNN finds in some frames
    people = sorted(record["tracks"], key=lambda t: t["crops"])[-2:]
    assert record["status"] == "ok" and [t["crops"] for t in people] == [10, 10]
    for track in people:
        centres = [
            (face["box"][0] + face["box"][2]) / 2
            for frame in record["frames"]
            for face in frame["faces"]
            if face["track"] == track["id"]
        ]
        assert len(centres) == 10 and max(centres) - min(centres) < 30  # one person, every sampled frame
    carried = [face for frame in record["frames"] for face in frame["faces"] if not face["detected"]]
    assert carried, "frames between detections get their boxes from the tracks"
    right = max(people, key=lambda t: _mean_x(record, t["id"]))["id"]
    logits = np.where(np.asarray(prepared.crop_tracks) == right, 2.2, -2.2).astype(np.float32)  # P = 0.9 / 0.1
    [scored] = infer.score_prepared([prepared], SideBackend(face_input, logits), config)
    assert scored["decided_by"] == right
    longest = max(t["crops"] for t in scored["tracks"])
    assert all(t["eligible"] == (t["crops"] >= config.track_min_share * longest) for t in scored["tracks"])
    assert scored["probability"] == pytest.approx(0.9, abs=0.01)
    assert config.aggregation(1 / (1 + np.exp(-logits))) < 0.6  # pooling all crops dilutes the swapped face


def _one_face_video(face_input: FaceInput) -> infer.PreparedVideo:
    """A prepared video of one frame with one face (one track), as prepare_video leaves it."""
    record = infer.base_record(Path("one.mp4"))
    face = {"box": [0.0, 0.0, 10.0, 10.0], "detector_score": 1.0, "track": 0, "detected": True}
    record.update(
        ms={}, frames=[{"frame": 0, "t": 0.0, "faces": [face]}], tracks=[{"id": 0, "frames": [0], "crops": 1}]
    )
    crops = np.zeros((1, face_input.image_size, face_input.image_size, 3), np.uint8)
    return infer.PreparedVideo(record, crops, [(0, 0)], [0])


def _decision(fake_threshold: float, real_threshold: float) -> Decision:
    def point(target: float, threshold: float) -> OperatingPoint:
        return OperatingPoint(target, threshold, 400, 4, (0.003, 0.025), 400, 300, (0.7, 0.8), 0.95)

    temperature = Calibration("temperature", temperature=2.0)
    return Decision(temperature, (point(0.01, fake_threshold), point(0.05, real_threshold)), VerdictRule(0.01, 0.05))


@pytest.mark.parametrize(
    "fake_at, real_below, call",
    [(0.69, 0.6, "likely_fake"), (0.65, 0.5, "likely_fake"), (0.75, 0.69, "uncertain"), (0.8, 0.75, "likely_real")],
)
def test_the_verdict_follows_the_packages_operating_points(
    tmp_path: Path, fake_at: float, real_below: float, call: str
) -> None:
    """A video of score 0.7 is called from the package's operating points, not from a 0.5 in the code; the
    record carries the calibrated probability, the thresholds (the service's page colours by them) and which
    operating point decided."""
    params = as_params(tiny_params(tmp_path, evaluate__aggregation="mean"))
    config = infer.PredictConfig.from_params(params)
    face_input = FaceInput(32, 0.3333)
    logit = np.log(0.7 / 0.3).astype(np.float32)
    [scored] = infer.score_prepared([_one_face_video(face_input)], SideBackend(face_input, np.array([logit])), config)
    assert scored["probability"] == pytest.approx(0.7, abs=1e-6)
    verdict = infer.decide(scored, _decision(fake_at, real_below))["verdict"]
    assert verdict["call"] == call
    assert verdict["probability"] == pytest.approx(1 / (1 + math.exp(-math.log(0.7 / 0.3) / 2.0)), abs=1e-5)
    assert verdict["thresholds"] == {"likely_fake": fake_at, "likely_real": real_below}
    assert verdict["operating_point"]["target_fpr"] == (0.05 if call == "likely_real" else 0.01)
    # a package without operating points gives no call, and says why; an unscored video has no verdict at all
    assert infer.decide(dict(scored), None)["verdict"]["call"] is None
    assert "deepfake calibrate" in infer.decide(dict(scored), None)["verdict"]["meaning"]
    assert infer.decide({**scored, "probability": None}, _decision(0.7, 0.6))["verdict"] is None


def _mean_x(record: dict, track: int) -> float:
    xs = [(f["box"][0] + f["box"][2]) / 2 for fr in record["frames"] for f in fr["faces"] if f["track"] == track]
    return float(np.mean(xs))


@pytest.mark.slow
def test_worker_processes_give_the_in_process_records(models_root: dict, hostile_part: Path, tmp_path: Path) -> None:
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    videos = [hostile_part / n for n in ("reala.mp4", "fakea.mp4", "noface.mp4")]
    infer.predict_videos(videos, backend, config, outputs(tmp_path, "inline"))
    infer.predict_videos(videos, backend, replace(config, workers=2), outputs(tmp_path, "pool"))
    inline = json.loads((tmp_path / "inline.json").read_text())["videos"]
    pooled = json.loads((tmp_path / "pool.json").read_text())["videos"]
    for a, b in zip(inline, pooled, strict=True):
        a.pop("ms"), b.pop("ms")
        a["sampling"].pop("threads"), b["sampling"].pop("threads")
    assert inline == pooled


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# Records come out a batch at a time (predict.batch_size 8 crops: two videos of predict.frames 6), so with six
# videos four are still being prepared when the first record is out: the kill lands midway, and resume has work.
VIDEOS_TO_KILL_MIDWAY = 6


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from Linux's /proc")
def test_a_sigkilled_predict_leaves_no_worker_behind_and_resume_finishes_it(
    models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    """The real command with two worker processes, SIGKILLed once its first record is out: the workers go
    with it (no idle process holding a detector), the JSON Lines keep the records, --resume finishes."""
    folder = tmp_path / "videos"
    folder.mkdir()
    for k in range(VIDEOS_TO_KILL_MIDWAY):
        shutil.copy(hostile_part / ("reala.mp4" if k % 2 else "fakeb.mp4"), folder / f"v{k:02d}.mp4")
    raw = json.loads(json.dumps(models_root["raw"]))
    set_key(raw, "predict.workers", 2)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    out = outputs(tmp_path)
    command = [
        sys.executable, "-c", "import sys; from deepfake.cli import main; sys.exit(main())",
        "--params", str(params_file), "predict", str(folder), "--models", str(models_root["root"]),
        "--csv", str(out.csv), "--json", str(out.json), "-q",
    ]  # fmt: skip
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if out.partial_jsonl.exists() and out.partial_jsonl.read_text().count("\n") >= 1:
            break
        time.sleep(0.1)
    workers = _children(process.pid)
    assert process.poll() is None and len(workers) >= 2, "the run should be midway, with its worker processes"
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)]
    kept = out.partial_jsonl.read_text().count("\n")
    assert 1 <= kept < VIDEOS_TO_KILL_MIDWAY and not out.csv.exists()
    assert subprocess.run([*command, "--resume"], check=False).returncode == 0
    rows, records, _ = read_outputs(out)
    assert len(rows) == len(records) == VIDEOS_TO_KILL_MIDWAY and all(r["status"] == "ok" for r in records)
