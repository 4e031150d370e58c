"""ONNX export of trained models, checked with onnx.checker and against PyTorch on real crops.

Every ensemble member's checkpoint becomes an ONNX graph in the model store (``models/onnx``) with
one input ``image`` (N, 3, S, S) float32, prepared by the face-input contract
(``deepfake.media.face_input``), and logits out: ``logit`` (N, 1) and, for U-YNet, ``mask``
(N, 1, S, S) (the store's ``INPUT_NAME``, ``LOGIT``, ``MASK``). The batch axis is dynamic. The
contract is the params' (``train.image_size``, ``crops.margin``) unless the checkpoints record their
own (a model added to the store from elsewhere). The store's ``manifest.json`` records the members and the
contract, and the params prediction needs (detector, crop margin, sampling, tracks, aggregation), so a
reader (``deepfake predict`` and ``deepfake serve`` from any folder, Triton) needs nothing else.

Beside the manifest goes the package's model card (``card.json``, ``deepfake.modeling.card``): its name and
licence (``export.name``, ``export.license``), the version derived from the files, ``trained_on``
(``train.datasets``), ``demonstration`` (every training dataset's root is one of the built-in sample's folders
under ``Paths.sample``, the sample stage's output root) and the evaluation matrix's figures of the package's
row (``Paths.matrix``, ``metrics/matrix.json``), so every verdict can name the model that gave it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake.backends.onnx_export import ExportError, export_member
from deepfake.core.errors import InputError
from deepfake.core.fileio import read_json_limited, write_json_atomic
from deepfake.core.params import Params, package_settings
from deepfake.media.face_input import FaceInput
from deepfake.modeling.calibration import CALIBRATION_FILE, describe_decision, read_decisions, write_decisions
from deepfake.modeling.card import Figure, ModelCard, matrix_figures, pipeline_card, write_card
from deepfake.modeling.data import CropDataset, DataRoots, ModelStagePaths, read_folds, select_folds
from deepfake.modeling.scoring import package_row
from deepfake.modeling.store import Member, ModelStore, ensemble, params_face_input

logger = logging.getLogger(__name__)

__all__ = ["Config", "ExportError", "Paths", "evaluation_figures", "model_card", "run", "trained_on_sample_only"]

MAX_MATRIX_BYTES = 64 << 20


@dataclass(frozen=True)
class Config:
    opset: int
    parity_crops: int  # holdout crops each exported model is compared with PyTorch on
    tolerance: float  # largest absolute logit difference accepted
    face_input: FaceInput  # the params'; a checkpoint that records its own contract overrides it (run)
    holdout_fold: int
    members: tuple[Member, ...]  # the ensemble: every model with train.seed and each ensemble seed
    settings: dict[str, Any]  # what prediction needs, recorded in the manifest (core.params.PACKAGE_SETTINGS)
    name: str  # the model card's (export.name)
    license: str  # the model card's (export.license)
    trained_on: tuple[str, ...]  # train.datasets
    training_roots: tuple[str, ...]  # their roots (data.datasets.<name>.root)
    sample_folders: tuple[str, ...]  # the built-in sample's dataset folders (sample.parts + sample.datasets)

    @classmethod
    def from_params(cls, params: Params) -> Config:
        return cls(
            opset=params.export.opset,
            parity_crops=params.export.parity_crops,
            tolerance=params.export.tolerance,
            face_input=params_face_input(params),
            holdout_fold=params.train.holdout_fold,
            members=ensemble(params),
            settings=package_settings(params),
            name=params.export.name,
            license=params.export.license,
            trained_on=tuple(params.train.datasets),
            training_roots=tuple(str(params.data.datasets[d].root) for d in params.train.datasets),
            sample_folders=(*params.sample.parts, *params.sample.datasets),
        )


@dataclass(frozen=True)
class Paths(ModelStagePaths):
    """The models/ root (reads train/, writes onnx/), and for the model card: the sample stage's output root
    (None: whether the models saw only the sample is not known, and the card says so) and the evaluation
    matrix (None: the card carries no figures)."""

    sample: Path | None = None  # data/raw
    matrix: Path | None = None  # metrics/matrix.json
    calibration: Path | None = None  # models/calibration.json: the verdicts' calibration and operating points


def parity_images(folds_csv: Path, roots: DataRoots, config: Config) -> torch.Tensor:
    """Up to ``parity_crops`` holdout crops, preprocessed exactly as evaluation does."""
    rows = select_folds(read_folds(folds_csv), [config.holdout_fold], drop_unmasked_fakes=False)
    if rows.empty:
        raise InputError(f"{folds_csv}: holdout fold {config.holdout_fold} holds no crops to check the export on")
    picks = np.linspace(0, len(rows) - 1, min(config.parity_crops, len(rows))).round().astype(int)
    dataset = CropDataset(rows.iloc[np.unique(picks)], roots, config.face_input.image_size)
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def trained_on_sample_only(config: Config, sample_root: Path | None) -> bool | None:
    """True when every training dataset's root is one of the built-in sample's folders under ``sample_root``
    (the sample stage's output root); None when no sample root is given (not known)."""
    if sample_root is None:
        return None
    sample = {(Path(sample_root) / folder).resolve() for folder in config.sample_folders}
    return all(Path(root).resolve() in sample for root in config.training_roots)


def evaluation_figures(members: tuple[Member, ...], matrix_path: Path | None) -> tuple[list[Figure], str]:
    """The matrix row of the package's members (``all-ensemble``, or the member's own row when there is one)
    as card figures, and a sentence saying where they come from."""
    if matrix_path is None:
        return [], "Exported without the evaluation matrix: the card carries no figures."
    matrix = read_json_limited(matrix_path, MAX_MATRIX_BYTES, InputError, "; run `dvc repro matrix`")
    row = package_row(members)
    figures = matrix_figures(matrix, row, str(matrix_path))
    return figures, f"Evaluation: {matrix_path}, row {row} (a test set's holdout fold; a test-only set's every video)."


def package_calibration(config: Config, paths: Paths, out_dir: Path) -> str:
    """Copy every row's calibration and operating points into the package (``calibration.json``, its verdicts
    from the package row's), and say for the card what they rest on; without ``paths.calibration`` a stale copy
    is removed and the package gives no verdicts until ``deepfake calibrate`` fits them."""
    target = out_dir / CALIBRATION_FILE
    if paths.calibration is None:
        target.unlink(missing_ok=True)
        return ""
    decisions, _ = read_decisions(paths.calibration)
    row = package_row(config.members)
    if row not in decisions:
        raise InputError(f"{paths.calibration}: no row {row!r} for the package's members; rerun `dvc repro calibrate`")
    write_decisions(target, decisions, row)
    return describe_decision(decisions[row])


def model_card(config: Config, entries: list[dict[str, Any]], paths: Paths, calibration: str = "") -> ModelCard:
    """The card of the models this pipeline trained (``write_card`` stamps the version)."""
    figures, note = evaluation_figures(config.members, paths.matrix)
    card = pipeline_card(
        name=config.name,
        licence=config.license,
        members=entries,
        image_size=config.face_input.image_size,
        trained_on=config.trained_on,
        demonstration=trained_on_sample_only(config, paths.sample),
        evaluation=figures,
        evaluation_note=note,
    )
    return card.model_copy(update={"calibration": calibration})


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """The export stage: every ensemble member to ONNX, the store's manifest, and the parity report."""
    store = ModelStore(paths.models)
    config = replace(config, face_input=store.checkpoint_face_input(config.members, config.face_input))
    images = parity_images(paths.folds, paths.roots, config)
    out_dir = store.folder("onnx")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.onnx"):  # members dropped from params must not linger
        if stale.stem not in {m.name for m in config.members}:
            stale.unlink()
    entries = [
        export_member(
            store,
            member,
            images,
            image_size=config.face_input.image_size,
            opset=config.opset,
            tolerance=config.tolerance,
        )
        for member in config.members
    ]
    store.write_manifest("onnx", entries, config.face_input, opset=config.opset, settings=config.settings)
    calibration = package_calibration(config, paths, out_dir)
    card = write_card(out_dir, model_card(config, entries, paths, calibration))
    report = {
        "opset": config.opset,
        "members": {e["name"]: {k: v for k, v in e.items() if k != "name"} for e in entries},
        "max_abs_diff": max(max(e["max_abs_diff"].values()) for e in entries),
        "card": card.reference(),
    }
    write_json_atomic(paths.report, report)
    logger.info("exported %d models to %s", len(entries), out_dir)
    return report
