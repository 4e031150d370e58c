"""The model store (deepfake.modeling.store): member names, the models/ layout, loading, manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deepfake.core.errors import CheckpointError, InputError
from deepfake.media.face_input import FaceInput
from deepfake.modeling.models import create_model
from deepfake.modeling.store import (
    BEST,
    FACE_INPUT_KEY,
    FORMATS,
    INPUT_NAME,
    LAST,
    LOGIT,
    MANIFEST,
    MANIFEST_FORMAT,
    MASK,
    RESUME_KEYS,
    WEIGHTS_KEYS,
    Member,
    ModelStore,
    epoch_checkpoint,
    members,
    resume_payload,
    weights_of,
    weights_payload,
)
from tests.conftest import SMALL_MODELS as SMALL

MODELS = ("classifier", "uynet")
SPEC = FaceInput(64, 0.3333)


def save_checkpoint(store: ModelStore, member: Member, model_name: str | None = None, seed: int = 0) -> torch.nn.Module:
    """A freshly built ``model_name`` saved as ``member``'s best.pt by a plain torch.save of the train
    stage's keys, as versions before the store's writer did: such checkpoints must keep loading."""
    model_name = model_name or member.model
    torch.manual_seed(seed)
    model = create_model(model_name, **SMALL[model_name]).eval()
    store.checkpoint_dir(member).mkdir(parents=True, exist_ok=True)
    checkpoint = {"model": model.state_dict(), "epoch": 3, "model_name": model_name, "model_kwargs": SMALL[model_name]}
    torch.save(checkpoint, store.checkpoint(member))
    return model


def entry(name: str, model: str, **extra: object) -> dict:
    return {"name": name, "model": model, "file": f"{name}.onnx", "outputs": [LOGIT], **extra}


def write_raw_manifest(store: ModelStore, fmt: str, content: str) -> Path:
    path = store.folder(fmt) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def good_manifest() -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "input": {"name": INPUT_NAME, **SPEC.manifest()},
        "members": [entry("classifier", "classifier")],
    }


# ---- members ---------------------------------------------------------------------------------------


def test_member_names_and_parse() -> None:
    assert Member("classifier").name == "classifier"
    assert Member("uynet", 555).name == "uynet-555"
    assert Member("classifier", 0).name == "classifier-0"  # seed 0 is a seed, not "no seed"
    for member in (Member("classifier"), Member("uynet"), Member("classifier", 555), Member("uynet", 0)):
        assert Member.parse(member.name, MODELS) == member
    for bad in ("vit", "classifier-", "classifier-x", "classifier--5", "classifier-+5", "-5", "", "uynet-5-6"):
        with pytest.raises(InputError, match="is not a member name"):
            Member.parse(bad, MODELS)
    with pytest.raises(InputError, match=r"\['classifier'\]"):
        Member.parse("uynet", ["classifier"])  # an architecture the models do not list


@pytest.mark.parametrize("name", ["classifier-\u00b2", "classifier-\u0663", "classifier-007"])
def test_parse_accepts_only_the_names_members_are_given(name: str) -> None:
    """A name parses to the member whose name it is, or is refused with an InputError (never a ValueError)."""
    try:
        member = Member.parse(name, MODELS)
    except InputError:
        return
    assert member.name == name


def test_members_lists_every_model_then_every_model_and_extra_seed() -> None:
    assert members(MODELS, [8, 9]) == [
        Member("classifier"),
        Member("uynet"),
        Member("classifier", 8),
        Member("classifier", 9),
        Member("uynet", 8),
        Member("uynet", 9),
    ]
    assert members(["uynet"], []) == [Member("uynet")]
    assert [m.name for m in members(iter(MODELS), iter([555]))] == [
        "classifier",
        "uynet",
        "classifier-555",
        "uynet-555",
    ]


# ---- layout ----------------------------------------------------------------------------------------


def test_store_paths_for_every_format(tmp_path: Path) -> None:
    store = ModelStore(str(tmp_path / "models"))
    root = tmp_path / "models"
    folders = {"checkpoint": "train", "onnx": "onnx", "onnx-int8": "int8", "triton": "triton"}
    folders.update({"tensorrt": "trt", "xmodel": "dpu"})
    assert set(FORMATS) == set(folders)
    for fmt, folder in folders.items():
        assert store.folder(fmt) == root / folder
    with pytest.raises(KeyError, match="unknown model format 'pt'"):
        store.folder("pt")
    stages = {"checkpoint": "train", "onnx": "export", "onnx-int8": "quantize", "triton": "triton"}
    stages.update({"tensorrt": "deploy/dvc.yaml:build_trt", "xmodel": "deploy/dvc.yaml:compile_dpu"})
    assert {fmt: ModelStore.stage(fmt) for fmt in FORMATS} == stages
    seeded = Member("uynet", 555)
    assert store.checkpoint_dir(Member("classifier")) == root / "train" / "classifier"
    assert store.checkpoint_dir(seeded) == root / "train" / "ensemble" / "uynet-555"
    assert store.checkpoint(Member("classifier")) == root / "train" / "classifier" / "best.pt"
    assert store.checkpoint(seeded, "last") == root / "train" / "ensemble" / "uynet-555" / "last.pt"
    assert store.graph("uynet-555") == root / "onnx" / "uynet-555.onnx"
    assert store.graph("uynet-555", "onnx-int8") == root / "int8" / "uynet-555.onnx"
    assert store.graph("uynet-555", "xmodel") == root / "dpu" / "uynet-555.xmodel"
    assert store.engine("uynet-555") == root / "trt" / "uynet-555.plan"
    assert store.engine("uynet-555", "int8") == root / "trt" / "uynet-555-int8.plan"
    # the engine and quantized names never collide with another member's name
    assert store.engine("classifier", "int8") != store.engine("classifier-8")


# ---- loading a member ------------------------------------------------------------------------------


@pytest.mark.parametrize("member", [Member("classifier"), Member("uynet", 8)], ids=lambda m: m.name)
def test_load_torch_round_trip(tmp_path: Path, member: Member) -> None:
    store = ModelStore(tmp_path / "models")
    model = save_checkpoint(store, member)
    loaded = store.load_torch(member, torch.device("cpu"))
    assert not loaded.training and type(loaded) is type(model)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    assert set(got) == set(expected)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_load_torch_names_the_dvc_stage_of_a_missing_checkpoint(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(
        CheckpointError, match=r"best\.pt: missing; run `dvc repro train@classifier` or `dvc pull train`"
    ):
        store.load_torch(Member("classifier"))
    with pytest.raises(CheckpointError, match=r"`dvc repro train_seed@uynet-8` or `dvc pull train_seed`"):
        store.load_torch(Member("uynet", 8))
    assert issubclass(CheckpointError, InputError)  # a missing member is the user's to fix: one line, exit 2


def test_load_torch_refuses_another_architecture(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    save_checkpoint(store, Member("classifier"), model_name="uynet")
    with pytest.raises(CheckpointError, match="holds a 'uynet' model, expected 'classifier'"):
        store.load_torch(Member("classifier"))
    # a checkpoint without its header is refused too (it cannot say what it holds)
    state = create_model("classifier", **SMALL["classifier"]).state_dict()
    torch.save({"model": state}, store.checkpoint(Member("classifier")))
    with pytest.raises(CheckpointError, match="holds a None model, expected 'classifier'"):
        store.load_torch(Member("classifier"))
    # right architecture, another shape than the header's kwargs build
    torch.save(
        {"model": state, "model_name": "classifier", "model_kwargs": {"encoder": "resnet18"}},
        store.checkpoint(Member("classifier")),
    )
    with pytest.raises(CheckpointError, match="does not fit"):
        store.load_torch(Member("classifier"))


def test_the_model_io_names_are_the_published_ones() -> None:
    """Packages, Triton configs and clients outside this repository address the graphs by these names."""
    assert (INPUT_NAME, LOGIT, MASK) == ("image", "logit", "mask")
    for name in MODELS:
        torch.manual_seed(0)
        outputs = create_model(name, **SMALL[name]).eval()(torch.rand(1, 3, 64, 64))
        assert list(outputs) == ([LOGIT, MASK] if name == "uynet" else [LOGIT])


# ---- the checkpoint format -------------------------------------------------------------------------


def _tensors_equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_written_by_the_store_reads_back_equal(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    member = Member("uynet", 8)
    torch.manual_seed(0)
    model = create_model("uynet", **SMALL["uynet"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 64, 64))[LOGIT].sum().backward()
    optimizer.step()
    weights = weights_payload(model.state_dict(), 3, "uynet", SMALL["uynet"])
    assert tuple(weights) == WEIGHTS_KEYS  # a trained member records no contract of its own
    last = resume_payload(
        weights,
        optimizer=optimizer.state_dict(),
        schedule={"last_epoch": 4},
        history=[{"epoch": 3, "train_loss": 0.5}],
        fingerprint="abc",
        epochs=12,
        rng={"cpu": torch.get_rng_state()},
    )
    assert tuple(last) == WEIGHTS_KEYS + RESUME_KEYS
    folder = store.checkpoints(member)
    folder.path.mkdir(parents=True)
    for which, payload in ((BEST, weights), (LAST, last), (epoch_checkpoint(3), weights)):
        path = folder.write(which, payload)
        assert path == store.checkpoint(member, which) and path.name == f"{which}.pt"
        back = folder.read(which)
        assert list(back) == list(payload)
        assert _tensors_equal(back["model"], payload["model"])
        assert {k: back[k] for k in ("epoch", "model_name", "model_kwargs")} == {
            k: payload[k] for k in ("epoch", "model_name", "model_kwargs")
        }
    back = folder.read(LAST)
    assert (back["history"], back["fingerprint"], back["epochs"]) == (last["history"], "abc", 12)
    assert torch.equal(back["rng"]["cpu"], last["rng"]["cpu"])
    momentum = [s["momentum_buffer"] for s in back["optimizer"]["state"].values()]
    assert momentum and all(
        torch.equal(a, b["momentum_buffer"]) for a, b in zip(momentum, last["optimizer"]["state"].values(), strict=True)
    )
    assert list(weights_of(back)) == list(WEIGHTS_KEYS)  # last.pt -> what best.pt holds
    # plain torch.save bytes, independent of the temporary name and of objects loaded back
    written = folder.file(LAST).read_bytes()
    folder.write(LAST, back)
    assert folder.file(LAST).read_bytes() == written
    assert not [p for p in folder.path.iterdir() if p.suffix != ".pt"]  # no temporary file left
    assert store.load_torch(member, which=LAST).state_dict().keys() == model.state_dict().keys()
    folder.clear()
    assert not list(folder.path.iterdir())


def test_an_added_model_enters_through_the_train_stages_door(tmp_path: Path) -> None:
    """A model from elsewhere (a converted published checkpoint) is written by the same writer, loads
    through the same path and brings its own face-input contract."""
    store = ModelStore(tmp_path / "models")
    member, contract, params_contract = Member("classifier"), FaceInput(96, 0.25), FaceInput(64, 0.3333)
    torch.manual_seed(1)
    published = create_model("classifier", **SMALL["classifier"]).eval()
    path = store.add_model(member, published.state_dict(), SMALL["classifier"], contract)
    assert path == store.checkpoint(member, BEST)
    checkpoint = store.read_checkpoint(member)
    assert tuple(checkpoint) == (*WEIGHTS_KEYS, FACE_INPUT_KEY) and checkpoint["epoch"] is None
    loaded, recorded = store.load_member(member)
    assert recorded == contract
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(store.load_torch(member)(x)[LOGIT], published(x)[LOGIT])
        assert torch.equal(loaded(x)[LOGIT], published(x)[LOGIT])
    assert store.checkpoint_face_input([member], params_contract) == contract
    from deepfake.backends.torch_backend import TorchBackend

    backend = TorchBackend(store, [member], params_contract, "cpu")
    assert backend.members == ["classifier"] and backend.face_input == contract
    # a trained member (no recorded contract) takes the params'; one beside the added model cannot run with it
    trained = Member("uynet")
    save_checkpoint(store, trained)
    assert store.checkpoint_face_input([trained], params_contract) == params_contract
    with pytest.raises(CheckpointError, match="expect different face inputs"):
        store.checkpoint_face_input([member, trained], params_contract)
    with pytest.raises(CheckpointError, match="expect different face inputs"):
        TorchBackend(store, [member, trained], params_contract, "cpu")
    assert store.checkpoint_face_input([member, trained], contract) == contract  # unless the params' agrees


def test_add_model_refuses_weights_that_do_not_fit_and_writes_nothing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    state = create_model("uynet", **SMALL["uynet"]).state_dict()
    with pytest.raises(CheckpointError, match="does not fit"):
        store.add_model(Member("classifier"), state, SMALL["classifier"], SPEC)
    assert not store.checkpoint(Member("classifier")).exists()


def test_a_recorded_contract_of_another_preprocessing_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    member = Member("classifier")
    save_checkpoint(store, member)
    checkpoint = store.read_checkpoint(member)
    checkpoint[FACE_INPUT_KEY] = {**SPEC.manifest(), "channels": "BGR"}
    store.checkpoints(member).write(BEST, checkpoint)
    with pytest.raises(InputError, match=r"preprocessing \['channels'\] differs"):
        store.load_member(member)


# ---- manifests -------------------------------------------------------------------------------------


def test_read_manifest_missing_names_the_stage_that_makes_it(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    with pytest.raises(
        InputError, match=r"onnx/manifest\.json: not found; run `dvc repro export` or `dvc pull export`"
    ):
        store.read_manifest()
    with pytest.raises(InputError, match=r"int8/manifest\.json: not found; run `dvc repro quantize`"):
        store.read_manifest("onnx-int8")
    with pytest.raises(InputError, match="dvc repro export"):
        store.face_input("onnx")


def test_write_then_read_manifest_and_face_input_round_trip(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    entries = [entry("classifier", "classifier", bytes=123), entry("uynet-8", "uynet", max_abs_diff={LOGIT: 0.0})]
    entries[1]["outputs"] = [LOGIT, MASK]
    store.write_manifest("onnx", entries, SPEC, opset=18)
    path = store.folder("onnx") / MANIFEST
    assert path.is_file() and not [p for p in path.parent.iterdir() if p.name.startswith(".")]
    manifest = store.read_manifest("onnx")
    assert manifest["format"] == MANIFEST_FORMAT and manifest["opset"] == 18
    assert manifest["input"] == {"name": INPUT_NAME, **SPEC.manifest()}
    # only the four member keys are recorded: per-run figures (bytes, parity) belong in the report
    assert manifest["members"] == [
        entry("classifier", "classifier"),
        {"name": "uynet-8", "model": "uynet", "file": "uynet-8.onnx", "outputs": [LOGIT, MASK]},
    ]
    assert store.face_input("onnx") == SPEC
    assert json.loads(path.read_text()) == manifest
    store.write_manifest("onnx-int8", entries[:1], FaceInput(128, 0.5), precision="int8")
    assert store.face_input("onnx-int8") == FaceInput(128, 0.5)
    assert store.read_manifest("onnx-int8")["precision"] == "int8"
    assert store.face_input("onnx") == SPEC  # each format keeps its own manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "deepfake-onnx/0"}, r"format 'deepfake-onnx/0', expected 'deepfake-onnx/1'"),
        ({"format": None}, "format None"),
        ({"members": {"classifier": "classifier.onnx"}}, "'members' must list"),
        ({"members": [{"name": "classifier", "file": "classifier.onnx"}]}, "'members' must list"),
        ({"members": [entry("classifier", "classifier", file="../classifier.onnx")]}, "must be a plain file name"),
        ({"members": [entry("classifier", "classifier", file="sub/classifier.onnx")]}, "must be a plain file name"),
        ({"members": [entry("classifier", "classifier", file="/tmp/classifier.onnx")]}, "must be a plain file name"),
    ],
)
def test_read_manifest_refuses_a_malformed_manifest(tmp_path: Path, change: dict, message: str) -> None:
    store = ModelStore(tmp_path / "models")
    write_raw_manifest(store, "onnx", json.dumps({**good_manifest(), **change}))
    with pytest.raises(InputError, match=message):
        store.read_manifest("onnx")


@pytest.mark.parametrize("content", ["[]", '"deepfake-onnx/1"', "{", "not json"])
def test_read_manifest_refuses_what_is_not_a_manifest_object(tmp_path: Path, content: str) -> None:
    store = ModelStore(tmp_path / "models")
    write_raw_manifest(store, "onnx", content)
    with pytest.raises(InputError, match=r"manifest\.json"):
        store.read_manifest("onnx")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mean", [0.0, 0.0, 0.0]),
        ("std", [1.0, 1.0, 1.0]),
        ("channels", "BGR"),
        ("layout", "NHWC"),
        ("resize", "stretch to image_size"),
    ],
)
def test_read_manifest_refuses_another_preprocessing(tmp_path: Path, key: str, value: object) -> None:
    store = ModelStore(tmp_path / "models")
    manifest = good_manifest()
    manifest["input"][key] = value
    write_raw_manifest(store, "onnx", json.dumps(manifest))
    with pytest.raises(InputError, match=rf"preprocessing \['{key}'\] differs"):
        store.read_manifest("onnx")
    with pytest.raises(InputError, match="differs"):
        store.face_input("onnx")


def test_read_manifest_refuses_a_manifest_without_an_input_contract(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    write_raw_manifest(store, "onnx", json.dumps({k: v for k, v in good_manifest().items() if k != "input"}))
    with pytest.raises(InputError, match="no valid input contract"):
        store.read_manifest("onnx")


def test_read_manifest_refuses_duplicate_json_keys(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    text = json.dumps(good_manifest())
    # a second "format" key at the top level: JSON leaves it undefined, Python would keep the last one
    write_raw_manifest(store, "onnx", text[:-1] + ', "format": "deepfake-onnx/1"}')
    with pytest.raises(InputError, match="duplicate key 'format'"):
        store.read_manifest("onnx")
    # and inside a nested object (the contract)
    nested = text.replace('"image_size": 64', '"image_size": 64, "image_size": 128')
    assert nested != text
    write_raw_manifest(store, "onnx", nested)
    with pytest.raises(InputError, match="duplicate key 'image_size'"):
        store.read_manifest("onnx")
