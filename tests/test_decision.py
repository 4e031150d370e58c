"""The experiments' one-screen summary (deepfake.stages.decision): each figure at its worst across test sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepfake.core.errors import InputError
from deepfake.stages import decision


def _write(folder: Path, name: str, data: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_each_figure_is_summarised_at_its_worst(tmp_path: Path) -> None:
    _write(tmp_path / "d", "a", {"auc": 0.9, "log_loss": 0.3, "ece": 0.05, "fpr": 0.01, "tpr": 0.8})
    _write(tmp_path / "d", "b", {"auc": 0.6, "log_loss": 0.7, "ece": 0.2, "fpr": 0.04, "tpr": None})
    _write(tmp_path / "r", "a", {"auc_drop": 0.1, "unscored": 2})
    _write(tmp_path / "r", "b", {"auc_drop": 0.3, "unscored": 1})
    paths = decision.Paths(tmp_path / "d", tmp_path / "r", tmp_path / "decision.json")
    summary = decision.run(decision.Config(testsets=("a", "b")), paths)
    assert summary == pytest.approx(
        {
            "auc": 0.75,
            "worst_auc": 0.6,
            "log_loss": 0.7,
            "ece": 0.2,
            "fpr": 0.04,
            "tpr": 0.8,  # a test set without a decision (null) does not count as a zero
            "auc_drop": 0.3,
            "unscored": 3,
        }
    )
    assert json.loads(paths.out.read_text()) == summary


def test_a_missing_or_foreign_report_names_the_stage_to_run(tmp_path: Path) -> None:
    _write(tmp_path / "d", "a", {"auc": 0.9, "log_loss": 0.3, "ece": 0.05, "fpr": 0.01, "tpr": 0.8})
    paths = decision.Paths(tmp_path / "d", tmp_path / "r", tmp_path / "decision.json")
    with pytest.raises(InputError, match=r"dvc repro robustness@a"):
        decision.run(decision.Config(testsets=("a",)), paths)
    _write(tmp_path / "r", "a", {"auc_drop": "big", "unscored": 0})
    with pytest.raises(InputError, match="auc_drop: expected a number"):
        decision.run(decision.Config(testsets=("a",)), paths)
    assert not paths.out.exists()
