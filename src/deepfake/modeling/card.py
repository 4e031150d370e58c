"""Model cards: what a model package is, where it came from, and whether it may be trusted.

A model package (a folder holding ``manifest.json``: ``models/onnx`` as the export stage writes it, or a
converted published detector) carries ``card.json`` beside its manifest. This module is the card format's
one owner: the fields (``ModelCard``), the writer (``write_card``: atomic, sorted keys), the reader
(``read_card``: strict JSON, size-limited, every field type-checked, the version checked against the
files), the package version (``package_version``) and the texts every reader shows.

The version is derived from the package's content, never chosen: the first ``VERSION_HEX`` hex digits of
a SHA-256 over the manifest (its canonical JSON) and the SHA-256 of every member file it lists. Two
identical exports have the same version; any change of weights, members, input contract or recorded
settings gives another.

A package without a card reads as a card of unknown provenance (``unknown_card``): named after its folder,
``demonstration`` null (not known, so every reader warns), licence and training data unknown.

``ModelCard.reference()`` is what every verdict carries: ``{"name", "version", "demonstration"}``
(``deepfake predict``'s records, the service's analyses and its ``/readyz``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepfake.core.errors import InputError
from deepfake.core.fileio import read_json_limited, write_json_atomic
from deepfake.modeling.calibration import CALIBRATION_FILE
from deepfake.modeling.store import MANIFEST, ModelStore, read_manifest_in

CARD = "card.json"
CARD_FORMAT: Literal["deepfake-card/1"] = "deepfake-card/1"
MAX_CARD_BYTES = 1 << 20
VERSION_HEX = 12  # hex digits of the content hash a version keeps (48 bits)
UNKNOWN = "unknown"
HASH_CHUNK = 1 << 20

TRAINED_SOURCE = "trained by this pipeline (dvc repro)"
DEMONSTRATION_WARNING = "demonstration model trained only on the built-in synthetic sample: not for real decisions"
UNKNOWN_PROVENANCE_WARNING = (
    "model package without a card (unknown provenance): its training data, licence and accuracy are unknown; "
    "not for real decisions"
)
TRAINED_USE = (
    "research and screening: a score is evidence for a person to weigh, not proof; it holds only for videos "
    "like those the evaluation figures were measured on"
)
DEMONSTRATION_USE = "trying the pipeline and the service end to end on the built-in sample; nothing else"

# one line of printable text: names and versions are shown on a terminal and on the page
Line = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Text = Annotated[str, Field(max_length=20_000)]


class Figure(BaseModel):
    """One evaluation figure and where it comes from."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    metric: Line  # e.g. video_auc, video_log_loss, or a publisher's metric name
    value: float | None  # None: undefined on that test set (one class only), as the evaluation says
    testset: Line  # the test set or benchmark it was measured on
    source: Line  # where the figure lives: metrics/matrix.json (row ...), or the publisher's URL


class ModelCard(BaseModel):
    """``card.json``: every field required, types strict (a boolean is never a number, "1" never a list)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)

    format: Literal["deepfake-card/1"]
    name: Line
    version: Annotated[str, Field(max_length=64, pattern=r"^([0-9a-f]+|unknown|)$")]  # "" in write_card: stamp it
    description: Text  # what it is: architecture, members, input
    source: Line  # TRAINED_SOURCE, or the publisher's URL
    license: Line
    trained_on: list[Line]  # datasets
    demonstration: bool | None  # True: trained only on the built-in sample; None: not known (no card)
    evaluation: list[Figure]
    intended_use: Text
    warning: Text  # shown with every verdict when not empty
    # what the package's calibration and operating points were fitted on (deepfake.modeling.calibration); ""
    # for a package without them (its verdicts say so)
    calibration: Text = ""

    def reference(self) -> dict[str, Any]:
        """What every verdict carries to name its model."""
        return {"name": self.name, "version": self.version, "demonstration": self.demonstration}

    def notice(self) -> str | None:
        """The one-line warning a reader shows beside its verdicts, None for a model not marked as risky."""
        if self.demonstration is None:
            return UNKNOWN_PROVENANCE_WARNING
        return DEMONSTRATION_WARNING if self.demonstration else None


def card_path(folder: Path) -> Path:
    """Where the card of the package in ``folder`` (the folder of ``manifest.json``) lives."""
    return Path(folder) / CARD


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_version(folder: Path) -> str:
    """The version of the package in ``folder``: the first ``VERSION_HEX`` hex digits of a SHA-256 over the
    manifest's canonical JSON and the SHA-256 of each member file (in member-name order), then of its
    ``calibration.json`` when it has one (a recalibrated package is a new version)."""
    folder = Path(folder)
    manifest = read_manifest_in(folder)
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for member in sorted(manifest["members"], key=lambda m: str(m["name"])):
        path = folder / member["file"]
        if not path.is_file():
            raise InputError(f"{folder / MANIFEST}: member {member['name']!r}: {path} is missing")
        digest.update(f"\n{member['name']}\t{member['file']}\t{_file_sha256(path)}".encode())
    decision = folder / CALIBRATION_FILE  # its verdicts' calibration and operating points, when it has them
    if decision.is_file():
        digest.update(f"\n{CALIBRATION_FILE}\t{_file_sha256(decision)}".encode())
    return digest.hexdigest()[:VERSION_HEX]


def _problems(err: ValidationError) -> str:
    lines = []
    for problem in err.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "(card)"
        lines.append(f"{where}: {problem['msg']}")
    return "; ".join(lines)


def validate_card(data: Any, source: str) -> ModelCard:
    """A card from parsed JSON, or an ``InputError`` naming ``source`` and every wrong field."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: a model card must be a JSON object, got {type(data).__name__}")
    if data.get("format") != CARD_FORMAT:
        raise InputError(f"{source}: format {data.get('format')!r}, expected {CARD_FORMAT!r}")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as err:
        raise InputError(f"{source}: not a valid model card: {_problems(err)}") from err


def write_card(folder: Path, card: ModelCard) -> ModelCard:
    """Write ``card`` as ``folder``'s ``card.json`` (atomic, sorted keys) and return what was written.

    The version is the package's own (``package_version``): a card given with ``version`` "" gets it; a card
    naming another version is refused (it describes other files). Call it after the member files and the
    manifest are in place."""
    version = package_version(folder)
    if card.version not in ("", version):
        raise InputError(
            f"{card_path(folder)}: the card names version {card.version!r}, but the package's files are "
            f"version {version!r}; leave version empty to take the package's"
        )
    stamped = card.model_copy(update={"version": version})
    stamped = validate_card(stamped.model_dump(mode="json"), str(card_path(folder)))  # what a reader will accept
    write_json_atomic(card_path(folder), stamped.model_dump(mode="json"))
    return stamped


def unknown_card(name: str, version: str) -> ModelCard:
    """The card of a package that has none: unknown provenance, shown with a warning."""
    return ModelCard(
        format=CARD_FORMAT,
        name=name or UNKNOWN,
        version=version,
        description="a model package without a card: what it is was not recorded",
        source="unknown provenance (no card.json beside the manifest)",
        license=UNKNOWN,
        trained_on=[],
        demonstration=None,
        evaluation=[],
        intended_use="",
        warning=UNKNOWN_PROVENANCE_WARNING,
    )


def read_card(folder: Path, name_if_missing: str | None = None) -> ModelCard:
    """The card of the package in ``folder``, checked (strict JSON, at most ``MAX_CARD_BYTES``, every field's
    type, the version against the files). Without ``card.json``: ``unknown_card`` named ``name_if_missing``
    (default: the folder's name), with the package's version when it has a manifest, else "unknown"."""
    folder = Path(folder)
    path = card_path(folder)
    has_manifest = (folder / MANIFEST).is_file()
    if not path.exists():
        version = package_version(folder) if has_manifest else UNKNOWN
        return unknown_card(name_if_missing or folder.resolve().name, version)
    card = validate_card(read_json_limited(path, MAX_CARD_BYTES, InputError), str(path))
    if not has_manifest:
        raise InputError(f"{path}: a card without {MANIFEST} beside it describes nothing")
    version = package_version(folder)
    if card.version != version:
        raise InputError(
            f"{path}: the card is of version {card.version!r}, but the package's files are version {version!r} "
            "(they changed after the card was written); write the card again (`dvc repro export`)"
        )
    return card


def package_card(models: Path) -> ModelCard:
    """The card of the model package under a ``models/`` root (``--models``): ``models/onnx/card.json``; without
    one, a card of unknown provenance named after the ``models/`` folder."""
    root = Path(models)
    return read_card(ModelStore(root).folder("onnx"), root.resolve().name)


def pipeline_card(
    *,
    name: str,
    licence: str,
    members: Iterable[Mapping[str, Any]],
    image_size: int,
    trained_on: Iterable[str],
    demonstration: bool | None,
    evaluation: list[Figure],
    evaluation_note: str,
) -> ModelCard:
    """The card the export stage writes for the models this pipeline trained (version stamped by ``write_card``)."""
    entries = list(members)
    architectures = sorted({str(m["model"]) for m in entries})
    names = ", ".join(str(m["name"]) for m in entries)
    description = (
        f"ensemble of {len(entries)} network{'s' if len(entries) != 1 else ''} ({names}; registry architectures "
        f"{', '.join(architectures)}), ONNX, on {image_size} px face crops; a video's P(fake) is the members' mean "
        f"per face track, its most-fake track deciding. {evaluation_note}"
    )
    if demonstration:
        use, warning = DEMONSTRATION_USE, DEMONSTRATION_WARNING
    elif demonstration is None:
        use, warning = TRAINED_USE, "whether the training data was the built-in sample is not known"
    else:
        use, warning = TRAINED_USE, ""
    return ModelCard(
        format=CARD_FORMAT,
        name=name,
        version="",
        description=description.strip(),
        source=TRAINED_SOURCE,
        license=licence,
        trained_on=list(trained_on),
        demonstration=demonstration,
        evaluation=evaluation,
        intended_use=use,
        warning=warning,
    )


def matrix_figures(matrix: Any, row: str, source: str) -> list[Figure]:
    """The figures of one row of the evaluation matrix (``metrics/matrix.json``: ``{row: {column: cells}}``):
    every cell of every test set column (the per-method columns, ``testset/method``, stay in the matrix)."""
    if not isinstance(matrix, dict) or not isinstance(matrix.get(row), dict):
        raise InputError(
            f"{source}: no row {row!r} (the package's members as evaluated); run `dvc repro matrix` for these models"
        )
    figures = []
    for column, cells in matrix[row].items():
        if "/" in column:
            continue
        if not isinstance(cells, dict):
            raise InputError(f"{source}: {row}.{column}: expected an object of figures")
        for metric, value in sorted(cells.items()):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InputError(f"{source}: {row}.{column}.{metric}: expected a number or null, got {value!r}")
            figures.append(
                Figure(
                    metric=metric,
                    value=None if value is None else float(value),
                    testset=column,
                    source=f"{source} (row {row})",
                )
            )
    return figures
