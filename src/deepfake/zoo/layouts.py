"""Publishers' checkpoint layouts: how each file becomes the state dict of a registry architecture.

One reader per layout (``LAYOUTS``, the names params accept as ``zoo.entries.<entry>.layout``), each taking
the file and the target model's ``state_dict()`` and returning the weights in the target's names plus the
file's metadata (epoch, the publisher's validation loss). Every reader loads with ``torch.load(...,
weights_only=True)`` and allows exactly the globals its publisher's files need
(``deepfake.zoo.checkpoints.load_publisher_file``): a file carrying any other pickled object, such as a
payload that would run code, is refused before anything in it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from deepfake.core.errors import CheckpointError

Reader = Callable[[Path, Mapping[str, torch.Tensor]], tuple[dict[str, torch.Tensor], dict[str, Any]]]


def _read_dfdc1st(path: Path, target: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from deepfake.zoo import dfdc1st  # the layout's module also holds the winner's inference

    return dfdc1st.read_checkpoint(path)


def _read_icpr2020(path: Path, target: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from deepfake.zoo import icpr2020

    return icpr2020.read_checkpoint(path, target)


# layout name -> its reader (core.params.ZOO_LAYOUTS names the same; a test keeps them equal)
LAYOUTS: dict[str, Reader] = {"dfdc1st": _read_dfdc1st, "icpr2020": _read_icpr2020}


def reader(layout: str) -> Reader:
    """The reader of ``layout``."""
    if layout not in LAYOUTS:
        raise CheckpointError(f"unknown checkpoint layout {layout!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[layout]
