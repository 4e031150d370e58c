"""Model cards: the format's round trip and refusals, and a version that follows the package's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepfake.core.errors import InputError
from deepfake.media.face_input import FaceInput
from deepfake.modeling.card import (
    CARD,
    CARD_FORMAT,
    DEMONSTRATION_WARNING,
    MAX_CARD_BYTES,
    UNKNOWN_PROVENANCE_WARNING,
    VERSION_HEX,
    Figure,
    ModelCard,
    matrix_figures,
    package_card,
    package_version,
    read_card,
    write_card,
)
from deepfake.modeling.store import ModelStore


def make_package(folder: Path, weights: dict[str, bytes] | None = None) -> Path:
    """A model package as the export stage lays it out: member files and their manifest."""
    weights = weights if weights is not None else {"classifier": b"weights of classifier", "uynet": b"weights of uynet"}
    store = ModelStore(folder)
    store.folder("onnx").mkdir(parents=True, exist_ok=True)
    entries = []
    for name, data in weights.items():
        (store.folder("onnx") / f"{name}.onnx").write_bytes(data)
        entries.append({"name": name, "model": name, "file": f"{name}.onnx", "outputs": ["logit"]})
    store.write_manifest("onnx", entries, FaceInput(64, 0.3), opset=18)
    return store.folder("onnx")


def a_card(**changes: object) -> ModelCard:
    fields: dict[str, object] = {
        "format": CARD_FORMAT,
        "name": "published-detector",
        "version": "",
        "description": "EfficientNet-B7 classifier, 5 members",
        "source": "https://example.org/detector",
        "license": "Apache-2.0",
        "trained_on": ["DFDC"],
        "demonstration": False,
        "evaluation": [Figure(metric="log_loss", value=0.43, testset="DFDC public test", source="https://x.org")],
        "intended_use": "research",
        "warning": "",
    }
    return ModelCard(**{**fields, **changes})


def test_a_card_round_trips_with_the_packages_version(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "models")
    written = write_card(folder, a_card())
    assert written.version == package_version(folder) and len(written.version) == VERSION_HEX
    assert read_card(folder) == written
    assert package_card(tmp_path / "models") == written
    assert written.reference() == {"name": "published-detector", "version": written.version, "demonstration": False}
    assert written.notice() is None
    on_disk = json.loads((folder / CARD).read_text())
    assert on_disk["evaluation"] == [
        {"metric": "log_loss", "value": 0.43, "testset": "DFDC public test", "source": "https://x.org"}
    ]
    assert write_card(folder, a_card(version=written.version)) == written  # its own version is accepted
    with pytest.raises(InputError, match="names version 'abc'"):
        write_card(folder, a_card(version="abc"))
    assert a_card(demonstration=True).notice() == DEMONSTRATION_WARNING


def test_the_version_is_the_same_for_equal_exports_and_changes_with_any_weight(tmp_path: Path) -> None:
    first = package_version(make_package(tmp_path / "a"))
    assert package_version(make_package(tmp_path / "b")) == first  # another folder, the same files
    changed = {"classifier": b"weights of classifier", "uynet": b"weights of uynet, one byte more"}
    assert package_version(make_package(tmp_path / "c", changed)) != first
    fewer = {"classifier": b"weights of classifier"}
    assert package_version(make_package(tmp_path / "d", fewer)) != first


def test_a_card_whose_files_changed_since_is_refused(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "models")
    card = write_card(folder, a_card())
    (folder / "uynet.onnx").write_bytes(b"swapped weights")
    with pytest.raises(InputError, match=f"version {card.version!r}, but the package's files are version"):
        read_card(folder)
    (folder / "uynet.onnx").unlink()
    with pytest.raises(InputError, match=r"uynet\.onnx is missing"):
        package_version(folder)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "deepfake-card/1", "format": "deepfake-card/1"}', "duplicate key"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"format": "other/9"}', "format 'other/9', expected 'deepfake-card/1'"),
    ],
)
def test_a_card_that_is_not_a_card_is_refused(tmp_path: Path, text: str, fragment: str) -> None:
    folder = make_package(tmp_path / "models")
    (folder / CARD).write_text(text)
    with pytest.raises(InputError, match=fragment):
        read_card(folder)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("demonstration", "yes", r"demonstration: Input should be a valid boolean"),
        ("demonstration", 1, r"demonstration: Input should be a valid boolean"),
        ("trained_on", "DFDC", r"trained_on: Input should be a valid list"),
        ("name", "two\nlines", r"name: String should match pattern"),
        ("evaluation", [{"metric": "auc", "value": True, "testset": "t", "source": "s"}], r"evaluation\.0\.value"),
        ("evaluation", [{"metric": "auc", "value": 0.9, "testset": "t"}], r"evaluation\.0\.source: Field required"),
        ("surprise", 1, r"surprise: Extra inputs are not permitted"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(tmp_path: Path, field: str, value: object, fragment: str) -> None:
    folder = make_package(tmp_path / "models")
    data = write_card(folder, a_card()).model_dump(mode="json")
    data[field] = value
    (folder / CARD).write_text(json.dumps(data))
    with pytest.raises(InputError, match=rf"card\.json: not a valid model card: .*{fragment}"):
        read_card(folder)


def test_an_oversized_card_is_refused_unread(tmp_path: Path) -> None:
    folder = make_package(tmp_path / "models")
    (folder / CARD).write_bytes(b" " * (MAX_CARD_BYTES + 1))
    with pytest.raises(InputError, match="over the"):
        read_card(folder)


def test_a_package_without_a_card_reads_as_unknown_provenance(tmp_path: Path) -> None:
    make_package(tmp_path / "mine")
    card = package_card(tmp_path / "mine")
    assert card.name == "mine" and card.version == package_version(tmp_path / "mine" / "onnx")
    assert card.demonstration is None and card.notice() == UNKNOWN_PROVENANCE_WARNING
    assert card.license == "unknown" and card.trained_on == [] and card.evaluation == []
    bare = package_card(tmp_path / "nothing-here")  # not even a manifest (a torch-only store)
    assert (bare.name, bare.version, bare.demonstration) == ("nothing-here", "unknown", None)


def test_matrix_figures_take_the_test_set_columns_of_one_row() -> None:
    matrix = {
        "all-ensemble": {
            "dfdc": {"video_auc": 0.75, "video_log_loss": None},
            "dfdc/Deepfakes": {"video_auc": 1.0, "video_log_loss": 0.1},
        }
    }
    figures = matrix_figures(matrix, "all-ensemble", "metrics/matrix.json")
    assert [(f.metric, f.value, f.testset) for f in figures] == [
        ("video_auc", 0.75, "dfdc"),
        ("video_log_loss", None, "dfdc"),
    ]
    assert all("metrics/matrix.json (row all-ensemble" in f.source for f in figures)
    with pytest.raises(InputError, match=r"no row 'classifier'.*dvc repro matrix"):
        matrix_figures(matrix, "classifier", "metrics/matrix.json")
    with pytest.raises(InputError, match="expected a number or null"):
        matrix_figures({"r": {"t": {"video_auc": "0.7"}}}, "r", "m.json")
