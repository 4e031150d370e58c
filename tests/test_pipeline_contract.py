"""The pipeline definition agrees with the scripts and params it names (nothing is run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PREPROCESSING = ("bboxes", "crops", "landmarks", "diffs")


@pytest.fixture(scope="module")
def stages() -> dict:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: stage for stage in repo.index.stages}


@pytest.fixture(scope="module")
def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_expected_stages_exist_per_part(stages: dict, params: dict) -> None:
    expected = {"sample", "folds"} | {f"{s}@{p}" for s in PREPROCESSING for p in params["data"]["parts"]}
    assert expected <= set(stages)


def test_every_stage_depends_on_its_script_and_the_code_it_imports(stages: dict) -> None:
    for name, stage in stages.items():
        script = stage.cmd.split()[1]
        deps = {str(Path(d.def_path)) for d in stage.deps}
        assert script in deps, f"{name}: {script} missing from deps"
        for dep in deps:
            if dep.startswith(("src/", "stages/")):
                assert (ROOT / dep).exists(), f"{name}: dependency {dep} does not exist"


def test_stage_params_exist_in_params_yaml(stages: dict, params: dict) -> None:
    for name, stage in stages.items():
        for dep in stage.deps:
            if not hasattr(dep, "params"):
                continue
            for key in dep.params:
                node = params
                for part in key.split("."):
                    assert part in node, f"{name}: param {key} not in params.yaml"
                    node = node[part]


def test_sample_outputs_match_sample_parts(stages: dict, params: dict) -> None:
    outs = {str(o.def_path) for o in stages["sample"].outs}
    assert outs == {f"data/raw/{part}" for part in params["sample"]["parts"]}


def test_reports_are_git_tracked_metrics(stages: dict) -> None:
    for name, stage in stages.items():
        if name == "sample":
            continue
        metrics = [o for o in stage.outs if o.metric]
        assert metrics and all(not o.use_cache for o in metrics), f"{name}: report must be a cache: false metric"


def test_no_stage_script_shadows_an_installed_module() -> None:
    """`python stages/x.py` puts stages/ first on sys.path: a stages/triton.py would hide the triton
    package torch imports (it did), so no script may share a top-level module's name."""
    import importlib.util

    for script in (ROOT / "stages").glob("*.py"):
        assert importlib.util.find_spec(script.stem) is None, f"{script.name} shadows an installed module"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "stages").glob("*.py")))
def test_stage_script_help(script: str) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "stages" / script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--params" in result.stdout


def test_cli_help() -> None:
    for args in (["--help"], ["sample", "--help"], ["bench", "--help"], ["bench-train", "--help"]):
        result = subprocess.run([sys.executable, "-m", "deepfake.cli", *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_cli_sample_builds_a_dfdc_part(tmp_path: Path) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sample"].update(frames=8, width=192, height=108, fakes_per_real=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    from deepfake.cli import main

    assert main(["--params", str(tmp_path / "params.yaml"), "sample", "--out", str(tmp_path / "raw")]) == 0
    for part in params["sample"]["parts"]:
        assert (tmp_path / "raw" / part / "metadata.json").is_file()
        assert list((tmp_path / "raw" / part).glob("*.mp4"))


def test_ensemble_members_do_not_depend_on_the_experiment_seed_or_the_seed_list(stages: dict, params: dict) -> None:
    """Adding a seed trains only that seed; `-S train.seed=...` retrains only train@<model>."""
    members = [s for name, s in stages.items() if name.startswith("train_seed@")]
    assert len(members) == len(params["models"]) * len(params["ensemble"]["seeds"])
    expected = {f"train.{k}" for k in params["train"] if k != "seed"}
    for stage in members:
        keys = {key for dep in stage.deps if hasattr(dep, "params") for key in dep.params}
        assert "train.seed" not in keys and "train" not in keys
        assert "ensemble.seeds" not in keys and "ensemble" not in keys
        assert expected <= keys, f"{stage.addressing}: missing {sorted(expected - keys)}"
    for model in params["models"]:
        keys = {key for dep in stages[f"train@{model}"].deps if hasattr(dep, "params") for key in dep.params}
        assert "train" in keys
