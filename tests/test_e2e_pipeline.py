"""End to end: `dvc repro` of the built-in sample in a fresh git repository made from the tracked files."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def isolated_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # `python` in the stage commands must be this interpreter, as it is in an activated venv
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        HOME=str(home),
    )
    for key in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "DVCLIVE_TEST"):
        env.pop(key, None)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def out_hashes(repo: Path) -> dict[str, str]:
    """md5 of every cached output in dvc.lock (reports hold wall-clock seconds, so they are left out)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if not out["path"].startswith("metrics/")
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A git + DVC repository with the tracked files of this checkout, reproduced once."""
    home = tmp_path_factory.mktemp("home")
    repo = tmp_path_factory.mktemp("repo")
    env = isolated_env(home)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, files.stdout.split("\0")):
        if name.startswith(("data/", "metrics/", "models/", "plots/")) or name == "dvc.lock":
            continue  # start from nothing: no committed results
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "init"], repo, env)
    run(["dvc", "repro"], repo, env)
    return repo, env


def test_repro_produces_every_output(repo: tuple[Path, dict[str, str]]) -> None:
    path, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    for part in params["data"]["parts"]:
        assert (path / "data/raw" / part / "metadata.json").is_file()
        assert list((path / "data/bboxes" / part).glob("*.json"))
        assert (path / "data/crops" / part / "index.csv").is_file()
        assert list((path / "data/landmarks" / part).rglob("*.npy"))
        assert list((path / "data/masks" / part).rglob("*.png"))
        for stage in ("bboxes", "crops", "landmarks", "diffs"):
            assert (path / f"metrics/preprocess/{stage}/{part}.json").is_file()
    for model in params["models"]:
        assert (path / "models/train" / model / "best.pt").is_file()
        assert (path / "plots/train" / f"{model}.png").is_file()
        assert (path / "metrics/train" / model / "metrics.json").is_file()
        for seed in params["ensemble"]["seeds"]:
            assert (path / "models/train/ensemble" / f"{model}-{seed}" / "best.pt").is_file()
    report = json.loads((path / "metrics/evaluate.json").read_text())
    assert set(report["models"]) == {
        *params["models"],
        *(f"{m}-{s}" for m in params["models"] for s in params["ensemble"]["seeds"]),
    }
    assert (path / "plots/evaluate/roc.png").is_file()
    folds = (path / "data/folds.csv").read_text().splitlines()
    assert folds[0].startswith("video,file,label,original,part,frame,face,identity,fold")
    assert len(folds) > 100


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


def test_forced_preprocessing_rerun_is_byte_identical(repo: tuple[Path, dict[str, str]]) -> None:
    path, env = repo
    before = out_hashes(path)
    run(["dvc", "repro", "--force", "folds"], path, env)  # folds and everything upstream of it
    assert out_hashes(path) == before
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], path, env)


def test_killed_stage_leaves_old_output_and_rerun_matches(repo: tuple[Path, dict[str, str]]) -> None:
    """SIGKILL bboxes midway: the previous output stays whole; a rerun gives identical bytes."""
    path, env = repo
    before = out_hashes(path)
    part = yaml.safe_load((path / "params.yaml").read_text())["data"]["parts"][0]
    out = path / "data/bboxes" / part
    partial = out.parent / f".{part}.partial"
    old_files = sorted(p.name for p in out.iterdir())
    cmd = [
        sys.executable,
        "stages/bboxes.py",
        "--part-dir",
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
    run(["dvc", "repro", "--force", f"bboxes@{part}"], path, env)
    assert not partial.exists()
    assert out_hashes(path) == before
    assert "up to date" in run(["dvc", "status", "dvc.yaml"], path, env)


def test_exp_run_with_another_seed_changes_models_and_metrics(repo: tuple[Path, dict[str, str]]) -> None:
    """`dvc exp run -S train.seed=...` retrains train@<model> only; exp show / metrics diff / plots diff work.

    Runs last: it leaves the experiment's results in the workspace.
    """
    path, env = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "sample run"], path, env)
    before = out_hashes(path)
    output = run(["dvc", "exp", "run", "-n", "seed777", "-S", "train.seed=777"], path, env)
    after = out_hashes(path)
    for model in params["models"]:
        assert f"train@{model}" in output
        assert after[f"models/train/{model}"] != before[f"models/train/{model}"]
        for seed in params["ensemble"]["seeds"]:
            assert after[f"models/train/ensemble/{model}-{seed}"] == before[f"models/train/ensemble/{model}-{seed}"]
    shown = json.loads(run(["dvc", "exp", "show", "--json"], path, env))
    assert "seed777" in json.dumps(shown)
    assert "evaluate.json" in run(["dvc", "metrics", "diff", "HEAD"], path, env)
    run(["dvc", "plots", "diff", "HEAD", "-o", str(path / "plots-diff")], path, env)
    assert (path / "plots-diff" / "index.html").is_file()
