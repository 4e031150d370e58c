import json
from pathlib import Path

import pytest

from deepfake.media.metadata import MetadataError, load_metadata, safe_join


def write(folder: Path, content: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.json").write_text(content)
    return folder


def test_valid_metadata_is_parsed(tmp_path: Path) -> None:
    meta = {
        "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
        "a.mp4": {"label": "REAL", "split": "train", "original": None},
    }
    parsed = load_metadata(write(tmp_path / "dfdc_train_part_3", json.dumps(meta)))
    assert parsed.part == "dfdc_train_part_3"
    assert list(parsed.entries) == ["a.mp4", "b.mp4"]
    assert [e.name for e in parsed.reals] == ["a.mp4"]
    assert parsed.entries["b.mp4"].source == "a.mp4" and parsed.entries["a.mp4"].source == "a.mp4"
    assert parsed.refused == {}
    assert parsed.entries["a.mp4"].identity == ""  # DFDC's metadata has no identity label


def test_optional_identity_label_is_kept(tmp_path: Path) -> None:
    meta = {
        "a.mp4": {"label": "REAL", "original": None, "identity": "person_07"},
        "b.mp4": {"label": "FAKE", "original": "a.mp4", "identity": "person-12"},
        "c.mp4": {"label": "REAL", "original": None, "identity": None},
    }
    parsed = load_metadata(write(tmp_path / "p", json.dumps(meta)))
    assert {name: e.identity for name, e in parsed.entries.items()} == {
        "a.mp4": "person_07",
        "b.mp4": "person-12",
        "c.mp4": "",
    }


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected an object"),
        ('"a string"', "expected an object"),
        ("\xff\xfe", "not valid JSON"),
    ],
)
def test_malformed_metadata_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    folder = write(tmp_path / "p", content)
    with pytest.raises(MetadataError, match=message) as err:
        load_metadata(folder)
    assert "metadata.json" in str(err.value)


def test_missing_metadata_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="not found"):
        load_metadata(tmp_path)


@pytest.mark.parametrize(
    "name, entry, reason",
    [
        ("../x.mp4", {"label": "REAL", "original": None}, "plain .mp4"),
        ("/etc/passwd.mp4", {"label": "REAL", "original": None}, "plain .mp4"),
        ("sub/x.mp4", {"label": "REAL", "original": None}, "plain .mp4"),
        ("x.avi", {"label": "REAL", "original": None}, "plain .mp4"),
        ("x.mp4", {"label": "real", "original": None}, "label"),
        ("x.mp4", ["REAL"], "must be an object"),
        ("x.mp4", {"label": "FAKE", "original": "../a.mp4"}, "plain .mp4 name"),
        ("x.mp4", {"label": "FAKE", "original": "x.mp4"}, "its own original"),
        ("x.mp4", {"label": "FAKE", "original": "ghost.mp4"}, "not a REAL video listed"),
        ("x.mp4", {"label": "FAKE", "original": "f.mp4"}, "not a REAL video listed"),
        ("x.mp4", {"label": "REAL", "original": "a.mp4"}, "original null"),
        ("x.mp4", {"label": "REAL", "original": None, "split": 3}, "split"),
        ("x.mp4", {"label": "REAL", "original": None, "identity": 7}, "identity"),
        ("x.mp4", {"label": "REAL", "original": None, "identity": "../bob"}, "identity"),
        ("x.mp4", {"label": "REAL", "original": None, "identity": "x" * 101}, "identity"),
    ],
)
def test_bad_entries_are_refused_alone(tmp_path: Path, name: str, entry: object, reason: str) -> None:
    meta = {
        "a.mp4": {"label": "REAL", "original": None},
        "f.mp4": {"label": "FAKE", "original": "a.mp4"},
        name: entry,
    }
    parsed = load_metadata(write(tmp_path / "p", json.dumps(meta)))
    assert set(parsed.entries) == {"a.mp4", "f.mp4"}
    assert reason in parsed.refused[name]


def test_safe_join_refuses_escapes(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "abc.mp4") == tmp_path / "abc.mp4"
    for name in ("../abc.mp4", "..mp4", "a/../../b.mp4", ".hidden.mp4", "", "a.mp4\x00"):
        with pytest.raises(MetadataError):
            safe_join(tmp_path, name)
