"""Reading a publisher's checkpoint file safely: the loader every layout reader shares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deepfake.core.errors import CheckpointError


def load_publisher_file(path: Path, allowed_globals: Sequence[Any]) -> Any:
    """``torch.load`` with ``weights_only=True`` and exactly ``allowed_globals`` besides torch's own."""
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling refusal, a truncated or foreign file: never executed
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused to load (not a plain weights file of this layout): {first}") from err


def strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``state`` without ``prefix`` on its keys when every key has it (DataParallel's ``module.``)."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state
