"""Datasets through the pipeline: ingest reports, official splits in folds, mask videos in diffs,
the training datasets and held-out methods, and params kept in step with the layouts.

Small synthetic tables and tiny videos only: no face detector, no model training.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from deepfake.core.errors import InputError, LeakageError
from deepfake.core.params import DatasetParams
from deepfake.media.face_input import crop_face
from deepfake.media.layouts import LAYOUTS, REQUIRED, IndexRow, load_dataset, read_index_csv
from deepfake.media.masks import binarize
from deepfake.media.metadata import MetadataError, resolve_inside
from deepfake.media.video import FrameSampling, iter_sampled_frames
from deepfake.modeling.data import select_training_data
from deepfake.modeling.splits import FoldsConfig, assign_folds, find_leaks, official_splits
from deepfake.stages import crops, diffs, folds, ingest
from tests.conftest import as_params, tiny_params, touch, write_boxes, write_video

ROOT = Path(__file__).resolve().parents[1]
# the two index headers as docs/architecture.md documents them ("Canonical index", "Crops")
INDEX_HEADER = "video,path,label,original,identity,method,compression,split,mask"
CROP_COLUMNS = ["video", "file", "label", "original", "part", "frame", "face"]
CROP_COLUMNS += ["identity", "method", "compression", "split"]

# ---- folds with official splits ---------------------------------------------------------------------


def group(
    part: str,
    original: str,
    fakes: int = 1,
    split: str | tuple[str, ...] = "",
    identity: str | tuple[str, ...] = "",
    crops_per_video: int = 2,
) -> list[dict[str, Any]]:
    """Crop rows of one original and its ``fakes``; ``split``/``identity`` per video when a tuple
    (the original first), else the same for every video."""
    videos = [original] + [f"{Path(original).stem}_fake{k}.mp4" for k in range(fakes)]
    splits = split if isinstance(split, tuple) else (split,) * len(videos)
    identities = identity if isinstance(identity, tuple) else (identity,) * len(videos)
    rows = []
    for video, video_split, video_identity in zip(videos, splits, identities, strict=True):
        for frame in range(crops_per_video):
            rows.append(
                {
                    "video": video,
                    "file": f"{part}/{Path(video).stem}/{frame}_0.png",
                    "label": "REAL" if video == original else "FAKE",
                    "original": original,
                    "part": part,
                    "frame": frame,
                    "face": 0,
                    "identity": video_identity,
                    "method": "" if video == original else "Deepfakes",
                    "compression": "",
                    "split": video_split,
                }
            )
    return rows


def table_of(*groups: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in groups for row in rows])


def split_config(**overrides: Any) -> FoldsConfig:
    values: dict[str, Any] = {
        "strategy": "original",
        "n_splits": 4,
        "seed": 7,
        "part_splits": 16,
        "parts_total": 50,
        "identity": True,
    }
    values.update(overrides)
    return FoldsConfig(**values)


def fold_of(table: pd.DataFrame) -> dict[str, int]:
    """video -> its fold (asserting every video sits in one fold)."""
    per_video = table.groupby("video")["fold"].unique()
    assert (per_video.map(len) == 1).all(), per_video[per_video.map(len) > 1]
    return {video: int(f[0]) for video, f in per_video.items()}


def official_table() -> pd.DataFrame:
    """ffpp: 2 test groups, 2 val groups, 6 train groups (identities unique per group)."""
    groups = []
    for i, split in enumerate(["test"] * 2 + ["val"] * 2 + ["train"] * 6):
        groups.append(group("ffpp", f"youtube__{i:03d}.mp4", fakes=2, split=split, identity=f"ffpp-{i:03d}"))
    return table_of(*groups)


@pytest.mark.parametrize(("holdout", "val"), [(0, 1), (3, 2), (1, 0)])
def test_official_splits_go_to_the_holdout_val_and_training_folds(holdout: int, val: int) -> None:
    table = official_table()
    table["fold"] = assign_folds(table, split_config(holdout_fold=holdout, val_fold=val))
    training = {0, 1, 2, 3} - {holdout, val}
    assert set(table.loc[table["split"] == "test", "fold"]) == {holdout}
    assert set(table.loc[table["split"] == "val", "fold"]) == {val}
    assert set(table.loc[table["split"] == "train", "fold"]) == training  # both training folds get groups
    assert find_leaks(table, identity=True) == []
    fold_of(table)


def test_official_split_folds_need_a_training_fold() -> None:
    with pytest.raises(InputError, match=r"n_splits=2 leaves no training fold"):
        assign_folds(official_table(), split_config(n_splits=2))


def test_rows_without_an_official_split_are_dealt_over_every_fold() -> None:
    unsplit = [group("dfdc_train_part_0", f"real{i}.mp4", fakes=1) for i in range(8)]
    table = pd.concat([official_table(), table_of(*unsplit)], ignore_index=True)
    table["fold"] = assign_folds(table, split_config())
    dfdc = table[table["part"] == "dfdc_train_part_0"]
    assert set(dfdc["fold"]) == {0, 1, 2, 3}
    per_fold = dfdc.groupby("fold")["original"].nunique()
    assert per_fold.max() - per_fold.min() <= 1  # 8 equal groups over 4 folds: balanced
    # the official rows stay where their splits say
    ffpp = table[table["part"] == "ffpp"]
    assert set(ffpp.loc[ffpp["split"] == "test", "fold"]) == {0}
    assert set(ffpp.loc[ffpp["split"] == "val", "fold"]) == {1}
    assert find_leaks(table, identity=True) == []


def test_without_any_official_split_the_original_strategy_uses_every_fold() -> None:
    table = table_of(*[group("dfdc_train_part_0", f"real{i}.mp4") for i in range(8)])
    table["fold"] = assign_folds(table, split_config())
    assert set(table["fold"]) == {0, 1, 2, 3}
    assert official_splits(table, identity=True).moved_rows == 0


def test_a_mixed_split_group_goes_whole_to_the_strictest_split_and_is_counted() -> None:
    # real train, fake0 test, fake1 val -> all test; real train, fake0 val -> all val
    mixed_test = group("ffpp", "youtube__100.mp4", fakes=2, split=("train", "test", "val"))
    mixed_val = group("ffpp", "youtube__101.mp4", fakes=1, split=("train", "val"))
    untouched = group("ffpp", "youtube__102.mp4", fakes=1, split=("", "train"))  # "" joins its group's split
    table = pd.concat([official_table(), table_of(mixed_test, mixed_val, untouched)], ignore_index=True)
    resolved = official_splits(table, identity=True)
    by_video = dict(zip(table["video"], resolved.split, strict=True))
    assert {by_video[v] for v in ("youtube__100.mp4", "youtube__100_fake0.mp4", "youtube__100_fake1.mp4")} == {"test"}
    assert {by_video[v] for v in ("youtube__101.mp4", "youtube__101_fake0.mp4")} == {"val"}
    assert {by_video[v] for v in ("youtube__102.mp4", "youtube__102_fake0.mp4")} == {"train"}
    # moved: the train real and the val fake of 100 (2 crops each), the train real of 101 (2 crops);
    # a row without a split that takes its group's split is not a move
    assert resolved.moved_rows == 6
    assert resolved.unfollowed_identities == ()
    table["fold"] = assign_folds(table, split_config())
    folds_of = fold_of(table)
    assert {folds_of[v] for v in ("youtube__100.mp4", "youtube__100_fake0.mp4", "youtube__100_fake1.mp4")} == {0}
    assert {folds_of[v] for v in ("youtube__101.mp4", "youtube__101_fake0.mp4")} == {1}
    assert folds_of["youtube__102.mp4"] == folds_of["youtube__102_fake0.mp4"] in {2, 3}
    assert find_leaks(table, identity=True) == []


def test_an_identity_spread_by_the_official_splits_is_counted_and_not_a_leak() -> None:
    # Celeb-DF-like: the person "id7" has a test video and a training video
    table = table_of(
        group("celebdf", "id7_0000.mp4", fakes=1, split="test", identity="celebdf-id7"),
        group("celebdf", "id7_0001.mp4", fakes=1, split="train", identity="celebdf-id7"),
        *[group("celebdf", f"id{i}_0000.mp4", split="train", identity=f"celebdf-id{i}") for i in range(10, 16)],
        group("celebdf", "id9_0000.mp4", split="val", identity="celebdf-id9"),
    )
    resolved = official_splits(table, identity=True)
    assert resolved.unfollowed_identities == ("celebdf-id7",)
    assert resolved.moved_rows == 0
    table["fold"] = assign_folds(table, split_config())  # does not raise
    folds_of = fold_of(table)
    assert folds_of["id7_0000.mp4"] == folds_of["id7_0000_fake0.mp4"] == 0
    assert folds_of["id7_0001.mp4"] == folds_of["id7_0001_fake0.mp4"] in {2, 3}
    assert find_leaks(table, identity=True) == []  # the protocol's own spread is not a leak
    assert find_leaks(table, identity=False) == []


@pytest.mark.parametrize(("split", "expected"), [("test", {0}), ("val", {1}), ("train", {2, 3})])
def test_one_person_across_two_datasets_lands_in_one_fold(split: str, expected: set[int]) -> None:
    # the sample's contract: a person of an officially split dataset and of a DFDC part stays in one fold
    people = [f"p{i}" for i in range(6)]
    official = [group("celebdf", f"{p}_0000.mp4", split=split, identity=p) for p in people]
    official += [group("celebdf", f"other{i}.mp4", split="train", identity=f"o{i}") for i in range(4)]
    dfdc = [group("dfdc_train_part_0", f"dfdc_{p}.mp4", fakes=2, identity=p) for p in people]
    dfdc += [group("dfdc_train_part_0", f"free{i}.mp4", identity=f"f{i}") for i in range(4)]
    table = table_of(*official, *dfdc)
    table["fold"] = assign_folds(table, split_config(seed=3))
    folds_of = fold_of(table)
    for person in people:
        videos = [v for v in folds_of if v.startswith((f"{person}_", f"dfdc_{person}"))]
        assert len(videos) == 5  # the official real and fake, the DFDC real and two fakes
        assert {folds_of[v] for v in videos} <= expected
        assert len({folds_of[v] for v in videos}) == 1, person
    assert find_leaks(table, identity=True) == []


def test_breaking_an_identity_unit_keeps_the_links_that_do_not_cross_splits() -> None:
    # a (test): real shows p, its fake shows q; b (train) shows p; c (no split, another dataset) shows q.
    # p links test to train: not followed (counted). q links a test group to an unsplit video: followed,
    # so c belongs with a in the holdout fold.
    table = table_of(
        group("ds1", "a.mp4", fakes=1, split="test", identity=("p", "q")),
        group("ds1", "b.mp4", fakes=0, split="train", identity="p"),
        *[group("ds1", f"t{i}.mp4", fakes=0, split="train", identity=f"t{i}") for i in range(4)],
        group("ds2", "c.mp4", fakes=0, identity="q"),
        *[group("ds2", f"x{i}.mp4", fakes=0, identity=f"x{i}") for i in range(8)],
    )
    assert official_splits(table, identity=True).unfollowed_identities == ("p",)
    table["fold"] = assign_folds(table, split_config(seed=0))
    assert fold_of(table)["c.mp4"] == 0
    assert find_leaks(table, identity=True) == []  # q is followed, p (test vs train) is not


def test_official_split_folds_are_deterministic_for_a_seed() -> None:
    unsplit = [group("dfdc_train_part_0", f"real{i}.mp4", fakes=1) for i in range(8)]
    table = pd.concat([official_table(), table_of(*unsplit)], ignore_index=True)
    first = assign_folds(table, split_config(seed=11))
    assert first.equals(assign_folds(table.copy(), split_config(seed=11)))
    others = [assign_folds(table, split_config(seed=seed)) for seed in range(12, 20)]
    assert any(not first.equals(other) for other in others)  # the seed does shuffle


def write_crops_index(crops_root: Path, part: str, table: pd.DataFrame) -> None:
    folder = crops_root / part
    folder.mkdir(parents=True)
    table[CROP_COLUMNS].to_csv(folder / "index.csv", index=False, lineterminator="\n")


def test_the_folds_stage_reports_datasets_moves_and_unfollowed_identities(tmp_path: Path) -> None:
    ffpp = pd.concat(
        [
            official_table(),
            table_of(
                group("ffpp", "youtube__100.mp4", fakes=1, split=("train", "test")),  # moves 2 crops
                group("ffpp", "youtube__200.mp4", split="test", identity="shared"),
                group("ffpp", "youtube__201.mp4", split="train", identity="shared"),  # a broken unit
            ),
        ],
        ignore_index=True,
    )
    dfdc = table_of(*[group("dfdc_train_part_0", f"real{i}.mp4") for i in range(8)])
    crops_root = tmp_path / "crops"
    write_crops_index(crops_root, "ffpp", ffpp)
    write_crops_index(crops_root, "dfdc_train_part_0", dfdc)
    config = folds.Config(parts=("dfdc_train_part_0", "ffpp"), split=split_config(holdout_fold=3, val_fold=2))
    paths = folds.Paths(
        crops_root, tmp_path / "lm", tmp_path / "diffs", tmp_path / "masks", tmp_path / "folds.csv", tmp_path / "f.json"
    )
    report = folds.run(config, paths)
    assert json.loads((tmp_path / "f.json").read_text()) == report
    assert report["rows_moved_to_their_originals_split"] == 2
    assert len(report["identities_split_by_official_protocol"]) == 1
    assert (report["holdout_fold"], report["val_fold"]) == (3, 2)
    assert set(report["datasets"]) == {"dfdc_train_part_0", "ffpp"}
    assert report["datasets"]["dfdc_train_part_0"]["official_split_crops"] == {"none": len(dfdc)}
    assert report["datasets"]["dfdc_train_part_0"]["crops"] == len(dfdc)
    assert set(report["datasets"]["dfdc_train_part_0"]["crops_per_fold"]) == {"0", "1", "2", "3"}
    ffpp_report = report["datasets"]["ffpp"]
    assert ffpp_report["official_split_crops"] == {
        s: int(n) for s, n in ffpp["split"].value_counts().sort_index().items()
    }
    assert set(ffpp_report["crops_per_fold"]) == {"0", "1", "2", "3"}
    written = pd.read_csv(tmp_path / "folds.csv", keep_default_na=False)
    assert set(written.loc[written["video"].str.startswith("youtube__100"), "fold"]) == {3}
    assert set(written.loc[(written["part"] == "ffpp") & (written["split"] == "val"), "fold"]) == {2}


def test_the_folds_stage_refuses_an_original_split_over_folds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crops_root = tmp_path / "crops"
    write_crops_index(crops_root, "ffpp", official_table())

    def straddling(table: pd.DataFrame, config: FoldsConfig) -> pd.Series:
        fold = pd.Series(0, index=table.index)
        fold[table["video"] == "youtube__000_fake0.mp4"] = 1
        return fold

    monkeypatch.setattr(folds, "assign_folds", straddling)
    config = folds.Config(parts=("ffpp",), split=split_config())
    paths = folds.Paths(
        crops_root, tmp_path / "lm", tmp_path / "diffs", tmp_path / "masks", tmp_path / "folds.csv", tmp_path / "f.json"
    )
    with pytest.raises(LeakageError, match=r"ffpp/youtube__000.mp4"):
        folds.run(config, paths)
    assert not (tmp_path / "folds.csv").exists()


# ---- ingest -------------------------------------------------------------------------------------------


def params_with(tmp_path: Path, datasets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The unit tests' params with ``datasets`` only (training and testing on the first)."""
    first = next(iter(datasets))
    return tiny_params(tmp_path, data__datasets=datasets, train__datasets=[first], evaluate__testsets={"t": [first]})


def run_ingest(root: Path, tmp_path: Path, dataset: str, layout: str, **options: Any) -> dict[str, Any]:
    config = ingest.Config(dataset=dataset, layout=layout, options=options)
    return ingest.run(config, ingest.Paths(root, tmp_path / "index" / f"{dataset}.csv", tmp_path / f"{dataset}.json"))


def test_ingest_a_dfdc_part_counts_and_refuses_line_by_line(tmp_path: Path) -> None:
    part = tmp_path / "dfdc_train_part_3"
    for name in ("a.mp4", "b.mp4", "c.mp4", "fa.mp4", "fb.mp4", "orphan.mp4", "bad.mp4"):
        touch(part / name)
    metadata = {
        "a.mp4": {"label": "REAL", "split": "train", "original": None},
        "b.mp4": {"label": "REAL", "split": "train", "original": None, "identity": "bob"},
        "c.mp4": {"label": "REAL", "split": "train", "original": None},
        "fa.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
        "fb.mp4": {"label": "FAKE", "split": "train", "original": "b.mp4", "identity": "bob"},
        "gone.mp4": {"label": "REAL", "split": "train", "original": None},
        "orphan.mp4": {"label": "FAKE", "split": "train", "original": "ghost.mp4"},
        "bad.mp4": {"label": "MAYBE", "split": "train", "original": None},
    }
    # one entry a line, so each refusal names its own line (the object's "{" is line 1)
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in metadata.items()]
    lines[-1] = lines[-1].rstrip(",")
    (part / "metadata.json").write_text("\n".join([*lines, "}"]) + "\n")
    config = ingest.Config.from_params(
        as_params(params_with(tmp_path, {"dfdc_train_part_3": {"layout": "dfdc", "root": str(part)}})),
        "dfdc_train_part_3",
    )
    assert (config.layout, config.options) == ("dfdc", {})
    report = ingest.run(config, ingest.Paths(part, tmp_path / "idx.csv", tmp_path / "report.json"))
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["dataset"] == "dfdc_train_part_3" and report["layout"] == "dfdc"
    assert report["videos"] == 5
    assert report["label"] == {"FAKE": 2, "REAL": 3}
    assert report["split"] == {"": 5}  # a DFDC training part has no official split
    assert report["method"] == {"": 5}
    assert report["refused_count"] == 3 == len(report["refused"])
    assert report["refused"] == [
        "metadata.json:7: video gone.mp4 is missing",
        "metadata.json:8: orphan.mp4: original 'ghost.mp4' is not a REAL video listed in this part",
        "metadata.json:9: bad.mp4: label must be one of ('REAL', 'FAKE'), got 'MAYBE'",
    ]
    rows = {row.video: row for row in read_index_csv(tmp_path / "idx.csv")}
    assert sorted(rows) == ["a.mp4", "b.mp4", "c.mp4", "fa.mp4", "fb.mp4"]
    assert rows["fa.mp4"] == IndexRow("fa.mp4", "fa.mp4", "FAKE", original="a.mp4")
    assert rows["fb.mp4"].identity == "bob"
    text = (tmp_path / "idx.csv").read_bytes()
    assert text.startswith(INDEX_HEADER.encode() + b"\n") and b"\r" not in text


def ffpp_tree(root: Path) -> Path:
    for vid in ("000", "001", "002", "003", "004", "005"):
        touch(root / f"original_sequences/youtube/c23/videos/{vid}.mp4")
    for method in ("Deepfakes", "Face2Face"):
        for name in ("000_001", "001_000", "002_003", "004_005"):
            touch(root / f"manipulated_sequences/{method}/c23/videos/{name}.mp4")
    touch(root / "manipulated_sequences/Deepfakes/c23/videos/009_008.mp4")  # its real is absent
    touch(root / "manipulated_sequences/Deepfakes/c23/videos/garbage.mp4")
    touch(root / "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4")
    splits = root / "splits"
    splits.mkdir()
    (splits / "train.json").write_text('[\n["000", "001"]\n]\n')
    (splits / "val.json").write_text('[\n["002", "003"]\n]\n')
    (splits / "test.json").write_text('[\n["004", "005"],\n["006", "007"]\n]\n')
    return root


def test_ingest_an_ffpp_tree_counts_methods_splits_and_refusals(tmp_path: Path) -> None:
    root = ffpp_tree(tmp_path / "ffpp")
    report = run_ingest(root, tmp_path, "ffpp", "ffpp", compression="c23")
    assert report["options"] == {"compression": "c23"}
    assert report["videos"] == 14
    assert report["label"] == {"FAKE": 8, "REAL": 6}
    assert report["method"] == {"": 6, "Deepfakes": 4, "Face2Face": 4}
    assert report["split"] == {"test": 4, "train": 6, "val": 4}
    assert report["compression"] == {"c23": 14}
    assert report["refused"] == [
        "manipulated_sequences/Deepfakes/c23/videos/009_008.mp4: fake whose source is absent: its original"
        " youtube__009.mp4 (original_sequences/youtube/c23/videos/009.mp4) is not in the index",
        "manipulated_sequences/Deepfakes/c23/videos/garbage.mp4: unexpected file name (<target>_<source>.mp4 expected)",
        "splits/test.json:3: names id 006 that has no video original_sequences/youtube/c23/videos/006.mp4",
        "splits/test.json:3: names id 007 that has no video original_sequences/youtube/c23/videos/007.mp4",
    ]
    assert report["refused_count"] == 4
    rows = {row.video: row for row in read_index_csv(tmp_path / "index" / "ffpp.csv")}
    assert rows["Deepfakes__000_001.mp4"].mask == "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4"
    assert rows["Face2Face__000_001.mp4"].mask == ""
    assert rows["Deepfakes__004_005.mp4"].split == "test"


def test_ingest_of_a_dataset_without_a_usable_video_is_an_input_error(tmp_path: Path) -> None:
    empty = tmp_path / "dfdc_train_part_0"
    empty.mkdir()
    (empty / "metadata.json").write_text("{}")
    with pytest.raises(InputError, match=r"no usable video for layout 'dfdc' \(is this the dataset root\?\)"):
        run_ingest(empty, tmp_path, "dfdc_train_part_0", "dfdc")
    # every entry refused: the message shows a few refusals
    (empty / "metadata.json").write_text(json.dumps({"gone.mp4": {"label": "REAL", "original": None}}))
    with pytest.raises(InputError, match=r"\(1 refused, e\.g\. metadata\.json:1: video gone\.mp4 is missing\)"):
        run_ingest(empty, tmp_path, "dfdc_train_part_0", "dfdc")
    # an FF++ root with an empty tree
    ffpp = tmp_path / "ffpp"
    (ffpp / "original_sequences/youtube/c23/videos").mkdir(parents=True)
    (ffpp / "manipulated_sequences").mkdir()
    (ffpp / "splits").mkdir()
    for split in ("train", "val", "test"):
        (ffpp / "splits" / f"{split}.json").write_text("[]")
    with pytest.raises(InputError, match=r"no usable video for layout 'ffpp'"):
        run_ingest(ffpp, tmp_path, "ffpp", "ffpp", compression="c23")
    assert not (tmp_path / "index").exists() and not list(tmp_path.glob("*.json"))


def test_ingest_config_refuses_a_dataset_not_in_params(tmp_path: Path) -> None:
    params = as_params(tiny_params(tmp_path))
    with pytest.raises(InputError, match=r"'ffpp' is not in data.datasets \(dfdc_train_part_0\)"):
        ingest.Config.from_params(params, "ffpp")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("dfdc", r"no metadata\.json, not a DFDC training part folder"),
        ("ffpp", r"not a FaceForensics\+\+ root"),
    ],
)
def test_the_ingest_script_exits_2_with_one_error_line_for_a_root_not_of_its_layout(
    tmp_path: Path, layout: str, message: str
) -> None:
    root = tmp_path / "somewhere"
    root.mkdir()
    touch(root / "video.mp4")
    spec = {"layout": layout, "root": str(root), **({"compression": "c23"} if layout == "ffpp" else {})}
    raw = params_with(tmp_path, {"mydata": spec})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    out, report = tmp_path / "index" / "mydata.csv", tmp_path / "reports" / "ingest.json"
    args = ["--params", str(params_file), "--dataset", "mydata", "--root", str(root), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-P", "stages/ingest.py", *args, "--report", str(report)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: LayoutError: "), lines
    assert re.search(message, lines[0])
    assert not out.exists() and not report.exists()


# ---- load_dataset and PartMetadata ---------------------------------------------------------------------


def write_index_csv(path: Path, rows: list[IndexRow]) -> Path:
    lines = [INDEX_HEADER] + [",".join(row.values()) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_detected_videos_are_the_reals_and_the_fakes_without_an_original(tmp_path: Path) -> None:
    index = write_index_csv(
        tmp_path / "index.csv",
        [
            IndexRow("real.mp4", "real.mp4", "REAL", identity="ann"),
            IndexRow("fake.mp4", "fakes/fake.mp4", "FAKE", original="real.mp4", method="m"),
            IndexRow("lone.mp4", "lone.mp4", "FAKE", split="test"),  # DFDC test: no original named
        ],
    )
    dataset = load_dataset(index, tmp_path, "mixed")
    assert [e.name for e in dataset.detected] == ["lone.mp4", "real.mp4"]
    assert [e.name for e in dataset.fakes] == ["fake.mp4", "lone.mp4"]
    assert [e.name for e in dataset.reals] == ["real.mp4"]
    assert dataset.entries["lone.mp4"].source == "lone.mp4"
    assert dataset.entries["fake.mp4"].source == "real.mp4"
    assert dataset.entries["fake.mp4"].part == "mixed"
    assert dataset.video_path("fake.mp4") == tmp_path / "fakes/fake.mp4"
    assert dataset.mask_path("fake.mp4") is None


def test_video_path_refuses_an_escape_and_accepts_a_declared_extra_root(tmp_path: Path) -> None:
    root, ffpp = tmp_path / "dfo", tmp_path / "ffpp"
    touch(root / "manipulated_videos/end_to_end/000_M1.mp4")
    touch(ffpp / "original_sequences/youtube/c23/videos/000.mp4")
    touch(tmp_path / "secret.mp4")
    (root / "link.mp4").symlink_to(tmp_path / "secret.mp4")
    index = write_index_csv(
        tmp_path / "index.csv",
        [
            IndexRow("youtube__000.mp4", "../ffpp/original_sequences/youtube/c23/videos/000.mp4", "REAL"),
            IndexRow(
                "end_to_end__000_M1.mp4",
                "manipulated_videos/end_to_end/000_M1.mp4",
                "FAKE",
                original="youtube__000.mp4",
                mask="../secret.mp4",
            ),
            IndexRow("escape.mp4", "../secret.mp4", "REAL"),
            IndexRow("link.mp4", "link.mp4", "REAL"),
        ],
    )
    with_ffpp = load_dataset(index, root, "dfo", (ffpp,))
    assert with_ffpp.video_path("youtube__000.mp4") == root / "../ffpp/original_sequences/youtube/c23/videos/000.mp4"
    assert with_ffpp.video_path("youtube__000.mp4").resolve() == (
        ffpp / "original_sequences/youtube/c23/videos/000.mp4"
    )
    assert with_ffpp.video_path("end_to_end__000_M1.mp4") == root / "manipulated_videos/end_to_end/000_M1.mp4"
    for name in ("escape.mp4", "link.mp4"):
        with pytest.raises(MetadataError, match=r"refused in .*(escapes|outside) the dataset root"):
            with_ffpp.video_path(name)
    with pytest.raises(MetadataError, match=r"'\.\./secret\.mp4' escapes the dataset root"):
        with_ffpp.mask_path("end_to_end__000_M1.mp4")
    alone = load_dataset(index, root, "dfo")
    with pytest.raises(MetadataError, match=r"escapes the dataset root"):
        alone.video_path("youtube__000.mp4")
    # resolve_inside on its own: same rules
    assert (
        resolve_inside(root, "manipulated_videos/end_to_end/000_M1.mp4")
        == root / "manipulated_videos/end_to_end/000_M1.mp4"
    )
    with pytest.raises(MetadataError):
        resolve_inside(root, "/etc/passwd")
    with pytest.raises(MetadataError):
        resolve_inside(root, "manipulated_videos/../../secret.mp4", (ffpp,))


# ---- diffs with mask videos -----------------------------------------------------------------------------

W, H = 160, 96
BOX = [40.0, 16.0, 120.0, 80.0, 0.99]  # crop with margin 0.25: x 20..140, y 0..96
SAMPLING = FrameSampling(stride=2, max_frames=1200, max_pixels=10**7)
MARGIN = 0.25
THRESHOLD = 102


def textured(frames: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    base = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (5, 5), 0)
    return [np.roll(base, i, axis=1) for i in range(frames)]


def tampered(frames: list[np.ndarray]) -> list[np.ndarray]:
    """The top-left quarter of the face region inverted; the rest untouched."""
    out = []
    for frame in frames:
        fake = frame.copy()
        fake[16:48, 40:80] = 255 - fake[16:48, 40:80]
        out.append(fake)
    return out


def mask_frames(frames: int = 6) -> list[np.ndarray]:
    """Black frames with a white rectangle in the bottom-right of the face region (not where it was tampered)."""
    out = []
    for _ in range(frames):
        mask = np.zeros((H, W, 3), np.uint8)
        mask[56:80, 90:120] = 255
        out.append(mask)
    return out


@pytest.fixture(scope="module")
def ffpp_with_mask(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny FF++ tree (two reals, a Deepfakes fake with a mask video, a Face2Face fake without),
    ingested and cropped with hand-written boxes, then diffed with the mask videos."""
    tmp = tmp_path_factory.mktemp("ffpp_mask")
    root = tmp / "ffpp"
    real = textured()
    for vid in ("000", "001"):
        (root / "original_sequences/youtube/c23/videos").mkdir(parents=True, exist_ok=True)
        write_video(root / f"original_sequences/youtube/c23/videos/{vid}.mp4", real)
    for method in ("Deepfakes", "Face2Face"):
        folder = root / f"manipulated_sequences/{method}/c23/videos"
        folder.mkdir(parents=True)
        write_video(folder / "000_001.mp4", tampered(real))
    masks = root / "manipulated_sequences/Deepfakes/masks/videos"
    masks.mkdir(parents=True)
    write_video(masks / "000_001.mp4", mask_frames())
    (root / "splits").mkdir()
    (root / "splits/train.json").write_text('[["000", "001"]]')
    (root / "splits/val.json").write_text("[]")
    (root / "splits/test.json").write_text("[]")
    index = tmp / "index" / "ffpp.csv"
    ingest.run(
        ingest.Config("ffpp", "ffpp", {"compression": "c23"}),
        ingest.Paths(root, index, tmp / "reports" / "ingest.json"),
    )
    boxes = tmp / "bboxes" / "ffpp"
    write_boxes(boxes, "youtube__000", (W, H), BOX)
    write_boxes(boxes, "youtube__001", (W, H), BOX)
    crops_report = crops.run(
        crops.Config(sampling=SAMPLING, margin=MARGIN, workers=1),
        crops.Paths("ffpp", index, root, boxes, tmp / "crops" / "ffpp", tmp / "reports" / "crops.json"),
    )
    config = diffs.Config(win_size=7, mask_threshold=THRESHOLD, workers=1, sampling=SAMPLING, margin=MARGIN)
    report = diffs.run(
        config,
        diffs.Paths(
            tmp / "crops",
            "ffpp",
            tmp / "diffs" / "ffpp",
            tmp / "masks" / "ffpp",
            tmp / "reports" / "diffs.json",
            index=index,
            root=root,
            boxes=boxes,
        ),
    )
    return {"tmp": tmp, "root": root, "crops": crops_report, "diffs": report, "config": config}


def test_diffs_take_the_mask_from_the_datasets_mask_video(ffpp_with_mask: dict[str, Any]) -> None:
    tmp, report = ffpp_with_mask["tmp"], ffpp_with_mask["diffs"]
    assert ffpp_with_mask["crops"]["videos_done"] == 4 and ffpp_with_mask["crops"]["crops"] == 12
    assert report["videos_total"] == 2 and report["videos_done"] == 2 and report["videos_skipped"] == 0
    assert report["masks_from_video"] == 3  # the Deepfakes fake's three crops; Face2Face has no mask video
    assert report["pairs_found"] == 6 and report["pairs_missing"] == 0
    assert report["notes"] == []
    # the expected masks: the mask video's frames, cropped with the boxes and binarised
    expected = {}
    for index, frame in iter_sampled_frames(
        tmp / "ffpp/manipulated_sequences/Deepfakes/masks/videos/000_001.mp4", SAMPLING
    ):
        crop = crop_face(frame, BOX, MARGIN)
        assert crop is not None
        expected[f"{index}_0.png"] = binarize(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_BGR2GRAY), THRESHOLD)
    assert sorted(expected) == ["0_0.png", "2_0.png", "4_0.png"]
    masks = tmp / "masks/ffpp/Deepfakes__000_001"
    for name, mask in expected.items():
        written = cv2.imread(str(masks / name), cv2.IMREAD_UNCHANGED)
        assert written is not None and written.shape == mask.shape == (96, 120)
        np.testing.assert_array_equal(written, mask)
        assert set(np.unique(written)) == {0, 255}
        # the white rectangle of the mask video (rows 56..80, cols 90..120 of the frame, at 20 left of the crop)
        assert written[60:76, 74:96].mean() > 250 and written[:40, :50].max() == 0
        # the SSIM difference is written all the same, bright where the fake was tampered (not masked there)
        diff = cv2.imread(str(tmp / "diffs/ffpp/Deepfakes__000_001" / name), cv2.IMREAD_UNCHANGED)
        assert diff is not None and diff.shape == (96, 120)
        assert diff[20:44, 24:56].mean() > 100 > diff[60:90, 80:110].mean()


def test_diffs_without_a_mask_video_binarise_the_ssim_difference(ffpp_with_mask: dict[str, Any]) -> None:
    tmp = ffpp_with_mask["tmp"]
    for name in ("0_0.png", "2_0.png", "4_0.png"):
        diff = cv2.imread(str(tmp / "diffs/ffpp/Face2Face__000_001" / name), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(tmp / "masks/ffpp/Face2Face__000_001" / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, binarize(diff, THRESHOLD))
        assert mask[20:44, 24:56].mean() > 200 and mask[60:76, 74:96].mean() < 50  # the tampered corner


def test_diffs_with_an_index_need_its_root_and_boxes(ffpp_with_mask: dict[str, Any]) -> None:
    tmp = ffpp_with_mask["tmp"]
    paths = diffs.Paths(
        tmp / "crops", "ffpp", tmp / "d2", tmp / "m2", tmp / "r2.json", index=tmp / "index" / "ffpp.csv"
    )
    with pytest.raises(InputError, match=r"needs its root and boxes folder"):
        diffs.run(ffpp_with_mask["config"], paths)


def test_a_fake_without_an_original_nor_a_mask_video_is_skipped_with_its_reason(tmp_path: Path) -> None:
    crops_root = tmp_path / "crops"
    rng = np.random.default_rng(0)
    rows = []
    for video, label, original in [
        ("real.mp4", "REAL", "real.mp4"),
        ("fake.mp4", "FAKE", "real.mp4"),
        ("lone.mp4", "FAKE", "lone.mp4"),  # DFDC test/preview: the crops index names the fake as its own source
    ]:
        stem = Path(video).stem
        (crops_root / "dfdc_test" / stem).mkdir(parents=True)
        image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        cv2.imwrite(str(crops_root / "dfdc_test" / stem / "0_0.png"), image)
        rows.append(
            {
                "video": video,
                "file": f"dfdc_test/{stem}/0_0.png",
                "label": label,
                "original": original,
                "part": "dfdc_test",
                "frame": 0,
                "face": 0,
                "identity": "",
                "method": "",
                "compression": "",
                "split": "test",
            }
        )
    pd.DataFrame(rows)[CROP_COLUMNS].to_csv(crops_root / "dfdc_test" / "index.csv", index=False)
    config = diffs.Config(win_size=7, mask_threshold=THRESHOLD, workers=1, sampling=SAMPLING, margin=MARGIN)
    report = diffs.run(
        config, diffs.Paths(crops_root, "dfdc_test", tmp_path / "diffs", tmp_path / "masks", tmp_path / "r.json")
    )
    assert report["videos_total"] == 2 and report["videos_done"] == 1 and report["videos_skipped"] == 1
    assert report["skipped"] == [
        {"video": "lone.mp4", "reason": "no original named and no mask video: nothing to compare"}
    ]
    assert report["masks_from_video"] == 0 and report["pairs_found"] == 1
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["fake"]
    assert sorted(p.name for p in (tmp_path / "diffs").iterdir()) == ["fake"]


def test_a_fake_without_an_original_but_with_a_mask_video_gets_its_mask_and_no_self_difference(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_video(root / "lone.mp4", tampered(textured()))
    write_video(root / "lone_mask.mp4", mask_frames())
    index = write_index_csv(
        tmp_path / "index.csv", [IndexRow("lone.mp4", "lone.mp4", "FAKE", split="test", mask="lone_mask.mp4")]
    )
    boxes = tmp_path / "boxes"
    write_boxes(boxes, "lone", (W, H), BOX)
    crops.run(
        crops.Config(SAMPLING, MARGIN, 1),
        crops.Paths("dp", index, root, boxes, tmp_path / "crops" / "dp", tmp_path / "c.json"),
    )
    config = diffs.Config(win_size=7, mask_threshold=THRESHOLD, workers=1, sampling=SAMPLING, margin=MARGIN)
    paths = diffs.Paths(
        tmp_path / "crops", "dp", tmp_path / "diffs", tmp_path / "masks", tmp_path / "d.json", index, root, boxes
    )
    report = diffs.run(config, paths)
    assert report["videos_done"] == 1 and report["masks_from_video"] == 3  # the masks do come from the video
    assert sorted(p.name for p in (tmp_path / "masks" / "lone").iterdir()) == ["0_0.png", "2_0.png", "4_0.png"]
    assert report["pairs_found"] == 0  # there is no original to compare with
    assert not list((tmp_path / "diffs").rglob("*.png"))


# ---- the training data ----------------------------------------------------------------------------------


def training_table() -> pd.DataFrame:
    rows = []
    for part, fold in [("ffpp", 0), ("ffpp", 1), ("ffpp", 2), ("celebdf", 2), ("celebdf", 1), ("dfdc_p0", 3)]:
        for label, method in [("REAL", ""), ("FAKE", "Deepfakes"), ("FAKE", "NeuralTextures"), ("FAKE", "")]:
            rows.append(
                {
                    "part": part,
                    "fold": fold,
                    "label": label,
                    "method": method,
                    "mask": "m.png" if label == "FAKE" else "",
                }
            )
    return pd.DataFrame(rows)


def test_select_training_data_filters_datasets_and_drops_held_out_fakes_only() -> None:
    table = training_table()
    assert select_training_data(table, [], []).equals(table)
    ffpp = select_training_data(table, ["ffpp"], [])
    assert set(ffpp["part"]) == {"ffpp"} and len(ffpp) == 12
    two = select_training_data(table, ("ffpp", "celebdf"), ("NeuralTextures",))
    assert set(two["part"]) == {"ffpp", "celebdf"}
    assert "NeuralTextures" not in set(two["method"])
    assert len(two) == 5 * 3  # 5 (dataset, fold) blocks of 4 rows, minus their NeuralTextures fake
    # a REAL that names the held-out method (no such row in a real index) is never dropped: only fakes are
    odd = pd.DataFrame([{"part": "ffpp", "fold": 0, "label": "REAL", "method": "NeuralTextures", "mask": ""}])
    assert len(select_training_data(odd, [], ["NeuralTextures"])) == 1
    with pytest.raises(InputError, match=r"train\.datasets \['nope'\] have no crops in the folds table"):
        select_training_data(table, ["ffpp", "nope"], [])
    assert len(select_training_data(table.drop(columns="method"), [], ["Deepfakes"])) == len(table)


def test_training_and_validation_rows_follow_train_datasets_and_holdout_methods(tmp_path: Path) -> None:
    from deepfake.stages.train import TrainConfig, training_rows, validation_rows

    params = as_params(tiny_params(tmp_path))
    base = TrainConfig.from_params(params, next(iter(params.models)))
    assert (base.holdout_fold, base.val_fold) == (0, 1)
    config = replace(base, datasets=("ffpp", "celebdf"), holdout_methods=("Deepfakes",))
    table = training_table()
    table.loc[(table["part"] == "celebdf") & (table["method"] == ""), "mask"] = ""  # an unmasked fake
    train = training_rows(table, config)
    assert set(zip(train["part"], train["fold"], strict=True)) == {("ffpp", 2), ("celebdf", 2)}
    assert "Deepfakes" not in set(train.loc[train["label"] == "FAKE", "method"])
    assert ((train["label"] == "REAL") | (train["mask"] != "")).all()  # unmasked fakes never train
    val = validation_rows(table, config)
    assert set(zip(val["part"], val["fold"], strict=True)) == {("ffpp", 1), ("celebdf", 1)}
    assert "Deepfakes" not in set(val["method"])
    assert ((val["label"] == "FAKE") & (val["mask"] == "")).any()  # validation keeps unmasked fakes
    everything = training_rows(table, replace(base, datasets=(), holdout_methods=()))
    assert set(everything["fold"]) == {2, 3}
    with pytest.raises(InputError, match=r"have no crops"):
        validation_rows(table, replace(base, datasets=("dfdc_train_part_9",)))


# ---- params and layouts ---------------------------------------------------------------------------------


def test_params_layout_names_are_the_registered_layouts() -> None:
    assert set(get_args(DatasetParams.model_fields["layout"].annotation)) == set(LAYOUTS)


def test_dataset_params_cover_every_layout_option() -> None:
    fields = set(DatasetParams.model_fields) - {"layout", "root"}
    accepted = {name: set(layout.accepted()) for name, layout in LAYOUTS.items()}
    for name, options in accepted.items():
        assert options <= fields, f"layout {name}: options {sorted(options - fields)} are not DatasetParams fields"
    assert fields == set().union(*accepted.values())  # and no field that no layout takes


REQUIRED_VALUES = {"compression": "c23", "split": "test", "variants": ["end_to_end"]}  # ffpp_root: a folder


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_validates_in_params_with_its_required_options(tmp_path: Path, layout: str) -> None:
    spec: dict[str, Any] = {"layout": layout, "root": str(tmp_path / "root")}
    for option, default in LAYOUTS[layout].accepted().items():
        if default is REQUIRED:
            spec[option] = str(tmp_path / "ffpp") if option == "ffpp_root" else REQUIRED_VALUES[option]
    params = as_params(params_with(tmp_path, {"d": spec}))
    config = ingest.Config.from_params(params, "d")
    assert config.layout == layout
    assert set(config.options) <= set(LAYOUTS[layout].accepted())
    assert {k for k, v in LAYOUTS[layout].accepted().items() if v is REQUIRED} <= set(config.options)
