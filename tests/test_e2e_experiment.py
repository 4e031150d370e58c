"""End to end, on this module's copy of the reproduced pipeline (``pipeline_build``, tests/conftest.py): an
experiment with another seed retrains and diffs.

A module of its own, the longest of the end-to-end checks after test_e2e_pipeline.py's reruns: pytest-xdist
runs it on whichever worker is free first, while the other takes tests/test_e2e_models.py.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_pipeline, run
from tests.pipeline_checks import git_commit, out_hashes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(
    pipeline_build: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """This module's copy of the reproduced pipeline (the experiment commits and retrains in it)."""
    return copy_pipeline(pipeline_build, tmp_path_factory.mktemp("experiment") / "repo")


def test_exp_run_with_another_seed_changes_models_and_metrics(repo: tuple[Path, dict[str, str]]) -> None:
    """`dvc exp run -S train.seed=...` retrains train@<model> only; exp show / metrics diff / plots diff work.

    The experiment stops at the decision summary (a target) to keep CI in budget: quantize and triton were
    reproduced once by the fixture, and nothing the summary reads depends on them.

    It leaves the experiment's results in this module's copy, which nothing else reads.
    """
    path, env = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    git_commit(path, env, "sample run")
    before = out_hashes(path)
    # up to the experiments' summary (through export and robustness@); quantize and triton stay as the fixture ran them
    output = run(["dvc", "exp", "run", "-n", "seed777", "-S", "train.seed=777", "decision"], path, env)
    after = out_hashes(path)
    for model in params["models"]:
        assert f"train@{model}" in output
        assert after[f"models/train/{model}"] != before[f"models/train/{model}"]
        for seed in params["ensemble"]["seeds"]:
            assert after[f"models/train/ensemble/{model}-{seed}"] == before[f"models/train/ensemble/{model}-{seed}"]
    shown = json.loads(run(["dvc", "exp", "show", "--json"], path, env))
    assert "seed777" in json.dumps(shown)
    # the experiments' view: the changed param and the one-screen decision summary, never a stage's seconds
    table = list(csv.reader(io.StringIO(run(["dvc", "exp", "show", "--only-changed", "--csv"], path, env))))
    meta = ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")
    view = [c for c in table[0] if c not in meta and "/" not in c]  # (a path is a changed dependency's column)
    assert "train.seed" in view and not any("seconds" in c for c in view), view
    figures = set(view) - {"train.seed"}
    assert figures and figures <= {"auc", "worst_auc", "log_loss", "ece", "fpr", "tpr", "auc_drop", "unscored"}, view
    diff = run(["dvc", "metrics", "diff", "HEAD"], path, env)
    assert "metrics/decision.json" in diff and "metrics/evaluate/" not in diff
    targets = ["--targets", "metrics/matrix.json", "metrics/evaluate", "metrics/decision"]
    reports = run(["dvc", "metrics", "diff", "HEAD", *targets], path, env)
    assert "metrics/matrix.json" in reports and "metrics/evaluate/" in reports  # stage reports stay diffable
    assert "metrics/decision/" in reports
    run(["dvc", "plots", "diff", "HEAD", "-o", str(path / "plots-diff")], path, env)
    assert (path / "plots-diff" / "index.html").is_file()
