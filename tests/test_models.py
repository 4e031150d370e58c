"""The model registry: every model builds, returns logits of the right shapes, and loads strictly."""

from pathlib import Path

import pytest
import torch

from deepfake.core.errors import ParamsError
from deepfake.modeling.models import CheckpointError, HighPassStem, create_model, list_models
from deepfake.modeling.store import LOGIT, MASK, Member, ModelStore
from tests.conftest import SMALL_MODELS as SMALL  # small encoders: fast tests; the defaults are exercised by name only


def test_registry_lists_both_models() -> None:
    assert list_models() == ["classifier", "uynet"]


@pytest.mark.parametrize("name", list_models())
def test_forward_returns_logits(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    out = model(torch.rand(2, 3, 64, 64))
    assert out[LOGIT].shape == (2, 1)
    if name == "uynet":
        assert out[MASK].shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name", list_models())
def test_srm_input_filter_feeds_six_channels_to_the_encoder(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_filter="srm", **SMALL[name]).eval()
    assert isinstance(model.stem, HighPassStem)
    out = model(torch.rand(2, 3, 64, 64))
    assert out[LOGIT].shape == (2, 1)
    # the fixed kernels are state (saved and restored), not trainable parameters
    assert not any(p is model.stem.weight for p in model.parameters())
    torch.save(model.state_dict(), tmp_path / "srm.pt")
    with pytest.raises(CheckpointError, match="does not fit"):  # an RGB-only model has another first conv
        create_model(name, weights=tmp_path / "srm.pt", **SMALL[name])
    with pytest.raises(ParamsError, match="unknown input_filter"):
        create_model(name, input_filter="dct", **SMALL[name])


def test_srm_residuals_ignore_flat_and_linear_regions() -> None:
    """High-pass kernels sum to zero: flat colour and gradients give no residual, fine texture does."""
    stem = HighPassStem()
    ramp = torch.linspace(-1, 1, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32)
    out = stem(ramp + 0.5)
    assert out.shape == (1, 6, 32, 32)
    assert torch.equal(out[:, :3], ramp + 0.5)
    assert out[:, 3:, 4:-4, 4:-4].abs().max() < 1e-5
    checker = (torch.arange(32).view(1, -1) + torch.arange(32).view(-1, 1)) % 2
    textured = stem(checker.float().expand(1, 3, 32, 32).unsqueeze(0)[0])
    assert textured[:, 3:, 4:-4, 4:-4].abs().mean() > 0.5


@pytest.mark.parametrize("name", list_models())
def test_bad_input_shapes_have_actionable_errors(name: str) -> None:
    model = create_model(name, **SMALL[name])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(2, 1, 64, 64))
    if name == "uynet":
        with pytest.raises(ValueError, match="multiple of 8"):
            model(torch.rand(1, 3, 60, 60))


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(ParamsError, match="registered: classifier, uynet"):
        create_model("vit_giant")
    with pytest.raises(ParamsError, match="unknown timm encoder"):
        create_model("classifier", encoder="no_such_encoder")


@pytest.mark.parametrize("name", list_models())
def test_weights_round_trip_strictly(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, **SMALL[name]).eval()
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    torch.manual_seed(1)
    loaded = create_model(name, weights=tmp_path / "ckpt.pt", **SMALL[name]).eval()
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(model(x)[LOGIT], loaded(x)[LOGIT])


def test_checkpoint_of_another_shape_is_refused(tmp_path: Path) -> None:
    torch.save(create_model("classifier", **SMALL["classifier"]).state_dict(), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="does not fit"):
        create_model("uynet", weights=tmp_path / "c.pt", **SMALL["uynet"])
    with pytest.raises(CheckpointError, match="not found"):
        create_model("classifier", weights=tmp_path / "missing.pt", **SMALL["classifier"])


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # what a hostile checkpoint would carry
            return (Path.touch, (marker,))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to load"):
        create_model("classifier", weights=tmp_path / "evil.pt", **SMALL["classifier"])
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: torch.zeros(3), "not a checkpoint dict"),
        (lambda: {"model": torch.zeros(3)}, "holds no state dict"),
    ],
)
def test_files_that_are_not_checkpoints_are_refused(tmp_path: Path, content, message: str) -> None:
    torch.save(content(), tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=message):
        create_model("classifier", weights=tmp_path / "odd.pt", **SMALL["classifier"])
    (tmp_path / "garbage.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="refused to load"):
        create_model("classifier", weights=tmp_path / "garbage.pt", **SMALL["classifier"])


def test_every_checkpoint_reader_refuses_a_payload_and_another_architecture(tmp_path: Path) -> None:
    """evaluate/export/predict/explain all load through ModelStore.load_torch: the same guarantees hold there."""
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    store = ModelStore(tmp_path / "models")
    classifier, uynet_member = Member("classifier"), Member("uynet")
    store.checkpoint_dir(classifier).mkdir(parents=True)
    store.checkpoint_dir(uynet_member).mkdir(parents=True)
    torch.save({"model_name": "classifier", "model": Payload()}, store.checkpoint(classifier))
    with pytest.raises(CheckpointError, match="refused to load"):
        store.load_torch(classifier, torch.device("cpu"))
    assert not marker.exists()
    uynet = create_model("uynet", **SMALL["uynet"])
    state = {"model_name": "uynet", "model_kwargs": SMALL["uynet"], "model": uynet.state_dict()}
    torch.save(state, store.checkpoint(classifier))
    with pytest.raises(CheckpointError, match="holds a 'uynet' model, expected 'classifier'"):
        store.load_torch(classifier, torch.device("cpu"))
    # right name, wrong shape (a checkpoint edited to claim another encoder)
    torch.save(
        {"model_name": "uynet", "model_kwargs": {"encoder": "resnet18", "depth": 4}, "model": uynet.state_dict()},
        store.checkpoint(uynet_member),
    )
    with pytest.raises(CheckpointError, match="does not fit UYNet"):
        store.load_torch(uynet_member, torch.device("cpu"))


def test_uynet_decoder_channels_must_match_depth() -> None:
    model = create_model("uynet", encoder="resnet18", depth=3, decoder_channels=[32, 16, 8])
    assert model(torch.rand(1, 3, 64, 64))[MASK].shape == (1, 1, 64, 64)
    with pytest.raises(ParamsError, match="needs 3 entries"):
        create_model("uynet", encoder="resnet18", depth=3, decoder_channels=[32, 16])
