"""Benchmark: peak memory of `deepfake predict` on a long, high-resolution video (figures for docs/reliability.md).

Writes one synthetic talking-head video (a face photo drifting over a static background) of the given
length and size, then runs predict in a fresh process per setting and prints the process's peak RSS
next to the peak of a process that only loads the same models (the baseline), and the peak of the
largest of its worker processes (``predict.workers``: decoding and detection happen there). Run from the repository
root after `dvc repro` (or `dvc pull export`):

    python scripts/predict_memory.py --seconds 60 --width 1920 --height 1080 --frames 32 128
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from deepfake.backends.base import BACKENDS
from deepfake.core.errors import UserError, describe_user_error
from deepfake.core.params import validate_params

FACES = Path(__file__).resolve().parents[1] / "src" / "deepfake" / "assets" / "faces"

CHILD = """
import json, resource, sys, time
from pathlib import Path
from deepfake.apps.predict import Outputs, PredictConfig, predict_videos
from deepfake.backends.base import create_backend
from deepfake.core.errors import UserError, describe_user_error
from deepfake.core.params import validate_params
from deepfake.modeling.store import ModelStore


def run(raw, models, backend_name, videos):
    params = validate_params(raw, "params (predict_memory.py child)")
    backend = create_backend(backend_name, ModelStore(models), params)
    config = PredictConfig.from_params(params)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    started = time.perf_counter()
    records = []
    if videos:
        out = videos[0].parent
        predict_videos(videos, backend, config, Outputs(out / "p.csv", out / "p.json", out / "p.jsonl"))
        records = json.loads((out / "p.json").read_text())["videos"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024  # the largest worker process
    return {"loaded_mb": loaded, "peak_mb": peak, "worker_peak_mb": workers, "seconds": time.perf_counter() - started,
            "status": [r["status"] for r in records], "crops": [r.get("crops") for r in records]}


try:
    figures = run(json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], [Path(v) for v in sys.argv[4:]])
except UserError as err:
    print(describe_user_error(err), file=sys.stderr)
    sys.exit(2)
print(json.dumps(figures))
"""


def write_video(path: Path, seconds: float, fps: int, width: int, height: int) -> int:
    photo = cv2.imread(str(sorted(FACES.glob("*.jpg"))[0]), cv2.IMREAD_COLOR)
    scale = 0.6 * height / photo.shape[0]
    background = np.full((height, width, 3), 120, np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    frames = int(seconds * fps)
    for i in range(frames):
        x = width / 2 - photo.shape[1] * scale / 2 + 40 * np.sin(i / fps)
        matrix = np.float32([[scale, 0, x], [0, scale, height * 0.2]])
        frame = cv2.warpAffine(photo, matrix, (width, height), dst=background.copy(), borderMode=cv2.BORDER_TRANSPARENT)
        writer.write(frame)
    writer.release()
    return frames


def with_frames(params: dict, frames: int) -> dict:
    """The raw params with ``predict.frames`` set to ``frames``."""
    setting = copy.deepcopy(params)
    setting["predict"]["frames"] = frames
    return setting


def measure(params: dict, models: Path, backend: str, videos: list[Path]) -> dict:
    """The child's figures; ``params`` is the raw params dict, validated in the child as predict validates it."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(params), str(models), backend, *map(str, videos)],
        capture_output=True,
        text=True,
    )
    if result.returncode == 2:  # a user error (models missing, a bad video folder): its one line, exit 2
        print(result.stderr.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        result.check_returncode()
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--backend", default="onnx", choices=BACKENDS)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument(
        "--frames", type=int, nargs="+", default=[32, 128, 256], help="predict.frames settings to measure"
    )
    args = parser.parse_args()
    params = yaml.safe_load(args.params.read_text())
    validate_params(params, str(args.params))  # a bad params file or setting is refused up front, not in a child
    for frames in args.frames:
        validate_params(with_frames(params, frames), f"{args.params} with predict.frames: {frames}")
    baseline = measure(params, args.models, args.backend, [])  # first: missing models fail before the video
    with tempfile.TemporaryDirectory() as scratch:
        video = Path(scratch) / "long.mp4"
        started = time.perf_counter()
        count = write_video(video, args.seconds, args.fps, args.width, args.height)
        print(
            f"video: {args.width}x{args.height}, {count} frames ({args.seconds:g} s at {args.fps} fps), "
            f"{video.stat().st_size / 2**20:.1f} MiB, written in {time.perf_counter() - started:.0f} s"
        )
        print(f"models loaded, no video: peak RSS {baseline['peak_mb']} MB")
        print(
            "| predict.frames | predict_detector.batch_size | peak RSS (MB) | over baseline (MB) | largest worker (MB) "
            "| status | crops | s |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for frames in args.frames:
            figures = measure(with_frames(params, frames), args.models, args.backend, [video])
            print(
                f"| {frames} | {params['predict_detector']['batch_size']} | {figures['peak_mb']} | "
                f"{figures['peak_mb'] - baseline['peak_mb']} | {figures['worker_peak_mb']} | "
                f"{figures['status'][0]} | {figures['crops'][0]} | "
                f"{figures['seconds']:.1f} |"
            )


if __name__ == "__main__":
    try:
        main()
    except UserError as err:  # bad params or inputs: one line, exit 2, as the deepfake commands report them
        print(describe_user_error(err), file=sys.stderr)
        sys.exit(2)
