"""The evaluate stage on tiny trained models: metrics for each model and the ensembles, plots, table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepfake import evaluate
from deepfake.models import CheckpointError


def test_evaluate_reports_every_model_and_ensemble(trained: dict) -> None:
    root = trained["root"]
    report = evaluate.run(
        trained["params"],
        trained["folds"],
        trained["roots"],
        root / "models",
        root / "metrics.json",
        root / "plots",
        root / "comparison.md",
    )
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
    members = evaluate.ensemble_members(trained["params"], tmp_path)
    with pytest.raises(CheckpointError, match="dvc pull"):
        evaluate.load_member(members[0], evaluate.torch.device("cpu"))
    foreign = evaluate.Member("classifier", "classifier", trained["root"] / "models" / "uynet" / "best.pt")
    with pytest.raises(CheckpointError, match="holds a 'uynet' model"):
        evaluate.load_member(foreign, evaluate.torch.device("cpu"))
