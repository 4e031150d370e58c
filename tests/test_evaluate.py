"""The evaluate@<testset> stage: test-set rows, per-method breakdown, labelled levels, strict JSON.

Most tests build their own folds table in ``tmp_path`` (with the ``part``/``method`` columns of the
multi-dataset index) and either stub the model (known probabilities per crop, so the figures can be
checked against scikit-learn) or use tiny randomly initialised models through the real ``ModelStore``.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn import metrics as skm

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.params import Params, validate_params
from deepfake.modeling.calibration import Calibration, Decision, OperatingPoint, VerdictRule, write_decisions
from deepfake.modeling.data import DataRoots
from deepfake.modeling.models import CheckpointError, create_model
from deepfake.modeling.store import Member, ModelStore, members
from deepfake.stages import evaluate

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [
    *("video", "file", "label", "original", "part", "frame", "face", "identity", "fold"),
    *("landmarks", "diff", "mask", "method", "compression", "split"),
]


def _raw(**evaluate_changes: Any) -> dict[str, Any]:
    """params.yaml with small, CPU settings and the given ``evaluate`` keys."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["image_size"] = 64
    raw["ensemble"]["seeds"] = []
    raw["evaluate"].update(
        batch_size=8,
        device="cpu",
        aggregation="mean",
        testsets={"ffpp": ["ffpp"], "dfdc": ["dfdc_train_part_0", "dfdc_train_part_1"], "celebdf": ["celebdf"]},
    )
    raw["evaluate"].update(evaluate_changes)
    return raw


def _params(**evaluate_changes: Any) -> Params:
    return validate_params(_raw(**evaluate_changes), "tests/test_evaluate.py")


def _row(video: str, label: str, part: str, frame: int, prob: float, method: str = "", fold: int = 0) -> dict:
    original = video if label == "REAL" else f"real_of_{video}"
    mask = f"{part}/{video}/{frame}_0.png" if label == "FAKE" else ""
    return {
        "video": video,
        "file": f"{part}/{video}/{frame}_0.png",
        "label": label,
        "original": original,
        "part": part,
        "frame": frame,
        "face": 0,
        "identity": "",
        "fold": fold,
        "landmarks": "",
        "diff": mask,
        "mask": mask,
        "method": method,
        "compression": "c23" if part == "ffpp" else "",
        "split": "test" if fold == 0 and part == "ffpp" else "",
        "p": prob,
    }


# The hand-made FF++ test set: two crops per video (probabilities as the stub model returns them).
FFPP_VIDEOS = [
    ("r1.mp4", "REAL", "", (0.1, 0.3)),
    ("r2.mp4", "REAL", "", (0.6, 0.2)),
    ("d1.mp4", "FAKE", "Deepfakes", (0.9, 0.7)),
    ("d2.mp4", "FAKE", "Deepfakes", (0.4, 0.5)),
    ("n1.mp4", "FAKE", "NeuralTextures", (0.2, 0.35)),
    ("u1.mp4", "FAKE", "", (0.8, 0.8)),
]


def _table() -> pd.DataFrame:
    rows = [_row(v, lab, "ffpp", f, p, m) for v, lab, m, ps in FFPP_VIDEOS for f, p in enumerate(ps)]
    rows += [_row("x.mp4", "REAL", "ffpp", 0, 0.5, fold=1)]  # a training fold: never evaluated
    rows += [_row("a.mp4", "REAL", "dfdc_train_part_0", 0, 0.3), _row("b.mp4", "FAKE", "dfdc_train_part_0", 0, 0.7)]
    rows += [_row("a.mp4", "FAKE", "dfdc_train_part_1", 0, 0.9)]  # same file name, another dataset
    rows += [_row("c1.mp4", "FAKE", "celebdf", 0, 0.6, "Celeb-synthesis", fold=0)]  # fakes only
    rows += [_row("c2.mp4", "REAL", "celebdf", 0, 0.6, fold=2)]
    return pd.DataFrame(rows, columns=[*COLUMNS, "p"])


def _write_table(tmp_path: Path, table: pd.DataFrame) -> Path:
    path = tmp_path / "folds.csv"
    table.to_csv(path, index=False)
    return path


def _paths(folds: Path, out: Path, testset: str, roots: DataRoots | None = None) -> evaluate.Paths:
    roots = roots or DataRoots(out / "crops", out / "landmarks", out / "masks")
    metrics, plots = out / "metrics" / f"{testset}.json", out / "plots" / testset
    return evaluate.Paths(folds, roots, out / "models", metrics, plots, out / "crops_test")


@pytest.fixture
def stub_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every member predicts the folds table's ``p`` column; U-YNet also reports a fixed mask IoU/Dice."""

    def load_torch(self: ModelStore, member: Member, device: Any = "cpu") -> Member:
        return member

    def predict_crops(model: Member, dataset: Any, batch_size: int, device: Any) -> dict[str, np.ndarray]:
        probs = dataset.rows["p"].to_numpy(dtype=np.float64)
        if model.model == "classifier":
            probs = 1 - probs  # a second, different opinion for the ensemble
        out = {"prob": probs}
        if model.model == "uynet":
            out["iou"] = np.where(dataset.rows["label"] == "FAKE", 0.25, 1.0)
            out["dice"] = np.where(dataset.rows["label"] == "FAKE", 0.4, 1.0)
        return out

    monkeypatch.setattr(ModelStore, "load_torch", load_torch)
    monkeypatch.setattr(evaluate, "predict_crops", predict_crops)


def _strict_load(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


# ---- params and row selection -----------------------------------------------------------------------


def test_testsets_param_is_validated() -> None:
    assert list(_params().evaluate.testsets) == ["ffpp", "dfdc", "celebdf"]  # params order kept
    for bad, fragment in (
        ({}, "at least 1 item"),
        ({"a/b": ["ffpp"]}, "plain name"),
        ({".hidden": ["ffpp"]}, "plain name"),
        ({"ffpp": []}, "at least 1 item"),
        ({"ffpp": ["ffpp", "ffpp"]}, "duplicate entries ffpp"),
        ({"ffpp": ["../ffpp"]}, "plain folder name"),
        ({"ffpp": "ffpp"}, "valid list"),
    ):
        with pytest.raises(ParamsError, match=fragment):
            _params(testsets=bad)


def test_config_takes_the_testset_and_refuses_an_unknown_one() -> None:
    params = _params()
    config = evaluate.Config.from_params(params, "dfdc")
    assert config.testset == "dfdc" and config.datasets == ("dfdc_train_part_0", "dfdc_train_part_1")
    assert config.train_datasets == tuple(params.train.datasets)
    with pytest.raises(ParamsError, match=r"no test set 'dfcd' \(test sets: ffpp, dfdc, celebdf\)"):
        evaluate.Config.from_params(params, "dfcd")


def test_a_testset_holds_the_holdout_rows_of_its_datasets() -> None:
    params = _params()
    rows = evaluate.select_testset(_table(), evaluate.Config.from_params(params, "ffpp"), "folds.csv")
    assert set(rows["part"]) == {"ffpp"} and set(rows["fold"]) == {0}
    assert sorted(rows["video"].unique()) == sorted(f"ffpp/{v[0]}" for v in FFPP_VIDEOS)
    methods = dict(zip(rows["video"], rows["method"], strict=True))
    assert methods["ffpp/u1.mp4"] == "unspecified" and methods["ffpp/d1.mp4"] == "Deepfakes"
    assert methods["ffpp/r1.mp4"] == ""
    dfdc = evaluate.select_testset(_table(), evaluate.Config.from_params(params, "dfdc"), "folds.csv")
    # a.mp4 exists in both DFDC parts (one real, one fake): two videos, not one
    assert sorted(dfdc["video"].unique()) == [
        "dfdc_train_part_0/a.mp4",
        "dfdc_train_part_0/b.mp4",
        "dfdc_train_part_1/a.mp4",
    ]
    assert set(dfdc["method"]) == {"", "unspecified"}


def test_a_folds_table_without_method_column_reads_every_fake_as_unspecified() -> None:
    table = _table().drop(columns=["method", "compression", "split"])
    rows = evaluate.select_testset(table, evaluate.Config.from_params(_params(), "ffpp"), "folds.csv")
    assert set(rows.loc[rows["label"] == "FAKE", "method"]) == {"unspecified"}


def test_an_empty_testset_is_an_input_error_naming_it(tmp_path: Path) -> None:
    params = _params(testsets={"dfdc": ["dfdc_train_part_0"], "unseen": ["celebdf", "ffpp"]})
    table = _table()
    table = table[table["part"].str.startswith("dfdc")]
    folds = _write_table(tmp_path, table)
    with pytest.raises(InputError, match=r"test set 'unseen' \(datasets celebdf, ffpp\) has no rows in holdout fold 0"):
        evaluate.run(evaluate.Config.from_params(params, "unseen"), _paths(folds, tmp_path, "unseen"))
    assert not (tmp_path / "metrics").exists()


# ---- test-only datasets (data.test_datasets): every video, no fold filter --------------------------------

# Two test-only datasets' crops, as their crops indexes list them (no fold, landmarks, diff or mask columns).
TEST_ONLY_VIDEOS = [
    ("dfdc_test", "t1.mp4", "REAL", "", (0.2, 0.4)),
    ("dfdc_test", "t2.mp4", "FAKE", "", (0.7, 0.9)),
    ("dfdc_test", "t3.mp4", "FAKE", "", (0.3, 0.6)),
    ("other_test", "t1.mp4", "REAL", "", (0.1,)),  # same file name, another dataset
    ("other_test", "o2.mp4", "FAKE", "method_A", (0.8,)),
]


def _test_only_raw(**evaluate_changes: Any) -> dict[str, Any]:
    """``_raw`` with a second test-only dataset beside params.yaml's dfdc_test, and a test set of both."""
    raw = _raw(**evaluate_changes)
    raw["data"]["test_datasets"]["other_test"] = {"layout": "dfdcp", "root": "data/raw/dfdcp"}
    raw["evaluate"]["testsets"]["public"] = ["dfdc_test", "other_test"]
    return raw


def _write_test_crops(root: Path, folds_too: bool = False) -> pd.DataFrame:
    """Each test-only dataset's ``<root>/<dataset>/index.csv`` (with the stub models' ``p``); returns all rows."""
    rows = [
        {**_row(v, lab, part, f, p, m, fold=f % 3), "original": v if lab == "REAL" else ""}
        for part, v, lab, m, ps in TEST_ONLY_VIDEOS
        for f, p in enumerate(ps)
    ]
    table = pd.DataFrame(rows, columns=[*COLUMNS, "p"])
    for part, crops in table.groupby("part"):
        (root / part).mkdir(parents=True)
        crops.drop(columns=["fold", "landmarks", "diff", "mask"]).to_csv(root / part / "index.csv", index=False)
    return table


def test_a_test_only_testset_is_known_from_the_params() -> None:
    params = validate_params(_test_only_raw(), "tests/test_evaluate.py")
    assert evaluate.Config.from_params(params, "public").test_only
    assert not evaluate.Config.from_params(params, "ffpp").test_only


def test_a_test_only_testset_holds_every_video_of_its_datasets_in_any_fold(tmp_path: Path) -> None:
    """No fold filter: the folds' holdout fold means nothing to a dataset that was never folded."""
    params = validate_params(_test_only_raw(testsets={"only_one": ["dfdc_test"]}), "tests/test_evaluate.py")
    table = _write_test_crops(tmp_path)
    assert set(table["fold"]) == {0, 1}  # rows a holdout filter would drop
    config = evaluate.Config.from_params(params, "public")
    rows = evaluate.select_testset(table, config, "crops_test")
    assert len(rows) == len(table) and set(rows["fold"]) == {0, 1}
    assert sorted(rows["video"].unique()) == sorted(f"{part}/{v}" for part, v, *_ in TEST_ONLY_VIDEOS)
    one = evaluate.select_testset(table, evaluate.Config.from_params(params, "only_one"), "crops_test")
    assert set(one["part"]) == {"dfdc_test"} and len(one) == 6
    # read from the crops indexes: every crop, no fold column, nothing to read for masks or landmarks
    read = evaluate.read_test_crops(tmp_path, config.datasets)
    assert "fold" not in read.columns and len(read) == len(table)
    assert set(read["mask"]) == set(read["landmarks"]) == set(read["diff"]) == {""}
    selected = evaluate.select_testset(read, config, tmp_path)
    assert sorted(selected["video"].unique()) == sorted(rows["video"].unique())
    assert set(selected.loc[selected["label"] == "FAKE", "method"]) == {"unspecified", "method_A"}
    with pytest.raises(
        InputError, match=r"test set 'public' \(test-only datasets dfdc_test, other_test\) has no crops"
    ):
        evaluate.select_testset(read.iloc[:0], config, tmp_path)


def test_a_test_only_testset_is_scored_from_its_crops_without_folds_csv(tmp_path: Path, stub_models: None) -> None:
    """The report keeps its shape (levels, per-method breakdown, plots) and says what it selected."""
    params = validate_params(_test_only_raw(), "tests/test_evaluate.py")
    table = _write_test_crops(tmp_path / "crops_test")
    paths = _paths(tmp_path / "no-folds.csv", tmp_path, "public")  # a folds.csv that does not exist: never read
    report = evaluate.run(evaluate.Config.from_params(params, "public"), paths)
    assert report == _strict_load(tmp_path / "metrics" / "public.json") | {"seconds": report["seconds"]}
    assert report["selection"] == evaluate.ALL_VIDEOS and report["holdout_fold"] is None
    assert report["datasets"] == ["dfdc_test", "other_test"] and report["datasets_without_rows"] == []
    assert report["crops"] == len(table) and report["videos"] == 5 and report["real_videos"] == 2
    assert report["methods"] == {
        "method_A": {"fake_crops": 1, "fake_videos": 1},
        "unspecified": {"fake_crops": 4, "fake_videos": 2},
    }
    uynet = report["models"]["uynet"]
    video_y = [int(lab == "FAKE") for *_, lab, _, _ in TEST_ONLY_VIDEOS]
    video_p = [float(np.mean(ps)) for *_, ps in TEST_ONLY_VIDEOS]
    assert uynet["video"]["auc"] == pytest.approx(skm.roc_auc_score(video_y, video_p))
    assert uynet["frame"]["count"] == len(table) and set(uynet["methods"]) == {"method_A", "unspecified"}
    for name in ("roc.png", "pr.png", "confusion.png", "comparison.png"):
        assert (tmp_path / "plots" / "public" / name).stat().st_size > 1000
    holdout = evaluate.run(
        evaluate.Config.from_params(params, "ffpp"), _paths(_write_table(tmp_path, _table()), tmp_path, "ffpp")
    )
    assert holdout["selection"] == evaluate.HOLDOUT_FOLD and holdout["holdout_fold"] == params.train.holdout_fold


# ---- the report -------------------------------------------------------------------------------------


def test_per_method_breakdown_matches_sklearn(tmp_path: Path, stub_models: None) -> None:
    params = _params()
    folds = _write_table(tmp_path, _table())
    report = evaluate.run(evaluate.Config.from_params(params, "ffpp"), _paths(folds, tmp_path, "ffpp"))
    assert report == _strict_load(tmp_path / "metrics" / "ffpp.json") | {"seconds": report["seconds"]}
    assert report["testset"] == "ffpp" and report["datasets"] == ["ffpp"]
    assert report["train_datasets"] == list(params.train.datasets)
    assert report["crops"] == 12 and report["videos"] == 6 and report["real_videos"] == 2
    assert report["rows"] == ["classifier", "uynet", "all-ensemble"]
    assert set(report["levels"]) >= {"frame", "video"}
    assert report["methods"] == {
        "Deepfakes": {"fake_crops": 4, "fake_videos": 2},
        "NeuralTextures": {"fake_crops": 2, "fake_videos": 1},
        "unspecified": {"fake_crops": 2, "fake_videos": 1},
    }
    uynet = report["models"]["uynet"]
    assert uynet["frame"]["level"] == "frame" and uynet["video"]["level"] == "video"
    assert uynet["video"]["aggregation"] == "mean"
    crops = {v: (lab, m, ps) for v, lab, m, ps in FFPP_VIDEOS}
    reals = [v for v, (lab, _, _) in crops.items() if lab == "REAL"]
    for method, videos in (
        ("Deepfakes", ["d1.mp4", "d2.mp4"]),
        ("NeuralTextures", ["n1.mp4"]),
        ("unspecified", ["u1.mp4"]),
    ):
        entry = uynet["methods"][method]
        chosen = reals + videos
        frame_y = [int(crops[v][0] == "FAKE") for v in chosen for _ in crops[v][2]]
        frame_p = [p for v in chosen for p in crops[v][2]]
        video_y = [int(crops[v][0] == "FAKE") for v in chosen]
        video_p = [float(np.mean(crops[v][2])) for v in chosen]
        assert entry["frame"]["level"] == "frame" and entry["video"]["level"] == "video"
        assert entry["frame"]["count"] == len(frame_p) and entry["video"]["count"] == len(video_p)
        assert entry["frame"]["auc"] == pytest.approx(skm.roc_auc_score(frame_y, frame_p))
        assert entry["video"]["auc"] == pytest.approx(skm.roc_auc_score(video_y, video_p))
        assert entry["video"]["ap"] == pytest.approx(skm.average_precision_score(video_y, video_p))
        assert entry["video"]["log_loss"] == pytest.approx(skm.log_loss(video_y, video_p))
        assert entry["held_out_from_training"] == (method in params.train.holdout_methods)
        assert entry["mask"] == {"fake_iou": 0.25, "fake_dice": 0.4, "real_empty_rate": 1.0}
    # the whole test set, and the classifier's inverted opinion
    all_y = [int(lab == "FAKE") for _, lab, _, _ in FFPP_VIDEOS]
    all_p = [float(np.mean(ps)) for *_, ps in FFPP_VIDEOS]
    assert uynet["video"]["auc"] == pytest.approx(skm.roc_auc_score(all_y, all_p))
    assert report["models"]["classifier"]["video"]["auc"] == pytest.approx(1 - uynet["video"]["auc"])
    assert "mask" not in report["models"]["classifier"]
    ensemble = report["ensembles"]["all-ensemble"]
    assert ensemble["members"] == ["classifier", "uynet"]
    assert ensemble["video"]["log_loss"] == pytest.approx(math.log(2))  # p and 1 - p average to 0.5
    assert set(ensemble["methods"]) == {"Deepfakes", "NeuralTextures", "unspecified"}
    for name in ("roc.png", "pr.png", "confusion.png", "comparison.png"):
        assert (tmp_path / "plots" / "ffpp" / name).stat().st_size > 1000


def _decision(fake_threshold: float, real_threshold: float, calibration: Calibration) -> Decision:
    """A decision with hand-set thresholds: the 1 % point at ``fake_threshold``, the 5 % at ``real_threshold``."""

    def point(target: float, threshold: float) -> OperatingPoint:
        return OperatingPoint(target, threshold, 10, 0, (0.0, 0.3), 10, 5, (0.2, 0.8), 0.95)

    return Decision(calibration, (point(0.01, fake_threshold), point(0.05, real_threshold)), VerdictRule(0.01, 0.05))


def test_the_operating_points_and_the_calibration_are_applied_to_the_test_set(
    tmp_path: Path, stub_models: None
) -> None:
    """U-YNet's video probabilities here: reals 0.2 and 0.4, fakes 0.8, 0.45, 0.275 and 0.8. Its 1 % point at
    0.42 flags three fakes and no real; its 5 % point at 0.3 flags those and one real. No 0.5 anywhere: the
    confusion matrix and the verdicts follow the calibration file, and a row without one says so."""
    folds = _write_table(tmp_path, _table())
    calibration = tmp_path / "calibration.json"
    write_decisions(calibration, {"uynet": _decision(0.42, 0.3, Calibration("temperature", temperature=2.0))}, "uynet")
    decision = tmp_path / "decision.json"
    paths = replace(_paths(folds, tmp_path, "ffpp"), calibration=calibration, decision=decision)
    report = evaluate.run(evaluate.Config.from_params(_params(), "ffpp"), paths)
    # the experiments' columns: the package row's figures, the 'likely fake' point's rates on this test set
    assert report["package_row"] == "uynet"
    assert json.loads(decision.read_text()) == {
        "auc": report["models"]["uynet"]["video"]["auc"],
        "log_loss": report["models"]["uynet"]["decision"]["calibration"]["log_loss_after"],
        "ece": report["models"]["uynet"]["decision"]["calibration"]["ece_after"],
        "fpr": 0.0,
        "tpr": 0.75,
    }
    decided = report["models"]["uynet"]["decision"]
    strict = decided["operating_points"]["fpr_0.01"]
    assert (strict["false_positives"], strict["reals"], strict["true_positives"], strict["fakes"]) == (0, 2, 3, 4)
    loose = decided["operating_points"]["fpr_0.05"]
    assert (loose["false_positives"], loose["true_positives"]) == (1, 3)
    assert strict["fpr_interval"][0] == 0.0 and 0 < strict["fpr_interval"][1] < 1
    assert decided["verdicts"] == {
        "REAL": {"likely_real": 1, "uncertain": 1, "likely_fake": 0},
        "FAKE": {"likely_real": 1, "uncertain": 0, "likely_fake": 3},
    }
    video_p = np.array([0.2, 0.4, 0.8, 0.45, 0.275, 0.8])
    video_y = np.array([0, 0, 1, 1, 1, 1])
    tempered = 1 / (1 + np.exp(-np.log(video_p / (1 - video_p)) / 2.0))
    assert decided["calibration"]["log_loss_before"] == pytest.approx(skm.log_loss(video_y, video_p))
    assert decided["calibration"]["log_loss_after"] == pytest.approx(skm.log_loss(video_y, tempered))
    assert report["models"]["classifier"]["decision"]["operating_points"] is None
    assert "no calibration" in report["models"]["classifier"]["decision"]["reason"]
    videos = pd.DataFrame({"y": [0, 0, 1, 1], "prob": [0.2, 0.4, 0.45, 0.8]})
    curve = evaluate._curve(videos, {"auc": 1.0, "ap": 1.0}, _decision(0.42, 0.3, Calibration("none")))
    assert curve["confusion"] == [[2, 0], [0, 2]] and curve["confusion_at"] == 0.01
    assert evaluate._curve(videos, {"auc": 1.0, "ap": 1.0}, None)["confusion"] is None
    # the package row's curves as DVC data plots, and the reliability diagram
    for name in ("roc.json", "pr.json", "reliability.json", "reliability.png"):
        assert (tmp_path / "plots" / "ffpp" / name).stat().st_size > 50
    roc = json.loads((tmp_path / "plots" / "ffpp" / "roc.json").read_text())
    assert roc[0]["fpr"] == 0.0 and roc[-1]["tpr"] == 1.0 and {"fpr", "tpr", "threshold"} <= set(roc[1])


def test_undefined_metrics_are_null_with_a_reason(tmp_path: Path, stub_models: None) -> None:
    """celebdf's holdout rows are fakes only: AUC & co. are null (never NaN), the methods have no reals."""
    folds = _write_table(tmp_path, _table())
    evaluate.run(evaluate.Config.from_params(_params(), "celebdf"), _paths(folds, tmp_path, "celebdf"))
    report = _strict_load(tmp_path / "metrics" / "celebdf.json")
    for level in ("frame", "video"):
        block = report["models"]["uynet"][level]
        assert block["auc"] is None and block["eer"] is None and block["balanced_log_loss"] is None
        assert block["ap"] == 1.0 and block["log_loss"] is not None
        assert "no REAL rows" in block["null_reason"]
    assert report["models"]["uynet"]["mask"]["real_empty_rate"] is None
    method = report["models"]["uynet"]["methods"]["Celeb-synthesis"]
    assert method["frame"] is None and method["video"] is None
    assert "no REAL rows" in method["reason"] and method["fake_videos"] == 1


def test_a_testset_dataset_without_holdout_rows_is_recorded(tmp_path: Path, stub_models: None) -> None:
    params = _params(testsets={"mixed": ["ffpp", "celebdf"], "dfdc": ["dfdc_train_part_0"]})
    table = _table()
    folds = _write_table(tmp_path, table[table["part"] != "celebdf"])
    report = evaluate.run(evaluate.Config.from_params(params, "mixed"), _paths(folds, tmp_path, "mixed"))
    assert report["datasets_without_rows"] == ["celebdf"] and report["videos"] == 6


def test_strict_json_replaces_nan_and_infinity() -> None:
    value = {"a": float("nan"), "b": [np.float32(np.inf), 1.5, np.int64(3)], "c": None, "d": "x"}
    assert evaluate.strict_json(value) == {"a": None, "b": [None, 1.5, 3], "c": None, "d": "x"}


# ---- real (tiny, untrained) models through the model store -------------------------------------------


def _write_crops(root: Path, table: pd.DataFrame) -> DataRoots:
    rng = np.random.default_rng(0)
    roots = DataRoots(root / "crops", root / "landmarks", root / "masks")
    for row in table.itertuples():
        path = roots.crops / row.file
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (40, 32, 3), dtype=np.uint8))
        if row.mask:
            mask = roots.masks / row.mask
            mask.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask), np.where(rng.random((40, 32)) > 0.5, 255, 0).astype(np.uint8))
    return roots


def _save_random_members(params: Params, root: Path) -> ModelStore:
    store = ModelStore(root)
    for member in members(params.models, params.ensemble.seeds):
        torch.manual_seed(member.seed or 0)
        kwargs = params.model_spec(member.model)
        model = create_model(member.model, **kwargs)
        store.checkpoint_dir(member).mkdir(parents=True, exist_ok=True)
        payload = {"model": model.state_dict(), "model_name": member.model, "model_kwargs": kwargs, "epoch": 0}
        torch.save(payload, store.checkpoint(member))
    return store


def test_evaluate_runs_real_models_from_the_store(tmp_path: Path) -> None:
    raw = _raw(aggregation="confident")
    raw["ensemble"]["seeds"] = [8]
    params = validate_params(raw, "tests/test_evaluate.py")
    table = _table()
    folds = _write_table(tmp_path, table)
    roots = _write_crops(tmp_path, table)
    _save_random_members(params, tmp_path / "models")
    report = evaluate.run(evaluate.Config.from_params(params, "ffpp"), _paths(folds, tmp_path, "ffpp", roots))
    assert set(report["models"]) == {"classifier", "uynet", "classifier-8", "uynet-8"}
    assert set(report["ensembles"]) == {"classifier-ensemble", "uynet-ensemble", "all-ensemble"}
    assert report["rows"][:4] == ["classifier", "uynet", "classifier-8", "uynet-8"]
    for metrics in report["models"].values():
        assert metrics["frame"]["count"] == 12 and metrics["video"]["count"] == 6
        assert 0.0 <= metrics["video"]["auc"] <= 1.0
        assert metrics["video"]["aggregation"] == "confident"
    assert 0.0 <= report["models"]["uynet"]["mask"]["fake_iou"] <= 1.0
    assert 0.0 <= report["models"]["uynet"]["methods"]["Deepfakes"]["mask"]["fake_dice"] <= 1.0
    _strict_load(tmp_path / "metrics" / "ffpp.json")
    assert (tmp_path / "plots" / "ffpp" / "roc.png").is_file()


def test_the_stage_script_writes_the_testset_json(tmp_path: Path, stub_models: None) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "stages" / "evaluate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(_raw()))
    folds = _write_table(tmp_path, _table())
    argv = ["--params", str(params_file), "--testset", "dfdc", "--folds", str(folds)]
    for flag in ("crops", "landmarks", "masks", "test-crops", "models"):
        argv += [f"--{flag}", str(tmp_path / flag)]
    argv += ["--metrics", str(tmp_path / "m" / "dfdc.json"), "--plots", str(tmp_path / "p" / "dfdc")]
    script.main(argv)
    assert _strict_load(tmp_path / "m" / "dfdc.json")["videos"] == 3


# ---- on the shared tiny pipeline (conftest's trained models) -----------------------------------------


def _trained_paths(trained: dict, models: Path, out: Path) -> evaluate.Paths:
    return evaluate.Paths(
        trained["folds"], trained["roots"], models, out / "metrics.json", out / "plots", out / "crops_test"
    )


def _holdout_testset(trained: dict) -> str:
    """The first test set holding some of the fixture's holdout rows."""
    params = trained["params"]
    table = pd.read_csv(trained["folds"], keep_default_na=False)
    holdout_parts = set(table.loc[table["fold"] == params.train.holdout_fold, "part"].astype(str))
    return next(name for name, sets in params.evaluate.testsets.items() if holdout_parts & set(sets))


def test_evaluate_reports_every_model_and_ensemble(trained: dict) -> None:
    root = trained["root"]
    config = evaluate.Config.from_params(trained["params"], _holdout_testset(trained))
    report = evaluate.run(config, _trained_paths(trained, root / "models", root))
    assert set(report["models"]) == {"classifier", "uynet", "classifier-8", "uynet-8"}
    assert set(report["ensembles"]) == {"classifier-ensemble", "uynet-ensemble", "all-ensemble"}
    for metrics in report["models"].values():
        assert metrics["video"]["count"] == 2  # realb and its fake
        assert metrics["frame"]["level"] == "frame" and metrics["video"]["level"] == "video"
        assert 0.0 <= metrics["video"]["auc"] <= 1.0
        assert metrics["frame"]["count"] == report["crops"]
    assert 0.0 <= report["models"]["uynet"]["mask"]["fake_iou"] <= 1.0
    assert "mask" not in report["models"]["classifier"]
    assert _strict_load(root / "metrics.json")["ensembles"]["all-ensemble"]["members"]
    for name in ("roc.png", "pr.png", "confusion.png", "comparison.png"):
        assert (root / "plots" / name).stat().st_size > 1000


def test_missing_or_foreign_checkpoint_is_a_clear_error(trained: dict, tmp_path: Path) -> None:
    params = trained["params"]
    config = evaluate.Config.from_params(params, _holdout_testset(trained))
    with pytest.raises(CheckpointError, match="dvc pull"):
        evaluate.run(config, _trained_paths(trained, tmp_path / "models", tmp_path))
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
        evaluate.run(config, _trained_paths(trained, tmp_path / "models", tmp_path))
