"""Fuzz tests of the two JSON parsers that read files from outside the pipeline.

``load_metadata`` (a DFDC part's metadata.json) and ``load_boxes`` (a per-video boxes file) must,
whatever bytes they are given, either return a well-formed result or raise their own documented
error (``MetadataError`` / ``BoxesFileError``): never a bare TypeError, KeyError, RecursionError,
OverflowError or a plain ValueError from deep inside the JSON decoder.

Bounded for CI: a fixed number of examples per test, derandomized (the same examples on every run),
no example database on disk and no deadline (the runners' speed varies).
"""

from __future__ import annotations

import json
import math
import os
import string
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepfake.media import faces, metadata
from deepfake.media.face_input import expand_box
from deepfake.media.faces import (
    MAX_BOX_COORD,
    BoxesFileError,
    VideoBoxes,
    boxes_to_json,
    load_boxes,
    save_boxes,
)
from deepfake.media.metadata import (
    IDENTITY_KEY,
    MetadataError,
    PartMetadata,
    load_metadata,
    safe_join,
)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PART = "dfdc_train_part_0"
# DFDC's training parts: each folder's metadata.json labels every video REAL or FAKE (the DFDC dataset's docs)
METADATA_NAME = "metadata.json"
LABELS = ("REAL", "FAKE")
MAX_METADATA_BYTES = 64 * 1024 * 1024  # the limit docs/architecture.md and docs/reliability.md state
BOXES_FORMAT = 1  # the boxes file's "format" as docs/architecture.md shows it

# ---- strategies ----------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)


def _json(max_leaves: int) -> st.SearchStrategy[Any]:
    return st.recursive(
        _scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=max_leaves,
    )


json_values = _json(15)
small_json = _json(4)  # for values nested inside generated documents (keeps generation fast)

# Valid names, drawn from a small pool so that fakes often point at a listed real.
GOOD_NAMES = ["aaaaaaaaaa.mp4", "bbbbbbbbbb.mp4", "c.mp4", "D_9-x.y.mp4", "_.mp4", "a" * 200 + ".mp4"]
BAD_NAMES = [
    "../x.mp4",
    "..mp4",
    "a..b.mp4",
    "sub/x.mp4",
    "sub\\x.mp4",
    "..\\..\\x.mp4",
    "/etc/passwd.mp4",
    "/abs/x.mp4",
    "C:\\x.mp4",
    "x.mp4\x00",
    "x\x00.mp4",
    "x.mp4\n",
    "x\n.mp4",
    " x.mp4",
    "x.mp4 ",
    ".hidden.mp4",
    "-x.mp4",
    ".mp4",
    "x.MP4",
    "x.avi",
    "x.mp4.avi",
    "x",
    "",
    "a" * 201 + ".mp4",
    "a" * 10_000 + ".mp4",
    "vidéo.mp4",
    "видео.mp4",
    "ａ.mp4",  # fullwidth a
    "x\u202e4pm.exe",
    "x\ud800.mp4",  # lone surrogate
    "~/x.mp4",
    "$HOME.mp4",
]
names = (
    st.sampled_from(GOOD_NAMES)
    | st.sampled_from(BAD_NAMES)
    | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,12}\.mp4", fullmatch=True)
    | st.text(max_size=30)
    | st.text(max_size=12).map(lambda s: s + ".mp4")
)
labels = st.sampled_from(LABELS) | st.sampled_from(["real", "Fake", "", "REAL ", "FAKE\n"]) | _scalars
originals = st.none() | st.sampled_from(GOOD_NAMES) | names | small_json
identities = (
    st.none()
    | st.sampled_from(["person_07", "p-1.a", "x" * 100, "x" * 101, "../bob", "bob\n", "", ".x", "a b"])
    | st.text(max_size=12)
    | _scalars
)
_BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "label": labels,
    "original": originals,
    "split": _scalars,
    IDENTITY_KEY: identities,
}


@st.composite
def dfdc_entry(draw: st.DrawFn, pool: list[str]) -> Any:
    """An entry: a well-formed REAL or FAKE (its original drawn from ``pool``), one with a single field
    made adversarial or removed, or any JSON value at all."""
    kind = draw(st.sampled_from(["real", "fake", "mutated", "mutated", "any"]))
    if kind == "any":
        return draw(small_json)
    if kind == "real" or (kind == "mutated" and draw(st.booleans())):
        entry: dict[str, Any] = {"label": "REAL", "original": None}
    else:
        entry = {"label": "FAKE", "original": draw(st.sampled_from(pool) | names)}
    if draw(st.booleans()):
        entry["split"] = draw(st.sampled_from(["train", "test", ""]))
    if draw(st.booleans()):
        entry[IDENTITY_KEY] = draw(st.sampled_from(["person_07", "p-1.a", "x" * 100]) | st.none())
    if draw(st.integers(0, 3)) == 0:
        entry[draw(st.sampled_from(["extra", "label ", "LABEL", ""]))] = draw(small_json)
    if kind == "mutated":
        key = draw(st.sampled_from(sorted(_BAD_VALUES)))
        if draw(st.integers(0, 3)) == 0:
            entry.pop(key, None)
        else:
            entry[key] = draw(_BAD_VALUES[key])
    return entry


@st.composite
def dfdc_documents(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(names, max_size=8, unique=True))
    pool = [*keys, *GOOD_NAMES[:2]]
    return {key: draw(dfdc_entry(pool)) for key in keys}


_FRAGMENTS = [
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b'"',
    b'"aaaaaaaaaa.mp4"',
    b'"../x.mp4"',
    b'{"label": "REAL", "original": null}',
    b'{"label": "FAKE", "original": "aaaaaaaaaa.mp4"}',
    b'"label"',
    b'"format": 1',
    b'"frames"',
    b"[1, 2, 3, 4, 0.5]",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1" * 5000,
    b"0.1e-400",
    b"null",
    b"true",
    b"\xef\xbb\xbf",  # UTF-8 BOM
    b"\xff\xfe",  # UTF-16 BOM
    b"\xff",
    b"\xc3",  # truncated UTF-8 sequence
    b"\xed\xa0\x80",  # an encoded surrogate: invalid UTF-8
    b'"\\ud800"',  # an escaped lone surrogate: valid JSON
    b"\x00",
    b" \n\t",
    b"[" * 3000,
]
json_bytes = (
    st.binary(max_size=200)
    | st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map(b"".join)
    | st.tuples(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"]), json_values).map(
        lambda p: p[0] + json.dumps(p[1]).encode()
    )
)

# ---- helpers -------------------------------------------------------------------------------------


@contextmanager
def part_folder(content: bytes) -> Iterator[Path]:
    """A fresh part folder holding ``metadata.json`` with ``content`` (hypothesis and tmp_path don't mix)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / PART
        folder.mkdir()
        (folder / METADATA_NAME).write_bytes(content)
        yield folder


@contextmanager
def boxes_file(content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "aaaaaaaaaa.json"
        path.write_bytes(content)
        yield path


def dump(doc: Any) -> bytes:
    """JSON as Python writes it: NaN/Infinity literals allowed, non-ASCII (and lone surrogates) escaped."""
    return json.dumps(doc).encode("ascii")


def parse_metadata_or_error(content: bytes) -> tuple[PartMetadata | None, Path]:
    """Parse; the only failure allowed is MetadataError (its exact class, not a bare ValueError)."""
    with part_folder(content) as folder:
        try:
            return load_metadata(folder), folder
        except MetadataError as err:  # anything else propagates and fails the test
            error: MetadataError = err
    assert type(error) is MetadataError and METADATA_NAME in str(error)
    return None, folder


_NAME_CHARS = set(string.ascii_letters + string.digits + "_.-")


def is_plain_mp4(name: object) -> bool:
    """An oracle written apart from the module's regex: a plain DFDC-style file name."""
    return (
        isinstance(name, str)
        and 5 <= len(name) <= 204
        and name.endswith(".mp4")
        and set(name) <= _NAME_CHARS
        and (name[0].isascii() and (name[0].isalnum() or name[0] == "_"))
        and ".." not in name
    )


def is_plain_identity(value: object) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 100
        and set(value) <= _NAME_CHARS
        and (value[0].isalnum() or value[0] == "_")
    )


def well_formed(name: str, value: object) -> bool:
    """Whether an entry is acceptable on its own (its original's existence is checked separately)."""
    if not is_plain_mp4(name) or not isinstance(value, dict):
        return False
    label, original = value.get("label"), value.get("original")
    if label not in LABELS or not isinstance(value.get("split", "train"), str):
        return False
    if label == "FAKE" and (not is_plain_mp4(original) or original == name):
        return False
    if label == "REAL" and original is not None:
        return False
    identity = value.get(IDENTITY_KEY)
    return identity is None or is_plain_identity(identity)


def check_parsed(parsed: PartMetadata, folder: Path, doc: dict[str, Any] | None, resolve: int = 100) -> None:
    """Invariants of every parse; with the input document, also exactly which entries are kept.

    Paths are resolved (a few syscalls each) for the first ``resolve`` entries only.
    """
    assert parsed.part == PART and parsed.folder == folder
    assert list(parsed.entries) == sorted(parsed.entries)
    assert not set(parsed.entries) & set(parsed.refused)
    for reason in parsed.refused.values():
        assert isinstance(reason, str) and reason
    root = folder.resolve()
    for count, (name, entry) in enumerate(parsed.entries.items()):
        assert entry.name == name and is_plain_mp4(name)
        assert "/" not in name and "\\" not in name and "\x00" not in name
        if count < resolve:
            assert parsed.video_path(name).resolve().parent == root
        assert entry.label in LABELS
        assert isinstance(entry.split, str) and entry.part == PART
        assert entry.identity == "" or is_plain_identity(entry.identity)
        if entry.is_fake:
            assert entry.original in parsed.entries and not parsed.entries[entry.original].is_fake
            assert entry.source == entry.original
            if count < resolve:
                assert parsed.video_path(entry.original).resolve().parent == root
        else:
            assert entry.original is None and entry.source == name
    if doc is None:
        return
    # Every input name is either kept or refused, once.
    assert set(parsed.entries) | set(parsed.refused) == set(doc)
    shaped = {name for name, value in doc.items() if well_formed(name, value)}
    reals = {name for name in shaped if doc[name]["label"] == "REAL"}
    expected = reals | {name for name in shaped - reals if doc[name]["original"] in reals}
    assert set(parsed.entries) == expected
    for name, entry in parsed.entries.items():
        value = doc[name]
        assert entry.label == value["label"] and entry.original == value.get("original")
        assert entry.split == value.get("split", "train")
        assert entry.identity == (value.get(IDENTITY_KEY) or "")


# ---- metadata.json -------------------------------------------------------------------------------


@FUZZ
@given(doc=json_values)
def test_metadata_any_json_document(doc: Any) -> None:
    parsed, folder = parse_metadata_or_error(dump(doc))
    if isinstance(doc, dict):
        assert parsed is not None  # an object is always parsed; bad entries are refused one by one
        check_parsed(parsed, folder, doc)
    else:
        assert parsed is None  # not an object: the whole file is refused


@FUZZ
@given(content=json_bytes)
def test_metadata_any_bytes(content: bytes) -> None:
    parsed, folder = parse_metadata_or_error(content)
    if parsed is not None:
        check_parsed(parsed, folder, None)


@settings(FUZZ, max_examples=200)
@given(doc=dfdc_documents())
def test_metadata_dfdc_shaped_documents(doc: dict[str, Any]) -> None:
    parsed, folder = parse_metadata_or_error(dump(doc))
    assert parsed is not None
    check_parsed(parsed, folder, doc)


@FUZZ
@given(doc=dfdc_documents())
def test_metadata_written_unescaped_utf8(doc: dict[str, Any]) -> None:
    """The same documents with non-ASCII written raw (lone surrogates as invalid UTF-8)."""
    content = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    parsed, folder = parse_metadata_or_error(content)
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        assert parsed is None  # invalid UTF-8 is a clear error
        return
    assert parsed is not None
    check_parsed(parsed, folder, doc)


@FUZZ
@given(name=names)
def test_safe_join_keeps_names_inside_the_folder(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            path = safe_join(folder, name)
        except MetadataError:
            assert not is_plain_mp4(name)
            return
        assert is_plain_mp4(name)
        assert path == folder / name and path.resolve().parent == folder.resolve()


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000,
        b'{"a.mp4": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a.mp4": {"label": "REAL", "original": null, "split": ' + b"1" * 5000 + b"}}",
        b"-" + b"9" * 100_000,
    ],
    ids=["open-lists", "closed-lists", "objects", "nested-entry", "long-int", "longer-int"],
)
def test_metadata_deep_nesting_and_huge_integers_are_clear_errors(tmp_path: Path, content: bytes) -> None:
    folder = tmp_path / PART
    folder.mkdir()
    (folder / METADATA_NAME).write_bytes(content)
    with pytest.raises(MetadataError, match="not valid JSON") as err:
        load_metadata(folder)
    assert type(err.value) is MetadataError


def test_metadata_absurd_numbers_are_refused_per_entry(tmp_path: Path) -> None:
    content = (
        b'{"aaaaaaaaaa.mp4": {"label": "REAL", "original": null, "split": 1e400},'
        b' "bbbbbbbbbb.mp4": {"label": NaN, "original": null},'
        b' "cccccccccc.mp4": {"label": "REAL", "original": null, "identity": -Infinity},'
        b' "dddddddddd.mp4": {"label": "REAL", "original": null, "x": 1e400}}'
    )
    folder = tmp_path / PART
    folder.mkdir()
    (folder / METADATA_NAME).write_bytes(content)
    parsed = load_metadata(folder)
    assert list(parsed.entries) == ["dddddddddd.mp4"]
    assert set(parsed.refused) == {"aaaaaaaaaa.mp4", "bbbbbbbbbb.mp4", "cccccccccc.mp4"}


def test_metadata_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    folder = tmp_path / PART
    folder.mkdir()
    path = folder / METADATA_NAME
    with open(path, "wb") as fh:  # sparse: no disk or time spent on the 64 MiB
        fh.truncate(MAX_METADATA_BYTES + 1)
    with pytest.raises(MetadataError, match=r"over the .* limit"):
        load_metadata(folder)


def test_metadata_size_limit_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = {f"v{i:09d}.mp4": {"label": "REAL", "original": None} for i in range(100)}
    folder = tmp_path / PART
    folder.mkdir()
    content = dump(doc)
    (folder / METADATA_NAME).write_bytes(content)
    monkeypatch.setattr(metadata, "MAX_METADATA_BYTES", len(content))
    assert len(load_metadata(folder).entries) == 100
    monkeypatch.setattr(metadata, "MAX_METADATA_BYTES", len(content) - 1)
    with pytest.raises(MetadataError, match=f"{len(content)} bytes, over the {len(content) - 1} limit"):
        load_metadata(folder)


def test_metadata_many_entries_parse_within_the_size_limit(tmp_path: Path) -> None:
    """No entry-count limit of its own: the byte limit bounds it. 20,000 entries (DFDC parts hold a few
    thousand) parse, every fake pointing at its real, and bad ones among them are refused alone."""
    doc: dict[str, Any] = {}
    for i in range(10_000):
        doc[f"r{i:09d}.mp4"] = {"label": "REAL", "split": "train", "original": None}
        doc[f"f{i:09d}.mp4"] = {"label": "FAKE", "split": "train", "original": f"r{i:09d}.mp4"}
    doc["../escape.mp4"] = {"label": "REAL", "original": None}
    doc["f_orphan.mp4"] = {"label": "FAKE", "original": "missing.mp4"}
    folder = tmp_path / PART
    folder.mkdir()
    (folder / METADATA_NAME).write_bytes(dump(doc))
    parsed = load_metadata(folder)
    assert len(parsed.reals) == 10_000 and len(parsed.fakes) == 10_000
    assert set(parsed.refused) == {"../escape.mp4", "f_orphan.mp4"}
    check_parsed(parsed, folder, doc, resolve=50)


# ---- boxes files ---------------------------------------------------------------------------------

_coords = (
    st.floats(min_value=-2000, max_value=4000, allow_nan=False)
    | st.integers(min_value=-2000, max_value=4000)
    | st.sampled_from([0, -0.0, 5e-324, MAX_BOX_COORD, -MAX_BOX_COORD, MAX_BOX_COORD + 1, 1e308, -1e308, 10**30])
)
_bad_coords = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([True, False, None, "1", [1], {}])
_box = st.tuples(_coords, _coords, _coords, _coords, _coords | st.floats(0, 1)).map(list)
_bad_box = st.lists(_coords | _bad_coords, max_size=7) | small_json
_frame_keys = st.sampled_from(
    ["007", "00", "-1", "+1", "-0", "1.5", "1e3", "", " 1", "1 ", "²", "١٢", "9" * 20, "9" * 5000]
) | st.text(max_size=5)
_BAD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "format": st.sampled_from([1.0, True, 2, "1", None, 0, [1]]),
    "width": st.sampled_from([0, -1, True, 1.0, 320.5, "320", None, 10**30, 2**63]),
    "height": st.sampled_from([0, -1, True, 1.0, 180.5, "180", None, 10**30]),
    "frames": small_json,
    "video": small_json,
}


@st.composite
def box_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A boxes file as the stage writes it (boxes anywhere, of any orientation), then at most one change:
    a top-level field set to a wrong value or removed, a bad frame key, or a bad box among good ones."""
    doc: dict[str, Any] = {
        "format": BOXES_FORMAT,
        "video": "aaaaaaaaaa.mp4",
        "width": draw(st.integers(min_value=1, max_value=4096)),
        "height": draw(st.integers(min_value=1, max_value=4096)),
        "detection_scale": draw(st.sampled_from([0.5, 1.0, 2.0])),
        "frames": draw(st.dictionaries(st.integers(0, 10**6).map(str), st.lists(_box, max_size=4), max_size=5)),
    }
    change = draw(st.sampled_from(["none", "field", "drop", "frame_key", "box"]))
    if change == "field":
        key = draw(st.sampled_from(sorted(_BAD_FIELDS)))
        doc[key] = draw(_BAD_FIELDS[key])
    elif change == "drop":
        del doc[draw(st.sampled_from(sorted(doc)))]
    elif change == "frame_key":
        doc["frames"][draw(_frame_keys)] = draw(st.lists(_box, max_size=2))
    elif change == "box":
        rows = [*draw(st.lists(_box, max_size=2)), draw(_bad_box)]
        doc["frames"][draw(st.integers(0, 10**6).map(str))] = draw(st.permutations(rows))
    return doc


def parse_boxes_or_error(content: bytes) -> VideoBoxes | None:
    with boxes_file(content) as path:
        try:
            return load_boxes(path)
        except BoxesFileError as err:  # anything else propagates and fails the test
            error: BoxesFileError = err
    assert type(error) is BoxesFileError and path.name in str(error)
    return None


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_boxes(boxes: VideoBoxes, doc: Any) -> None:
    """Invariants of a loaded boxes file, and that the crops stage's use of every box is safe."""
    assert is_int(boxes.width) and boxes.width > 0
    assert is_int(boxes.height) and boxes.height > 0
    assert isinstance(boxes.video, str)
    assert boxes.faces == sum(len(rows) for rows in boxes.frames.values())
    for index, rows in boxes.frames.items():
        assert is_int(index) and index >= 0
        if isinstance(doc, dict):
            assert str(index) in doc["frames"]  # canonical keys: one key per frame, no "007"/"7" clash
            assert rows == doc["frames"][str(index)]
        for row in rows:
            assert len(row) == 5 and all(is_finite_number(v) for v in row)
            assert all(abs(v) <= MAX_BOX_COORD for v in row[:4])
            for margin in (0.0, 0.3333, 2.0):  # crops.margin is validated to [0, 2]
                rect = expand_box(row, margin, boxes.width, boxes.height)
                if rect is None:
                    continue
                left, top, right, bottom = rect
                assert all(is_int(v) for v in rect)
                assert 0 <= left < right <= boxes.width and 0 <= top < bottom <= boxes.height
                assert right - left >= 2 and bottom - top >= 2
    if isinstance(doc, dict):
        assert len(boxes.frames) == len(doc["frames"])


@FUZZ
@given(doc=json_values)
def test_boxes_any_json_document(doc: Any) -> None:
    loaded = parse_boxes_or_error(dump(doc))
    assert loaded is None or isinstance(doc, dict)
    if loaded is not None:
        check_boxes(loaded, doc)


@FUZZ
@given(content=json_bytes)
def test_boxes_any_bytes(content: bytes) -> None:
    loaded = parse_boxes_or_error(content)
    if loaded is not None:
        check_boxes(loaded, None)


@settings(FUZZ, max_examples=200)
@given(doc=box_documents())
def test_boxes_shaped_documents(doc: dict[str, Any]) -> None:
    loaded = parse_boxes_or_error(dump(doc))
    if loaded is None:
        return
    check_boxes(loaded, doc)
    assert doc["format"] == BOXES_FORMAT and is_int(doc["format"])
    assert (loaded.width, loaded.height) == (doc["width"], doc["height"])


@FUZZ
@given(
    width=st.integers(min_value=1, max_value=4096),
    height=st.integers(min_value=1, max_value=4096),
    frames=st.dictionaries(
        st.integers(min_value=0, max_value=10**6),
        st.lists(
            st.tuples(
                st.floats(min_value=-MAX_BOX_COORD, max_value=MAX_BOX_COORD, width=32),
                st.floats(min_value=-MAX_BOX_COORD, max_value=MAX_BOX_COORD, width=32),
                st.floats(min_value=-MAX_BOX_COORD, max_value=MAX_BOX_COORD, width=32),
                st.floats(min_value=-MAX_BOX_COORD, max_value=MAX_BOX_COORD, width=32),
                st.floats(min_value=0, max_value=1, width=32),
            ),
            max_size=4,
        ),
        max_size=6,
    ),
)
def test_boxes_written_by_the_stage_load_back(
    width: int, height: int, frames: dict[int, list[tuple[float, ...]]]
) -> None:
    """What boxes_to_json/save_boxes write is always accepted, frame for frame, box for box."""
    arrays = {index: np.asarray(rows, np.float32).reshape(-1, 5) for index, rows in frames.items()}
    data = boxes_to_json("aaaaaaaaaa.mp4", width, height, 1.0, arrays)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "aaaaaaaaaa.json"
        save_boxes(path, data)
        loaded = load_boxes(path)
    assert (loaded.video, loaded.width, loaded.height) == ("aaaaaaaaaa.mp4", width, height)
    assert set(loaded.frames) == set(frames)
    for index, rows in arrays.items():
        np.testing.assert_allclose(np.asarray(loaded.frames[index]).reshape(-1, 5), rows, atol=0.01, rtol=1e-6)
    check_boxes(loaded, data)


@pytest.mark.parametrize(
    "frames, message",
    [
        ({"²": []}, "frame index"),
        ({"١٢": []}, "frame index"),
        ({"9" * 5000: []}, "frame index"),
        ({"007": []}, "frame index"),
        ({"-1": []}, "frame index"),
        ({"1": [[-1e308, 0, 1e308, 10, 0.5]]}, "beyond"),
        ({"1": [[0, 0, MAX_BOX_COORD * 2, 10, 0.5]]}, "beyond"),
        ({"1": [[0, 0, 10, 10, True]]}, "5 finite numbers"),
        ({"1": [[0, 0, 10, 10]]}, "5 finite numbers"),
    ],
)
def test_boxes_bad_frames_are_clear_errors(frames: dict[str, Any], message: str) -> None:
    doc = {"format": BOXES_FORMAT, "video": "v.mp4", "width": 320, "height": 180, "frames": frames}
    with boxes_file(dump(doc)) as path, pytest.raises(BoxesFileError, match=message):
        load_boxes(path)


@pytest.mark.parametrize(
    "doc",
    [
        {"format": True, "width": 320, "height": 180, "frames": {}},
        {"format": 1.0, "width": 320, "height": 180, "frames": {}},
        {"format": 1, "width": True, "height": True, "frames": {}},
        {"format": 1, "width": 320.0, "height": 180, "frames": {}},
    ],
)
def test_boxes_wrong_types_are_clear_errors(doc: dict[str, Any]) -> None:
    with boxes_file(dump(doc)) as path, pytest.raises(BoxesFileError):
        load_boxes(path)


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000, b'{"frames":' * 100_000, b'{"format": 1, "width": ' + b"1" * 5000 + b"}"],
    ids=["lists", "objects", "long-int"],
)
def test_boxes_deep_nesting_and_huge_integers_are_clear_errors(content: bytes) -> None:
    with boxes_file(content) as path, pytest.raises(BoxesFileError, match="not valid JSON"):
        load_boxes(path)


def test_boxes_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with open(path, "wb") as fh:
        fh.truncate(faces.MAX_BOXES_FILE_BYTES + 1)
    assert os.stat(path).st_size == faces.MAX_BOXES_FILE_BYTES + 1
    with pytest.raises(BoxesFileError, match=r"over the .* limit"):
        load_boxes(path)
