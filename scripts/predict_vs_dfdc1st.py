"""``deepfake predict`` and the DFDC winner's own inference, side by side on the same videos and machine.

The winner's side imports ``kernel_utils`` (``VideoReader``, ``FaceExtractor``, ``predict_on_video_set``,
``confident_strategy``) and ``training.zoo.classifiers.DeepFakeClassifier`` from ``--winner``, a clone of
https://github.com/selimsef/dfdc_deepfake_challenge, and calls them as their ``predict_folder.py`` does
(32 frames per video, their MTCNN at thresholds 0.7/0.8/0.8 on halved frames, six threads), on the CPU in
float32, with their classifier built on ``--encoder`` at ``--size`` px and random weights. Their files are
never edited or copied: the run-time shims are those of ``scripts/dfdc1st_reference.py`` (their "cuda"
mapped to the CPU, ``.half()`` a no-op, timm's renamed encoder), plus two wrappers that only watch: the
frame indices their reader returns and the boxes their detector returns, per video.

Our side is ``deepfake predict VIDEOS --models MODELS --backend onnx`` from an empty folder (the package's
settings over the packaged defaults, or ``--params``). Each side runs in a fresh process per run, alternated
(theirs first in odd runs, ours first in even ones). Seconds per video are in-process, after the models are
built: theirs around ``predict_on_video_set``; ours the run's own ``summary.seconds`` (worker start
included). The wall time of each process is printed too.

Then, per video: sampled frames with a face on each side, the winner's face frames that ours misses (the
nearest of our sampled frames has no face: the two samplers pick frames a frame or two apart), and with
``--reference``: our prediction detector on exactly the winner's face frames ("on theirs": how many of
them it finds a face in), and the recall of our boxes against facenet-pytorch's MTCNN at full resolution
(its default thresholds, faces from 20 px) on every frame we sampled (IoU >= 0.5). And the decode floor:
the sampled frames decoded and converted in one process, nothing else.

    git clone https://github.com/selimsef/dfdc_deepfake_challenge /tmp/winner
    python scripts/make_bench_inputs.py --videos data/raw/dfdc_train_part_0 --out /tmp/bench
    python scripts/predict_vs_dfdc1st.py --winner /tmp/winner --videos /tmp/bench/videos_1080p \\
        --models /tmp/bench/models --runs 3 --reference --out /tmp/side_by_side.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
IOU_FOUND = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("both", "theirs"), default="both", help=argparse.SUPPRESS)
    parser.add_argument("--winner", type=Path, required=True, help="a clone of selimsef/dfdc_deepfake_challenge")
    parser.add_argument("--videos", type=Path, required=True, help="a folder of .mp4 videos")
    parser.add_argument("--models", type=Path, help="our model package (make_bench_inputs.py's models/)")
    parser.add_argument("--params", type=Path, help="our params (default: the package's settings)")
    parser.add_argument("--encoder", default="tf_efficientnet_b0", help="their classifier's timm encoder")
    parser.add_argument("--size", type=int, default=224, help="their model input side (predict_folder.py: 380)")
    parser.add_argument("--workers", type=int, default=6, help="their threads (predict_folder.py: 6)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="recall against full-resolution MTCNN")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    return parser.parse_args(argv)


# ---- their side (a child process) ------------------------------------------------------------------------


def run_theirs(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(SCRIPTS))
    from dfdc1st_reference import cpu_fp32, import_winner

    winner = args.winner.resolve()
    import_winner(winner, args.encoder)
    import kernel_utils
    from training.zoo.classifiers import DeepFakeClassifier

    videos = sorted(p.name for p in args.videos.iterdir() if p.suffix == ".mp4")
    with cpu_fp32():
        torch.manual_seed(0)
        model = DeepFakeClassifier(encoder="tf_efficientnet_b7_ns").to("cuda").eval().half()  # the replaced entry
        reader = kernel_utils.VideoReader()
        extractor = kernel_utils.FaceExtractor(lambda path: reader.read_frames(path, num_frames=32))
        seen = _watch(extractor)
        started = time.perf_counter()
        predictions = kernel_utils.predict_on_video_set(
            face_extractor=extractor,
            input_size=args.size,
            models=[model],
            strategy=kernel_utils.confident_strategy,
            frames_per_video=32,
            videos=videos,
            num_workers=args.workers,
            test_dir=str(args.videos),
        )
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "videos": {
            name: {"probability": float(p), **seen.get(name, {})} for name, p in zip(videos, predictions, strict=True)
        },
    }


def _watch(extractor: Any) -> dict[str, dict[str, Any]]:
    """Record, per video, the frame indices their reader returned and the boxes their detector found in each
    (their code calls both from the thread that handles the video); nothing they compute is changed."""
    local, seen = threading.local(), {}
    read, detect, process = extractor.video_read_fn, extractor.detector.detect, extractor.process_video

    def read_fn(path: str) -> Any:
        result = read(path)
        local.indices = [int(i) for i in result[1]] if result is not None else []
        return result

    def detect_fn(image: Any, *args: Any, **kwargs: Any) -> Any:
        boxes, probs = detect(image, *args, **kwargs)
        local.boxes.append(0 if boxes is None else len(boxes))
        return boxes, probs

    def process_video(path: str) -> Any:
        local.indices, local.boxes = [], []
        result = process(path)
        faces = [index for index, count in zip(local.indices, local.boxes, strict=True) if count]
        seen[Path(path).name] = {"sampled": local.indices, "face_frames": faces}
        return result

    extractor.video_read_fn, extractor.detector.detect, extractor.process_video = read_fn, detect_fn, process_video
    return seen


# ---- our side ----------------------------------------------------------------------------------------


def run_ours(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    out = scratch / "ours.json"
    command = [sys.executable, "-m", "deepfake.cli"]
    if args.params:
        command += ["--params", str(args.params.resolve())]
    command += ["predict", str(args.videos.resolve()), "--models", str(args.models.resolve()), "--backend", "onnx"]
    command += ["-q", "--json", str(out), "--csv", str(scratch / "ours.csv")]
    with tempfile.TemporaryDirectory() as empty:
        subprocess.run(command, cwd=empty, check=True)
    result = json.loads(out.read_text())
    videos = {}
    for record in result["videos"]:
        frames = record.get("frames", [])
        videos[record["filename"]] = {
            "probability": record["probability"],
            "status": record["status"],
            "sampled": [f["frame"] for f in frames],
            "face_frames": [f["frame"] for f in frames if f["faces"]],
            "boxes": {str(f["frame"]): [face["box"] for face in f["faces"]] for f in frames},
        }
    return {"seconds": result["summary"]["seconds"], "videos": videos}


# ---- comparison --------------------------------------------------------------------------------------


def missed_frames(theirs: dict[str, Any], ours: dict[str, Any]) -> list[int]:
    """Their face frames whose nearest sampled frame of ours shows no face."""
    sampled = np.asarray(ours["sampled"])
    with_face = set(ours["face_frames"])
    if not len(sampled):
        return list(theirs["face_frames"])
    return [i for i in theirs["face_frames"] if int(sampled[np.abs(sampled - i).argmin()]) not in with_face]


def reference_recall(args: argparse.Namespace, ours: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """facenet-pytorch's MTCNN at full resolution on every frame we sampled, and our boxes' recall of it."""
    from facenet_pytorch import MTCNN

    from deepfake.apps.predict import PredictConfig
    from deepfake.core.params import load_params_for_models
    from deepfake.media.video import SpanReader
    from deepfake.modeling.store import ModelStore
    from deepfake.modeling.tracks import iou_matrix

    params, _ = load_params_for_models(args.params, lambda: ModelStore(args.models).settings())
    sampling = PredictConfig.from_params(params).sampling
    mtcnn = MTCNN(keep_all=True, device="cpu")
    found: dict[str, dict[str, Any]] = {}
    for name, video in ours["videos"].items():
        faces = hits = 0
        for frame in SpanReader(args.videos / name, sampling):
            boxes, _ = mtcnn.detect(frame.image)
            if boxes is None:
                continue
            mine = np.asarray(video["boxes"].get(str(frame.index), []), np.float32).reshape(-1, 4)
            faces += len(boxes)
            if len(mine):
                hits += int((iou_matrix(np.asarray(boxes, np.float32), mine).max(axis=1) >= IOU_FOUND).sum())
        found[name] = {"reference_faces": faces, "found": hits, "recall": hits / faces if faces else None}
    return found


def on_their_frames(args: argparse.Namespace, theirs: dict[str, Any]) -> dict[str, list[int]]:
    """Our prediction detector (``predict_detector``, its detection scale) on exactly the frames their reader
    returned: per video, their face frames where ours finds no face (the detectors compared without the
    two samplers' different frames)."""
    from deepfake.apps.predict import PredictConfig
    from deepfake.core.params import load_params_for_models
    from deepfake.media.faces import FaceDetector
    from deepfake.media.video import FrameSampling, iter_sampled_frames
    from deepfake.modeling.store import ModelStore

    params, _ = load_params_for_models(args.params, lambda: ModelStore(args.models).settings())
    detection = PredictConfig.from_params(params).detection
    detector = FaceDetector(detection.detector, threads=1)
    missed: dict[str, list[int]] = {}
    for name, video in theirs["videos"].items():
        wanted = set(video["face_frames"])
        sampling = FrameSampling(1, max(wanted, default=0) + 1, params.video.max_pixels)
        frames = [(i, f[:, :, ::-1]) for i, f in iter_sampled_frames(args.videos / name, sampling) if i in wanted]
        found = []
        for index, frame in frames:
            height, width = frame.shape[:2]
            (boxes,) = detector.detect([frame], detection.scale_for(width, height))
            found.append((index, len(boxes)))
        missed[name] = [index for index, count in found if not count]
    return missed


DECODE_CPU = """
import sys, time
from pathlib import Path
from deepfake.media.video import SpanReader, SpanSampling
frames, max_decoded, max_pixels, skip_nonref = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
sampling = SpanSampling(frames, max_decoded, max_pixels, skip_nonref=skip_nonref)
videos = sys.argv[5:]
started = time.process_time()
for video in videos:
    for _ in SpanReader(Path(video), sampling, threads=1):
        pass
print((time.process_time() - started) / len(videos))
"""


def decode_floor_s(args: argparse.Namespace) -> tuple[float, float]:
    """Seconds per video to decode (and convert) just the frames predict samples: wall in one process with
    FFmpeg's own thread count (``deepfake bench-predict``'s floor), and CPU seconds on one decoder thread (as
    each predict worker decodes; measured in a fresh process), whose total over the cores is the floor of any
    engine on this machine."""
    from deepfake.apps.bench import decode_floor
    from deepfake.apps.predict import PredictConfig
    from deepfake.core.params import load_params_for_models
    from deepfake.modeling.store import ModelStore

    params, _ = load_params_for_models(args.params, lambda: ModelStore(args.models).settings())
    videos = sorted(p for p in args.videos.iterdir() if p.suffix == ".mp4")
    sampling = PredictConfig.from_params(params).sampling
    command = [sys.executable, "-c", DECODE_CPU, str(sampling.frames), str(sampling.max_decoded)]
    command += [str(sampling.max_pixels), "1" if sampling.skip_nonref else "0", *map(str, videos)]
    cpu = float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip())
    return decode_floor(videos, sampling), cpu


def child_theirs(args: argparse.Namespace, scratch: Path) -> tuple[dict[str, Any], float]:
    out = scratch / "theirs.json"
    command = [sys.executable, __file__, "--side", "theirs", "--winner", str(args.winner), "--videos", str(args.videos)]
    command += ["--encoder", args.encoder, "--size", str(args.size), "--workers", str(args.workers), "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text()), time.perf_counter() - started


def child_ours(args: argparse.Namespace, scratch: Path) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    result = run_ours(args, scratch)
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.side == "theirs":
        args.out.write_text(json.dumps(run_theirs(args)))
        return
    if args.models is None:
        raise SystemExit("error: --models is required")
    count = sum(1 for p in args.videos.iterdir() if p.suffix == ".mp4")
    print(f"{count} videos in {args.videos}, {os.cpu_count()} cores; {args.runs} alternated runs per side")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for run in range(args.runs):
            order = ("theirs", "ours") if run % 2 == 0 else ("ours", "theirs")
            entry: dict[str, Any] = {}
            for side in order:
                result, wall = (child_theirs if side == "theirs" else child_ours)(args, scratch)
                entry[side] = {**result, "wall_s": wall}
                print(
                    f"run {run + 1} {side:6s}: {result['seconds'] / count:.2f} s per video in-process "
                    f"({wall:.1f} s wall for the process)"
                )
            runs.append(entry)
    theirs_s = [r["theirs"]["seconds"] / count for r in runs]
    ours_s = [r["ours"]["seconds"] / count for r in runs]
    print(
        f"seconds per video: theirs {min(theirs_s):.2f}-{max(theirs_s):.2f}, ours {min(ours_s):.2f}-{max(ours_s):.2f}"
        f" ({min(theirs_s) / max(ours_s):.2f}-{max(theirs_s) / min(ours_s):.2f}x, median "
        f"{float(np.median(theirs_s)) / float(np.median(ours_s)):.2f}x)"
    )
    last = runs[-1]
    floor, decode_cpu = decode_floor_s(args)
    cores = os.cpu_count() or 1
    print(
        f"decode floor: {floor:.2f} s per video wall in one process, {decode_cpu:.2f} CPU-s on one thread "
        f"({decode_cpu / cores:.2f} s per video over {cores} cores); ours runs at "
        f"{float(np.median(ours_s)) / (decode_cpu / cores):.2f}x the latter"
    )
    recall = reference_recall(args, last["ours"]) if args.reference else {}
    theirs_frames = on_their_frames(args, last["theirs"]) if args.reference else {}
    print(f"{'video':28s} {'theirs':>7s} {'ours':>5s} {'missed':>6s} {'on theirs':>9s} {'recall':>7s}  status")
    per_video = {}
    for name in sorted(last["ours"]["videos"]):
        ours, theirs = last["ours"]["videos"][name], last["theirs"]["videos"].get(name, {"face_frames": []})
        missed = missed_frames(theirs, ours)
        rec = recall.get(name, {})
        on_theirs = theirs_frames.get(name)
        per_video[name] = {
            "their_face_frames": len(theirs["face_frames"]),
            "our_face_frames": len(ours["face_frames"]),
            "their_face_frames_we_miss": missed,
            "their_face_frames_our_detector_misses_on_their_frames": on_theirs,
            "status": ours["status"],
            **rec,
        }
        shown = f"{rec['recall']:.3f}" if rec.get("recall") is not None else "-"
        mine = (
            f"{len(theirs['face_frames']) - len(on_theirs)}/{len(theirs['face_frames'])}"
            if on_theirs is not None
            else "-"
        )
        print(
            f"{name:28s} {len(theirs['face_frames']):4d}/32 {len(ours['face_frames']):2d}/{len(ours['sampled'])}"
            f" {len(missed):6d} {mine:>9s} {shown:>7s}  {ours['status']}"
        )
    summary = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "cores": os.cpu_count(),
        "videos": count,
        "theirs_s_per_video": theirs_s,
        "ours_s_per_video": ours_s,
        "decode_floor_s": floor,
        "decode_cpu_s_one_thread": decode_cpu,
        "per_video": per_video,
        "runs": [{side: {k: v for k, v in r[side].items() if k != "videos"} for side in r} for r in runs],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
