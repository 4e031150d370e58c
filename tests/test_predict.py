"""deepfake predict: backends agree, bad videos get explicit statuses, the CSV/JSON formats, clear failures."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from deepfake.apps import predict as infer
from deepfake.backends import base
from deepfake.backends.base import create_backend
from deepfake.cli import main as cli_main
from deepfake.core.errors import ParamsError, ToolchainError
from tests.conftest import set_key, tiny_params


def test_even_stride_spreads_the_frames() -> None:
    assert infer.even_stride(300, 32, 1200) == 9
    assert infer.even_stride(10, 32, 1200) == 1
    assert infer.even_stride(0, 32, 1200) == 37  # no frame count in the header: spread over max_frames


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
            tmp_path / f"{name}.csv",
            tmp_path / f"{name}.json",
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
    summary = infer.predict_videos([folder], backend, config, tmp_path / "p.csv", tmp_path / "p.json")
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
    assert (tmp_path / "b.csv").read_text().startswith("filename,label\nreala.mp4,")
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
    monkeypatch.setattr("deepfake.apps.predict.probe", forbidden)


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
