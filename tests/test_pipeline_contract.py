"""The pipeline definition agrees with the scripts and params it names (nothing is run)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PREPROCESSING = ("bboxes", "crops", "landmarks", "diffs")
TEST_ONLY_STAGES = ("ingest_test", "bboxes_test", "crops_test")  # per test-only dataset (data.test_datasets)


def _module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported_modules(path: Path) -> set[str]:
    """Every ``deepfake...`` module a file imports, at the top or inside a function (lazy imports run too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("deepfake"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("deepfake"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return names


def code_closure(script: Path) -> set[str]:
    """The package files a stage script runs: its deepfake imports, their packages' __init__s, transitively."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for name in _imported_modules(todo.pop()):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:i]))
                if found is not None and found not in seen:
                    seen.add(found)
                    todo.append(found)
    return {str(p.relative_to(ROOT)) for p in seen}


def _covered(path: str, deps: set[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def _all_stages() -> dict:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        stages = {stage.addressing: stage for stage in repo.index.stages}
        for extra in ("deploy", "zoo"):  # the pipelines kept out of the default `dvc repro`
            for stage in repo.stage.collect(str(ROOT / extra / "dvc.yaml")):
                stages[stage.addressing] = stage
    return stages


@pytest.fixture(scope="module")
def stages() -> dict:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: stage for stage in repo.index.stages}


@pytest.fixture(scope="module")
def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_expected_stages_exist_per_dataset_and_test_set(stages: dict, params: dict) -> None:
    datasets, testsets = params["data"]["datasets"], params["evaluate"]["testsets"]
    test_only = params["data"]["test_datasets"]
    expected = {"sample", "folds", "matrix"}
    expected |= {f"{s}@{d}" for s in ("ingest", *PREPROCESSING) for d in datasets}
    expected |= {f"{s}@{d}" for s in TEST_ONLY_STAGES for d in test_only}
    expected |= {f"evaluate@{t}" for t in testsets}
    assert expected <= set(stages)
    # a test-only dataset is never landmarked, diffed or folded: only evaluate reads its crops
    assert not {f"{s}@{d}" for s in ("ingest", *PREPROCESSING) for d in test_only} & set(stages)


def stage_script(cmd: str) -> str:
    """``python -P stages/x.py ...`` -> ``stages/x.py``."""
    words = cmd.split()
    assert words[:2] == ["python", "-P"], f"{cmd!r}: stage commands run `python -P` (stages/ not on sys.path)"
    return words[2]


def test_every_stage_depends_on_its_script_and_every_module_it_imports() -> None:
    """dvc.yaml cannot drift from the code: the deps cover the script's whole import closure (lazy imports
    included), derived here from the source, for the root dvc.yaml and deploy/dvc.yaml alike."""
    for name, stage in _all_stages().items():
        script = stage_script(stage.cmd)
        deps = {str(Path(d.def_path)) for d in stage.deps}
        assert script in deps, f"{name}: {script} missing from deps"
        missing = sorted(f for f in code_closure(ROOT / script) if not _covered(f, deps))
        assert not missing, f"{name}: dvc.yaml deps miss modules the stage imports: {missing}"
        for dep in deps:
            if dep.startswith(("src/", "stages/")):
                assert (ROOT / dep).exists(), f"{name}: dependency {dep} does not exist"


def test_the_closure_follows_lazy_imports_and_packages(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("def main():\n    from deepfake.modeling.store import ModelStore\n")
    closure = code_closure(script)
    assert {"src/deepfake/__init__.py", "src/deepfake/modeling/__init__.py"} <= closure
    assert {"src/deepfake/modeling/store.py", "src/deepfake/core/errors.py"} <= closure


LAYERS = ("core", "media", "modeling", "sample", "backends", "zoo", "stages", "apps")
# What each layer may import: its own and every lower one, except that the sample sits beside modeling
# and backends (between media and stages): it imports core and media only, and only stages and apps import it.
MAY_IMPORT = {layer: set(LAYERS[: i + 1]) for i, layer in enumerate(LAYERS)}
MAY_IMPORT["sample"] -= {"modeling"}
MAY_IMPORT["backends"] -= {"sample"}
MAY_IMPORT["zoo"] -= {"sample"}  # the published detectors: fetching, their layouts, their inference


def _layer(relative: str) -> str | None:
    parts = Path(relative).parts  # src/deepfake/<layer>/...
    return parts[2] if len(parts) > 3 and parts[2] in LAYERS else None


def test_imports_point_one_way_down_the_layers_and_no_stage_imports_another() -> None:
    """core <- media <- modeling <- backends <- stages <- apps (<- cli), with core <- media <- sample <- stages
    beside modeling and backends: a module imports its own layer or the ones below it only, and a stage
    module never imports another stage module."""
    for path in sorted((SRC / "deepfake").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        layer = _layer(relative)
        if layer is None:
            continue
        for name in _imported_modules(path):
            target = _module_file(name)
            if target is None:
                continue
            target_layer = _layer(str(target.relative_to(ROOT)))
            if target_layer is None:
                assert name in ("deepfake",), f"{relative} imports {name}, above every layer"
                continue
            assert target_layer in MAY_IMPORT[layer], f"{relative} imports {name} (a higher or side layer)"
            if layer == "stages" and target_layer == "stages" and target != path:
                assert target.name == "__init__.py", f"{relative} imports another stage module, {name}"


def _import_graph() -> dict[Path, set[Path]]:
    """Each package file -> the package files importing it runs: every module it names, lazy imports
    included, and the ``__init__`` of each package it enters (not those it lies in: they are running)."""
    graph: dict[Path, set[Path]] = {}
    for path in sorted((SRC / "deepfake").rglob("*.py")):
        edges: set[Path] = set()
        for name in _imported_modules(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                found = _module_file(".".join(parts[:i]))
                if found is None or found == path:
                    continue
                if found.name == "__init__.py" and found.parent in path.parents:
                    continue
                edges.add(found)
        graph[path] = edges
    return graph


def _first_cycle(graph: dict[Path, set[Path]]) -> list[Path]:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or [] when there is none (depth-first, sorted)."""
    done: set[Path] = set()
    for start in sorted(graph):
        if start in done:
            continue
        trail, on_trail = [start], {start}
        stack = [iter(sorted(graph.get(start, ())))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                finished = trail.pop()
                on_trail.discard(finished)
                done.add(finished)
                continue
            if following in on_trail:
                return [*trail[trail.index(following) :], following]
            if following not in done:
                trail.append(following)
                on_trail.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return []


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    a, b, c, d = (Path(n) for n in "abcd")
    assert _first_cycle({a: {b}, b: {c}, c: {a, d}, d: set()}) == [a, b, c, a]
    assert _first_cycle({a: {b, c}, b: {d}, c: {d}, d: set()}) == []  # a diamond is no cycle


def test_no_import_cycle_among_the_package_modules() -> None:
    """No module imports, at the top or lazily, one that (transitively) imports it back: each import runs
    one way (media.layouts -> media.metadata -> core.vocabulary, never back)."""
    cycle = _first_cycle(_import_graph())
    assert not cycle, "import cycle: " + " -> ".join(str(p.relative_to(SRC)) for p in cycle)


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


def test_the_sample_writes_every_configured_dataset_root(stages: dict, params: dict) -> None:
    outs = {str(o.def_path) for o in stages["sample"].outs}
    assert {f"data/raw/{part}" for part in params["sample"]["parts"]} <= outs
    for name, spec in {**params["data"]["datasets"], **params["data"]["test_datasets"]}.items():
        assert spec["root"] in outs, f"data.datasets.{name}.root is not a sample output"
        if "identities" in spec:
            assert any(spec["identities"].startswith(out + "/") for out in outs), name


# the experiments' metrics: what a decision rests on (dvc exp show compares these and nothing else)
DECISION_METRICS = ("metrics/decision.json",)


def test_reports_are_git_tracked_and_only_decisions_are_experiment_metrics(stages: dict) -> None:
    """Every stage writes a report kept in git (``cache: false``: readable and diffable from history), but only
    the decision figures are DVC metrics: stage timings and counts would otherwise be experiment columns (the
    2,346 of issue 24), changing on every run."""
    declared = set()
    for name, stage in stages.items():
        if name == "sample":
            continue
        reports = [o for o in stage.outs if str(o.def_path).startswith("metrics/")]
        assert reports and all(not o.use_cache for o in reports), f"{name}: report must be a cache: false output"
        for out in stage.outs:
            if out.metric:
                assert str(out.def_path).startswith(DECISION_METRICS), f"{name}: {out.def_path} is no decision metric"
                declared.add(str(out.def_path))
    assert declared == {"metrics/decision.json"}  # the one-screen summary (the decision stage's)


STAGE_SCRIPTS = sorted(p.name for p in (ROOT / "stages").glob("*.py"))
SAFE_PATH_IDS = {True: "python -P", False: "python"}


def _script_help(script: str, safe_path: bool) -> subprocess.CompletedProcess:
    command = [sys.executable, *(["-P"] if safe_path else []), str(ROOT / "stages" / script), "--help"]
    return subprocess.run(command, capture_output=True, text=True)


@pytest.fixture(scope="module")
def script_help_runs() -> Iterator[dict[tuple[str, bool], Future]]:
    """Every ``--help`` run, started together: each one is a fresh interpreter importing torch, the
    whole cost, and each runs alone as in dvc.yaml; a pool as wide as the machine overlaps them."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        yield {
            (script, safe_path): pool.submit(_script_help, script, safe_path)
            for script in STAGE_SCRIPTS
            for safe_path in SAFE_PATH_IDS
        }


@pytest.mark.parametrize("safe_path", list(SAFE_PATH_IDS), ids=list(SAFE_PATH_IDS.values()))
@pytest.mark.parametrize("script", STAGE_SCRIPTS)
def test_stage_script_help(script: str, safe_path: bool, script_help_runs: dict[tuple[str, bool], Future]) -> None:
    """Each script starts, as dvc.yaml runs it (``python -P``) and as a user might (``python``):
    stages/evaluate.py and stages/triton.py share names with installed packages (HF evaluate, the triton
    torch imports), and deepfake.core.command keeps stages/ off sys.path either way."""
    result = script_help_runs[(script, safe_path)].result()
    assert result.returncode == 0, result.stderr
    assert "--params" in result.stdout


def test_a_plain_python_stage_script_still_imports_the_real_triton_and_evaluate(tmp_path: Path) -> None:
    """``python <a folder named stages>/x.py`` puts that folder first on sys.path; deepfake.core.command takes
    it off, so the installed triton and evaluate win over same-named scripts beside it. (A scratch folder:
    a probe written into this checkout's stages/ would show up in the other tests that list it.)"""
    stages = tmp_path / "stages"
    stages.mkdir()
    for shadow in ("triton.py", "evaluate.py"):
        (stages / shadow).write_text("raise ImportError('the stages folder shadowed an installed package')\n")
    probe = stages / "probe.py"
    probe.write_text(
        "import importlib.util\n\nimport deepfake.core.command\n\n"
        "print(importlib.util.find_spec('triton').origin, importlib.util.find_spec('evaluate').origin)\n"
    )
    result = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert str(stages) not in result.stdout, result.stdout
    assert "triton" in result.stdout and "evaluate" in result.stdout


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


STAGE_MODULES = sorted(p.stem for p in (SRC / "deepfake" / "stages").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", STAGE_MODULES)
def test_every_stage_module_has_the_one_stage_contract(name: str) -> None:
    """``Config.from_params(params)`` (train also takes the model and seed, ingest the dataset, evaluate, perturb
    and robustness the test set, zoo_fetch the entry, zoo_convert the package), a ``Paths`` dataclass and
    ``run(config, paths) -> report``; built here from the real params.yaml."""
    import dataclasses
    import importlib
    import inspect

    from deepfake.core.params import load_params

    module = importlib.import_module(f"deepfake.stages.{name}")
    params = load_params(ROOT / "params.yaml")
    if name == "train":
        config = module.Config.from_params(params, params.models[0])
    elif name == "ingest":
        config = module.Config.from_params(params, next(iter(params.data.datasets)))
    elif name in ("evaluate", "perturb", "robustness"):  # per test set
        config = module.Config.from_params(params, next(iter(params.evaluate.testsets)))
    elif name == "zoo_fetch":
        config = module.Config.from_params(params, next(iter(params.zoo.entries)))
    elif name == "zoo_convert":
        config = module.Config.from_params(params, next(iter(params.zoo.packages)))
    else:
        config = module.Config.from_params(params)
    assert dataclasses.is_dataclass(config) and dataclasses.is_dataclass(module.Paths)
    assert list(inspect.signature(module.run).parameters) == ["config", "paths"]


def test_every_stage_script_runs_a_stage_module() -> None:
    scripts = {p.stem for p in (ROOT / "stages").glob("*.py")}
    assert scripts == set(STAGE_MODULES)


def test_a_stages_work_in_progress_is_invisible_to_dvc() -> None:
    """atomic_dir's side folders (a killed run's `.partial`, a swap's `.previous`) sit beside outputs
    inside folders other stages depend on (data/crops for folds): DVC must not hash them."""
    import os

    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        for name in (".dfdc_train_part_0.partial", ".dfdc_train_part_0.previous"):
            assert repo.dvcignore.is_ignored_dir(os.path.join(ROOT, "data", "crops", name)), name
        assert not repo.dvcignore.is_ignored_dir(os.path.join(ROOT, "data", "crops", "dfdc_train_part_0"))


def test_the_export_stage_tracks_every_setting_its_manifest_records() -> None:
    """A model package's manifest records PACKAGE_SETTINGS; DVC must rerun export when one changes."""
    from deepfake.core.params import PACKAGE_SETTINGS

    tracked = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["export"]["params"])
    for section, keys in PACKAGE_SETTINGS.items():
        for key in [section] if keys is None else [f"{section}.{k}" for k in keys]:
            assert key in tracked or section in tracked, f"export's params in dvc.yaml lack {key}"


# ---- test-only datasets never touch folds or training -------------------------------------------------


def _resolved(root: Path, raw_params: dict) -> dict:
    """The stages of this dvc.yaml resolved against ``raw_params`` in a scratch DVC repository at ``root``:
    name -> (command, data deps, params deps with their values, outs), what `dvc status` compares short of the
    files' hashes."""
    import shutil

    from dvc.repo import Repo

    root.mkdir()
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False))
    Repo.init(str(root), no_scm=True).close()
    with Repo(str(root)) as repo:
        return {
            stage.name: (
                stage.cmd,
                sorted(str(d.def_path) for d in stage.deps if not hasattr(d, "params")),
                sorted(
                    (key, repr(_param(raw_params, key))) for d in stage.deps if hasattr(d, "params") for key in d.params
                ),
                sorted(str(o.def_path) for o in stage.outs),
            )
            for stage in repo.index.stages
        }


def _param(raw_params: dict, key: str) -> object:
    """``raw_params["a"]["b"]`` for the params key "a.b", as a stage's params name it."""
    node: object = raw_params
    for part in key.split("."):
        assert isinstance(node, dict) and part in node, f"param {key} not in params.yaml"
        node = node[part]
    return node


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/") or folder.startswith(path.rstrip("/") + "/")


def test_adding_a_test_only_dataset_and_test_set_leaves_folds_and_training_unchanged(
    tmp_path: Path, params: dict
) -> None:
    """A test-only dataset (data.test_datasets) and a test set of it add their own ingest_test, bboxes_test and
    crops_test stages and one evaluate@ stage; folds and every train@ / train_seed@ stage keep their command,
    deps, params and values, and no new output lies inside (or around) one of their deps, so `dvc status` lists
    none of them. Every other existing stage keeps its definition too, but matrix (its test set list grows).
    Checked from nothing (no test-only dataset: their foreach stages are empty) and from params.yaml's own."""
    from copy import deepcopy

    from deepfake.core.params import validate_params

    without = deepcopy(params)
    test_only = set(without["data"]["test_datasets"])
    without["data"]["test_datasets"] = {}
    without["evaluate"]["testsets"] = {
        name: sets for name, sets in without["evaluate"]["testsets"].items() if not test_only & set(sets)
    }
    extra = {"layout": "dfdc_test", "root": "/elsewhere/dfdc_public_test", "split": "test"}
    for step, before in enumerate((without, params)):
        after = deepcopy(before)
        after["data"]["test_datasets"]["new_test"] = extra
        after["evaluate"]["testsets"]["new_testset"] = ["new_test"]
        validate_params(after, "the test's params.yaml")  # the variant is valid params
        old, new = _resolved(tmp_path / f"before{step}", before), _resolved(tmp_path / f"after{step}", after)
        added = {f"{s}@new_test" for s in TEST_ONLY_STAGES} | {
            f"{s}@new_testset" for s in ("evaluate", "perturb", "robustness")
        }
        assert set(new) - set(old) == added and set(old) <= set(new)
        protected = [n for n in old if n == "folds" or n.startswith(("train@", "train_seed@"))]
        assert "folds" in protected and len(protected) > 1 + len(params["models"])
        changed = sorted(n for n in old if old[n] != new[n])
        assert changed == ["decision", "matrix"], changed  # the two joins over every test set
        new_outs = [out for name in added for out in new[name][3]]
        for name in protected:
            for dep in new[name][1]:
                inside = [out for out in new_outs if _inside(out, dep)]
                assert not inside, f"{name}: dep {dep} would change with the new outputs {inside}"


def test_the_robustness_stage_depends_on_what_deepfake_predict_imports() -> None:
    """robustness@ runs ``deepfake predict`` as a subprocess (the product's own command), which no import of its
    script shows: its deps must still cover predict's import closure, or a change to prediction would leave
    the robustness figures stale."""
    stage = next(s for name, s in _all_stages().items() if name.startswith("robustness@"))
    deps = {str(Path(d.def_path)) for d in stage.deps}
    apps = SRC / "deepfake" / "apps"
    entry = [apps / "predict.py", apps / "zoo_predict.py", apps / "package_check.py"]
    entry.append(SRC / "deepfake" / "backends" / "onnx_backend.py")  # params.yaml's predict.backend
    needed = {str(p.relative_to(ROOT)) for p in entry} | {f for p in entry for f in code_closure(p)}
    missing = sorted(f for f in needed if not _covered(f, deps))
    assert not missing, f"robustness@: dvc.yaml deps miss modules deepfake predict imports: {missing}"
