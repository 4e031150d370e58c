"""End to end, on this module's copy of the reproduced pipeline (``pipeline_build``, tests/conftest.py): a
models publish and pull over HTTP, and a tampered remote is refused.

A module of its own so pytest-xdist runs it on whichever worker is free (tests/test_e2e_experiment.py too).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_pipeline, run
from tests.pipeline_checks import MODEL_STAGES, files_of, git_commit, http_remote, out_hashes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(
    pipeline_build: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """This module's copy of the reproduced pipeline (the tests below publish from it and add remotes to it)."""
    return copy_pipeline(pipeline_build, tmp_path_factory.mktemp("models") / "repo")


def test_published_models_pull_over_http_byte_identical_and_score_the_same(
    repo: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Maintainer: `dvc push -r publish` the model stages. User: fresh clone, `dvc pull` them from the
    default HTTP remote (pointed at 127.0.0.1 with --local), then `deepfake predict` gives the source's scores."""
    path, env = repo
    git_commit(path, env, "sample run")
    store = tmp_path / "published"
    run(["dvc", "remote", "add", "--local", "--force", "publish", str(store)], path, env)
    run(["dvc", "push", "-r", "publish", *MODEL_STAGES], path, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(path), str(clone)], tmp_path, env)
    default = run(["dvc", "remote", "default"], clone, env).strip()
    with http_remote(store) as url:
        run(["dvc", "remote", "modify", "--local", default, "url", url], clone, env)
        run(["dvc", "pull", *MODEL_STAGES], clone, env)
    pulled = [out for out in out_hashes(path) if out.startswith(("models/train", "models/onnx"))]
    assert pulled and all(files_of(clone / out) == files_of(path / out) for out in pulled)
    data = [p for p in (clone / "data").rglob("*") if p.is_file() and p.name != ".gitignore"]
    assert data == []  # only the model targets came down, no data
    datasets = yaml.safe_load((path / "params.yaml").read_text())["data"]["datasets"]
    part = [spec["root"] for spec in datasets.values() if spec["layout"] == "dfdc"][-1]
    videos = sorted((path / part).glob("*.mp4"))[:2]
    scores = []
    for where in (path, clone):
        out = tmp_path / where.name
        args = ["deepfake", "predict", *map(str, videos), "-q", "--csv", f"{out}.csv", "--json", f"{out}.json"]
        run(args, where, env)
        records = json.loads(Path(f"{out}.json").read_text())["videos"]
        scores.append([(v["filename"], v["probability"]) for v in records])
    assert scores[0] == scores[1] and all(p is not None for _, p in scores[0])
    run(["dvc", "remote", "remove", "--local", "publish"], path, env)


def test_a_tampered_file_on_the_remote_is_refused(repo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """The published remote verifies hashes on download: a changed object never reaches the workspace."""
    path, env = repo
    git_commit(path, env, "sample run")
    store = tmp_path / "published"
    run(["dvc", "remote", "add", "--local", "--force", "publish", str(store)], path, env)
    run(["dvc", "push", "-r", "publish", "export"], path, env)
    run(["dvc", "remote", "remove", "--local", "publish"], path, env)
    target = sorted((path / "models/onnx").glob("*.onnx"))[0]
    digest = hashlib.md5(target.read_bytes()).hexdigest()
    stored = store / "files/md5" / digest[:2] / digest[2:]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, the size unchanged
    stored.write_bytes(bytes(data))
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(path), str(clone)], tmp_path, env)
    default = run(["dvc", "remote", "default"], clone, env).strip()
    with http_remote(store) as url:
        run(["dvc", "remote", "modify", "--local", default, "url", url], clone, env)
        result = subprocess.run(["dvc", "pull", "export"], cwd=clone, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "models/onnx" in result.stdout + result.stderr
    assert not (clone / "models/onnx" / target.name).exists()
    cached = [p for p in (clone / ".dvc/cache").rglob("*") if p.is_file()] if (clone / ".dvc/cache").exists() else []
    assert all(hashlib.md5(p.read_bytes()).hexdigest() != hashlib.md5(data).hexdigest() for p in cached)
