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

The store owns the whole model format:
- the checkpoint files: their names (``best.pt``, ``last.pt``, ``epoch_<k>.pt``), their keys
  (``weights_payload``, ``resume_payload``), the one writer (``CheckpointFolder.write``: atomic,
  byte-stable) and the one reader (``CheckpointFolder.read``, ``ModelStore.load_torch``);
- the models' input and output names (``INPUT_NAME``, ``LOGIT``, ``MASK``), in PyTorch and in every
  exported graph;
- which face-input contract a member or package expects: a package's from its manifest
  (``ModelStore.face_input``), a checkpoint's from its own record when it has one, else from the
  params it was trained under (``params_face_input``, ``ModelStore.checkpoint_face_input``).

A model that did not come from the train stage (a converted published checkpoint) enters through the
same door: ``ModelStore.add_model`` checks that its weights fit the registered architecture and
writes them as the member's ``best.pt`` with the train stage's writer, recording its own face-input
contract; ``load_torch``, the torch backend, ``deepfake explain`` and the export stage then take it
like a trained member.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfake.core.errors import CheckpointError, InputError
from deepfake.core.fileio import atomic_path, partial_writes, read_json_limited, write_json_atomic
from deepfake.core.params import Params
from deepfake.media.face_input import FaceInput

# the model I/O names are part of the format: re-exported (the "X as X" form) for every reader of a model
from deepfake.modeling.io_names import INPUT_NAME as INPUT_NAME
from deepfake.modeling.io_names import LOGIT as LOGIT
from deepfake.modeling.io_names import MASK as MASK

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "deepfake-onnx/1"
MAX_MANIFEST_BYTES = 1 << 20
_SEED = re.compile(r"0|[1-9][0-9]{0,9}")  # ASCII, no sign, no leading zero

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


def params_face_input(params: Params) -> FaceInput:
    """The contract of a model the train stage makes under ``params``: ``train.image_size`` and
    ``crops.margin`` (the margin its training crops were cut with)."""
    return FaceInput(params.train.image_size, params.crops.margin)


# ---- the checkpoint format ---------------------------------------------------------------------

BEST = "best"  # the weights that predict, evaluate and export use
LAST = "last"  # the weights and the state a rerun resumes from
CHECKPOINT_SUFFIX = ".pt"
# Every checkpoint's keys, in the order written: the state dict, then the header that rebuilds it
WEIGHTS_KEYS = ("model", "epoch", "model_name", "model_kwargs")
# last.pt's keys after the weights': what a rerun needs to continue bit for bit
RESUME_KEYS = ("optimizer", "schedule", "history", "fingerprint", "epochs", "rng")
# Written only for a model from elsewhere (``ModelStore.add_model``); a trained member's contract is its params'
FACE_INPUT_KEY = "face_input"


def epoch_checkpoint(epoch: int) -> str:
    """The name of the every-``checkpoint_every``-epochs checkpoint of ``epoch``."""
    return f"epoch_{epoch}"


def weights_payload(
    state: Mapping[str, Any],
    epoch: int | None,
    model_name: str,
    model_kwargs: Mapping[str, Any],
    face_input: FaceInput | None = None,
) -> dict[str, Any]:
    """What ``best.pt`` and ``epoch_<k>.pt`` hold: the state dict and its header (``WEIGHTS_KEYS``),
    plus the face-input contract when the model brings its own (None: the params' contract applies)."""
    payload = {"model": state, "epoch": epoch, "model_name": model_name, "model_kwargs": model_kwargs}
    if face_input is not None:
        payload[FACE_INPUT_KEY] = face_input.manifest()
    return payload


def resume_payload(
    weights: Mapping[str, Any],
    *,
    optimizer: Mapping[str, Any],
    schedule: Mapping[str, Any],
    history: list[dict[str, float]],
    fingerprint: str,
    epochs: int,
    rng: Mapping[str, Any],
) -> dict[str, Any]:
    """What ``last.pt`` holds: the weights, then ``RESUME_KEYS``."""
    return {
        **weights,
        "optimizer": optimizer,
        "schedule": schedule,
        "history": history,
        "fingerprint": fingerprint,
        "epochs": epochs,
        "rng": rng,
    }


def weights_of(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The weights part of a checkpoint (``last.pt`` -> what ``best.pt`` holds)."""
    return {k: checkpoint[k] for k in (*WEIGHTS_KEYS, FACE_INPUT_KEY) if k in checkpoint}


def recorded_face_input(checkpoint: Mapping[str, Any], source: str) -> FaceInput | None:
    """The contract a checkpoint records (a model from elsewhere), None when it records none."""
    entry = checkpoint.get(FACE_INPUT_KEY)
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise CheckpointError(f"{source}: {FACE_INPUT_KEY!r} must be a face-input contract mapping")
    return FaceInput.from_manifest(entry, source)


def shared_face_input(recorded: Mapping[str, FaceInput | None], default: FaceInput) -> FaceInput:
    """The one contract of members that run together: each member's recorded one, else ``default``.

    Members expecting different inputs cannot share a batch (one backend, one package manifest), so
    they are refused."""
    contracts = {name: face_input or default for name, face_input in recorded.items()}
    distinct = set(contracts.values())
    if len(distinct) > 1:
        described = ", ".join(f"{n}: {f.image_size} px, margin {f.margin:g}" for n, f in contracts.items())
        raise CheckpointError(f"the members expect different face inputs ({described}); they cannot run together")
    return distinct.pop() if distinct else default


def _canonical(value: Any) -> Any:
    """Containers rebuilt and strings interned, tensors untouched (their sharing is part of the content)."""
    if isinstance(value, dict):
        out: Any = type(value)((_canonical(k), _canonical(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # a state dict's per-module versions, which load_state_dict reads
            out._metadata = _canonical(value._metadata)
        return out
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, str):
        return sys.intern(value)
    return value


@dataclass(frozen=True)
class CheckpointFolder:
    """One member's checkpoint folder: the only writer and reader of its ``.pt`` files."""

    path: Path

    def file(self, which: str) -> Path:
        """``best``, ``last`` or ``epoch_<k>`` -> its file."""
        return self.path / f"{which}{CHECKPOINT_SUFFIX}"

    def write(self, which: str, payload: Mapping[str, Any]) -> Path:
        """Write a checkpoint whose bytes depend only on its content, so DVC hashes equal runs alike.

        Atomic (a temporary name renamed into place). Through a file object: given a path,
        torch.save names the zip records after the (random) temporary file name. And canonical:
        pickle shares objects by identity, so a string or tuple loaded back on resume would
        otherwise be written differently from the one a fresh run holds.
        """
        import torch

        path = self.file(which)
        with atomic_path(path) as tmp, tmp.open("wb") as handle:
            torch.save(_canonical(payload), handle)
        return path

    def read(self, which: str) -> dict[str, Any]:
        """A checkpoint's dict, loaded with weights_only: a pickle payload is refused, never run."""
        from deepfake.modeling.models import read_checkpoint

        return read_checkpoint(self.file(which))

    def clear(self) -> None:
        """Remove every checkpoint (a training run that starts over)."""
        for path in self.path.glob(f"*{CHECKPOINT_SUFFIX}"):
            path.unlink()

    def discard_partial_writes(self) -> list[Path]:
        """Remove what a killed run left half-written (``deepfake.core.fileio.partial_writes``): a run that
        resumes keeps the folder's checkpoints, and a stray temporary file would change its output's hash."""
        stray = partial_writes(self.path, CHECKPOINT_SUFFIX)
        for path in stray:
            path.unlink()
        return stray


def read_manifest_in(folder: Path, missing_hint: str = "") -> dict[str, Any]:
    """``folder``'s ``manifest.json`` (a model package: ``models/onnx``, ``models/int8``), checked: its format,
    every member's name, model, plain file name and outputs, the face-input contract."""
    path = Path(folder) / MANIFEST
    manifest = read_json_limited(path, MAX_MANIFEST_BYTES, InputError, missing_hint)
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise InputError(f"{path}: format {found!r}, expected {MANIFEST_FORMAT!r}")
    members_ = manifest.get("members")
    if not isinstance(members_, list) or not all(
        isinstance(m, dict) and {"name", "model", "file", "outputs"} <= set(m) for m in members_
    ):
        raise InputError(f"{path}: 'members' must list name, model, file and outputs per member")
    for member in members_:
        file = member["file"]
        if not isinstance(file, str) or file in ("", ".", "..") or Path(file).name != file:
            raise InputError(f"{path}: member file {member['file']!r} must be a plain file name")
    FaceInput.from_manifest(manifest.get("input") or {}, str(path))
    return manifest


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

    def checkpoints(self, member: Member) -> CheckpointFolder:
        return CheckpointFolder(self.checkpoint_dir(member))

    def checkpoint(self, member: Member, which: str = BEST) -> Path:
        return self.checkpoints(member).file(which)

    def read_checkpoint(self, member: Member, which: str = BEST) -> dict[str, Any]:
        """The member's checkpoint dict; a missing one names the DVC stage that makes it."""
        path = self.checkpoint(member, which)
        if not path.is_file():
            stage = "train" if member.seed is None else "train_seed"
            raise CheckpointError(f"{path}: missing; run `dvc repro {stage}@{member.name}` or `dvc pull {stage}`")
        return self.checkpoints(member).read(which)

    def load_member(self, member: Member, device: Any = "cpu", which: str = BEST) -> tuple[Any, FaceInput | None]:
        """The member's checkpoint as a module in eval mode (the architecture its header records, loaded
        strictly) and the face-input contract it records (None: its params' contract applies)."""
        from deepfake.modeling.models import create_model, load_state

        checkpoint = self.read_checkpoint(member, which)
        path = self.checkpoint(member, which)
        if checkpoint.get("model_name") != member.model:
            raise CheckpointError(f"{path}: holds a {checkpoint.get('model_name')!r} model, expected {member.model!r}")
        model = create_model(member.model, **checkpoint.get("model_kwargs", {}))
        load_state(model, checkpoint, str(path))
        return model.to(device).eval(), recorded_face_input(checkpoint, str(path))

    def load_torch(self, member: Member, device: Any = "cpu", which: str = BEST) -> Any:
        """The member's checkpoint (``best.pt`` unless told) as a module in eval mode."""
        return self.load_member(member, device, which)[0]

    def checkpoint_face_input(self, members: Iterable[Member], default: FaceInput) -> FaceInput:
        """The contract the members' ``best.pt`` expect: what they record, else ``default`` (the params'
        contract, ``params_face_input``); members that disagree are refused."""
        recorded = {}
        for member in members:
            checkpoint = self.read_checkpoint(member)
            recorded[member.name] = recorded_face_input(checkpoint, str(self.checkpoint(member)))
        return shared_face_input(recorded, default)

    def add_model(
        self,
        member: Member,
        state: Mapping[str, Any],
        model_kwargs: Mapping[str, Any],
        face_input: FaceInput,
        epoch: int | None = None,
    ) -> Path:
        """Bring a model that did not come from the train stage (a converted published checkpoint) into
        the store as ``member``'s ``best.pt``, through the train stage's writer.

        ``state`` must fit ``member.model`` built with ``model_kwargs`` (checked strictly before anything
        is written); ``face_input`` is the input the model was trained on, recorded in the checkpoint
        so the torch backend, ``deepfake explain`` and the export stage (into the package manifest)
        use it instead of the params'. ``epoch``: the source's epoch if known, else None.
        """
        from deepfake.modeling.models import create_model, load_state

        payload = weights_payload(state, epoch, member.model, model_kwargs, face_input)
        load_state(create_model(member.model, **model_kwargs), payload, f"{member.name} (added model)")
        folder = self.checkpoints(member)
        folder.path.mkdir(parents=True, exist_ok=True)
        return folder.write(BEST, payload)

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
        stage = self.stage(fmt)
        return read_manifest_in(self.folder(fmt), f"; run `dvc repro {stage}` or `dvc pull {stage}`")

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
