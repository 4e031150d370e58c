"""The matrix stage: hand-written evaluate@<testset> JSONs -> metrics/matrix.json, matrix.md, matrix.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deepfake.core.errors import InputError
from deepfake.core.fileio import write_json_atomic
from deepfake.core.params import Params, validate_params
from deepfake.stages import matrix

ROOT = Path(__file__).resolve().parents[1]
TESTSETS = {"dfdc": ["dfdc_train_part_0", "dfdc_train_part_1"], "ffpp": ["ffpp"], "celebdf": ["celebdf"]}


def _params(testsets: dict[str, list[str]] | None = None) -> Params:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"]["testsets"] = testsets or TESTSETS
    return validate_params(raw, "tests/test_matrix.py")


def _level(level: str, auc: float | None, log_loss: float | None = 0.5, ap: float | None = 0.9) -> dict[str, Any]:
    return {"level": level, "auc": auc, "log_loss": log_loss, "ap": ap, "eer": 0.25, "count": 4, "fakes": 2}


def _entry(video_auc: float | None, frame_auc: float | None, log_loss: float = 0.5, **extra: Any) -> dict[str, Any]:
    return {"frame": _level("frame", frame_auc), "video": _level("video", video_auc, log_loss), **extra}


def _evaluation(testset: str, models: dict[str, dict[str, Any]], ensembles: dict[str, dict[str, Any]]) -> dict:
    return {
        "testset": testset,
        "datasets": TESTSETS[testset],
        "train_datasets": ["dfdc_train_part_0", "dfdc_train_part_1", "ffpp"],
        "holdout_fold": 0,
        "aggregation": "confident",
        "videos": 6,
        "real_videos": 2,
        "fake_videos": 4,
        "crops": 40,
        "datasets_without_rows": [],
        "rows": [*models, *ensembles],
        "models": models,
        "ensembles": ensembles,
    }


def _write_evaluations(folder: Path) -> None:
    deepfakes = _entry(0.9, 0.8, held_out_from_training=False)
    textures = _entry(0.55, 0.6, held_out_from_training=True)
    no_reals = {"frame": None, "video": None, "reason": "no REAL rows", "held_out_from_training": False}
    evaluations = {
        "dfdc": _evaluation(
            "dfdc",
            {
                "classifier": _entry(0.75, 0.7, 0.6),
                "uynet": _entry(0.5, 0.45, methods={"unspecified": _entry(0.5, 0.45)}),
            },
            {"all-ensemble": _entry(0.8, 0.72, 0.55, members=["classifier", "uynet"])},
        ),
        "ffpp": _evaluation(
            "ffpp",
            {
                "classifier": _entry(0.7, 0.65, methods={"Deepfakes": deepfakes, "NeuralTextures": textures}),
                "uynet": _entry(0.6, 0.62, methods={"Deepfakes": deepfakes, "NeuralTextures": textures}),
            },
            {"all-ensemble": _entry(0.72, 0.66, members=["classifier", "uynet"])},
        ),
        "celebdf": _evaluation(
            "celebdf",
            {
                "classifier": _entry(None, None, methods={"Celeb-synthesis": no_reals}),
                "uynet": _entry(None, None, methods={"Celeb-synthesis": no_reals}),
            },
            {"all-ensemble": _entry(None, None, members=["classifier", "uynet"])},
        ),
    }
    for name, report in evaluations.items():
        write_json_atomic(folder / f"{name}.json", report)


def _paths(tmp_path: Path) -> matrix.Paths:
    return matrix.Paths(
        tmp_path / "evaluate", tmp_path / "out" / "matrix.json", tmp_path / "out" / "matrix.md", tmp_path / "matrix.png"
    )


def test_matrix_json_collects_every_row_testset_and_method(tmp_path: Path) -> None:
    _write_evaluations(tmp_path / "evaluate")
    report = matrix.run(matrix.Config.from_params(_params()), _paths(tmp_path))
    assert report["testsets"] == ["dfdc", "ffpp", "celebdf"]  # params order
    assert report["rows"] == ["classifier", "uynet", "all-ensemble"]
    assert report["method_columns"] == [
        "dfdc/unspecified",
        "ffpp/Deepfakes",
        "ffpp/NeuralTextures",
        "celebdf/Celeb-synthesis",
    ]

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    written = json.loads((tmp_path / "out" / "matrix.json").read_text(), parse_constant=refuse)
    assert written == report["matrix"]
    assert written["classifier"]["dfdc"] == {
        "video_auc": 0.75,
        "video_log_loss": 0.6,
        "frame_auc": 0.7,
        "video_ap": 0.9,
        "video_eer": 0.25,
    }
    assert written["all-ensemble"]["dfdc"]["video_auc"] == 0.8
    assert written["uynet"]["ffpp/NeuralTextures"]["video_auc"] == 0.55
    assert written["uynet"]["ffpp/NeuralTextures"]["frame_auc"] == 0.6
    assert "dfdc/unspecified" in written["uynet"] and "dfdc/unspecified" not in written["classifier"]
    assert written["classifier"]["celebdf"]["video_auc"] is None
    # the cells docs/architecture.md documents for metrics/matrix.json, all empty for a set with no score
    cells = ["video_auc", "video_log_loss", "frame_auc", "video_ap", "video_eer"]
    assert written["classifier"]["celebdf/Celeb-synthesis"] == dict.fromkeys(cells)


def test_matrix_markdown_names_levels_datasets_and_training_data(tmp_path: Path) -> None:
    _write_evaluations(tmp_path / "evaluate")
    matrix.run(matrix.Config.from_params(_params()), _paths(tmp_path))
    text = (tmp_path / "out" / "matrix.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(headings) == 3
    assert all("level" in heading.lower() for heading in headings)
    assert headings[0].startswith("## Video level") and headings[1].startswith("## Frame level")
    assert "method" in headings[2]
    assert "`dfdc`: datasets dfdc_train_part_0, dfdc_train_part_1" in text
    assert "`ffpp`: datasets ffpp" in text
    assert "trained on the training folds of: dfdc_train_part_0, dfdc_train_part_1, ffpp" in text
    assert "| model | dfdc AUC | dfdc log loss | ffpp AUC | ffpp log loss | celebdf AUC | celebdf log loss |" in text
    assert "| classifier | 0.7500 | 0.6000 | 0.7000 | 0.5000 | n/a | 0.5000 |" in text
    assert "| model | dfdc | ffpp | celebdf |" in text
    assert "| all-ensemble | 0.7200 | 0.6600 | n/a |" in text  # frame level
    assert "ffpp/NeuralTextures †" in text and "NeuralTextures" in text.split("kept out of training")[1]
    assert "| uynet | 0.5000 | 0.9000 | 0.5500 | n/a |" in text  # per method, video AUC
    assert "| classifier | n/a | 0.9000 | 0.5500 | n/a |" in text  # no dfdc/unspecified entry for it
    assert "confident" in text


def test_a_test_only_testset_is_a_column_named_as_every_video_of_it(tmp_path: Path) -> None:
    """A test set of test-only datasets (data.test_datasets) joins the matrix like any other; matrix.md says
    it holds all their videos, not a holdout fold."""
    from deepfake.stages import evaluate

    assert matrix.ALL_VIDEOS == evaluate.ALL_VIDEOS  # stage modules never import each other: one value, twice
    _write_evaluations(tmp_path / "evaluate")
    public = _evaluation("ffpp", {"classifier": _entry(0.65, 0.6), "uynet": _entry(0.7, 0.6)}, {})
    public.update(testset="dfdc_public_test", datasets=["dfdc_test"], selection=matrix.ALL_VIDEOS, holdout_fold=None)
    write_json_atomic(tmp_path / "evaluate" / "dfdc_public_test.json", public)
    report = matrix.run(
        matrix.Config.from_params(_params({**TESTSETS, "dfdc_public_test": ["dfdc_test"]})), _paths(tmp_path)
    )
    assert report["testsets"] == ["dfdc", "ffpp", "celebdf", "dfdc_public_test"]
    assert report["matrix"]["uynet"]["dfdc_public_test"]["video_auc"] == 0.7
    text = (tmp_path / "out" / "matrix.md").read_text()
    assert "`dfdc_public_test`: datasets dfdc_test; all videos (test-only): videos 6" in text
    assert "`ffpp`: datasets ffpp; holdout fold 0: videos 6" in text


def test_heatmap_is_written_and_deterministic(tmp_path: Path) -> None:
    _write_evaluations(tmp_path / "evaluate")
    config, paths = matrix.Config.from_params(_params()), _paths(tmp_path)
    matrix.run(config, paths)
    first = paths.heatmap.read_bytes()
    assert first.startswith(b"\x89PNG") and len(first) > 5000
    matrix.run(config, paths)
    assert paths.heatmap.read_bytes() == first


def test_a_missing_evaluation_names_the_stage_to_run(tmp_path: Path) -> None:
    _write_evaluations(tmp_path / "evaluate")
    (tmp_path / "evaluate" / "ffpp.json").unlink()
    with pytest.raises(InputError, match=r"ffpp\.json: not found; run `dvc repro evaluate@ffpp`"):
        matrix.run(matrix.Config.from_params(_params()), _paths(tmp_path))
    assert not (tmp_path / "out").exists()


def test_a_stale_or_foreign_evaluation_is_refused(tmp_path: Path) -> None:
    _write_evaluations(tmp_path / "evaluate")
    stale = dict(TESTSETS, ffpp=["ffpp", "celebdf"])
    with pytest.raises(InputError, match=r"params now say \['ffpp', 'celebdf'\]; run `dvc repro evaluate@ffpp`"):
        matrix.run(matrix.Config.from_params(_params(stale)), _paths(tmp_path))
    (tmp_path / "evaluate" / "celebdf.json").write_text(json.dumps({"testset": "celebdf", "models": []}))
    with pytest.raises(InputError, match="no 'models' object"):
        matrix.run(matrix.Config.from_params(_params()), _paths(tmp_path))
    (tmp_path / "evaluate" / "celebdf.json").write_text('{"a": 1, "a": 2}')
    with pytest.raises(InputError, match="duplicate key"):
        matrix.run(matrix.Config.from_params(_params()), _paths(tmp_path))


def test_a_non_numeric_metric_is_refused(tmp_path: Path) -> None:
    _write_evaluations(tmp_path / "evaluate")
    path = tmp_path / "evaluate" / "dfdc.json"
    report = json.loads(path.read_text())
    report["models"]["uynet"]["video"]["auc"] = "high"
    path.write_text(json.dumps(report))
    with pytest.raises(InputError, match=r"uynet\.video\.auc: expected a number or null"):
        matrix.run(matrix.Config.from_params(_params()), _paths(tmp_path))


def test_the_stage_script_runs_the_matrix(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("matrix_script", ROOT / "stages" / "matrix.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"]["testsets"] = TESTSETS
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _write_evaluations(tmp_path / "evaluate")
    paths = _paths(tmp_path)
    argv = ["--params", str(tmp_path / "params.yaml"), "--evaluations", str(paths.evaluations)]
    argv += ["--out-json", str(paths.out_json), "--out-md", str(paths.out_md), "--heatmap", str(paths.heatmap)]
    script.main(argv)
    assert paths.out_json.is_file() and paths.out_md.is_file() and paths.heatmap.is_file()
