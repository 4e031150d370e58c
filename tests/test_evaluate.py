"""The evaluate stage on tiny trained models: metrics for each model and the ensembles, plots, table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deepfake.modeling.models import CheckpointError
from deepfake.modeling.store import Member, ModelStore, members
from deepfake.stages import evaluate


def _paths(trained: dict, models: Path, out: Path) -> evaluate.Paths:
    return evaluate.Paths(
        trained["folds"], trained["roots"], models, out / "metrics.json", out / "plots", out / "comparison.md"
    )


def test_evaluate_reports_every_model_and_ensemble(trained: dict) -> None:
    root = trained["root"]
    report = evaluate.run(evaluate.Config.from_params(trained["params"]), _paths(trained, root / "models", root))
    assert set(report["models"]) == {"classifier", "uynet", "classifier-8", "uynet-8"}
    assert set(report["ensembles"]) == {"classifier-ensemble", "uynet-ensemble", "all-ensemble"}
    for metrics in report["models"].values():
        assert metrics["video"]["count"] == 2  # realb and its fake
        assert 0.0 <= metrics["video"]["auc"] <= 1.0
        assert metrics["frame"]["count"] == report["crops"]
    assert 0.0 <= report["models"]["uynet"]["mask"]["fake_iou"] <= 1.0
    assert "mask" not in report["models"]["classifier"]
    assert json.loads((root / "metrics.json").read_text())["ensembles"]["all-ensemble"]["members"]
    for name in ("roc.png", "pr.png", "confusion.png", "comparison.png"):
        assert (root / "plots" / name).stat().st_size > 1000
    table = (root / "comparison.md").read_text()
    assert table.count("\n| ") == 8  # header + 4 models + 3 ensembles


def test_missing_or_foreign_checkpoint_is_a_clear_error(trained: dict, tmp_path: Path) -> None:
    params = trained["params"]
    with pytest.raises(CheckpointError, match="dvc pull"):
        evaluate.run(evaluate.Config.from_params(params), _paths(trained, tmp_path / "models", tmp_path))
    store = ModelStore(tmp_path / "models")
    first = members(params.models, params.ensemble.seeds)[0]
    with pytest.raises(CheckpointError, match=r"dvc repro train@classifier.*dvc pull train"):
        store.load_torch(first)
    foreign = Member("classifier")  # its slot holds the trained U-YNet's checkpoint
    store.checkpoint_dir(foreign).mkdir(parents=True)
    shutil.copy(trained["store"].checkpoint(Member("uynet")), store.checkpoint(foreign))
    with pytest.raises(CheckpointError, match="holds a 'uynet' model"):
        store.load_torch(foreign)
    with pytest.raises(CheckpointError, match="holds a 'uynet' model"):
        evaluate.run(evaluate.Config.from_params(params), _paths(trained, tmp_path / "models", tmp_path))
