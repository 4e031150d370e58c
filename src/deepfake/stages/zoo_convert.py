"""Zoo stage convert: a published detector's files become a model package of this project.

``zoo_convert@<package>`` (zoo/dvc.yaml) reads the files ``zoo.packages.<package>`` names from the
entry's download folder, after checking each against its SHA-256 (the publisher's in params, else the
one the first download recorded), with the entry's checkpoint layout (``deepfake.zoo.layouts``: read
with ``weights_only=True``, exactly the globals the publisher's files need, ``module.`` prefixes
stripped), loads them strictly into the registry architecture the entry names, and writes
``models/zoo/<package>``: a model store like ``models/`` (``train/.../best.pt`` with the entry's face-input
contract, ``onnx/<member>.onnx`` checked against PyTorch as the export stage checks trained models, and
``onnx/manifest.json`` with the prediction settings and the pipeline), its card (``card.json``) and the
license. ``deepfake predict``, ``explain`` and ``serve`` take it with ``--models models/zoo/<package>``.

The first file is the member ``<model>``, the others ``<model>-2``, ``<model>-3``, ... in the entry's
order (the card maps each member to its publisher's file).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepfake.backends.onnx_export import export_member
from deepfake.core.errors import CheckpointError, ParamsError
from deepfake.core.fileio import atomic_dir, write_json_atomic
from deepfake.core.params import Params, ZooEntryParams, ZooFileParams
from deepfake.media.face_input import FaceInput, normalize_batch
from deepfake.modeling.card import CARD_FORMAT, Figure, ModelCard, write_card
from deepfake.modeling.store import Member, ModelStore
from deepfake.zoo.download import ChecksumMismatch, sha256_of
from deepfake.zoo.layouts import reader
from deepfake.zoo.record import expected_sha256, read_record

logger = logging.getLogger(__name__)

LICENSE_FILE = "LICENSE.txt"
ZOO_USE = (
    "a published detector, as its authors trained it: research baselines and screening; a score is evidence "
    "for a person to weigh, not proof, and holds for videos like the ones it was evaluated on"
)


@dataclass(frozen=True)
class Config:
    package: str
    entry_name: str
    entry: ZooEntryParams
    files: tuple[ZooFileParams, ...]
    opset: int
    tolerance: float
    settings: dict[str, Any]  # the prediction settings the package records (core.params.PACKAGE_SETTINGS)
    pipeline_settings: dict[str, Any] | None = None  # pipeline dfdc1st: zoo.dfdc1st, recorded beside them

    @classmethod
    def from_params(cls, params: Params, package: str) -> Config:
        zoo = params.zoo
        if package not in zoo.packages:
            raise ParamsError(f"unknown zoo package {package!r}; zoo.packages has {', '.join(zoo.packages)}")
        entry_name = zoo.packages[package].entry
        entry = zoo.entries[entry_name]
        files = tuple(zoo.package_files(package))
        return cls(
            package=package,
            entry_name=entry_name,
            entry=entry,
            files=files,
            opset=params.export.opset,
            tolerance=params.export.tolerance,
            settings=package_settings(entry, len(files)),
            pipeline_settings=params.zoo.dfdc1st.model_dump(mode="json") if entry.pipeline == "dfdc1st" else None,
        )

    @property
    def members(self) -> tuple[Member, ...]:
        model = self.entry.model
        return (Member(model), *tuple(Member(model, index) for index in range(2, len(self.files) + 1)))

    @property
    def face_input(self) -> FaceInput:
        return FaceInput(self.entry.image_size, self.entry.margin)


@dataclass(frozen=True)
class Paths:
    download: Path  # models/zoo/<entry>/download
    record: Path  # zoo/checksums/<entry>.json
    out: Path  # models/zoo/<package>
    report: Path


def package_settings(entry: ZooEntryParams, count: int) -> dict[str, Any]:
    """What the package records for prediction: its members, input contract and aggregation."""
    aggregation = "confident" if entry.pipeline == "dfdc1st" else "mean"
    return {
        "models": [entry.model],
        "ensemble": {"seeds": list(range(2, count + 1))},
        "train": {"image_size": entry.image_size},
        "crops": {"margin": entry.margin},
        "evaluate": {"aggregation": aggregation},
    }


def zoo_card(config: Config) -> ModelCard:
    """The package's card: the publisher's model, license, training data and figures, with their source."""
    entry = config.entry
    members = ", ".join(f"{m.name} <- {f.name}" for m, f in zip(config.members, config.files, strict=True))
    description = (
        f"{entry.title}: {len(config.files)} member(s), the {entry.model} architecture over "
        f"{entry.model_kwargs.get('encoder', 'its encoder')}, input {entry.image_size} px (margin {entry.margin}); "
        f"prediction pipeline {entry.pipeline}. Members and the publisher's files: {members}. Converted by "
        f"zoo_convert@{config.package} from the files zoo_fetch@{config.entry_name} verified."
    )
    return ModelCard(
        format=CARD_FORMAT,
        name=config.package,
        version="",
        description=description,
        source=entry.source,
        license=entry.license,
        trained_on=[entry.trained_on],
        demonstration=False,
        evaluation=[
            Figure(metric=f.metric, value=f.value, testset=f.testset, source=f.source) for f in entry.evaluation
        ],
        intended_use=ZOO_USE,
        warning="",
    )


def verified_file(config: Config, paths: Paths, file: ZooFileParams, record: dict[str, dict[str, str]]) -> Path:
    """The downloaded file, after its hash is checked against the published or recorded one."""
    path = paths.download / file.name
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; run `dvc repro zoo/dvc.yaml:zoo_fetch@{config.entry_name}`")
    expected = expected_sha256(config.entry_name, file.name, file.sha256, record)
    if expected is None:
        raise CheckpointError(f"{path}: no checksum published or recorded in {paths.record}; fetch it with zoo_fetch")
    received = sha256_of(path)
    if received != expected:
        raise ChecksumMismatch(f"refused {file.url}: expected sha256 {expected}, the file has {received}")
    return path


def parity_images(face_input: FaceInput) -> torch.Tensor:
    """The packaged face photos as model inputs: real faces, offline, the same on every machine."""
    import cv2

    from deepfake.sample.annotations import faces_dir, photo_paths, read_photo

    photos = [cv2.cvtColor(read_photo(p), cv2.COLOR_BGR2RGB) for p in photo_paths(faces_dir())]
    return torch.from_numpy(normalize_batch([face_input.fit(photo) for photo in photos]))


def convert_member(config: Config, store: ModelStore, member: Member, path: Path) -> dict[str, Any]:
    """Read one publisher file into ``member``'s checkpoint; returns its provenance."""
    from deepfake.modeling.models import create_model

    target = create_model(config.entry.model, **config.entry.model_kwargs).state_dict()
    state, meta = reader(config.entry.layout)(path, target)
    epoch = meta.get("epoch")
    store.add_model(
        member, state, config.entry.model_kwargs, config.face_input, epoch if isinstance(epoch, int) else None
    )
    return {
        "member": member.name,
        "file": path.name,
        **{k: v for k, v in meta.items() if isinstance(v, int | float | str)},
    }


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """The convert stage: verify every file, then convert, export and check every member; the package is
    built beside its place and swapped in whole (``atomic_dir``): a failure keeps the previous one."""
    started = time.perf_counter()
    entry = config.entry
    logger.info("%s: %s, license %s (%s)", config.package, entry.title, entry.license, entry.source)
    record = read_record(paths.record)
    files = [verified_file(config, paths, file, record) for file in config.files]  # before any work
    with atomic_dir(paths.out) as building:
        store = ModelStore(building)
        provenance = [
            convert_member(config, store, member, path) for member, path in zip(config.members, files, strict=True)
        ]
        images = parity_images(config.face_input)
        store.folder("onnx").mkdir(parents=True, exist_ok=True)
        entries = [
            export_member(
                store,
                m,
                images,
                image_size=config.face_input.image_size,
                opset=config.opset,
                tolerance=config.tolerance,
            )
            for m in config.members
        ]
        store.write_manifest(
            "onnx",
            entries,
            config.face_input,
            opset=config.opset,
            settings=config.settings,
            pipeline=entry.pipeline,
            pipeline_settings=config.pipeline_settings,
            zoo={
                "entry": config.entry_name,
                "package": config.package,
                "license": entry.license,
                "source": entry.source,
            },
        )
        card = write_card(store.folder("onnx"), zoo_card(config))
        (building / LICENSE_FILE).write_text(
            f"{entry.title}\nLicense: {entry.license}\nSource: {entry.source}\n"
            "The weights in this package are the publisher's, converted; their license applies to them.\n"
        )
    report = {
        "package": config.package,
        "card": card.reference(),
        "entry": config.entry_name,
        "license": entry.license,
        "members": provenance,
        "max_abs_diff": max(max(e["max_abs_diff"].values()) for e in entries),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(paths.report, report)
    return report
