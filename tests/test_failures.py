"""Failures that never pass as success: what becomes a per-video skip, what stops a stage, what is kept.

Module-level imports stay light (no torch, no tests.conftest): the ``workers=2`` tests pickle functions
of this module into spawned processes, which import it again.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import av.error
import cv2
import numpy as np
import pytest

from deepfake.core import fileio
from deepfake.core.errors import InputError, LeakageError, ParamsError, UserError, is_environment_fault
from deepfake.core.fileio import atomic_dir, read_json_limited
from deepfake.core.parallel import map_videos
from deepfake.core.report import DONE, SKIPPED, StageReport, VideoResult
from deepfake.media import video as video_module
from deepfake.media.faces import BoxesFileError, load_boxes
from deepfake.media.metadata import MetadataError, load_metadata, safe_join
from deepfake.media.video import FrameSampling, VideoError, iter_sampled_frames, probe

ROOT = Path(__file__).resolve().parents[1]
SIZE = (160, 96)  # width, height of the tiny test videos
SAMPLING = FrameSampling(stride=2, max_frames=1200, max_pixels=10**7)
BOX = [40.0, 20.0, 110.0, 80.0, 0.99]


def enospc(path: object = "/data/out/x.png") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith((".partial", ".previous")))


# ---------------------------------------------------------------------------------------------- errors


def test_the_input_errors_are_user_errors_and_not_value_errors() -> None:
    for cls in (MetadataError, VideoError, BoxesFileError):
        assert issubclass(cls, InputError) and issubclass(cls, UserError)
        assert not issubclass(cls, ValueError) and not issubclass(cls, RuntimeError)
    assert issubclass(LeakageError, UserError) and issubclass(ParamsError, UserError)
    from deepfake.modeling import splits

    assert splits.LeakageError is LeakageError  # re-exported where it used to live
    assert is_environment_fault(enospc()) and not is_environment_fault(FileNotFoundError(errno.ENOENT, "x"))


# ------------------------------------------------------------------------------------------ map_videos


def per_video(kind: str) -> VideoResult:
    """A per-video function for map_videos (module level: picklable into worker processes)."""
    if kind == "input":
        raise VideoError("bad.mp4: cannot be opened as a video")
    if kind == "boxes":
        raise BoxesFileError("bad.json: duplicate key 'width'")
    if kind == "value":
        raise ValueError("a bug")
    if kind == "key":
        raise KeyError("missing")
    if kind == "nospace":
        raise enospc()
    if kind == "notfound":
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/somewhere")
    if kind == "cv2":
        raise cv2.error("a bug in a stage's own OpenCV call")
    return VideoResult(kind, counts={"n": 1})


def run_map(kinds: list[str], workers: int) -> list[VideoResult]:
    return map_videos(per_video, [(f"{i}-{k}", k) for i, k in enumerate(kinds)], workers, "test")


@pytest.mark.parametrize("workers", [1, 2])
def test_an_input_error_is_a_recorded_skip(workers: int) -> None:
    results = run_map(["a", "input", "b", "boxes"], workers)
    assert [r.status for r in results] == [DONE, SKIPPED, DONE, SKIPPED]
    assert results[1].reason == "VideoError: bad.mp4: cannot be opened as a video"
    assert results[3].reason.startswith("BoxesFileError: ")
    assert [r.video for r in results] == ["a", "1-input", "b", "3-boxes"]


@pytest.mark.parametrize("kind", ["value", "key", "notfound", "cv2"])
def test_a_bug_propagates_instead_of_becoming_a_skip(kind: str) -> None:
    expected = {"value": ValueError, "key": KeyError, "notfound": FileNotFoundError, "cv2": cv2.error}[kind]
    with pytest.raises(expected):
        run_map(["a", kind, "b"], workers=1)


def test_a_full_disk_propagates_instead_of_recording_good_videos_as_skipped() -> None:
    with pytest.raises(OSError) as err:
        run_map(["a", "nospace", "b"], workers=1)
    assert err.value.errno == errno.ENOSPC


@pytest.mark.parametrize("kind", ["nospace", "value"])
def test_a_worker_failure_propagates_from_the_process_pool(kind: str) -> None:
    expected = {"nospace": OSError, "value": ValueError}[kind]
    with pytest.raises(expected) as err:
        run_map(["a", "input", kind, "b"], workers=2)
    if kind == "nospace":
        assert err.value.errno == errno.ENOSPC and err.value.filename == "/data/out/x.png"


# ------------------------------------------------------------------------------------- input readers


def test_a_video_missing_or_not_a_file_is_that_videos_input_error(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="file not found"):
        probe(tmp_path / "missing.mp4")
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(VideoError, match="file not found"):
        list(iter_sampled_frames(tmp_path / "folder.mp4", SAMPLING))
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(VideoError):
        probe(tmp_path / "dangling.mp4")


def test_a_video_read_that_hits_an_environment_fault_is_not_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import write_video

    path = write_video(tmp_path / "a.mp4", [np.zeros((SIZE[1], SIZE[0], 3), np.uint8)] * 4)

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(video_module, "open", denied, raising=False)
    with pytest.raises(PermissionError):
        probe(path)

    def not_a_file(*args: Any, **kwargs: Any) -> Any:
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))

    monkeypatch.setattr(video_module, "open", not_a_file, raising=False)
    with pytest.raises(VideoError, match="cannot be read"):
        probe(path)


def test_a_decoder_error_while_decoding_is_that_videos_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import write_video

    path = write_video(tmp_path / "a.mp4", [np.zeros((SIZE[1], SIZE[0], 3), np.uint8)] * 8)
    real = video_module._decode_packet
    calls = []

    def failing(stream: Any, packet: Any) -> list[Any]:
        calls.append(packet)
        if len(calls) == 3:  # mid-stream, after two packets decoded
            raise av.error.InvalidDataError(errno.EINVAL, "decoder exploded")
        return real(stream, packet)

    monkeypatch.setattr(video_module, "_decode_packet", failing)
    seen: list[int] = []
    with pytest.raises(VideoError, match=r"frame \d+ cannot be decoded \(mpeg4 in mov,mp4[^)]*\): decoder exploded"):
        seen.extend(i for i, _ in iter_sampled_frames(path, FrameSampling(stride=1, max_frames=100, max_pixels=10**7)))
    assert seen == list(range(len(seen))) and len(seen) <= 2


def test_a_json_input_unreadable_for_the_environment_is_not_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metadata.json"
    path.write_text("{}")

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(fileio, "open", failing, raising=False)
    with pytest.raises(OSError) as err:
        read_json_limited(path, 100, MetadataError)
    assert err.value.errno == errno.EIO and not isinstance(err.value, MetadataError)


# ------------------------------------------------------------------------------------ duplicate keys


def test_duplicate_keys_in_metadata_are_refused_naming_the_file_and_the_key(tmp_path: Path) -> None:
    part = tmp_path / "part"
    part.mkdir()
    meta = part / "metadata.json"
    meta.write_text(
        '{"a.mp4": {"label": "REAL", "original": null},'
        ' "a.mp4": {"label": "FAKE", "original": "b.mp4"}, "b.mp4": {"label": "REAL"}}'
    )
    with pytest.raises(MetadataError, match=r"metadata\.json: duplicate key 'a\.mp4'") as err:
        load_metadata(part)
    assert str(meta) in str(err.value)
    meta.write_text('{"a.mp4": {"label": "FAKE", "original": null, "label": "REAL"}}')
    with pytest.raises(MetadataError, match="duplicate key 'label'"):
        load_metadata(part)


def test_duplicate_keys_in_a_boxes_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    frames = f'{{"0": [{BOX}], "0": [{BOX}, {BOX}]}}'
    path.write_text(f'{{"format": 1, "width": 160, "height": 96, "frames": {frames}}}')
    with pytest.raises(BoxesFileError, match=r"a\.json: duplicate key '0'"):
        load_boxes(path)
    path.write_text('{"format": 1, "width": 160, "width": 16000, "height": 96, "frames": {}}')
    with pytest.raises(BoxesFileError, match="duplicate key 'width'"):
        load_boxes(path)


# --------------------------------------------------------------------------------- escaping entries


def escaping_part(tmp_path: Path) -> Path:
    """A part whose metadata lists plain files, links inside, and links and names that leave it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.mp4").write_bytes(b"secret")
    part = tmp_path / "raw" / "part"
    part.mkdir(parents=True)
    (part / "a.mp4").write_bytes(b"a")
    (part / "link.mp4").symlink_to(Path("../../elsewhere/x.mp4"))  # a file link leaving the part
    (part / "abs.mp4").symlink_to(elsewhere / "x.mp4")
    (part / "dangling.mp4").symlink_to(Path("../../elsewhere/gone.mp4"))
    (part / "dir.mp4").symlink_to(elsewhere)  # a link to a folder elsewhere
    (part / "sub").symlink_to(elsewhere)  # a symlinked folder: sub/x.mp4 is elsewhere/x.mp4
    (part / "inside.mp4").symlink_to("a.mp4")  # stays inside: accepted
    (part / "loop.mp4").symlink_to("loop.mp4")
    real = {"label": "REAL", "original": None}
    meta = {
        name: real
        for name in ("a.mp4", "link.mp4", "abs.mp4", "dangling.mp4", "dir.mp4", "inside.mp4", "loop.mp4", "missing.mp4")
    }
    meta |= {"../x.mp4": real, "sub/x.mp4": real, "fake.mp4": {"label": "FAKE", "original": "link.mp4"}}
    (part / "metadata.json").write_text(json.dumps(meta))
    return part


def test_entries_resolving_outside_the_part_are_refused_and_the_rest_load(tmp_path: Path) -> None:
    part = escaping_part(tmp_path)
    metadata = load_metadata(part)
    assert sorted(metadata.entries) == ["a.mp4", "inside.mp4", "missing.mp4"]
    refused = metadata.refused
    assert sorted(refused) == [
        "../x.mp4",
        "abs.mp4",
        "dangling.mp4",
        "dir.mp4",
        "fake.mp4",
        "link.mp4",
        "loop.mp4",
        "sub/x.mp4",
    ]
    for name in ("link.mp4", "abs.mp4", "dangling.mp4", "dir.mp4"):
        assert "resolves outside the part folder" in refused[name], name
    assert "plain .mp4" in refused["../x.mp4"] and "plain .mp4" in refused["sub/x.mp4"]
    assert "link.mp4" in refused["fake.mp4"]  # its original was refused
    assert "cannot be resolved" in refused["loop.mp4"]
    assert metadata.video_path("inside.mp4") == part / "inside.mp4"
    for name in ("link.mp4", "../x.mp4", "sub/x.mp4"):
        with pytest.raises(MetadataError, match="refused file name"):
            safe_join(part, name)


def test_a_link_swapped_in_after_loading_is_refused_when_the_path_is_asked_for(tmp_path: Path) -> None:
    part = escaping_part(tmp_path)
    metadata = load_metadata(part)
    (part / "a.mp4").unlink()
    (part / "a.mp4").symlink_to(tmp_path / "elsewhere" / "x.mp4")
    with pytest.raises(MetadataError, match="resolves outside"):
        metadata.video_path("a.mp4")


def test_the_crops_stage_never_reads_an_escaping_file(tmp_path: Path) -> None:
    """Even with a boxes file ready for it, an escaping link gets no crops: it is refused up front."""
    from tests.conftest import write_boxes, write_video

    part = tmp_path / "raw" / "part"
    part.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    frames = tiny_frames()
    write_video(part / "a.mp4", frames)
    write_video(elsewhere / "x.mp4", frames)
    (part / "link.mp4").symlink_to(Path("../../elsewhere/x.mp4"))
    real = {"label": "REAL", "original": None}
    (part / "metadata.json").write_text(json.dumps({"a.mp4": real, "link.mp4": real}))
    boxes = tmp_path / "bboxes"
    write_boxes(boxes, "a", SIZE, BOX)
    write_boxes(boxes, "link", SIZE, BOX)
    summary = run_crops(part, boxes, tmp_path / "crops" / "part", tmp_path / "reports" / "crops.json")
    ingest_report = json.loads((tmp_path / "index" / "part.ingest.json").read_text())
    [refused] = ingest_report["refused"]
    assert refused.startswith("metadata.json:") and "link.mp4" in refused and "outside" in refused
    assert summary["videos_total"] == 1 and summary["videos_done"] == 1
    assert sorted(p.name for p in (tmp_path / "crops" / "part").iterdir()) == ["a", "index.csv"]


# ------------------------------------------------------------------------------------- the stages


def tiny_frames(count: int = 6) -> list[np.ndarray]:
    return [np.full((SIZE[1], SIZE[0], 3), 60 + 20 * i, np.uint8) for i in range(count)]


def tiny_part(tmp_path: Path, videos: int = 3) -> Path:
    """``videos`` REAL videos (plain frames: the tests give them boxes or a stub detector)."""
    from tests.conftest import write_video

    part = tmp_path / "raw" / "dfdc_train_part_0"
    part.mkdir(parents=True)
    meta = {}
    for i in range(videos):
        write_video(part / f"v{i}.mp4", tiny_frames())
        meta[f"v{i}.mp4"] = {"label": "REAL", "split": "train", "original": None}
    (part / "metadata.json").write_text(json.dumps(meta))
    return part


def run_crops(part: Path, boxes: Path, out: Path, report: Path, workers: int = 1) -> dict[str, Any]:
    from deepfake.stages import crops
    from tests.conftest import ingest_part

    config = crops.Config(sampling=SAMPLING, margin=0.3, workers=workers)
    index = ingest_part(part, part.parent.parent / "index")
    return crops.run(config, crops.Paths(part.name, index, part, boxes=boxes, out=out, report=report))


class StubDetector:
    """One fixed face per frame, so the bboxes tests need no MTCNN."""

    def __init__(self, config: Any, threads: int | None = None) -> None:
        pass

    def detect(self, frames: list[np.ndarray], scale: float = 1.0) -> list[np.ndarray]:
        return [np.array([BOX], np.float32) for _ in frames]


def run_bboxes(part: Path, out: Path, report: Path) -> dict[str, Any]:
    from deepfake.media.faces import Detection, DetectorConfig
    from deepfake.stages import bboxes
    from tests.conftest import ingest_part

    detector = DetectorConfig(
        thresholds=(0.6, 0.7, 0.7),
        min_face_size=20,
        min_face_share=0.0,
        runtime="onnx",
        device="cpu",
        pyramid_factor=0.709,
        nms_thresholds=(0.5, 0.7, 0.7, 0.7),
    )
    config = bboxes.Config(SAMPLING, Detection(detector, 4, 1.0, ((100000.0, 1.0),)), workers=1, torch_threads=1)
    index = ingest_part(part, part.parent.parent / "index")
    return bboxes.run(config, bboxes.Paths(part.name, index, part, out=out, report=report))


def fail_on_call(number: int, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, except that call ``number`` (1-based) raises ENOSPC: a disk filling up midway."""
    calls = [0]

    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == number:
            raise enospc(path)
        return real(path, *args, **kwargs)

    return wrapper


def test_disk_full_midway_through_crops_stops_the_stage_and_keeps_the_previous_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepfake.stages import crops
    from tests.conftest import write_boxes

    part = tiny_part(tmp_path)
    boxes = tmp_path / "bboxes"
    for i in range(3):
        write_boxes(boxes, f"v{i}", SIZE, BOX)
    out, report = tmp_path / "crops" / "dfdc_train_part_0", tmp_path / "reports" / "crops.json"
    first = run_crops(part, boxes, out, report)
    assert first["videos_done"] == 3 and first["crops"] == 9
    before, report_before = snapshot(out), report.read_bytes()

    monkeypatch.setattr(crops, "write_png", fail_on_call(5, crops.write_png))  # in the 2nd video
    with pytest.raises(OSError) as err:
        run_crops(part, boxes, out, report)
    assert err.value.errno == errno.ENOSPC
    assert snapshot(out) == before and report.read_bytes() == report_before
    assert leftovers(out.parent) == []


def test_disk_full_midway_through_bboxes_stops_the_stage_and_keeps_the_previous_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepfake.core import parallel
    from deepfake.stages import bboxes

    monkeypatch.setattr(parallel, "_worker_cache", {})
    monkeypatch.setattr(bboxes, "FaceDetector", StubDetector)
    part = tiny_part(tmp_path)
    out, report = tmp_path / "bboxes" / "dfdc_train_part_0", tmp_path / "reports" / "bboxes.json"
    first = run_bboxes(part, out, report)
    assert first["videos_done"] == 3
    before, report_before = snapshot(out), report.read_bytes()
    assert sorted(before) == ["v0.json", "v1.json", "v2.json"]

    monkeypatch.setattr(bboxes, "save_boxes", fail_on_call(2, bboxes.save_boxes))
    with pytest.raises(OSError) as err:
        run_bboxes(part, out, report)
    assert err.value.errno == errno.ENOSPC and "v1.json" in err.value.filename
    assert snapshot(out) == before and report.read_bytes() == report_before
    assert leftovers(out.parent) == []


def test_a_boxes_file_with_duplicate_keys_skips_only_its_videos(tmp_path: Path) -> None:
    from tests.conftest import write_boxes

    part = tiny_part(tmp_path)
    boxes = tmp_path / "bboxes"
    write_boxes(boxes, "v0", SIZE, BOX)
    write_boxes(boxes, "v1", SIZE, BOX, '{"format": 1, "format": 1, "width": 160, "height": 96, "frames": {}}')
    write_boxes(boxes, "v2", SIZE, BOX)
    summary = run_crops(part, boxes, tmp_path / "crops" / "p", tmp_path / "crops.json")
    assert summary["videos_done"] == 2
    assert [s["video"] for s in summary["skipped"]] == ["v1.mp4"]
    assert (
        "BoxesFileError" in summary["skipped"][0]["reason"]
        and "duplicate key 'format'" in summary["skipped"][0]["reason"]
    )


# ------------------------------------------------------------------------------ atomic_dir + report


def previous_output(tmp_path: Path) -> tuple[Path, Path]:
    out, report = tmp_path / "out" / "part", tmp_path / "reports" / "stage.json"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("old")
    report.parent.mkdir()
    report.write_text('{"old": true}\n')
    return out, report


def test_a_failed_final_rename_keeps_the_previous_folder_and_leaves_no_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _ = previous_output(tmp_path)
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(src).name == ".part.partial":
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="Read-only"), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert snapshot(out) == {"old.txt": b"old"}
    assert leftovers(out.parent) == []


@pytest.mark.parametrize("failing", ["report write", "report rename", "folder rename", "body"])
def test_stage_report_outputs_commit_the_folder_and_the_report_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    out, report_path = previous_output(tmp_path)
    real_replace, real_fdopen = os.replace, os.fdopen

    def replace(src: Any, dst: Any) -> None:
        if failing == "report rename" and Path(dst) == report_path and not str(src).endswith(".previous"):
            raise enospc(dst)  # the new report's rename; putting the old one back works
        if failing == "folder rename" and Path(src).name == ".part.partial":
            raise enospc(dst)
        real_replace(src, dst)

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        if failing == "report write":
            os.close(fd)
            raise enospc(report_path)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fdopen", fdopen)
    report = StageReport("stage", "part")
    with pytest.raises(OSError) as err, report.outputs(out, report_path) as tmp:
        (tmp / "new.txt").write_text("new")
        report.add(VideoResult("a.mp4"))
        if failing == "body":
            raise enospc(tmp / "new.txt")
    assert err.value.errno == errno.ENOSPC
    assert snapshot(out) == {"old.txt": b"old"} and report_path.read_text() == '{"old": true}\n'
    assert leftovers(out.parent) == [] and sorted(p.name for p in report_path.parent.iterdir()) == ["stage.json"]
    assert report.summary is None


def test_stage_report_outputs_on_success(tmp_path: Path) -> None:
    out, report_path = previous_output(tmp_path)
    report = StageReport("stage", "part")
    with report.outputs(out, report_path) as tmp:
        (tmp / "new.txt").write_text("new")
        report.add(VideoResult("a.mp4"))
    assert snapshot(out) == {"new.txt": b"new"}
    assert report.summary is not None and json.loads(report_path.read_text()) == report.summary
    assert report.summary["videos_done"] == 1
    assert leftovers(out.parent) == [] and sorted(p.name for p in report_path.parent.iterdir()) == ["stage.json"]


def test_a_run_killed_between_the_two_renames_gets_its_previous_folder_back(tmp_path: Path) -> None:
    out, _ = previous_output(tmp_path)
    out.rename(out.parent / ".part.previous")  # killed after moving the old folder aside
    (out.parent / ".part.partial").mkdir()
    with pytest.raises(RuntimeError), atomic_dir(out):
        assert snapshot(out) == {"old.txt": b"old"}  # restored before the new run starts
        raise RuntimeError("stop")
    assert snapshot(out) == {"old.txt": b"old"} and leftovers(out.parent) == []


# ---------------------------------------------------------------------------------------- the CLI


def raising(err: BaseException) -> Callable[[], None]:
    def main() -> None:
        raise err

    return main


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_run_stage_reports_an_environment_fault_in_one_line_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from deepfake.core.command import run_stage

    monkeypatch.setattr(sys, "argv", ["stages/crops.py"])
    with pytest.raises(SystemExit) as exit_:
        run_stage(raising(enospc("/data/crops/x.png")))
    assert exit_.value.code == 1
    assert error_lines(caplog) == [
        "error: environment fault: No space left on device: /data/crops/x.png (the previous output is kept)"
    ]


def test_run_stage_reports_a_user_error_in_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from deepfake.core.command import run_stage

    monkeypatch.setattr(sys, "argv", ["stages/crops.py"])
    with pytest.raises(SystemExit) as exit_:
        run_stage(raising(MetadataError("raw/p/metadata.json: duplicate key 'a.mp4'\n(second line)")))
    assert exit_.value.code == 2
    assert error_lines(caplog) == ["error: MetadataError: raw/p/metadata.json: duplicate key 'a.mp4'; (second line)"]


@pytest.mark.parametrize(
    "err",
    [ValueError("a bug"), KeyError("k"), FileNotFoundError(errno.ENOENT, "No such file", "x"), RuntimeError("bug")],
    ids=["ValueError", "KeyError", "FileNotFoundError", "RuntimeError"],
)
def test_run_stage_lets_a_bug_propagate_with_its_traceback(monkeypatch: pytest.MonkeyPatch, err: Exception) -> None:
    from deepfake.core.command import run_stage

    monkeypatch.setattr(sys, "argv", ["stages/crops.py"])
    with pytest.raises(type(err)):
        run_stage(raising(err))


def test_run_stage_verbose_reraises_for_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepfake.core.command import run_stage

    monkeypatch.setattr(sys, "argv", ["stages/crops.py", "-v"])
    with pytest.raises(OSError):
        run_stage(raising(enospc()))
    with pytest.raises(MetadataError):
        run_stage(raising(MetadataError("bad")))


def test_the_cli_main_maps_failures_to_exit_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepfake import cli

    class Parser:  # a command whose function fails with ``failure``
        failure: BaseException

        def parse_args(self, argv: list[str] | None) -> argparse.Namespace:
            return argparse.Namespace(verbose="-v" in (argv or []), func=lambda args: raising(self.failure)())

    parser = Parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.failure = enospc()
    assert cli.main([]) == 1
    parser.failure = ParamsError("params.yaml: 'crops.margin' is missing")
    assert cli.main([]) == 2
    with pytest.raises(ParamsError):
        cli.main(["-v"])
    parser.failure = ValueError("a bug")
    with pytest.raises(ValueError):
        cli.main([])


def test_a_stage_script_prints_exactly_one_error_line(tmp_path: Path) -> None:
    code = (
        "import errno, sys\n"
        "from deepfake.core.command import run_stage, setup_logging\n"
        "setup_logging()\n"
        "def main():\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device', sys.argv[1])\n"
        "run_stage(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out.png")], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: environment fault: No space left on device: {tmp_path / 'out.png'} (the previous output is kept)"
    ]
