"""The Dask executor: the same outputs as local work, a killed worker's task rerun, the same error policy.

One LocalCluster (two worker processes on 127.0.0.1) serves the module; the stage runs against its
address as it would against a remote scheduler. Module-level imports stay light: the workers unpickle
this module's functions and import it again.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deepfake.core.errors import ParamsError
from deepfake.core.parallel import ExecutorConfig, map_videos
from deepfake.core.report import DONE, SKIPPED
from deepfake.media.video import FrameSampling
from deepfake.stages import crops

SIZE = (160, 96)
SAMPLING = FrameSampling(stride=2, max_frames=1200, max_pixels=10**7)
RETRIES = 2


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    import dask  # a requirement: a missing install fails here rather than skipping
    import distributed

    with dask.config.set({"distributed.scheduler.allowed-failures": RETRIES}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    with cluster:
        yield cluster.scheduler_address


def frames(seed: int, count: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (SIZE[1], SIZE[0], 3), np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(count)]


@pytest.fixture(scope="module")
def part(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A DFDC part: three reals, a fake of each, one file that is no video; boxes written directly."""
    from tests.conftest import ingest_part, write_video

    root = tmp_path_factory.mktemp("dask")
    folder = root / "raw" / "dfdc_train_part_0"
    folder.mkdir(parents=True)
    boxes = root / "bboxes"
    boxes.mkdir()
    meta = {}
    for i in range(3):
        write_video(folder / f"real{i}.mp4", frames(i))
        write_video(folder / f"fake{i}.mp4", frames(10 + i))
        meta[f"real{i}.mp4"] = {"label": "REAL", "split": "train", "original": None}
        meta[f"fake{i}.mp4"] = {"label": "FAKE", "split": "train", "original": f"real{i}.mp4"}
        faces = {str(f): [[30.0 + i, 20.0, 100.0, 80.0, 0.99], [5.0, 5.0, 40.0, 40.0, 0.9]] for f in range(0, 8, 2)}
        data = {"format": 1, "video": f"real{i}.mp4", "width": SIZE[0], "height": SIZE[1], "detection_scale": 1.0}
        (boxes / f"real{i}.json").write_text(json.dumps({**data, "frames": faces}))
    (folder / "broken.mp4").write_text("not a video\n")
    meta["broken.mp4"] = {"label": "REAL", "split": "train", "original": None}
    (boxes / "broken.json").write_text((boxes / "real0.json").read_text())
    (folder / "metadata.json").write_text(json.dumps(meta))
    index = ingest_part(folder, root / "index")
    return {"root": root, "folder": folder, "index": index, "boxes": boxes}


def run_crops(part: dict, out: Path, executor: ExecutorConfig, workers: int = 2) -> dict:
    config = crops.Config(sampling=SAMPLING, margin=0.3, workers=workers, executor=executor)
    paths = crops.Paths(part["folder"].name, part["index"], part["folder"], part["boxes"], out, out.parent / "r.json")
    return crops.run(config, paths)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def outcome(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "seconds"}


@pytest.fixture(scope="module")
def serial(part: dict) -> dict:
    out = part["root"] / "serial" / "crops"
    report = run_crops(part, out, ExecutorConfig(), workers=1)
    assert report["videos_done"] == 6 and report["videos_skipped"] == 1
    return {"files": tree(out), "report": outcome(report)}


def test_threads_and_dask_write_the_same_bytes_as_serial(part: dict, serial: dict, scheduler: str) -> None:
    for name, executor in (("threads", ExecutorConfig()), ("dask", ExecutorConfig("dask", scheduler, RETRIES))):
        out = part["root"] / name / "crops"
        report = run_crops(part, out, executor)
        assert tree(out) == serial["files"], name
        assert outcome(report) == serial["report"], name
        assert not any(p.name.startswith(".") for p in out.parent.iterdir()), name  # no temporary left


def crash_once(task: crops.CropsTask) -> object:
    """crop_video, except that the worker cropping real1 dies the first time (a marker file remembers)."""
    marker = task.out.parent.parent / f"{task.entry.stem}.killed"
    if task.entry.stem == "real1" and not marker.exists():
        marker.touch()
        os._exit(1)  # the worker process dies mid-task, as on an out-of-memory kill
    return crops.crop_video(task)


def test_a_killed_workers_task_is_rerun_and_the_output_is_complete(
    part: dict, serial: dict, scheduler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crops, "crop_video", crash_once)
    out = part["root"] / "killed" / "crops"
    report = run_crops(part, out, ExecutorConfig("dask", scheduler, RETRIES))
    assert (out.parent / "real1.killed").exists()
    assert tree(out) == serial["files"]
    assert outcome(report) == serial["report"]


def per_video(kind: str) -> object:
    from tests.test_failures import per_video as failing

    return failing(kind)


def test_the_error_policy_holds_in_threads() -> None:
    results = map_videos(per_video, [("a", "a"), ("bad", "input"), ("b", "b")], 2, "t", pool="threads")
    assert [r.status for r in results] == [DONE, SKIPPED, DONE]
    with pytest.raises(ValueError, match="a bug"):
        map_videos(per_video, [("a", "a"), ("v", "value"), ("b", "b")], 2, "t", pool="threads")


def test_the_error_policy_holds_on_dask_workers(scheduler: str) -> None:
    from tests.test_failures import enospc

    executor = ExecutorConfig("dask", scheduler, RETRIES)
    results = map_videos(per_video, [("a", "a"), ("bad", "input"), ("b", "b")], 2, "t", executor=executor)
    assert [r.status for r in results] == [DONE, SKIPPED, DONE] and [r.video for r in results] == ["a", "bad", "b"]
    assert results[1].reason == "VideoError: bad.mp4: cannot be opened as a video"
    with pytest.raises(ValueError, match="a bug"):
        map_videos(per_video, [("a", "a"), ("v", "value")], 2, "t", executor=executor)
    with pytest.raises(OSError) as err:
        map_videos(per_video, [("a", "a"), ("n", "nospace")], 2, "t", executor=executor)
    assert err.value.errno == errno.ENOSPC and err.value.filename == enospc().filename


def test_the_executor_section_is_validated() -> None:
    from tests.conftest import as_params, tiny_params

    params = as_params(tiny_params(Path("/tmp"), executor__kind="dask", executor__scheduler="tcp://10.0.0.5:8786"))
    assert crops.Config.from_params(params).executor == ExecutorConfig("dask", "tcp://10.0.0.5:8786", 2)
    assert replace(crops.Config.from_params(as_params(tiny_params(Path("/tmp")))).executor) == ExecutorConfig()
    with pytest.raises(ParamsError) as err:
        as_params(tiny_params(Path("/tmp"), executor__kind="ray", executor__scheduler="10.0.0.5:8786"))
    lines = str(err.value).splitlines()
    assert any(line.endswith("executor.kind: Input should be 'local' or 'dask' (got 'ray')") for line in lines)
    assert any("executor.scheduler: must be a Dask scheduler address" in line for line in lines)


def test_predict_on_dask_workers_gives_the_in_process_records(
    scheduler: str, models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    """deepfake predict with executor.kind dask: videos are prepared on the cluster, scored here, same records."""
    from deepfake.apps import predict as infer
    from deepfake.backends.base import create_backend

    backend = create_backend("onnx", models_root["store"], models_root["params"])
    config = infer.PredictConfig.from_params(models_root["params"])
    videos = [hostile_part / n for n in ("reala.mp4", "fakea.mp4", "notvideo.mp4")]
    records = {}
    assert config.workers == 0 and config.executor == ExecutorConfig()  # in-process: the tests' params
    on_dask = replace(config, executor=ExecutorConfig("dask", scheduler, 2), workers=2)
    for name, run_config in (("inline", config), ("dask", on_dask)):
        out = infer.Outputs(tmp_path / f"{name}.csv", tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl")
        summary = infer.predict_videos(videos, backend, run_config, out)
        assert summary["scored"] == 2
        records[name] = json.loads(out.json.read_text())["videos"]
    for inline, dask in zip(records["inline"], records["dask"], strict=True):
        for record in (inline, dask):
            record.pop("ms", None)
            (record.get("sampling") or {}).pop("threads", None)
        assert inline == dask


def test_freed_memory_is_reused_not_faulted_in_again() -> None:
    """``reuse_freed_memory`` (glibc's mallopt): a run's worth of frame-sized arrays, allocated together and freed
    together over and over (a detector batch, an ONNX Runtime run without its arena), is faulted in once, where
    by default glibc hands the freed heap back and every run faults its pages in and zeroes them again.
    Measured in fresh processes (the setting is process-wide and sticks)."""
    import subprocess
    import sys

    script = """
import resource, sys
import numpy as np
from deepfake.core.parallel import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
def run():
    arrays = [np.ones((1080, 1920, 3), np.uint8) for _ in range(6)]  # six 6 MB arrays alive at once
    del arrays
run()  # the first run is faulted in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    run()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {}
    for mode in ("default", "reuse"):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        applied, count = done.stdout.split()
        faults[mode] = int(count)
        if mode == "reuse":
            assert applied == "True"  # Linux with glibc, as CI runs
    run_pages = 6 * 1080 * 1920 * 3 // 4096
    assert faults["reuse"] < run_pages < faults["default"], faults
