"""ONNX export: checker-valid graphs with a dynamic batch that match PyTorch on real crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from deepfake import export
from deepfake.models import create_model, list_models

SMALL = {
    "classifier": {"encoder": "test_resnet", "input_filter": "srm"},
    "uynet": {"encoder": "tu-test_resnet", "depth": 3, "decoder_channels": [16, 8, 8]},
}


@pytest.mark.parametrize("name", list_models())
def test_export_has_named_io_dynamic_batch_and_matches_torch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    path = tmp_path / f"{name}.onnx"
    names = export.export_onnx(model, path, 64, 18)
    assert names == (["logit", "mask"] if name == "uynet" else ["logit"])
    graph = onnx.load(str(path))
    assert [i.name for i in graph.graph.input] == ["image"]
    assert [o.name for o in graph.graph.output] == names
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not model.training  # the exporter must not leave BatchNorm in training mode
    session = export.onnx_session(path)
    for batch in (1, 3):  # neither is the batch of 2 used to trace the graph
        images = torch.randn(batch, 3, 64, 64)
        differences = export.parity(model, session, images, names)
        assert set(differences) == set(names)
        assert max(differences.values()) < 1e-4
    assert session.run(["logit"], {"image": np.zeros((5, 3, 64, 64), np.float32)})[0].shape == (5, 1)


def test_export_config_is_checked() -> None:
    params = {
        "export": {"opset": 13, "parity_crops": 8, "tolerance": 1e-4},
        "train": {"image_size": 64, "holdout_fold": 0},
    }
    with pytest.raises(ValueError, match="opset must be 17"):
        export.ExportConfig.from_params(params)
    params["export"].update(opset=18, tolerance=0)
    with pytest.raises(ValueError, match="tolerance"):
        export.ExportConfig.from_params(params)


def test_export_stage_writes_every_member_manifest_and_parity(trained: dict) -> None:
    root, params = trained["root"], trained["params"]
    out, report_path = root / "onnx", root / "export.json"
    (out).mkdir()
    (out / "classifier-999.onnx").write_bytes(b"from a seed no longer in params")
    export.run(params, trained["folds"], trained["roots"], root / "models", out, report_path)
    members = {"classifier", "uynet", "classifier-8", "uynet-8"}
    assert {p.stem for p in out.glob("*.onnx")} == members  # the stale member is gone
    manifest = export.read_manifest(out)
    assert {m["name"] for m in manifest["members"]} == members
    assert manifest["input"]["image_size"] == params["train"]["image_size"]
    report = json.loads(report_path.read_text())
    assert set(report["members"]) == members
    assert 0 <= report["max_abs_diff"] < 1e-4
    assert all(m["parity_crops"] == params["export"]["parity_crops"] for m in report["members"].values())


def test_export_refuses_a_model_that_disagrees_with_onnx(trained: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    root, params = trained["root"], trained["params"]
    out = root / "onnx-bad"
    monkeypatch.setattr(export, "parity", lambda *args: {"logit": 0.5})
    with pytest.raises(export.ExportError, match=r"differs from PyTorch by 0\.5"):
        export.run(params, trained["folds"], trained["roots"], root / "models", out, root / "bad.json")
    assert not list(out.glob("*.onnx")) and not (root / "bad.json").exists()


def test_missing_checkpoint_or_manifest_names_the_dvc_target(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc pull export"):
        export.read_manifest(tmp_path)
    with pytest.raises(ValueError, match="missing; run `dvc repro`"):
        export.run(trained["params"], trained["folds"], trained["roots"], tmp_path, tmp_path / "o", tmp_path / "r.json")
