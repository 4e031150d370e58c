"""The robustness protocol's stages: perturb@<testset> (written once, deterministic) and robustness@<testset>
(the package scored by deepfake predict on every variant)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import yaml

from deepfake.core.errors import ParamsError
from deepfake.media.perturbations import Encoding
from deepfake.media.perturbed_index import read_videos_csv
from deepfake.stages import perturb, robustness
from tests.conftest import as_params, ingest_part, tiny_params

PART = "dfdc_train_part_0"


def test_variant_metrics_count_unscored_videos_and_read_the_verdicts() -> None:
    group = pd.DataFrame(
        {
            "y": [0, 0, 1, 1, 1],
            "score": [0.1, 0.8, 0.7, 0.9, np.nan],  # the last fake lost its face: unscored, never guessed
            "probability": [0.2, 0.5, 0.6, 0.8, np.nan],
            "call": ["likely_real", "likely_fake", "uncertain", "likely_fake", None],
        }
    )
    figures = robustness.variant_metrics(group)
    assert (figures["videos"], figures["scored"], figures["unscored"]) == (5, 4, 1)
    assert figures["auc"] == pytest.approx(0.75)  # 3 of the 4 real-fake pairs ordered right
    expected = -np.mean([math.log(0.8), math.log(0.5), math.log(0.6), math.log(0.8)])
    assert figures["log_loss"] == pytest.approx(expected)
    assert figures["fpr_likely_fake"] == 0.5 and figures["tpr_likely_fake"] == 0.5


def test_the_grid_comes_from_params_and_unknown_families_are_refused(tmp_path: Path) -> None:
    raw = tiny_params(tmp_path)
    raw["evaluate"]["testsets"] = {"t": [PART]}
    config = perturb.Config.from_params(as_params(raw), "t")
    assert config.grid[0] == ("none", 0)  # the baseline first, always
    assert ("gaussian_blur", 3) in config.grid and ("color_saturation", 1) not in config.grid
    raw["robustness"]["full_grid"] = True
    full = perturb.Config.from_params(as_params(raw), "t")
    assert len(full.grid) == 1 + 9 * 5
    raw["robustness"]["full_grid"] = False
    raw["robustness"]["grid"]["gausian_blur"] = [1]
    with pytest.raises(ParamsError, match=r"robustness\.grid: .*gaussian_blur"):
        perturb.Config.from_params(as_params(raw), "t")


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.mp4")}


@pytest.mark.slow
def test_perturb_then_robustness_on_the_package(models_root: dict, hostile_part: Path, tmp_path: Path) -> None:
    """Every good video is written once per variant, the same bytes on a rerun; an undecodable one is recorded
    and left out of every variant; the package then scores each variant through deepfake predict, and a
    perturbation that hides the faces is counted as unscored videos, not guessed."""
    index = ingest_part(hostile_part, tmp_path / "index")
    config = perturb.Config(
        testset="hostile",
        datasets=(PART,),
        test_only=True,
        holdout_fold=0,
        grid=(("none", 0), ("gaussian_blur", 5), ("downscale", 5)),
        max_videos=50,
        seed=3,
        encoding=Encoding(threads=1),
        max_pixels=models_root["params"].video.max_pixels,
    )
    paths = perturb.Paths(
        tmp_path / "no-folds.csv", index.parent, {PART: hostile_part}, {}, tmp_path / "set", tmp_path / "p.json"
    )
    report = perturb.run(config, paths)
    assert {"dfdc_train_part_0/zero.mp4", "dfdc_train_part_0/notvideo.mp4"} <= set(report["refused"])
    table = read_videos_csv(paths.out)
    good = set(table["video"])
    assert {"reala.mp4", "fakea.mp4", "realb.mp4", "fakeb.mp4"} <= good and "zero.mp4" not in good
    assert len(table) == 3 * len(good) and set(table["variant"]) == {"none-0", "gaussian_blur-5", "downscale-5"}
    for file in table["file"]:
        assert (paths.out / file).stat().st_size > 0
    with (
        av.open(str(paths.out / "downscale-5" / PART / "reala.mp4")) as small,
        av.open(str(hostile_part / "reala.mp4")) as big,
    ):
        assert small.streams.video[0].height < big.streams.video[0].height / 4  # 144/1080 of each side
    first = _digest(paths.out)
    perturb.run(config, paths)
    assert _digest(paths.out) == first  # the same inputs write the same bytes (DVC caches them once)

    params = tmp_path / "params.yaml"
    raw = dict(models_root["raw"])
    params.write_text(yaml.safe_dump(raw))
    out = robustness.Paths(
        paths.out,
        models_root["root"],
        params,
        tmp_path / "pred" / "hostile.json",
        tmp_path / "metrics" / "hostile.json",
        tmp_path / "plots" / "hostile.json",
        tmp_path / "plots" / "hostile.png",
        tmp_path / "metrics" / "details" / "hostile.json",
    )
    result = robustness.run(robustness.Config(testset="hostile", backend="onnx"), out)
    variants = result["variants"]
    assert set(variants) == {"none-0", "gaussian_blur-5", "downscale-5"}
    baseline = variants["none-0"]
    assert baseline["videos"] == len(good) and baseline["scored"] >= 4
    assert variants["downscale-5"]["unscored"] > baseline["unscored"]  # faces of 20 px are not found
    assert result["probability"] == "calibrated"  # the package carries its calibration
    metric = json.loads(out.metrics.read_text())  # the experiment metric: two numbers, no timings
    assert metric == {"auc_drop": result["summary"]["worst_auc_drop"], "unscored": result["summary"]["unscored"]}
    assert result["summary"]["unscored"] == sum(v["unscored"] for v in variants.values())
    assert json.loads(out.details.read_text())["variants"] == variants
    points = json.loads(out.plot_data.read_text())
    # one line per family, each from the shared baseline at level 0
    expected = {(f, level) for f in ("gaussian_blur", "downscale") for level in (0, 5)}
    assert {(p["family"], p["level"]) for p in points} == expected
    assert {p["auc"] for p in points if p["level"] == 0} == {baseline["auc"]}
    assert out.plot.stat().st_size > 1000
