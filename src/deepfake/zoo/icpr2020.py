"""The ICPR 2020 detectors' checkpoint layout (Bonettini et al., polimi-ispl/icpr2020dfd, GPL-3.0).

Their ``EfficientNetB4`` is efficientnet_pytorch's ``efficientnet-b4`` (the TensorFlow port) without its
``_fc``, then average pooling, dropout and ``classifier = Linear(features, 1)``: one logit, as the project's
``classifier`` architecture over timm's ``tf_efficientnet_b4`` (the same TensorFlow port: "same" padding,
batch-norm epsilon 1e-3). A file is a bare state dict: ``efficientnet.<efficientnet_pytorch name>`` and
``classifier.weight`` / ``classifier.bias``.

efficientnet_pytorch and timm register the same tensors in the same order (stem, each block's expand,
depthwise, squeeze-excite and projection convolutions with their batch norms, head), under other names
(``_blocks.7._depthwise_conv`` is timm's ``blocks.2.1.conv_dw``). The encoder is therefore mapped by
position, and every pair is checked: same tensor shape and same final name (``weight``, ``bias``,
``running_mean``, ...). Any mismatch (another architecture, a different width or depth) is refused before
a tensor is used; the strict load into the model that follows checks the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deepfake.core.errors import CheckpointError
from deepfake.zoo.checkpoints import load_publisher_file, strip_prefix

ENCODER_PREFIX = "efficientnet."
HEAD_KEYS = {"classifier.weight": "fc.weight", "classifier.bias": "fc.bias"}
TARGET_ENCODER_PREFIX = "encoder."
# Nothing but tensors: the file is a plain (Ordered)Dict, which weights_only reads without extra globals
ALLOWED_GLOBALS: tuple[Any, ...] = ()


def read_checkpoint(path: Path, target: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of ``path`` in the names of ``target`` (the project model's ``state_dict()``), and
    the file's metadata (none: the publisher's files hold only weights)."""
    raw = load_publisher_file(path, ALLOWED_GLOBALS)
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: expected a bare state dict of tensors (the ICPR 2020 layout)")
    state = strip_prefix(dict(raw), "module.")
    unknown = sorted(k for k in state if not k.startswith(ENCODER_PREFIX) and k not in HEAD_KEYS)
    if unknown:
        raise CheckpointError(f"{path}: keys outside the ICPR 2020 layout: {unknown[:5]}")
    missing = sorted(k for k in HEAD_KEYS if k not in state)
    if missing:
        raise CheckpointError(f"{path}: missing {missing} (the ICPR 2020 classifier head)")
    source = [(k, v) for k, v in state.items() if k.startswith(ENCODER_PREFIX)]
    wanted = [k for k in target if k.startswith(TARGET_ENCODER_PREFIX)]
    if len(source) != len(wanted):
        raise CheckpointError(
            f"{path}: {len(source)} encoder tensors, but the target encoder has {len(wanted)}: "
            "another EfficientNet size than zoo.entries.<entry>.model_kwargs.encoder names?"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (name, tensor), target_name in zip(source, wanted, strict=True):
        expected = target[target_name]
        if name.rsplit(".", 1)[-1] != target_name.rsplit(".", 1)[-1] or tensor.shape != expected.shape:
            raise CheckpointError(
                f"{path}: {name} {tuple(tensor.shape)} does not line up with {target_name} {tuple(expected.shape)}"
            )
        mapped[target_name] = tensor
    for name, target_name in HEAD_KEYS.items():
        mapped[target_name] = state[name]
    return mapped, {}
