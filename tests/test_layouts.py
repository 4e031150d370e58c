"""Dataset layouts -> canonical index (deepfake.media.layouts), on tiny fixtures built here.

The videos are empty or few-byte files: adapters never decode, they only check that files exist.
Every refusal is asserted as the exact ``file:line: reason`` text a report shows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from deepfake.core.errors import InputError, ParamsError
from deepfake.media.layouts import (
    LAYOUTS,
    REQUIRED,
    DatasetIndex,
    IndexRow,
    LayoutError,
    Problem,
    extra_roots,
    ingest,
    read_index_csv,
    write_index,
)
from deepfake.media.metadata import path_problem
from tests.conftest import touch

# the canonical index's columns, in order, as docs/datasets.md ("The canonical index") documents them
HEADER = "video,path,label,original,identity,method,compression,split,mask"


def link(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def json_object_lines(entries: dict[str, Any]) -> str:
    """A JSON object with entry i on line i + 2."""
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in entries.items()) + "\n}\n"


def json_array_lines(items: list[Any]) -> str:
    """A JSON array with item i on line i + 2."""
    return "[\n" + ",\n".join(json.dumps(item) for item in items) + "\n]\n"


def rows(index: DatasetIndex) -> dict[str, IndexRow]:
    return {row.video: row for row in index.rows}


def problems(index: DatasetIndex) -> list[str]:
    return [str(p) for p in index.problems]


def assert_portable(index: DatasetIndex, tmp_path: Path) -> None:
    """No report line carries a machine's absolute path."""
    for text in problems(index):
        assert str(tmp_path) not in text and not text.startswith("/"), text


# ---- registry, options, errors for the whole dataset -------------------------------------------------


def test_registry_names_each_layout_and_its_options() -> None:
    from deepfake.core.params import DatasetParams

    params_layouts = set(get_args(DatasetParams.model_fields["layout"].annotation))
    assert set(LAYOUTS) == {"dfdc", "dfdc_test", "dfdcp", "ffpp", "celebdf", "deeperforensics"} == params_layouts
    accepted = {name: set(layout.accepted()) for name, layout in LAYOUTS.items()}
    assert accepted == {
        "dfdc": {"identities"},
        "dfdc_test": {"split", "identities"},
        "dfdcp": {"identities"},
        "ffpp": {"compression", "methods", "splits", "identities"},
        "celebdf": {"identities"},
        "deeperforensics": {"variants", "ffpp_root", "identities"},
    }
    # no defaults outside params.yaml: what changes a dataset's meaning must be set there
    assert LAYOUTS["ffpp"].options["compression"] is REQUIRED
    assert LAYOUTS["deeperforensics"].options["variants"] is REQUIRED
    assert LAYOUTS["dfdc_test"].options["split"] is REQUIRED
    assert extra_roots("deeperforensics", {"ffpp_root": "data/raw/ffpp"}) == (Path("data/raw/ffpp"),)
    assert extra_roots("ffpp", {}) == ()


def required_options(layout: str, ffpp_root: Path) -> dict[str, Any]:
    """The options a layout cannot run without (params.yaml sets them)."""
    return {
        "ffpp": {"compression": "c23"},
        "dfdc_test": {"split": "test"},
        "deeperforensics": {"variants": ["end_to_end"], "ffpp_root": str(ffpp_root)},
    }.get(layout, {})


def test_layouts_import_no_torch() -> None:
    code = "import sys, deepfake.media.layouts; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_unknown_layout_is_a_params_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"unknown layout 'ffpp\+\+'.*known: celebdf"):
        ingest("x", "ffpp++", tmp_path, {})


@pytest.mark.parametrize(
    ("layout", "options", "message"),
    [
        ("celebdf", {"compression": "c23"}, "compression not accepted by layout 'celebdf'"),
        ("dfdc", {"methods": ["Deepfakes"]}, "methods not accepted by layout 'dfdc'"),
        ("ffpp", {"compression": "c99"}, "compression: one of raw, c23, c40"),
        ("ffpp", {"compression": "c23", "methods": ["Deepfakes", "Faceswap"]}, "unknown method.s. Faceswap"),
        ("ffpp", {"compression": "c23", "methods": []}, "methods: a non-empty list"),
        ("ffpp", {}, "needs option.s. compression"),
        ("deeperforensics", {"variants": ["end_to_end"]}, "needs option.s. ffpp_root"),
        (
            "deeperforensics",
            {"ffpp_root": "x", "variants": ["end_to_end_level_9"]},
            "unknown variant.s. end_to_end_level_9",
        ),
        ("dfdc_test", {"split": "holdout"}, "split: one of train, val, test"),
        ("celebdf", {"identities": 3}, "identities: a CSV file path"),
    ],
)
def test_bad_options_are_params_errors(tmp_path: Path, layout: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamsError, match=message) as err:
        ingest("ds", layout, tmp_path, options)
    assert "data.datasets.ds" in str(err.value)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_missing_root_is_a_layout_error(tmp_path: Path, layout: str) -> None:
    options = required_options(layout, tmp_path)
    with pytest.raises(LayoutError, match=r"does not exist"):
        ingest("ds", layout, tmp_path / "absent", options)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("dfdc", "not a DFDC training part folder"),
        ("dfdc_test", "not a DFDC test or validation folder"),
        ("dfdcp", "not a DFDC preview root"),
        ("ffpp", "not a FaceForensics\\+\\+ root"),
        ("celebdf", "not a Celeb-DF v2 root"),
        ("deeperforensics", "not a DeeperForensics-1.0 root"),
    ],
)
def test_a_root_of_another_layout_is_a_layout_error(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "root"
    touch(root / "something.mp4")
    options = required_options(layout, tmp_path)
    with pytest.raises(LayoutError, match=message):
        ingest("ds", layout, root, options)


def test_layout_error_is_an_input_error() -> None:
    assert issubclass(LayoutError, InputError)


def test_problem_text() -> None:
    assert str(Problem("List_of_testing_videos.txt", 7, "listed video x is missing")) == (
        "List_of_testing_videos.txt:7: listed video x is missing"
    )
    assert str(Problem("Celeb-real/a.mp4", None, "unexpected file name")) == "Celeb-real/a.mp4: unexpected file name"


# ---- dfdc -----------------------------------------------------------------------------------------


def dfdc_part(tmp_path: Path, entries: dict[str, Any], files: list[str]) -> Path:
    part = tmp_path / "dfdc_train_part_0"
    part.mkdir()
    for name in files:
        touch(part / name)
    (part / "metadata.json").write_text(json_object_lines(entries))
    return part


def test_dfdc_part_keeps_names_and_null_originals(tmp_path: Path) -> None:
    part = dfdc_part(
        tmp_path,
        {
            "aaa.mp4": {"label": "REAL", "split": "train", "original": None},
            "bbb.mp4": {"label": "REAL", "split": "train"},
            "ccc.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        },
        ["aaa.mp4", "bbb.mp4", "ccc.mp4"],
    )
    index = ingest("dfdc_train_part_0", "dfdc", part, {})
    assert index.problems == ()
    assert index.rows == (
        IndexRow("aaa.mp4", "aaa.mp4", "REAL"),
        IndexRow("bbb.mp4", "bbb.mp4", "REAL"),
        IndexRow("ccc.mp4", "ccc.mp4", "FAKE", original="aaa.mp4"),
    )
    assert index.counts() == {
        "videos": 3,
        "refused_count": 0,
        "label": {"FAKE": 1, "REAL": 2},
        "method": {"": 3},
        "split": {"": 3},
        "compression": {"": 3},
    }


def test_dfdc_refusals_name_metadata_line(tmp_path: Path) -> None:
    outside = touch(tmp_path / "elsewhere" / "x.mp4")
    part = dfdc_part(
        tmp_path,
        {
            "aaa.mp4": {"label": "REAL", "original": None},  # line 2
            "bbb.mp4": {"label": "real", "original": None},  # line 3: outside the vocabulary
            "ccc.mp4": {"label": "FAKE", "original": "aaa.mp4"},  # line 4: listed, file missing
            "ddd.mp4": {"label": "REAL", "original": None},  # line 5: file missing
            "eee.mp4": {"label": "FAKE", "original": "ddd.mp4"},  # line 6: its source is absent
            "fff.mp4": {"label": "REAL", "original": None},  # line 7: a link out of the part
            "ggg.mp4": {"label": "FAKE", "original": "zzz.mp4"},  # line 8: names no listed video
            "hhh.mp4": {"label": "REAL", "split": "dev"},  # line 9: split outside the vocabulary
        },
        ["aaa.mp4", "bbb.mp4", "eee.mp4", "ggg.mp4", "hhh.mp4"],
    )
    link(part / "fff.mp4", outside)
    index = ingest("p", "dfdc", part, {})
    assert list(rows(index)) == ["aaa.mp4"]
    assert problems(index) == [
        "metadata.json:3: bbb.mp4: label must be one of ('REAL', 'FAKE'), got 'real'",
        "metadata.json:4: video ccc.mp4 is missing",
        "metadata.json:5: video ddd.mp4 is missing",
        "metadata.json:6: eee.mp4: fake whose source is absent: original 'ddd.mp4' is not a REAL video of the index",
        "metadata.json:7: fff.mp4: resolves outside the part folder (through a symbolic link)",
        "metadata.json:8: ggg.mp4: original 'zzz.mp4' is not a REAL video listed in this part",
        "metadata.json:9: hhh.mp4: split 'dev' is not one of train, val, test",
    ]
    assert_portable(index, tmp_path)


def test_dfdc_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    part = tmp_path / "p"
    touch(part / "a.mp4")
    (part / "metadata.json").write_text(
        '{\n "a.mp4": {"label": "REAL"},\n "b.mp4": {"label": "FAKE" "original": 1}\n}\n'
    )
    with pytest.raises(LayoutError, match=r"metadata.json: not valid JSON: .*line 3"):
        ingest("p", "dfdc", part, {})


def test_dfdc_folder_of_parts_says_one_dataset_per_part(tmp_path: Path) -> None:
    dfdc_part(tmp_path, {}, [])
    with pytest.raises(LayoutError, match=r"dfdc_train_part_0: one dataset per part"):
        ingest("all", "dfdc", tmp_path, {})


# ---- dfdc_test ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["", "videos/"])
def test_dfdc_test_labels_one_is_fake(tmp_path: Path, level: str) -> None:
    root = tmp_path / "test"
    for name in ("aaa.mp4", "bbb.mp4"):
        touch(root / f"{level}{name}")
    (root / "labels.csv").write_text("filename,label\naaa.mp4,1\nbbb.mp4,0\n")
    index = ingest("dfdc_test", "dfdc_test", root, {"split": "test"})
    assert index.problems == ()
    assert index.rows == (
        IndexRow("aaa.mp4", f"{level}aaa.mp4", "FAKE", split="test"),
        IndexRow("bbb.mp4", f"{level}bbb.mp4", "REAL", split="test"),
    )
    assert {r.split for r in ingest("dfdc_val", "dfdc_test", root, {"split": "val"}).rows} == {"val"}


def test_dfdc_test_refusals_name_labels_line(tmp_path: Path) -> None:
    root = tmp_path / "test"
    for name in ("aaa.mp4", "ccc.mp4", "ddd.mp4"):
        touch(root / name)
    link(root / "eee.mp4", touch(tmp_path / "elsewhere.mp4"))
    (root / "labels.csv").write_text(
        "filename,label\n"
        "aaa.mp4,1\n"  # 2
        "bbb.mp4,0\n"  # 3: missing
        "ccc.mp4,FAKE\n"  # 4: outside the vocabulary
        "ddd.mp4,0,extra\n"  # 5: malformed
        "aaa.mp4,0\n"  # 6: listed twice
        "eee.mp4,0\n"  # 7: a link out of the root
        "\n"
        "../up.mp4,1\n"  # 9: not a plain name
    )
    index = ingest("t", "dfdc_test", root, {"split": "test"})
    assert list(rows(index)) == ["aaa.mp4"]
    assert problems(index) == [
        "labels.csv:3: video bbb.mp4 is missing",
        "labels.csv:4: label 'FAKE' is not 0 (real) or 1 (fake)",
        "labels.csv:5: malformed line: 3 fields, the header has 2",
        "labels.csv:6: 'aaa.mp4' listed twice (first on line 2)",
        "labels.csv:7: path 'eee.mp4' resolves outside the dataset root (through a symbolic link)",
        "labels.csv:9: video key '../up.mp4' is not a plain .mp4 file name",
    ]


def test_dfdc_test_needs_its_header(tmp_path: Path) -> None:
    root = tmp_path / "test"
    touch(root / "a.mp4")
    (root / "labels.csv").write_text("name,is_fake\na.mp4,1\n")
    with pytest.raises(LayoutError, match=r"labels.csv:1: the header must name the columns filename,label"):
        ingest("t", "dfdc_test", root, {"split": "test"})


# ---- dfdcp -----------------------------------------------------------------------------------------------


def test_dfdcp_lists_groups_with_or_without_videos_level(tmp_path: Path) -> None:
    root = tmp_path / "dfdcp"
    fake = "method_A/videos/643049/643049_A/1255229_643049_A_001.mp4"
    fake_b = "method_B/videos/643049/643049_B/1255229_643049_B_002.mp4"
    real = "original_videos/videos/643049/643049_A_001.mp4"
    real_flat = "original_videos/700001/700001_B_003.mp4"  # a copy without the videos/ level
    for path in (fake, fake_b, real, real_flat):
        touch(root / path)
    listed = {
        fake: {"label": "fake", "set": "train", "augmented": False},
        fake_b: {"label": "fake", "set": "test"},
        real: {"label": "real", "set": "train"},
        "original_videos/videos/700001/700001_B_003.mp4": {"label": "real", "set": "test"},
    }
    (root / "dataset.json").write_text(json_object_lines(listed))
    index = ingest("dfdcp", "dfdcp", root, {})
    assert index.problems == ()
    assert rows(index) == {
        "method_A__1255229_643049_A_001.mp4": IndexRow(
            "method_A__1255229_643049_A_001.mp4", fake, "FAKE", method="method_A", split="train"
        ),
        "method_B__1255229_643049_B_002.mp4": IndexRow(
            "method_B__1255229_643049_B_002.mp4", fake_b, "FAKE", method="method_B", split="test"
        ),
        "original_videos__643049_A_001.mp4": IndexRow(
            "original_videos__643049_A_001.mp4", real, "REAL", identity="dfdcp-643049", split="train"
        ),
        "original_videos__700001_B_003.mp4": IndexRow(
            "original_videos__700001_B_003.mp4", real_flat, "REAL", identity="dfdcp-700001", split="test"
        ),
    }


def test_dfdcp_refusals_name_dataset_json_line(tmp_path: Path) -> None:
    root = tmp_path / "dfdcp"
    touch(root / "method_A/videos/1/1_A/a.mp4")
    touch(root / "original_videos/videos/1/r.mp4")
    touch(tmp_path / "outside.mp4")
    link(root / "original_videos/videos/1/l.mp4", tmp_path / "outside.mp4")
    listed = {
        "method_A/videos/1/1_A/a.mp4": {"label": "FAKE", "set": "train"},  # 2: outside the vocabulary
        "original_videos/videos/1/r.mp4": {"label": "fake", "set": "train"},  # 3: disagrees with folder
        "method_A/videos/1/1_A/missing.mp4": {"label": "fake", "set": "train"},  # 4: missing
        "original_videos/../../outside.mp4": {"label": "real", "set": "train"},  # 5: escapes by ..
        "original_videos/videos/1/l.mp4": {"label": "real", "set": "train"},  # 6: escapes by a link
        "method_C/x.mp4": {"label": "fake", "set": "train"},  # 7: unknown folder
        "method_A/videos/1/1_A/b.mp4": ["fake", "train"],  # 8: malformed entry
        "original_videos/videos/1/q.mp4": {"label": "real", "set": "dev"},  # 9: unknown set
    }
    (root / "dataset.json").write_text(json_object_lines(listed))
    index = ingest("dfdcp", "dfdcp", root, {})
    assert index.rows == ()
    assert problems(index) == [
        "dataset.json:2: label 'FAKE' is not 'real' or 'fake'",
        "dataset.json:3: label 'fake' disagrees with the folder original_videos",
        "dataset.json:4: video method_A/videos/1/1_A/missing.mp4 is missing",
        "dataset.json:5: path 'original_videos/../../outside.mp4' escapes the dataset root",
        "dataset.json:6: path 'original_videos/videos/1/l.mp4' resolves outside the dataset root"
        " (through a symbolic link)",
        "dataset.json:7: 'method_C/x.mp4' is not under method_A, method_B, original_videos",
        "dataset.json:8: malformed entry: an object expected, got list",
        "dataset.json:9: set 'dev' is not one of train, val, test",
    ]


def test_dfdcp_malformed_json_is_a_layout_error(tmp_path: Path) -> None:
    root = tmp_path / "dfdcp"
    touch(root / "method_A/a.mp4")
    (root / "dataset.json").write_text('{\n "method_A/a.mp4": {"label": "fake",}\n}\n')
    with pytest.raises(LayoutError, match=r"dataset.json: not valid JSON: .*line 2"):
        ingest("dfdcp", "dfdcp", root, {})


def test_dfdcp_duplicate_key_is_a_layout_error(tmp_path: Path) -> None:
    root = tmp_path / "dfdcp"
    touch(root / "method_A/a.mp4")
    entry = '{"label": "fake", "set": "train"}'
    (root / "dataset.json").write_text(f'{{"method_A/a.mp4": {entry}, "method_A/a.mp4": {entry}}}')
    with pytest.raises(LayoutError, match=r"duplicate key"):
        ingest("dfdcp", "dfdcp", root, {})


# ---- ffpp ----------------------------------------------------------------------------------------------


def ffpp_root(tmp_path: Path, compression: str = "c23", level: str = "videos/") -> Path:
    root = tmp_path / "ffpp"
    for vid in ("000", "001", "002", "003"):
        touch(root / f"original_sequences/youtube/{compression}/{level}{vid}.mp4")
    touch(root / f"original_sequences/actors/{compression}/{level}01__exit_phone_room.mp4")
    for method in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter"):
        for name in ("000_001", "001_000"):
            touch(root / f"manipulated_sequences/{method}/{compression}/{level}{name}.mp4")
    touch(root / "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4")
    dfd = "01_02__exit_phone_room__YVGY8LOK.mp4"
    touch(root / f"manipulated_sequences/DeepFakeDetection/{compression}/{level}{dfd}")
    touch(root / f"manipulated_sequences/DeepFakeDetection/masks/videos/{dfd}")
    splits = root / "splits"
    splits.mkdir()
    # the official files' formatting: one id a line, a pair spanning 4 lines
    (splits / "train.json").write_text(json.dumps([["000", "001"]], indent=2))
    (splits / "val.json").write_text(json.dumps([["002", "003"]], indent=2))
    (splits / "test.json").write_text("[]")
    return root


def test_ffpp_pairs_own_both_directions(tmp_path: Path) -> None:
    root = ffpp_root(tmp_path)
    index = ingest("ffpp", "ffpp", root, {"compression": "c23"})
    assert index.problems == ()
    got = rows(index)
    assert got["youtube__000.mp4"] == IndexRow(
        "youtube__000.mp4",
        "original_sequences/youtube/c23/videos/000.mp4",
        "REAL",
        identity="ffpp-000",
        compression="c23",
        split="train",
    )
    assert got["youtube__002.mp4"].split == "val"
    assert got["Deepfakes__000_001.mp4"] == IndexRow(
        "Deepfakes__000_001.mp4",
        "manipulated_sequences/Deepfakes/c23/videos/000_001.mp4",
        "FAKE",
        original="youtube__000.mp4",
        identity="ffpp-001",  # face swap: the source's face
        method="Deepfakes",
        compression="c23",
        split="train",
        mask="manipulated_sequences/Deepfakes/masks/videos/000_001.mp4",
    )
    back = got["Deepfakes__001_000.mp4"]
    assert (back.original, back.identity, back.split, back.mask) == ("youtube__001.mp4", "ffpp-000", "train", "")
    for method, identity in [("Face2Face", "ffpp-000"), ("NeuralTextures", "ffpp-000"), ("FaceSwap", "ffpp-001")]:
        assert got[f"{method}__000_001.mp4"].identity == identity  # reenactment: the target's face
        assert got[f"{method}__000_001.mp4"].original == "youtube__000.mp4"
    assert got["FaceShifter__000_001.mp4"].identity == "ffpp-001"
    dfd = got["DeepFakeDetection__01_02__exit_phone_room__YVGY8LOK.mp4"]
    assert (dfd.original, dfd.identity, dfd.split) == ("actors__01__exit_phone_room.mp4", "ffpp-02", "")
    assert dfd.mask == "manipulated_sequences/DeepFakeDetection/masks/videos/01_02__exit_phone_room__YVGY8LOK.mp4"
    assert got["actors__01__exit_phone_room.mp4"].identity == "ffpp-01"
    assert index.counts()["method"] == {
        "": 5,
        "DeepFakeDetection": 1,
        "Deepfakes": 2,
        "Face2Face": 2,
        "FaceShifter": 2,
        "FaceSwap": 2,
        "NeuralTextures": 2,
    }
    assert index.counts()["split"] == {"": 2, "train": 12, "val": 2}


def test_ffpp_without_videos_level_and_other_compression(tmp_path: Path) -> None:
    root = ffpp_root(tmp_path, compression="c40", level="")
    index = ingest("ffpp", "ffpp", root, {"compression": "c40", "methods": ["Deepfakes"]})
    assert index.problems == ()
    assert sorted(rows(index)) == [
        "Deepfakes__000_001.mp4",
        "Deepfakes__001_000.mp4",
        "youtube__000.mp4",
        "youtube__001.mp4",
        "youtube__002.mp4",
        "youtube__003.mp4",
    ]
    assert rows(index)["youtube__000.mp4"].path == "original_sequences/youtube/c40/000.mp4"
    with pytest.raises(LayoutError, match=r"no FaceForensics\+\+ videos at compression c23.*has c40"):
        ingest("ffpp", "ffpp", root, {"compression": "c23"})


def test_ffpp_refusals(tmp_path: Path) -> None:
    root = ffpp_root(tmp_path)
    (root / "original_sequences/youtube/c23/videos/003.mp4").unlink()  # the val pair's second real
    touch(root / "manipulated_sequences/Deepfakes/c23/videos/003_002.mp4")  # its target real is absent
    touch(root / "manipulated_sequences/Deepfakes/c23/videos/not_a_pair.mp4")
    link(root / "manipulated_sequences/FaceSwap/c23/videos/002_003.mp4", touch(tmp_path / "elsewhere.mp4"))
    (root / "splits/test.json").write_text(
        json_array_lines([["004", "005"], ["000", "006"], ["007"], ["008", 9], ["010", "010"]])
    )
    index = ingest("ffpp", "ffpp", root, {"compression": "c23"})
    assert problems(index) == [
        "manipulated_sequences/Deepfakes/c23/videos/003_002.mp4: fake whose source is absent: its original"
        " youtube__003.mp4 (original_sequences/youtube/c23/videos/003.mp4) is not in the index",
        "manipulated_sequences/Deepfakes/c23/videos/not_a_pair.mp4: unexpected file name"
        " (<target>_<source>.mp4 expected)",
        "manipulated_sequences/FaceSwap/c23/videos/002_003.mp4: path"
        " 'manipulated_sequences/FaceSwap/c23/videos/002_003.mp4' resolves outside the dataset root"
        " (through a symbolic link)",
        "splits/test.json:2: names id 004 that has no video original_sequences/youtube/c23/videos/004.mp4",
        "splits/test.json:2: names id 005 that has no video original_sequences/youtube/c23/videos/005.mp4",
        "splits/test.json:3: id 000 is already in split train (splits/train.json:2)",
        "splits/test.json:4: malformed pair ['007']: two different 3-digit ids expected",
        "splits/test.json:5: malformed pair ['008', 9]: two different 3-digit ids expected",
        "splits/test.json:6: malformed pair ['010', '010']: two different 3-digit ids expected",
        "splits/val.json:2: names id 003 that has no video original_sequences/youtube/c23/videos/003.mp4",
    ]
    assert rows(index)["youtube__002.mp4"].split == "val"  # the pair stays official
    assert rows(index)["youtube__000.mp4"].split == "train"
    assert_portable(index, tmp_path)


def test_ffpp_splits_folder(tmp_path: Path) -> None:
    root = ffpp_root(tmp_path)
    moved = tmp_path / "official_splits"
    (root / "splits").rename(moved)
    with pytest.raises(LayoutError, match=r"official splits are missing: copy train.json"):
        ingest("ffpp", "ffpp", root, {"compression": "c23"})
    index = ingest("ffpp", "ffpp", root, {"compression": "c23", "splits": str(moved)})
    assert rows(index)["youtube__002.mp4"].split == "val"
    (moved / "val.json").unlink()
    with pytest.raises(LayoutError, match=r"val.json: not found"):
        ingest("ffpp", "ffpp", root, {"compression": "c23", "splits": str(moved)})
    (moved / "val.json").write_text('[["002", "003"]')
    with pytest.raises(LayoutError, match=r"val.json: not valid JSON: .*line 1"):
        ingest("ffpp", "ffpp", root, {"compression": "c23", "splits": str(moved)})


def test_ffpp_methods_option(tmp_path: Path) -> None:
    root = ffpp_root(tmp_path)
    index = ingest("ffpp", "ffpp", root, {"compression": "c23", "methods": ["Face2Face"]})
    assert {r.method for r in index.rows} == {"", "Face2Face"}
    assert not any(r.video.startswith("actors__") for r in index.rows)  # the actors come with DeepFakeDetection
    (root / "manipulated_sequences/FaceSwap/c23").rename(root / "manipulated_sequences/FaceSwap/c40")
    with pytest.raises(LayoutError, match=r"no c23 videos for method.s. FaceSwap"):
        ingest("ffpp", "ffpp", root, {"compression": "c23", "methods": ["FaceSwap"]})
    shutil.rmtree(root / "manipulated_sequences/FaceShifter")
    with pytest.raises(LayoutError, match=r"option methods names FaceShifter"):
        ingest("ffpp", "ffpp", root, {"compression": "c23", "methods": ["FaceShifter"]})


# ---- celebdf --------------------------------------------------------------------------------------------


def celebdf_root(tmp_path: Path, youtube: str = "YouTube-real", level: str = "") -> Path:
    root = tmp_path / "Celeb-DF-v2"
    for path in (
        f"Celeb-real/{level}id0_0000.mp4",
        f"Celeb-real/{level}id16_0003.mp4",
        f"{youtube}/{level}00170.mp4",
        f"{youtube}/{level}00171.mp4",
        f"Celeb-synthesis/{level}id0_id16_0000.mp4",
        f"Celeb-synthesis/{level}id16_id0_0003.mp4",
    ):
        touch(root / path)
    return root


@pytest.mark.parametrize(
    ("youtube", "level"), [("YouTube-real", ""), ("Youtube-real", ""), ("YouTube-real", "videos/")]
)
def test_celebdf_inverted_labels_and_spellings(tmp_path: Path, youtube: str, level: str) -> None:
    root = celebdf_root(tmp_path, youtube, level)
    # Celeb-DF's list says 1 for REAL, 0 for FAKE; it spells YouTube-real as released
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00170.mp4\r\n0 Celeb-synthesis/id0_id16_0000.mp4\n"
    )
    index = ingest("celebdf", "celebdf", root, {})
    assert index.problems == ()
    got = rows(index)
    assert got["YouTube-real__00170.mp4"] == IndexRow(
        "YouTube-real__00170.mp4", f"{youtube}/{level}00170.mp4", "REAL", split="test"
    )
    assert got["YouTube-real__00171.mp4"].split == "train"
    assert got["Celeb-synthesis__id0_id16_0000.mp4"] == IndexRow(
        "Celeb-synthesis__id0_id16_0000.mp4",
        f"Celeb-synthesis/{level}id0_id16_0000.mp4",
        "FAKE",
        original="Celeb-real__id0_0000.mp4",
        identity="celebdf-id16",
        method="Celeb-synthesis",
        split="test",
    )
    assert got["Celeb-synthesis__id16_id0_0003.mp4"].original == "Celeb-real__id16_0003.mp4"
    assert got["Celeb-synthesis__id16_id0_0003.mp4"].split == "train"
    assert got["Celeb-real__id16_0003.mp4"].identity == "celebdf-id16"
    assert index.counts()["label"] == {"FAKE": 2, "REAL": 4}


def test_celebdf_refusals_name_list_line(tmp_path: Path) -> None:
    root = celebdf_root(tmp_path)
    (root / "Celeb-real/id16_0003.mp4").unlink()  # the second fake's source
    touch(root / "Celeb-real/notes.mp4")
    touch(root / "Celeb-real/id5_0005.mp4")
    link(root / "Celeb-real/id3_0001.mp4", touch(tmp_path / "outside.mp4"))
    (root / "List_of_testing_videos.txt").write_text(
        "0 YouTube-real/00170.mp4\n"  # 1: 0 means FAKE: disagrees with the folder
        "1 Celeb-real/id9_0009.mp4\n"  # 2: missing
        "2 Celeb-real/id5_0005.mp4\n"  # 3: label outside the vocabulary
        "1 Celeb-real/../../outside.mp4\n"  # 4: escapes
        "1 YouTube-real/00171.mp4 extra\n"  # 5: malformed
        "1 Real/00171.mp4\n"  # 6: unknown folder
        "\n"
        "0 Celeb-synthesis/id0_id16_0000.mp4\n"  # 8
        "0 Celeb-synthesis/id0_id16_0000.mp4\n"  # 9: listed twice
    )
    index = ingest("celebdf", "celebdf", root, {})
    assert sorted(rows(index)) == [
        "Celeb-real__id0_0000.mp4",
        "Celeb-synthesis__id0_id16_0000.mp4",
        "YouTube-real__00171.mp4",
    ]
    assert problems(index) == [
        "Celeb-real/id3_0001.mp4: path 'Celeb-real/id3_0001.mp4' resolves outside the dataset root"
        " (through a symbolic link)",
        "Celeb-real/notes.mp4: unexpected file name (idK_NNNN.mp4 expected)",
        "Celeb-synthesis/id16_id0_0003.mp4: fake whose source is absent: original 'Celeb-real__id16_0003.mp4'"
        " is not a REAL video of the index",
        "List_of_testing_videos.txt:1: label 0 (FAKE; Celeb-DF's 1 = real) disagrees with the folder YouTube-real",
        "List_of_testing_videos.txt:2: listed video Celeb-real/id9_0009.mp4 is missing",
        "List_of_testing_videos.txt:3: label '2' is not 1 (real) or 0 (fake)",
        "List_of_testing_videos.txt:4: path 'Celeb-real/../../outside.mp4' escapes the dataset root",
        "List_of_testing_videos.txt:5: malformed line '1 YouTube-real/00171.mp4 extra':"
        " '<label> <folder>/<file>.mp4' expected",
        "List_of_testing_videos.txt:6: path 'Real/00171.mp4' is not <folder>/<file>.mp4 in Celeb-real,"
        " YouTube-real, Celeb-synthesis",
        "List_of_testing_videos.txt:9: Celeb-synthesis/id0_id16_0000.mp4 listed twice (first on line 8)",
    ]
    # a refused line's video is left out entirely: its split is unknown
    assert "YouTube-real__00170.mp4" not in rows(index)
    assert index.counts()["refused_count"] == 10
    assert_portable(index, tmp_path)


def test_celebdf_needs_its_test_list(tmp_path: Path) -> None:
    root = celebdf_root(tmp_path)
    with pytest.raises(LayoutError, match=r"List_of_testing_videos.txt: not found"):
        ingest("celebdf", "celebdf", root, {})
    (root / "List_of_testing_videos.txt").write_bytes(b"1 YouTube-real/00170.mp4\n0 Celeb-synthesis/\xff.mp4\n")
    with pytest.raises(LayoutError, match=r"List_of_testing_videos.txt:2: not UTF-8 text"):
        ingest("celebdf", "celebdf", root, {})


def test_macos_companion_files_are_not_videos(tmp_path: Path) -> None:
    root = celebdf_root(tmp_path)
    touch(root / "Celeb-real/._id0_0000.mp4")  # AppleDouble metadata a macOS copy leaves behind
    touch(root / "YouTube-real/.00170.mp4")
    (root / "List_of_testing_videos.txt").write_text("1 YouTube-real/00170.mp4\n")
    index = ingest("celebdf", "celebdf", root, {})
    assert index.problems == () and len(index.rows) == 6


# ---- deeperforensics --------------------------------------------------------------------------------------


def deeperforensics_root(tmp_path: Path) -> tuple[Path, Path]:
    ffpp = tmp_path / "ffpp"
    for vid in ("000", "001"):
        touch(ffpp / f"original_sequences/youtube/c23/videos/{vid}.mp4")
    root = tmp_path / "DeeperForensics-1.0"
    for name in ("000_M101.mp4", "001_W102.mp4", "002_M103.mp4"):
        touch(root / "manipulated_videos/end_to_end" / name)
        touch(root / "manipulated_videos/end_to_end_level_3" / name)
    splits = root / "lists/splits"
    splits.mkdir(parents=True)
    (splits / "train.txt").write_text("000_M101.mp4\n002_M103.mp4\n")
    (splits / "val.txt").write_text("001_W102\n")  # some copies drop the extension
    (splits / "test.txt").write_text("")
    return root, ffpp


def test_deeperforensics_reals_come_from_ffpp(tmp_path: Path) -> None:
    root, ffpp = deeperforensics_root(tmp_path)
    (root / "manipulated_videos/end_to_end/002_M103.mp4").unlink()
    (root / "manipulated_videos/end_to_end_level_3/002_M103.mp4").unlink()
    (root / "lists/splits/train.txt").write_text("000_M101.mp4\n")
    index = ingest("dfo", "deeperforensics", root, {"variants": ["end_to_end"], "ffpp_root": str(ffpp)})
    assert index.problems == ()
    got = rows(index)
    assert got["youtube__000.mp4"] == IndexRow(
        "youtube__000.mp4",
        "../ffpp/original_sequences/youtube/c23/videos/000.mp4",
        "REAL",
        identity="ffpp-000",
        compression="c23",
        split="train",
    )
    assert got["end_to_end__001_W102.mp4"] == IndexRow(
        "end_to_end__001_W102.mp4",
        "manipulated_videos/end_to_end/001_W102.mp4",
        "FAKE",
        original="youtube__001.mp4",
        identity="deeperforensics-W102",
        method="end_to_end",
        split="val",
    )
    assert sorted(got) == [
        "end_to_end__000_M101.mp4",
        "end_to_end__001_W102.mp4",
        "youtube__000.mp4",
        "youtube__001.mp4",
    ]
    # the reals' ../ path is usable only with FF++ declared as an extra root
    real = got["youtube__000.mp4"]
    assert path_problem(root, real.path, [ffpp]) == (
        (ffpp / "original_sequences/youtube/c23/videos/000.mp4").resolve(),
        None,
    )
    assert path_problem(root, real.path) == (None, f"path {real.path!r} escapes the dataset root")
    both = ingest(
        "dfo", "deeperforensics", root, {"ffpp_root": str(ffpp), "variants": ["end_to_end", "end_to_end_level_3"]}
    )
    assert {r.method for r in both.rows} == {"", "end_to_end", "end_to_end_level_3"} and len(both.rows) == 6


def test_deeperforensics_refusals(tmp_path: Path) -> None:
    root, ffpp = deeperforensics_root(tmp_path)
    touch(root / "manipulated_videos/end_to_end/readme.mp4")
    (root / "lists/splits/test.txt").write_text("999_M999.mp4\nnot a name\n001_W102.mp4\n")
    index = ingest("dfo", "deeperforensics", root, {"variants": ["end_to_end"], "ffpp_root": str(ffpp)})
    assert problems(index) == [
        "lists/splits/test.txt:1: names 999_M999.mp4, not a video of manipulated_videos/{end_to_end}",
        "lists/splits/test.txt:2: malformed line 'not a name': '<target>_<actor>.mp4' expected",
        "lists/splits/test.txt:3: 001_W102.mp4 is already in split val (lists/splits/val.txt:1)",
        "manipulated_videos/end_to_end/002_M103.mp4: fake whose source is absent: its original youtube__002.mp4"
        " (../ffpp/original_sequences/youtube/c23/videos/002.mp4) is not in the index",
        "manipulated_videos/end_to_end/readme.mp4: unexpected file name (<target>_<actor>.mp4 expected)",
    ]


def test_deeperforensics_options(tmp_path: Path) -> None:
    root, ffpp = deeperforensics_root(tmp_path)
    with pytest.raises(LayoutError, match=r"has no reenact_postprocess .it has: end_to_end, end_to_end_level_3"):
        ingest("dfo", "deeperforensics", root, {"ffpp_root": str(ffpp), "variants": ["reenact_postprocess"]})
    with pytest.raises(LayoutError, match=r"ffpp_root = .* is not a folder"):
        ingest("dfo", "deeperforensics", root, {"variants": ["end_to_end"], "ffpp_root": str(tmp_path / "nope")})
    (root / "lists/splits/val.txt").unlink()
    with pytest.raises(LayoutError, match=r"val.txt: not found"):
        ingest("dfo", "deeperforensics", root, {"variants": ["end_to_end"], "ffpp_root": str(ffpp)})


# ---- identities map, write / read, resolve --------------------------------------------------------------


def test_identities_map_overrides_and_refuses_unknown_paths(tmp_path: Path) -> None:
    root = celebdf_root(tmp_path)
    (root / "List_of_testing_videos.txt").write_text("1 YouTube-real/00170.mp4\n")
    identities = tmp_path / "identities.csv"
    identities.write_text(
        "path,identity\n"
        "YouTube-real/00170.mp4,person-7\n"  # 2
        "Celeb-real/id0_0000.mp4,person-1\n"  # 3
        "Celeb-real/absent.mp4,person-2\n"  # 4: not a video of the index
        "YouTube-real/00171.mp4,a:b\n"  # 5: ':' is not allowed
        "YouTube-real/00170.mp4,person-8\n"  # 6: listed twice
        "x\n"  # 7: malformed
    )
    index = ingest("celebdf", "celebdf", root, {"identities": str(identities)})
    got = rows(index)
    assert got["YouTube-real__00170.mp4"].identity == "person-7"
    assert got["Celeb-real__id0_0000.mp4"].identity == "person-1"
    assert got["Celeb-synthesis__id0_id16_0000.mp4"].identity == "celebdf-id16"  # derived, not in the map
    shown = "../identities.csv"  # relative to the dataset root, like every file a problem names
    assert problems(index) == [
        f"{shown}:4: path 'Celeb-real/absent.mp4' is not a video of the index",
        f"{shown}:5: identity 'a:b' is not a short plain label (letters, digits, _ - .)",
        f"{shown}:6: path 'YouTube-real/00170.mp4' listed twice (first on line 2)",
        f"{shown}:7: malformed line: 1 fields, the header has 2",
    ]
    inside = root / "identities.csv"
    inside.write_text("path,identity\nCeleb-real/absent.mp4,p\n")
    assert problems(ingest("c", "celebdf", root, {"identities": str(inside)})) == [
        "identities.csv:2: path 'Celeb-real/absent.mp4' is not a video of the index"
    ]
    with pytest.raises(LayoutError, match=r"identities map"):
        ingest("c", "celebdf", root, {"identities": str(tmp_path / "none.csv")})


def test_index_csv_round_trip(tmp_path: Path) -> None:
    root = ffpp_root(tmp_path)
    index = ingest("ffpp", "ffpp", root, {"compression": "c23"})
    out = tmp_path / "index" / "ffpp.csv"
    write_index(index, out)
    data = out.read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert lines[0] == HEADER
    assert [line.split(",")[0] for line in lines[1:]] == sorted(r.video for r in index.rows)
    assert tuple(read_index_csv(out)) == index.rows
    write_index(index, out)
    assert out.read_bytes() == data  # equal content, equal bytes
    assert not [p for p in out.parent.iterdir() if p.name != "ffpp.csv"]  # no temporary left


def test_write_index_refuses_an_invalid_index(tmp_path: Path) -> None:
    bad = DatasetIndex("x", "dfdc", (IndexRow("a.mp4", "a.mp4", "FAKE", original="b.mp4"),), ())
    with pytest.raises(ValueError, match=r"original 'b.mp4' is not a REAL row"):
        write_index(bad, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("video,path,label\n", ":1: the header must be video,path,label,original"),
        (f"{HEADER}\na.mp4,a.mp4,REAL,,,,,,\na.mp4,b.mp4,REAL,,,,,,\n", ":3: video 'a.mp4' repeated .first on line 2."),
        (f"{HEADER}\na.mp4,a.mp4,REAL,,,,,,\nb.mp4,a.mp4,REAL,,,,,,\n", ":3: path 'a.mp4' repeated"),
        (f"{HEADER}\na.mp4,a.mp4,real,,,,,,\n", ":2: label 'real' is not one of REAL, FAKE"),
        (f"{HEADER}\na.mp4,a.mp4,REAL,,,,c41,,\n", ":2: compression 'c41'"),
        (f"{HEADER}\na.mp4,a.mp4,REAL,,,,,dev,\n", ":2: split 'dev'"),
        (f"{HEADER}\na.mp4,a.mp4,REAL,,x:y,,,,\n", ":2: identity 'x:y'"),
        (f"{HEADER}\nsub/a.mp4,a.mp4,REAL,,,,,,\n", ":2: video 'sub/a.mp4' is not a plain"),
        (f"{HEADER}\na.mp4,/abs/a.mp4,REAL,,,,,,\n", ":2: path '/abs/a.mp4' is not a relative POSIX path"),
        (f"{HEADER}\na.mp4,a.mp4,REAL,,,,,\n", ":2: 8 fields, expected 9"),
        (f"{HEADER}\na.mp4,a.mp4,REAL,,,,,,\nb.mp4,b.mp4,FAKE,c.mp4,,,,,\n", ":3: original 'c.mp4' is not a REAL row"),
        (f"{HEADER}\na.mp4,a.mp4,FAKE,,,,,,\nb.mp4,b.mp4,FAKE,a.mp4,,,,,\n", ":3: original 'a.mp4' is not a REAL row"),
        (f"{HEADER}\na.mp4,a.mp4,REAL,b.mp4,,,,,\n", ":2: a REAL has no original and no method"),
        (f'{HEADER}\n"a.mp4,a.mp4,REAL,,,,,,\n', ":2: not valid CSV"),
    ],
)
def test_read_index_csv_validates(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "index.csv"
    path.write_text(body)
    with pytest.raises(InputError, match=message) as err:
        read_index_csv(path)
    assert str(err.value).startswith(f"{path}:")


def test_read_index_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not found"):
        read_index_csv(tmp_path / "absent.csv")


def test_path_problem_follows_links_only_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    touch(root / "a.mp4")
    link(root / "b.mp4", root / "a.mp4")
    link(root / "c.mp4", touch(tmp_path / "outside" / "c.mp4"))
    link(root / "loop.mp4", root / "loop.mp4")
    assert path_problem(root, "a.mp4") == ((root / "a.mp4").resolve(), None)
    assert path_problem(root, "b.mp4") == ((root / "a.mp4").resolve(), None)
    for path, message in [
        ("c.mp4", "resolves outside the dataset root"),
        ("../outside/c.mp4", "escapes the dataset root"),
        ("/etc/passwd", "not a relative POSIX path"),
        ("loop.mp4", "cannot be resolved"),
    ]:
        resolved, reason = path_problem(root, path)
        assert resolved is None and reason is not None and message in reason, (path, reason)
    # an extra root admits its own files, by .. or through a link
    assert path_problem(root, "c.mp4", [tmp_path / "outside"]) == ((tmp_path / "outside" / "c.mp4").resolve(), None)
    assert path_problem(root, "../outside/c.mp4", [tmp_path / "outside"]) == (
        (tmp_path / "outside" / "c.mp4").resolve(),
        None,
    )


def test_relative_paths_in_the_index_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, ffpp = deeperforensics_root(tmp_path)
    absolute = ingest("dfo", "deeperforensics", root, {"variants": ["end_to_end"], "ffpp_root": str(ffpp)})
    monkeypatch.chdir(tmp_path)
    relative = ingest("dfo", "deeperforensics", Path(root.name), {"variants": ["end_to_end"], "ffpp_root": ffpp.name})
    assert relative.rows == absolute.rows
    assert [p.file for p in relative.problems] == [
        "manipulated_videos/end_to_end/002_M103.mp4",
    ]
    assert relative.problems == absolute.problems  # reports name files relative to the root
