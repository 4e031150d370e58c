"""deepfake explain: Grad-CAM and mask overlays, the MP4 and the montage, on tiny trained models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deepfake.apps import explain
from deepfake.core.errors import InputError, ParamsError
from deepfake.modeling.models import create_model
from deepfake.modeling.store import INPUT_NAME


def test_grad_cam_is_a_normalised_map_at_the_input_size() -> None:
    torch.manual_seed(0)
    model = create_model("classifier", encoder="test_resnet", input_filter="srm")
    cam, prob = explain.grad_cam(model, torch.randn(1, 3, 64, 64))
    assert cam.shape == (64, 64)
    assert cam.min() >= 0.0 and cam.max() <= 1.0 + 1e-6
    assert 0.0 < prob < 1.0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_explain_writes_pngs_mp4_montage_and_scores(
    backend: str, models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    out = tmp_path / "explain"
    params, store = models_root["params"], models_root["store"]
    summary = explain.explain(hostile_part / "fakea.mp4", params, store, out, 3, 4.0, backend)
    assert summary["faces"] >= 1
    record = summary["records"][0]
    assert 0.0 <= record["classifier"] <= 1.0 and 0.0 <= record["uynet"] <= 1.0
    pngs = sorted(out.glob("frame*_face*.png"))
    assert len(pngs) == summary["faces"]
    row = cv2.imread(str(pngs[0]))
    assert row.shape == (explain.PANEL, 3 * explain.PANEL, 3)  # input, Grad-CAM, mask
    montage = cv2.imread(str(out / "montage.png"))
    assert montage.shape[1] == 3 * explain.PANEL and montage.shape[0] == min(3, summary["faces"]) * explain.PANEL
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == summary["faces"]
    assert not np.array_equal(row[:, : explain.PANEL], row[:, explain.PANEL : 2 * explain.PANEL])
    # the face tracks: listed with their frames, drawn one strip each, every face on one of them
    assert summary["tracks"] and {r["track"] for r in summary["records"]} == {t["id"] for t in summary["tracks"]}
    assert all(t["frames"] and set(t["mean_scores"]) == {"classifier", "uynet"} for t in summary["tracks"])
    strips = cv2.imread(str(out / "tracks.png"))
    assert strips.shape == (len(summary["tracks"]) * explain.PANEL, explain.TRACK_STRIP * explain.PANEL, 3)


def test_the_cli_takes_the_montage_rows_and_the_overlay_rate_from_params(
    models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    """Without --montage and --fps, ``deepfake explain`` draws explain.montage_rows rows at explain.overlay_fps."""
    import copy

    import av
    import yaml

    from deepfake.cli import main as cli_main

    raw = copy.deepcopy(models_root["raw"])
    raw["explain"].update(montage_rows=2, overlay_fps=2.5)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    out = tmp_path / "explain"
    video = str(hostile_part / "fakea.mp4")
    assert (
        cli_main(
            ["--params", str(params_file), "explain", video, "--out", str(out), "--models", str(models_root["root"])]
        )
        == 0
    )
    faces = len(list(out.glob("frame*_face*.png")))
    assert faces >= 2
    assert cv2.imread(str(out / "montage.png")).shape[0] == 2 * explain.PANEL
    with av.open(str(out / "overlay.mp4")) as container:
        assert container.streams.video[0].average_rate == 2.5


def test_unreadable_or_faceless_videos_are_clear_errors(models_root: dict, hostile_part: Path, tmp_path: Path) -> None:
    params, store = models_root["params"], models_root["store"]
    for name, message in (("zero.mp4", "cannot explain"), ("noface.mp4", "no face found")):
        with pytest.raises(InputError, match=message):
            explain.explain(hostile_part / name, params, store, tmp_path / name, 3, 4.0, "torch")
    with pytest.raises(ParamsError, match="torch, onnx, onnx-int8 backends, not 'vart'"):
        explain.explain(hostile_part / "reala.mp4", params, store, tmp_path / "x", 3, 4.0, "vart")


def test_occlusion_map_finds_the_patch_the_model_relies_on() -> None:
    class OnePatch:
        """A stand-in session whose logit is the mean of the top-left eighth of the image."""

        def run(self, names: list[str], feeds: dict) -> list[np.ndarray]:
            images = feeds[INPUT_NAME]
            return [images[:, :, :8, :8].mean(axis=(1, 2, 3)).reshape(-1, 1)]

    image = np.ones((3, 64, 64), np.float32)
    heat, prob = explain.occlusion_map(OnePatch(), image)
    assert heat.shape == (64, 64) and prob > 0.5
    peak_y, peak_x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert peak_y < 8 and peak_x < 8  # the hottest point lies in the patch the logit reads
    assert heat[:8, :8].mean() > 0.5 and heat[40:, 40:].max() < 0.05
