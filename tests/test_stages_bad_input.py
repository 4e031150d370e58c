"""The preprocessing stages on a part full of bad input: recorded skips, nothing else lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from deepfake.stages import bboxes, crops
from tests.conftest import as_params, tiny_params


def skipped(report: dict) -> dict[str, str]:
    return {s["video"]: s["reason"] for s in report["skipped"]}


def test_metadata_refusals_are_recorded_by_ingest_and_never_reach_the_stages(processed: dict) -> None:
    refused = processed["ingest"]["refused"]
    assert len(refused) == 5 == processed["ingest"]["refused_count"]
    assert all(line.startswith("metadata.json:") for line in refused)  # the file and line, relative to the root
    assert any("plain .mp4" in line for line in refused)  # ../escape.mp4
    assert any("'MAYBE'" in line for line in refused)  # badlabel.mp4
    assert any("ghost.mp4" in line for line in refused)  # orphan.mp4
    assert any("missing.mp4 is missing" in line for line in refused)  # a listed video that is not there
    index = pd.read_csv(processed["index"], keep_default_na=False)
    refused_names = {"../escape.mp4", "badlabel.mp4", "orphan.mp4", "missing.mp4", "fakemissing.mp4"}
    assert refused_names.isdisjoint(index["video"])  # fakemissing.mp4: its source was refused
    assert len(index) == 14 - len(refused_names)


def test_bboxes_skips_bad_reals_and_keeps_good_ones(processed: dict) -> None:
    report = processed["bboxes"]
    reasons = skipped(report)
    assert set(reasons) == {"noface.mp4", "zero.mp4", "truncated.mp4"}  # missing.mp4: refused by ingest
    assert "no face" in reasons["noface.mp4"]
    assert "empty file" in reasons["zero.mp4"]
    assert report["videos_done"] == 2
    boxes_dir = processed["out"] / "bboxes" / processed["part"]
    assert sorted(p.name for p in boxes_dir.iterdir()) == ["reala.json", "realb.json"]
    data = json.loads((boxes_dir / "reala.json").read_text())
    assert data["width"] == 320 and data["height"] == 180 and data["detection_scale"] == 2.0
    assert sorted(int(k) for k in data["frames"]) == [0, 4, 8, 12]
    for boxes in data["frames"].values():
        assert len(boxes) >= 1
        x1, y1, x2, y2, score = boxes[0]
        # full-resolution coordinates: inside the 320x180 frame, not the 2x detector frame
        assert 0 <= x1 < x2 <= 330 and 0 <= y1 < y2 <= 190 and score > 0.9


def test_crops_cover_fakes_and_skip_what_cannot_be_cropped(processed: dict) -> None:
    reasons = skipped(processed["crops"])
    assert "no boxes" in reasons["fakenoface.mp4"]
    assert "notvideo.mp4" in reasons and "cannot be opened" in reasons["notvideo.mp4"]
    assert {"reala.mp4", "fakea.mp4", "realb.mp4", "fakeb.mp4"}.isdisjoint(reasons)
    index = pd.read_csv(processed["out"] / "crops" / processed["part"] / "index.csv")
    assert set(index["video"]) == {"reala.mp4", "fakea.mp4", "realb.mp4", "fakeb.mp4"}
    assert (index.loc[index["label"] == "FAKE", "original"].isin(["reala.mp4", "realb.mp4"])).all()
    for file in index["file"]:
        assert (processed["out"] / "crops" / file).is_file()
    # a fake's crops sit exactly where its original's do
    real = index[index["video"] == "reala.mp4"]["file"].str.split("/").str[-1]
    fake = index[index["video"] == "fakea.mp4"]["file"].str.split("/").str[-1]
    assert sorted(real) == sorted(fake)


def test_landmarks_are_found_on_real_crops(processed: dict) -> None:
    report = processed["landmarks"]
    assert report["landmarks"] >= 0.75 * report["crops"] > 0
    files = list((processed["out"] / "landmarks" / processed["part"]).rglob("*.npy"))
    assert len(files) == report["landmarks"]
    points = np.load(files[0])
    assert points.shape == (5, 2) and points.dtype == np.float32


def test_diffs_localise_the_tampered_region(processed: dict) -> None:
    import cv2

    report = processed["diffs"]
    assert report["pairs_found"] > 0 and report["pairs_missing"] == 0
    masks = sorted((processed["out"] / "masks" / processed["part"] / "fakea").glob("*.png"))
    assert masks
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
    assert set(np.unique(mask)) <= {0, 255}
    assert 0.02 < (mask > 0).mean() < 0.9  # something changed, but not the whole crop


def test_folds_table_has_no_leakage(processed: dict) -> None:
    table = pd.read_csv(processed["out"] / "folds.csv", keep_default_na=False)
    assert processed["folds"]["leaking_groups"] == 0
    assert table.groupby("original")["fold"].nunique().max() == 1
    fakes = table[table["label"] == "FAKE"]
    assert (fakes["mask"] != "").all() and (fakes["diff"] != "").all()
    assert (table.loc[table["label"] == "REAL", "mask"] == "").all()
    assert (table["landmarks"] != "").mean() > 0.5


def test_every_report_has_counts_and_seconds(processed: dict) -> None:
    for stage in ("bboxes", "crops", "landmarks", "diffs"):
        report = processed[stage]
        assert report["videos_total"] == report["videos_done"] + report["videos_skipped"]
        assert report["seconds"] >= 0


def tree_hashes(root: Path) -> dict[str, str]:
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_parallel_workers_give_the_same_bytes_as_serial(processed: dict, hostile_part: Path, tmp_path: Path) -> None:
    params = as_params(tiny_params(hostile_part.parent, bboxes__workers=2, crops__workers=2))
    part = processed["part"]
    paths = {"dataset": part, "index": processed["index"], "root": hostile_part}
    report = bboxes.run(
        bboxes.Config.from_params(params), bboxes.Paths(**paths, out=tmp_path / "bboxes", report=tmp_path / "b.json")
    )
    assert tree_hashes(tmp_path / "bboxes") == tree_hashes(processed["out"] / "bboxes" / part)
    assert skipped(report) == skipped(processed["bboxes"])
    crops.run(
        crops.Config.from_params(params),
        crops.Paths(**paths, boxes=tmp_path / "bboxes", out=tmp_path / "crops", report=tmp_path / "c.json"),
    )
    assert tree_hashes(tmp_path / "crops") == tree_hashes(processed["out"] / "crops" / part)


def test_malformed_metadata_stops_the_stage_naming_the_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    part = tmp_path / "raw" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    (part / "metadata.json").write_text('{"a.mp4": {"label": "REAL"')
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tmp_path / "raw")))
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [
            sys.executable,
            str(root / "stages/ingest.py"),
            "--params",
            str(tmp_path / "params.yaml"),
            "--dataset",
            part.name,
            "--root",
            str(part),
            "--out",
            str(tmp_path / "out"),
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # exactly one line: error: <Class>: <message naming the file>
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and f"{part}/metadata.json" in line and "not valid JSON" in line
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "r.json").exists()


LANDMARKS_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from deepfake.core.params import validate_params
from deepfake.stages import landmarks
params = validate_params(json.loads(sys.argv[1]))
crops, part, out = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
landmarks.run(landmarks.Config.from_params(params), landmarks.Paths(crops, part, out, out.parent / "report.json"))
print(json.dumps("torch" in sys.modules))
"""


def test_landmarks_on_onnx_runtime_start_without_torch_once_mtcnn_is_cached(
    processed: dict, hostile_part: Path, tmp_path: Path
) -> None:
    """MTCNN's ONNX graphs, once exported and cached, spare every later detector process torch's import
    (about 6 s with torchvision on a 2-core CPU: a dozen stage runs in a `dvc repro` of the sample); the
    landmarks are the same bytes either way."""
    raw = tiny_params(hostile_part.parent)
    assert raw["landmarks"]["runtime"] == "onnx"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # an empty cache: the first run exports
    imported = []
    for run in ("first", "cached"):
        out = tmp_path / run / "landmarks"
        args = [json.dumps(raw), str(processed["out"] / "crops"), processed["part"], str(out)]
        result = subprocess.run(
            [sys.executable, "-c", LANDMARKS_IN_A_NEW_PROCESS, *args], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        imported.append(json.loads(result.stdout.splitlines()[-1]))
        assert tree_hashes(out) == tree_hashes(processed["out"] / "landmarks" / processed["part"])
    assert imported == [True, False]
    assert len(list((tmp_path / "cache").rglob("*.onnx"))) == 3
