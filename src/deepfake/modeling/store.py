"""The model store: the only code that knows the ``models/`` layout and its manifests.

```
models/
  train/<model>/                 train@<model>: best.pt, last.pt, epoch_<k>.pt   (seed = train.seed)
  train/ensemble/<model>-<seed>/ train_seed@<model>-<seed>: the same files
  onnx/<member>.onnx             export, with manifest.json (members, outputs, the face-input contract)
  int8/<member>.onnx             quantize (Quark XINT8), with manifest.json
  triton/<member>/...            triton: a Triton model repository
  trt/<member>.plan              build_trt (fp16; <member>-int8.plan for int8), metadata JSON beside each
  dpu/<member>.xmodel            compile_dpu (Vitis AI, VCK5000)
```
A *member* is one trained network of the ensemble: ``<model>`` (trained with ``train.seed``) or
``<model>-<seed>`` for each of ``ensemble.seeds``. Every stage, ``deepfake predict`` and
``deepfake explain`` find files and load models through a ``ModelStore``; a missing file names the
DVC stage that makes it (``dvc repro <stage>`` or ``dvc pull <stage>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake.core.errors import CheckpointError, InputError
from deepfake.core.fileio import read_json_limited, write_json_atomic
from deepfake.core.params import Params
from deepfake.media.face_input import FaceInput

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "deepfake-onnx/1"
MAX_MANIFEST_BYTES = 1 << 20
_SEED = re.compile(r"0|[1-9][0-9]{0,9}")  # ASCII, no sign, no leading zero
INPUT_NAME = "image"  # the graphs' one input; outputs are "logit" and, for U-YNet, "mask"

# format -> (folder under models/, the DVC stage that writes it)
FORMATS: dict[str, tuple[str, str]] = {
    "checkpoint": ("train", "train"),
    "onnx": ("onnx", "export"),
    "onnx-int8": ("int8", "quantize"),
    "triton": ("triton", "triton"),
    "tensorrt": ("trt", "deploy/dvc.yaml:build_trt"),
    "xmodel": ("dpu", "deploy/dvc.yaml:compile_dpu"),
}


@dataclass(frozen=True)
class Member:
    """One network of the ensemble: its name, registry architecture and seed (None: ``train.seed``)."""

    model: str
    seed: int | None = None

    @property
    def name(self) -> str:
        return self.model if self.seed is None else f"{self.model}-{self.seed}"

    @classmethod
    def parse(cls, name: str, models: Iterable[str]) -> Member:
        """``classifier`` or ``classifier-555`` back to a Member, given the architecture names."""
        models = list(models)
        if name in models:
            return cls(name)
        model, _, seed = name.rpartition("-")
        if model in models and _SEED.fullmatch(seed):  # canonical digits only: one name per member
            return cls(model, int(seed))
        raise InputError(f"{name!r} is not a member name of the models {sorted(models)}")


def members(models: Iterable[str], seeds: Iterable[int]) -> list[Member]:
    """The ensemble the params describe: every model with ``train.seed``, then every model x extra seed."""
    models, seeds = list(models), list(seeds)
    return [Member(m) for m in models] + [Member(m, s) for m in models for s in seeds]


def ensemble(params: Params) -> tuple[Member, ...]:
    """The members validated params describe (``models`` and ``ensemble.seeds``)."""
    return tuple(members(params.models, params.ensemble.seeds))


class ModelStore:
    """Paths, manifests and loading for one ``models/`` folder."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def folder(self, fmt: str) -> Path:
        if fmt not in FORMATS:
            raise KeyError(f"unknown model format {fmt!r}; known: {', '.join(FORMATS)}")
        return self.root / FORMATS[fmt][0]

    @staticmethod
    def stage(fmt: str) -> str:
        """The DVC stage whose output holds ``fmt``."""
        return FORMATS[fmt][1]

    # ---- checkpoints -----------------------------------------------------------------------

    def checkpoint_dir(self, member: Member) -> Path:
        train = self.folder("checkpoint")
        return train / member.name if member.seed is None else train / "ensemble" / member.name

    def checkpoint(self, member: Member, which: str = "best") -> Path:
        return self.checkpoint_dir(member) / f"{which}.pt"

    def load_torch(self, member: Member, device: Any = "cpu") -> Any:
        """The member's ``best.pt`` as a module in eval mode: the architecture its header records, loaded strictly."""
        from deepfake.modeling.models import create_model, load_state, read_checkpoint

        path = self.checkpoint(member)
        if not path.is_file():
            stage = "train" if member.seed is None else "train_seed"
            raise CheckpointError(f"{path}: missing; run `dvc repro {stage}@{member.name}` or `dvc pull {stage}`")
        checkpoint = read_checkpoint(path)
        if checkpoint.get("model_name") != member.model:
            raise CheckpointError(f"{path}: holds a {checkpoint.get('model_name')!r} model, expected {member.model!r}")
        model = create_model(member.model, **checkpoint.get("model_kwargs", {}))
        load_state(model, checkpoint, str(path))
        return model.to(device).eval()

    # ---- exported graphs and their manifests ------------------------------------------------

    def graph(self, member_name: str, fmt: str = "onnx") -> Path:
        suffix = {"onnx": ".onnx", "onnx-int8": ".onnx", "xmodel": ".xmodel"}[fmt]
        return self.folder(fmt) / f"{member_name}{suffix}"

    def engine(self, member_name: str, precision: str = "fp16") -> Path:
        name = member_name if precision == "fp16" else f"{member_name}-{precision}"
        return self.folder("tensorrt") / f"{name}.plan"

    def write_manifest(self, fmt: str, entries: list[dict[str, Any]], face_input: FaceInput, **extra: Any) -> None:
        """``manifest.json`` of ``fmt``'s folder: the members, their files and outputs, and the input contract."""
        manifest = {
            "format": MANIFEST_FORMAT,
            "input": {"name": INPUT_NAME, **face_input.manifest()},
            "members": [{k: e[k] for k in ("name", "model", "file", "outputs")} for e in entries],
            **extra,
        }
        write_json_atomic(self.folder(fmt) / MANIFEST, manifest)

    def read_manifest(self, fmt: str = "onnx") -> dict[str, Any]:
        """The manifest of ``fmt``'s folder, checked; a missing one names the DVC stage that makes it."""
        path = self.folder(fmt) / MANIFEST
        stage = self.stage(fmt)
        manifest = read_json_limited(
            path, MAX_MANIFEST_BYTES, InputError, f"; run `dvc repro {stage}` or `dvc pull {stage}`"
        )
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise InputError(f"{path}: format {found!r}, expected {MANIFEST_FORMAT!r}")
        members_ = manifest.get("members")
        if not isinstance(members_, list) or not all(
            isinstance(m, dict) and {"name", "model", "file", "outputs"} <= set(m) for m in members_
        ):
            raise InputError(f"{path}: 'members' must list name, model, file and outputs per member")
        for member in members_:
            if Path(member["file"]).name != member["file"]:
                raise InputError(f"{path}: member file {member['file']!r} must be a plain file name")
        FaceInput.from_manifest(manifest.get("input") or {}, str(path))
        return manifest

    def settings(self) -> dict[str, Any] | None:
        """The params the model package was exported with (``core.params.PACKAGE_SETTINGS``), from the
        ONNX manifest; None when there is no manifest or it predates recorded settings."""
        if not (self.folder("onnx") / MANIFEST).is_file():
            return None
        settings = self.read_manifest("onnx").get("settings")
        if settings is not None and not isinstance(settings, dict):
            raise InputError(f"{self.folder('onnx') / MANIFEST}: 'settings' must be a mapping of params sections")
        return settings

    def face_input(self, fmt: str = "onnx") -> FaceInput:
        """The input contract the ``fmt`` models were exported with."""
        manifest = self.read_manifest(fmt)
        return FaceInput.from_manifest(manifest["input"], str(self.folder(fmt) / MANIFEST))
