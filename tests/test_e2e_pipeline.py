"""End to end: `dvc repro` of the built-in sample in a fresh git + DVC repository made from the tracked
files (``pipeline_build``, tests/conftest.py), then checks and reruns of it on this module's copy.

tests/test_e2e_models.py works on its own copy: publishing and experiments.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from deepfake.core.params import load_params
from deepfake.sample.annotations import faces_dir, load_annotations
from deepfake.sample.plan import SampleConfig, plan_sample
from deepfake.sample.writers import layout_datasets
from tests.conftest import copy_pipeline, run
from tests.pipeline_checks import TIMING, out_hashes, reports

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
PREPROCESSING = ("ingest", "bboxes", "crops", "landmarks", "diffs", "folds")  # the stages from raw videos to folds


@pytest.fixture(scope="module")
def repo(
    pipeline_build: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """This module's copy of the reproduced pipeline (the reruns below change its files)."""
    return copy_pipeline(pipeline_build, tmp_path_factory.mktemp("pipeline") / "repo")


def test_repro_produces_every_output(repo: tuple[Path, dict[str, str]]) -> None:
    path, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    layouts = {spec["layout"] for spec in params["data"]["datasets"].values()}
    assert {"dfdc", "ffpp", "celebdf"} <= layouts  # DFDC parts plus FF++ and Celeb-DF, end to end
    for dataset in params["data"]["datasets"]:
        assert (path / "data/index" / f"{dataset}.csv").is_file()
        assert list((path / "data/bboxes" / dataset).glob("*.json"))
        assert (path / "data/crops" / dataset / "index.csv").is_file()
        assert list((path / "data/landmarks" / dataset).rglob("*.npy"))
        assert list((path / "data/masks" / dataset).rglob("*.png"))
        assert (path / f"metrics/ingest/{dataset}.json").is_file()
        for stage in ("bboxes", "crops", "landmarks", "diffs"):
            assert (path / f"metrics/preprocess/{stage}/{dataset}.json").is_file()
    for model in params["models"]:
        assert (path / "models/train" / model / "best.pt").is_file()
        assert (path / "plots/train" / f"{model}.png").is_file()
        assert (path / "metrics/train" / model / "metrics.json").is_file()
        for seed in params["ensemble"]["seeds"]:
            assert (path / "models/train/ensemble" / f"{model}-{seed}" / "best.pt").is_file()
    members = {*params["models"], *(f"{m}-{s}" for m in params["models"] for s in params["ensemble"]["seeds"])}
    for testset in params["evaluate"]["testsets"]:
        report = json.loads((path / f"metrics/evaluate/{testset}.json").read_text())
        assert set(report["models"]) == members
        assert list((path / "plots/evaluate" / testset).glob("*.png"))
    matrix = json.loads((path / "metrics/matrix.json").read_text())
    assert set(params["evaluate"]["testsets"]) <= {key for row in matrix.values() for key in row}
    assert (path / "metrics/matrix.md").is_file() and (path / "plots/matrix.png").is_file()
    # FF++ ships mask videos: its fakes' segmentation targets come from them, not from SSIM
    diffs = json.loads((path / "metrics/preprocess/diffs/ffpp.json").read_text())
    assert diffs["masks_from_video"] > 0
    folds = (path / "data/folds.csv").read_text().splitlines()
    assert folds[0].startswith("video,file,label,original,part,frame,face,identity,method,compression,split,fold")
    assert len(folds) > 100


def test_full_size_sample_from_params_yaml(repo: tuple[Path, dict[str, str]]) -> None:
    """The stage's own config, as `dvc repro` built it: exactly the files
    the plan names, every video decodes at 64 frames, and MTCNN finds the face in each kind of fake."""
    from facenet_pytorch import MTCNN

    path, _ = repo
    raw = path / "data" / "raw"
    config = SampleConfig.from_params(load_params(path / "params.yaml"))
    plan = plan_sample(config, load_annotations(faces_dir()))
    named = {
        f"{layout.name}/{path}" for layout in layout_datasets(plan, config) for path in [*layout.videos, *layout.masks]
    }
    written = {str(p.relative_to(raw)) for folder in config.folders for p in (raw / folder).rglob("*.mp4")}
    assert written == named
    sizes = ((config.width, config.height), (config.height, config.width))
    for video in sorted(raw / name for name in written):
        capture = cv2.VideoCapture(str(video))
        size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        assert count == config.frames and size in sizes, video
    detector = MTCNN(keep_all=True, post_process=False, device="cpu", thresholds=[0.6, 0.7, 0.7])
    checked = [
        *(raw / "ffpp/manipulated_sequences" / m / "c23/videos" for m in ("Deepfakes", "Face2Face", "NeuralTextures")),
        raw / "celebdf/Celeb-synthesis",
        raw / "deeperforensics/manipulated_videos/end_to_end",
    ]
    for folder in checked:
        for video in sorted(folder.glob("*.mp4"))[:2]:
            capture = cv2.VideoCapture(str(video))
            for _ in range(3):
                ok, frame = capture.read()
                assert ok, video
            capture.release()
            boxes, probs = detector.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            assert boxes is not None and float(np.max(probs)) > 0.9, video


def test_sample_folds_do_not_leak(repo: tuple[Path, dict[str, str]]) -> None:
    """No original of the sample shares a fold with another's fakes, and every fold has originals."""
    import pandas as pd

    path, _ = repo
    table = pd.read_csv(path / "data/folds.csv", keep_default_na=False)
    assert table.groupby(["part", "original"])["fold"].nunique().max() == 1
    fakes = table[table["label"] == "FAKE"]
    assert (fakes["original"] != fakes["video"]).all()
    folds_of_videos = table.groupby("video")["fold"].first()
    for _, row in fakes.drop_duplicates("video").iterrows():
        assert folds_of_videos[row["video"]] == folds_of_videos[row["original"]]
    # The sample labels identities, so no person's face (real or donated) crosses folds either.
    assert (table["identity"] != "").all() and table.groupby("identity")["fold"].nunique().max() == 1
    params = yaml.safe_load((path / "params.yaml").read_text())
    per_fold = table[table["label"] == "REAL"].groupby("fold")["video"].nunique()
    assert sorted(per_fold.index) == list(range(params["folds"]["n_splits"]))
    assert (per_fold >= 1).all()


def key_structure(value: object) -> object:
    """A JSON value's shape: the keys of every object, the length of every list, never the numbers."""
    if isinstance(value, dict):
        return {k: key_structure(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [key_structure(v) for v in value]
    return type(value).__name__ if value is not None else None


def code_deps(entry: dict) -> dict[str, str]:
    """md5 of a stage's git-tracked code dependencies (the same files on every machine)."""
    return {d["path"]: d["md5"] for d in entry.get("deps", []) if d["path"].startswith(("src/", "stages/"))}


def dotted(raw: dict, key: str) -> object:
    """``raw["a"]["b"]`` for the params key "a.b", as dvc.lock names it."""
    value: object = raw
    for part in key.split("."):
        assert isinstance(value, dict) and part in value, f"{key} is not in params.yaml"
        value = value[part]
    return value


def test_the_committed_lock_records_this_pipeline(repo: tuple[Path, dict[str, str]]) -> None:
    """What holds on any machine: the committed dvc.lock was made by this code, these commands and the
    committed params.yaml (the fresh run here had ``PIPELINE_SHRINK`` applied: same stages and keys).

    Output hashes and metric values are not compared with the committed run: MTCNN and training floats
    differ in the last bits across CPU instruction sets (docs/reliability.md), so another CPU gets other
    landmark files, weights and figures. Determinism is tested on this machine by the next test.
    """
    path, _ = repo
    fresh, committed = (yaml.safe_load((p / "dvc.lock").read_text()) for p in (path, ROOT))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(fresh["stages"]) == set(committed["stages"]), "dvc.lock is stale: run `dvc repro` and commit it"
    for name, entry in fresh["stages"].items():
        record = committed["stages"][name]
        assert entry["cmd"] == record["cmd"], f"{name}: dvc.lock is stale (command)"
        recorded = record.get("params", {}).get("params.yaml", {})
        assert set(entry.get("params", {}).get("params.yaml", {})) == set(recorded), f"{name}: stale (params keys)"
        for key, value in recorded.items():
            assert value == dotted(params, key), f"{name}: dvc.lock is stale (params.yaml {key}): run `dvc repro`"
        assert code_deps(entry) == code_deps(record), f"{name}: dvc.lock is stale (code): run `dvc repro`"
        for dep, md5 in code_deps(record).items():
            if (ROOT / dep).is_file():
                assert hashlib.md5((ROOT / dep).read_bytes()).hexdigest() == md5, f"{name}: {dep} changed since"
        assert [o["path"] for o in entry.get("outs", [])] == [o["path"] for o in record.get("outs", [])], name
    for report in sorted((ROOT / "metrics").rglob("*.json")):
        relative = report.relative_to(ROOT)
        mine = json.loads((path / relative).read_text())
        assert key_structure(mine) == key_structure(json.loads(report.read_text())), relative


def test_a_forced_rerun_on_this_machine_is_byte_identical(repo: tuple[Path, dict[str, str]]) -> None:
    """Same machine, same software: every preprocessing output, a retrained ensemble member (a U-YNet:
    both losses) and the reports come back byte for byte (wall-clock fields aside), and nothing downstream
    becomes stale. The sample stage is left out: tests/test_sample.py rebuilds a sample and compares bytes."""
    path, env = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    before, reports_before = out_hashes(path), reports(path)
    lock = yaml.safe_load((path / "dvc.lock").read_text())
    kinds = {name: name.split("@")[0] for name in lock["stages"]}
    upstream = sorted((n for n, k in kinds.items() if k in PREPROCESSING), key=lambda n: PREPROCESSING.index(kinds[n]))
    assert len(upstream) == 1 + 5 * len(params["data"]["datasets"])
    member = f"{params['models'][-1]}-{params['ensemble']['seeds'][0]}"
    # one dvc call (--single-item runs the targets in the order given): ingest to diffs, folds, one member
    run(["dvc", "repro", "--force", "--single-item", *upstream, f"train_seed@{member}"], path, env)
    assert out_hashes(path) == before
    assert reports(path) == reports_before
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], path, env)


def test_status_is_clean_and_second_repro_runs_nothing(repo: tuple[Path, dict[str, str]]) -> None:
    path, env = repo
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], path, env)
    output = run(["dvc", "repro"], path, env)
    assert "Running stage" not in output
    assert "up to date" in output


def test_hardware_targets_stay_out_of_repro_and_fail_loudly_here(repo: tuple[Path, dict[str, str]]) -> None:
    """build_trt and compile_dpu are separate targets; without their toolchains they write nothing."""
    path, env = repo
    for stage, expected in (("build_trt", "build_trt needs"), ("compile_dpu", "compile_dpu needs the Vitis AI")):
        if stage == "build_trt" and importlib.util.find_spec("tensorrt") is not None:
            continue  # a machine with TensorRT would really build (and needs a GPU): not this test's job
        result = subprocess.run(
            ["dvc", "repro", f"deploy/dvc.yaml:{stage}"], cwd=path, env=env, capture_output=True, text=True
        )
        assert result.returncode != 0
        assert expected in result.stdout + result.stderr
    assert not (path / "models/trt").exists() and not (path / "models/dpu").exists()
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], path, env)


def test_killed_stage_leaves_old_output_and_rerun_matches(repo: tuple[Path, dict[str, str]]) -> None:
    """SIGKILL bboxes midway: the previous output stays whole; a rerun gives identical bytes."""
    path, env = repo
    before = out_hashes(path)
    part = next(iter(yaml.safe_load((path / "params.yaml").read_text())["data"]["datasets"]))
    out = path / "data/bboxes" / part
    partial = out.parent / f".{part}.partial"
    old_files = sorted(p.name for p in out.iterdir())
    cmd = [
        sys.executable,
        "stages/bboxes.py",
        "--dataset",
        part,
        "--index",
        f"data/index/{part}.csv",
        "--root",
        f"data/raw/{part}",
        "--out",
        str(out.relative_to(path)),
        "--report",
        f"metrics/preprocess/bboxes/{part}.json",
    ]
    process = subprocess.Popen(cmd, cwd=path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (partial.is_dir() and any(partial.glob("*.json"))):
        time.sleep(0.02)
    assert process.poll() is None, "the stage finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert partial.is_dir()  # the interrupted run's work is in the side folder only
    assert sorted(p.name for p in out.iterdir()) == old_files
    run(["dvc", "repro", "--force", "--single-item", f"bboxes@{part}"], path, env)  # that stage alone
    assert not partial.exists()
    assert out_hashes(path) == before
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], path, env)


def test_killed_training_resumes_from_its_last_checkpoint(repo: tuple[Path, dict[str, str]]) -> None:
    """SIGKILL train@<model> midway; `dvc repro` resumes from last.pt and ends with the uninterrupted bytes
    and training log."""
    path, env = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    model = params["models"][0]
    stage, out = f"train@{model}", f"models/train/{model}"
    before, reports_before = out_hashes(path)[out], reports(path)
    live = path / "metrics/train" / model / "metrics.json"
    kill_step = params["train"]["epochs"] - 2  # the second-last epoch: one is left to resume
    assert kill_step >= 1
    process = subprocess.Popen(
        ["dvc", "repro", "--force", "--single-item", stage],
        cwd=path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the stage runs in a child of dvc: kill the whole group, as an OOM killer might
    )
    started, restarted, killed_at = time.monotonic(), False, None
    while time.monotonic() - started < 300 and process.poll() is None:
        try:
            step = json.loads(live.read_text()).get("step", -1)
        except (FileNotFoundError, json.JSONDecodeError):
            step = -1  # the new run clears the previous run's log first
        restarted = restarted or step < kill_step
        if restarted and step >= kill_step:  # that epoch logged: its last.pt is already saved
            os.killpg(process.pid, signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.05)
    process.wait()
    assert killed_at is not None, "training finished or stalled before it could be interrupted"
    assert "changed outs" in run(["dvc", "status", stage], path, env)
    output = run(["dvc", "repro", "-v", stage], path, env)
    assert f"resuming {out} from epoch" in output
    assert out_hashes(path)[out] == before  # resumed bit for bit: weights, optimiser, schedule, RNG
    assert reports(path) == reports_before  # its training log too (wall-clock fields aside)
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], path, env)
