"""Model registry with one factory, as timm does: ``create_model(name, **kwargs)``.

Every model returns raw logits (the sigmoid belongs to the caller, so exports stay quantizable):
- ``classifier`` (DFDC-1st): timm encoder -> global average pool -> dropout -> Linear(features, 1).
  Forward returns ``{LOGIT: (N, 1)}``.
- ``uynet`` (U-YNet): a segmentation-models-pytorch UNet whose encoder bottleneck also feeds a
  classification head (``aux_params``). Forward returns ``{LOGIT: (N, 1), MASK: (N, 1, H, W)}``.
The output names (``LOGIT`` = "logit", ``MASK`` = "mask") are ``deepfake.modeling.io_names``' (the model
store re-exports them with the rest of the model format), as every exported graph names them.
Encoders are built with random weights unless ``weights`` names a file this pipeline produced;
nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepfake.core.errors import CheckpointError, ParamsError
from deepfake.modeling.io_names import LOGIT, MASK

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _check_input(x: torch.Tensor, multiple: int = 1) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a float batch of shape (N, 3, H, W), got {tuple(x.shape)}")
    if x.shape[2] % multiple or x.shape[3] % multiple:
        raise ValueError(
            f"input size {tuple(x.shape[2:])} must be divisible by {multiple} for this model; "
            f"use an image size that is a multiple of {multiple} (train.image_size)"
        )


# SRM residual kernels (Fridrich & Kodovsky's rich models, as used for face forgery by Zhou et al. 2018
# and Luo et al. 2021): fixed high-pass filters whose outputs keep the noise and resampling traces a
# face swap's blending and upscaling leave, and drop the face content a small dataset overfits to.
_SRM_KERNELS = (
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
    [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
)
_SRM_SCALES = (4.0, 12.0, 2.0)
INPUT_FILTERS = ("none", "srm")


class HighPassStem(nn.Module):
    """Append fixed SRM residual maps to the RGB input: (N, 3, H, W) -> (N, 3 + 3, H, W).

    Each of the three kernels is applied to every colour channel and summed (one residual map per
    kernel). The weights are a buffer, not a parameter: nothing trains them, so they export to ONNX
    as a constant convolution.
    """

    extra_channels = len(_SRM_KERNELS)
    weight: torch.Tensor  # the buffer registered in __init__

    def __init__(self) -> None:
        super().__init__()
        kernels = torch.tensor(_SRM_KERNELS, dtype=torch.float32) / torch.tensor(_SRM_SCALES).view(-1, 1, 1)
        self.register_buffer("weight", kernels.unsqueeze(1).repeat(1, 3, 1, 1) / 3.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, nn.functional.conv2d(x, self.weight, padding=2)], dim=1)


def _input_stem(input_filter: str) -> tuple[nn.Module, int]:
    """The module in front of the encoder and the channel count the encoder then takes."""
    if input_filter == "srm":
        return HighPassStem(), 3 + HighPassStem.extra_channels
    if input_filter == "none":
        return nn.Identity(), 3
    raise ParamsError(f"unknown input_filter {input_filter!r}; choose one of {', '.join(INPUT_FILTERS)}")


class Classifier(nn.Module):
    """DFDC-1st's classifier: encoder features -> dropout -> one logit."""

    encoder: Any  # a timm model (num_features, forward_features, forward_head); timm types it nn.Module

    def __init__(self, encoder: str, dropout: float = 0.0, drop_path: float = 0.0, input_filter: str = "none") -> None:
        super().__init__()
        import timm

        self.stem, in_chans = _input_stem(input_filter)
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0, "global_pool": "avg", "in_chans": in_chans}
        if drop_path:
            kwargs["drop_path_rate"] = drop_path
        try:
            self.encoder = timm.create_model(encoder, **kwargs)
        except RuntimeError as err:  # timm raises RuntimeError for unknown names
            raise ParamsError(f"unknown timm encoder {encoder!r}: {err}") from err
        features = getattr(self.encoder, "head_hidden_size", None) or self.encoder.num_features
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(features, 1)
        self.encoder_name = encoder

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_input(x)
        return {LOGIT: self.fc(self.dropout(self.encoder(self.stem(x))))}


class UYNet(nn.Module):
    """U-YNet: UNet segmentation of the manipulated pixels plus a real/fake logit from the bottleneck."""

    def __init__(
        self,
        encoder: str,
        dropout: float = 0.2,
        depth: int = 5,
        decoder_channels: tuple[int, ...] | None = None,
        input_filter: str = "none",
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.stem, in_chans = _input_stem(input_filter)
        decoder_channels = tuple(decoder_channels or (256, 128, 64, 32, 16)[:depth])
        if len(decoder_channels) != depth:
            raise ParamsError(f"decoder_channels needs {depth} entries (one per encoder stage), got {decoder_channels}")
        try:
            self.net = smp.Unet(
                encoder_name=encoder,
                encoder_weights=None,
                in_channels=in_chans,
                encoder_depth=depth,
                decoder_channels=decoder_channels,
                classes=1,
                aux_params={"classes": 1, "dropout": dropout},
            )
        except (KeyError, ValueError, RuntimeError) as err:
            raise ParamsError(f"segmentation-models-pytorch cannot build encoder {encoder!r}: {err}") from err
        self.multiple = 2**depth
        self.encoder_name = encoder

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_input(x, self.multiple)
        mask, logit = self.net(self.stem(x))
        return {LOGIT: logit, MASK: mask}


@register_model("classifier")
def _classifier(
    encoder: str = "efficientnet_b0", dropout: float = 0.0, drop_path: float = 0.0, input_filter: str = "none"
) -> nn.Module:
    return Classifier(encoder, dropout=dropout, drop_path=drop_path, input_filter=input_filter)


@register_model("uynet")
def _uynet(
    encoder: str = "resnet18",
    dropout: float = 0.2,
    depth: int = 5,
    decoder_channels: tuple[int, ...] | None = None,
    input_filter: str = "none",
) -> nn.Module:
    return UYNet(encoder, dropout=dropout, depth=depth, decoder_channels=decoder_channels, input_filter=input_filter)


def create_model(name: str, weights: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``weights`` loads a state dict strictly (weights_only)."""
    if name not in _REGISTRY:
        raise ParamsError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    model = _REGISTRY[name](**kwargs)
    if weights:
        load_weights(model, weights)
    return model


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict in a ``.pt`` file, loaded with weights_only=True: a pickle payload is refused, never run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle payloads and corrupt files both land here
        raise CheckpointError(f"{path}: refused to load (not a plain tensor checkpoint): {err}") from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint dict")
    return checkpoint


def load_weights(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load ``path`` into ``model`` with weights_only=True and strict=True; clear errors otherwise.

    Accepts a bare state dict or a training checkpoint holding one under ``"model"``. Returns the
    checkpoint's other entries (epoch, config, ...).
    """
    return load_state(model, read_checkpoint(path), str(path))


def load_state(model: nn.Module, checkpoint: dict[str, Any], source: str) -> dict[str, Any]:
    """Load an already read checkpoint dict into ``model`` strictly; returns its other entries."""
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: holds no state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: does not fit {type(model).__name__}: {err}") from err
    return {k: v for k, v in checkpoint.items() if k != "model"} if "model" in checkpoint else {}
