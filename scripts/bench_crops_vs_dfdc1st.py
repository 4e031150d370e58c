"""Crops: our crops stage against DFDC-1st's crop extraction, per crop, on the same videos and boxes.

The baseline re-implements what selimsef/dfdc_deepfake_challenge ``preprocessing/extract_crops.py``
does per video (written from its description, not copied):
  1. read the video's boxes JSON (frame index -> boxes);
  2. open the video with ``cv2.VideoCapture``, read its header's frame count, and for every frame
     ``grab()`` it, ``retrieve()`` only every stride-th one (it used 10; here ``video.frame_stride``);
  3. for each box of a retrieved frame: widen it by a third of its width and height on each side
     (integer division), clamp the top-left at 0, slice the frame (numpy clamps the bottom-right);
  4. ``os.makedirs`` the video's folder and ``cv2.imwrite`` each crop as ``<frame>_<face>.png``
     (OpenCV's default PNG settings), straight to its final name;
  5. the videos are spread over a ``multiprocessing.Pool(cpu_count())`` (fork on Linux), unordered.
Its boxes were detected at half resolution (it doubles them); ours are full-resolution, so the
baseline uses them as they are. Our stage also validates the boxes file and the frame size, reads
the dataset index, writes ``index.csv`` and its report, and swaps its output folder in atomically.

Both sides get the same videos (reals and fakes; a fake is cut with its original's boxes), the same
stride and about the same margin (``crops.margin``, 0.3333, against integer thirds). Figures: wall
time per crop, best of ``--repeat`` runs (ours and theirs interleaved) after a warm-up, serial
(1 worker) and parallel (``--workers``, default the core count: our stage in threads, the baseline
in its process pool).

    python scripts/bench_crops_vs_dfdc1st.py                  # 640x360 sample + the same upscaled to 1080p
    python scripts/bench_crops_vs_dfdc1st.py --as-before      # our stage as it was: processes, atomic writes

Prints figures only.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
from dfdc1st_crops_baseline import baseline_video, run_baseline  # scripts/ (this script's folder)

from deepfake.core.params import load_params
from deepfake.core.vocabulary import REAL
from deepfake.media.video import FrameSampling, iter_sampled_frames
from deepfake.stages import crops, ingest

# ---- inputs ---------------------------------------------------------------------------------------


def baseline_jobs(folder: Path, boxes: Path, stride: int) -> list[tuple[str, str, str, int]]:
    """(video, its original's boxes, stem, stride) for every video of a DFDC part with boxes."""
    meta = json.loads((folder / "metadata.json").read_text())
    jobs = []
    for name, entry in sorted(meta.items()):
        box_file = boxes / f"{Path(entry.get('original') or name).stem}.json"
        if box_file.is_file() and (folder / name).is_file():
            jobs.append((str(folder / name), str(box_file), Path(name).stem, stride))
    return jobs


def upscale(folder: Path, boxes: Path, out: Path, width: int, height: int, videos: int) -> tuple[Path, Path]:
    """The first ``videos`` REAL videos of the part and their fakes, scaled to ``width x height`` H.264
    (libx264, as DFDC), with their boxes scaled to match; returns (part folder, boxes folder)."""
    meta = json.loads((folder / "metadata.json").read_text())
    reals = sorted(n for n, e in meta.items() if e["label"] == REAL and (boxes / f"{Path(n).stem}.json").is_file())
    reals = reals[:videos]
    chosen = {n: e for n, e in meta.items() if n in reals or e.get("original") in reals}
    part, box_out = out / folder.name, out / "boxes"
    part.mkdir(parents=True)
    box_out.mkdir()
    everything = FrameSampling(stride=1, max_frames=100_000, max_pixels=10**9)
    for name in chosen:
        clip = [frame for _, frame in iter_sampled_frames(folder / name, everything)]
        with av.open(str(part / name), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(15))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            for image in clip:
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            container.mux(stream.encode())
    for name in reals:
        data = json.loads((boxes / f"{Path(name).stem}.json").read_text())
        scale = (width / data["width"], height / data["height"]) * 2
        data["frames"] = {
            key: [[round(v * s, 2) for v, s in zip(b[:4], scale, strict=True)] + b[4:] for b in rows]
            for key, rows in data["frames"].items()
        }
        data["width"], data["height"] = width, height
        (box_out / f"{Path(name).stem}.json").write_text(json.dumps(data))
    (part / "metadata.json").write_text(json.dumps(chosen))
    return part, box_out


# ---- timing ---------------------------------------------------------------------------------------


def best_of(repeat: int, first: Callable[[], int], second: Callable[[], int]) -> list[tuple[float, int]]:
    """Best wall time and count of each, runs interleaved (a busy machine slows both alike)."""
    first(), second()  # warm-up: page cache, imports, OpenCV's first-call costs
    best = [(float("inf"), 0), (float("inf"), 0)]
    for _ in range(repeat):
        for i, run in enumerate((first, second)):
            start = time.perf_counter()
            count = run()
            best[i] = min(best[i], (time.perf_counter() - start, count))
    return best


def run_ours(config: crops.Config, folder: Path, boxes: Path, index: Path, out: Path) -> int:
    shutil.rmtree(out, ignore_errors=True)
    paths = crops.Paths(folder.name, index, folder, boxes, out, out.parent / "ours.json")
    return int(crops.run(config, paths)["crops"])


def run_theirs(jobs: list[tuple[str, str, str, int]], out: Path, workers: int) -> int:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return run_baseline(jobs, out, workers)


def ours(config: crops.Config, folder: Path, boxes: Path, index: Path, out: Path) -> Callable[[], int]:
    return functools.partial(run_ours, config, folder, boxes, index, out)


def theirs(jobs: list[tuple[str, str, str, int]], out: Path, workers: int) -> Callable[[], int]:
    return functools.partial(run_theirs, jobs, out, workers)


def peak_memory_mb(command: list[str]) -> tuple[float, float]:
    """Peak resident memory (MB) of ``command`` run as a fresh process: the largest single process and the
    whole process tree (a pool's workers included), sampled every 10 ms."""
    import psutil

    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    watched = psutil.Process(child.pid)
    largest = total = 0
    while child.poll() is None:
        try:
            sizes = [p.memory_info().rss for p in (watched, *watched.children(recursive=True))]
        except psutil.Error:  # a process exited between listing and reading it
            continue
        largest, total = max(largest, max(sizes)), max(total, sum(sizes))
        time.sleep(0.01)
    if child.returncode:
        raise RuntimeError(f"{command}: exit code {child.returncode}")
    return largest / 2**20, total / 2**20


def bench(label: str, folder: Path, boxes: Path, work: Path, config: crops.Config, args: argparse.Namespace) -> None:
    index = work / f"{label}.csv"
    ingest.run(ingest.Config(dataset=folder.name, layout="dfdc"), ingest.Paths(folder, index, work / "ingest.json"))
    jobs = baseline_jobs(folder, boxes, config.sampling.stride)
    size = "x".join(str(v) for v in cv2.imread(str(next(iter(_first_crop(folder, boxes, config))))).shape[1::-1])
    print(f"\n{label}: {len(jobs)} videos, frame stride {config.sampling.stride}, e.g. a {size} crop")
    print(f"{'workers':>8} {'ours ms/crop':>13} {'DFDC-1st ms/crop':>17} {'crops':>6} {'speed ours/theirs':>18}")
    for workers in sorted({1, args.workers}):
        (mine, n_mine), (base, n_base) = best_of(
            args.repeat,
            ours(_with(config, workers), folder, boxes, index, work / "ours" / label),
            theirs(jobs, work / "theirs" / label, workers),
        )
        print(
            f"{workers:>8} {1000 * mine / n_mine:>13.2f} {1000 * base / n_base:>17.2f} {n_mine:>3}/{n_base:<3}"
            f"{(base / n_base) / (mine / n_mine):>17.2f}x"
        )
    # memory: each side as a fresh process, as it runs for real (our stage script as DVC starts it, with
    # crops.workers from --params; their extraction with only OpenCV imported, --workers processes)
    out = work / "memory" / label
    shutil.rmtree(out.parent, ignore_errors=True)
    stage = [sys.executable, "-P", "stages/crops.py", "--params", str(args.params), "--dataset", folder.name]
    stage += ["--index", str(index), "--root", str(folder), "--boxes", str(boxes), "--out", str(out / "ours")]
    mine = peak_memory_mb([*stage, "--report", str(out / "ours.json")])
    jobs_file = out / "jobs.json"
    jobs_file.write_text(json.dumps(jobs))
    (out / "theirs").mkdir()
    baseline = Path(__file__).with_name("dfdc1st_crops_baseline.py")
    base = peak_memory_mb([sys.executable, str(baseline), str(jobs_file), str(out / "theirs"), str(args.workers)])
    print(
        f"peak memory, fresh processes (largest process / all processes, MB): ours (crops.workers "
        f"{config.workers}) {mine[0]:.0f} / {mine[1]:.0f}, "
        f"DFDC-1st ({args.workers} workers) {base[0]:.0f} / {base[1]:.0f}"
    )


def _with(config: crops.Config, workers: int) -> crops.Config:
    return crops.Config(config.sampling, config.margin, workers, config.executor)


def _first_crop(folder: Path, boxes: Path, config: crops.Config) -> list[Path]:
    """One crop of the part, to print its size (written with the baseline into a scratch folder)."""
    scratch = Path(tempfile.mkdtemp())
    baseline_video(baseline_jobs(folder, boxes, config.sampling.stride)[0], str(scratch))
    return sorted(scratch.rglob("*.png"))[:1]


def as_before() -> None:
    """Our stage as it was before the speed-up: spawned worker processes and one atomic write per crop."""
    from deepfake.core import fileio

    real_map = crops.map_videos

    def processes(*args: Any, **kwargs: Any) -> Any:
        return real_map(*args, **{**kwargs, "pool": "processes"})

    crops.map_videos = processes  # type: ignore[assignment]
    crops.write_png = fileio.write_png_atomic  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--videos", type=Path, default=Path("data/raw/dfdc_train_part_0"), help="a DFDC part")
    parser.add_argument("--boxes", type=Path, default=Path("data/bboxes/dfdc_train_part_0"), help="its boxes")
    parser.add_argument("--hd-videos", type=int, default=3, help="REAL videos (with their fakes) upscaled to 1080p")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--as-before", action="store_true", help="our stage with processes and atomic writes")
    args = parser.parse_args()
    if args.as_before:
        as_before()
    params = load_params(args.params)
    config = crops.Config.from_params(params)
    state = "as before (processes, atomic writes)" if args.as_before else "now"
    print(f"OpenCV {cv2.__version__}, PyAV {av.__version__}, {os.cpu_count()} cores; our stage: {state}")
    with tempfile.TemporaryDirectory(prefix="bench_crops_") as tmp:
        work = Path(tmp)
        bench("640x360", args.videos, args.boxes, work, config, args)
        folder, boxes = upscale(args.videos, args.boxes, work / "hd", 1920, 1080, args.hd_videos)
        bench("1920x1080", folder, boxes, work, config, args)


if __name__ == "__main__":
    main()
