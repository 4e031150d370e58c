"""Reading params.yaml: the only place defaults live, so missing keys are errors, not fallbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """params.yaml is missing, malformed, or lacks a key a stage needs."""


def load_params(path: Path | str = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError as err:
        raise ParamsError(f"{path}: not found (run from the repository root or pass --params)") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Return ``params[name]`` or raise an error naming the missing section."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise ParamsError(f"params.yaml: section '{name}' is missing or not a mapping")
    return value


def require(sect: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """Return ``sect[key]`` checked against ``kind``, with an error that names ``where.key``."""
    if key not in sect:
        raise ParamsError(f"params.yaml: '{where}.{key}' is missing")
    value = sect[key]
    # bool is an int subclass: refuse it where a number is wanted
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ParamsError(f"params.yaml: '{where}.{key}' must be {kind}, got a boolean")
    if not isinstance(value, kind):
        raise ParamsError(f"params.yaml: '{where}.{key}' must be {kind}, got {value!r}")
    return value
