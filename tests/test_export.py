"""ONNX export: checker-valid graphs with a dynamic batch that match PyTorch on real crops."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from deepfake.backends import onnx_export
from deepfake.backends.onnx_backend import onnx_session
from deepfake.core.errors import CheckpointError, InputError, ParamsError
from deepfake.media.face_input import FaceInput
from deepfake.modeling.models import create_model, list_models
from deepfake.modeling.store import INPUT_NAME, LOGIT, MASK, Member, ModelStore
from deepfake.stages import export
from tests.conftest import as_params, store_with_checkpoints, tiny_params

SMALL = {
    "classifier": {"encoder": "test_resnet", "input_filter": "srm"},
    "uynet": {"encoder": "tu-test_resnet", "depth": 3, "decoder_channels": [16, 8, 8]},
}


@pytest.mark.parametrize("name", list_models())
def test_export_has_named_io_dynamic_batch_and_matches_torch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    path = tmp_path / f"{name}.onnx"
    names = onnx_export.export_onnx(model, path, 64, 18)
    assert names == ([LOGIT, MASK] if name == "uynet" else [LOGIT])
    graph = onnx.load(str(path))
    assert [i.name for i in graph.graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.graph.output] == names
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not model.training  # the exporter must not leave BatchNorm in training mode
    session = onnx_session(path)
    for batch in (1, 3):  # neither is the batch of 2 used to trace the graph
        images = torch.randn(batch, 3, 64, 64)
        differences = onnx_export.parity(model, session, images, names)
        assert set(differences) == set(names)
        assert max(differences.values()) < 1e-4
    assert session.run([LOGIT], {INPUT_NAME: np.zeros((5, 3, 64, 64), np.float32)})[0].shape == (5, 1)


def test_export_config_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"export\.opset"):
        as_params(tiny_params(tmp_path, export__opset=13))
    with pytest.raises(ParamsError, match=r"export\.tolerance"):
        as_params(tiny_params(tmp_path, export__opset=18, export__tolerance=0))
    config = export.Config.from_params(as_params(tiny_params(tmp_path, export__opset=18)))
    assert (config.opset, config.face_input.image_size) == (18, 64)


def _paths(trained: dict, models: Path, report: Path) -> export.Paths:
    return export.Paths(trained["folds"], trained["roots"], models, report)


def test_export_stage_writes_every_member_manifest_and_parity(trained: dict, tmp_path: Path) -> None:
    params = trained["params"]
    store = store_with_checkpoints(trained, tmp_path)
    out, report_path = store.folder("onnx"), tmp_path / "export.json"
    out.mkdir()
    (out / "classifier-999.onnx").write_bytes(b"from a seed no longer in params")
    config = export.Config.from_params(params)
    assert {m.name for m in config.members} == {"classifier", "uynet", "classifier-8", "uynet-8"}
    # two of the four (each export is a torch.export trace): each model kind, a train.seed and an ensemble seed
    config = replace(config, members=tuple(m for m in config.members if m.name in ("uynet", "classifier-8")))
    export.run(config, _paths(trained, store.root, report_path))
    members = {"uynet", "classifier-8"}
    assert {p.stem for p in out.glob("*.onnx")} == members  # the stale member is gone
    manifest = store.read_manifest("onnx")
    assert {m["name"] for m in manifest["members"]} == members
    assert manifest["input"]["image_size"] == params.train.image_size
    assert store.face_input("onnx").margin == params.crops.margin
    report = json.loads(report_path.read_text())
    assert set(report["members"]) == members
    assert 0 <= report["max_abs_diff"] < 1e-4
    assert all(m["parity_crops"] == params.export.parity_crops for m in report["members"].values())


def test_export_packages_an_added_model_under_its_own_contract(trained: dict, tmp_path: Path) -> None:
    """A model added to the store from elsewhere (``ModelStore.add_model``) is exported like a trained
    member, checked on crops fitted to its own input size, and its contract goes into the manifest."""
    store = ModelStore(tmp_path / "models")
    contract = FaceInput(96, 0.25)
    assert contract != export.Config.from_params(trained["params"]).face_input
    torch.manual_seed(0)
    model = create_model("classifier", **SMALL["classifier"]).eval()
    store.add_model(Member("classifier"), model.state_dict(), SMALL["classifier"], contract)
    config = replace(export.Config.from_params(trained["params"]), members=(Member("classifier"),))
    report = export.run(config, _paths(trained, store.root, tmp_path / "export.json"))
    assert store.face_input("onnx") == contract
    assert list(report["members"]) == ["classifier"] and report["max_abs_diff"] < 1e-4
    graph = onnx.load(str(store.graph("classifier")))
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 96, 96]


def test_export_refuses_a_model_that_disagrees_with_onnx(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_with_checkpoints(trained, tmp_path)
    monkeypatch.setattr(onnx_export, "parity", lambda *args: {LOGIT: 0.5})
    with pytest.raises(onnx_export.ExportError, match=r"differs from PyTorch by 0\.5"):
        export.run(export.Config.from_params(trained["params"]), _paths(trained, store.root, tmp_path / "bad.json"))
    assert not list(store.folder("onnx").glob("*.onnx")) and not (tmp_path / "bad.json").exists()


def test_missing_checkpoint_or_manifest_names_the_dvc_target(trained: dict, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dvc pull export"):
        ModelStore(tmp_path).read_manifest("onnx")
    with pytest.raises(CheckpointError, match="missing; run `dvc repro train@classifier`"):
        export.run(export.Config.from_params(trained["params"]), _paths(trained, tmp_path, tmp_path / "r.json"))


def test_export_writes_the_model_card(trained: dict, tmp_path: Path) -> None:
    """card.json beside the manifest: name and licence from params, the package's version, trained_on, the
    demonstration flag (the training datasets are the sample's folders) and the evaluation matrix's figures."""
    from deepfake.modeling.card import DEMONSTRATION_WARNING, TRAINED_SOURCE, package_version, read_card

    params = trained["params"]
    store = store_with_checkpoints(trained, tmp_path)
    matrix = tmp_path / "matrix.json"
    cells = {"video_auc": 0.75, "video_log_loss": 0.6, "frame_auc": None, "video_ap": 0.8, "video_eer": 0.25}
    matrix.write_text(json.dumps({"classifier": {"dfdc": cells, "dfdc/Deepfakes": cells}}))
    config = replace(export.Config.from_params(params), members=(Member("classifier"),))
    # tiny_params puts the training part at <hostile_part.parent>/dfdc_train_part_0, one of sample.parts
    sample = Path(params.data.datasets["dfdc_train_part_0"].root).parent
    paths = export.Paths(trained["folds"], trained["roots"], store.root, tmp_path / "e.json", sample, matrix)
    report = export.run(config, paths)
    card = read_card(store.folder("onnx"))
    assert card.version == package_version(store.folder("onnx")) == report["card"]["version"]
    assert report["card"] == {"name": params.export.name, "version": card.version, "demonstration": True}
    assert (card.name, card.license, card.source) == (params.export.name, params.export.license, TRAINED_SOURCE)
    assert card.trained_on == list(params.train.datasets) and card.warning == DEMONSTRATION_WARNING
    assert {(f.metric, f.value, f.testset) for f in card.evaluation} == {(k, v, "dfdc") for k, v in cells.items()}
    assert "classifier" in card.description and str(matrix) in card.description
    # another sample root: the training data is not the sample's
    assert export.trained_on_sample_only(config, tmp_path / "elsewhere") is False
    assert export.trained_on_sample_only(config, None) is None
    figures, note = export.evaluation_figures(config.members, None)
    assert figures == [] and "without the evaluation matrix" in note
    with pytest.raises(InputError, match=r"no row 'all-ensemble'.*dvc repro matrix"):
        export.evaluation_figures(export.Config.from_params(params).members, matrix)
