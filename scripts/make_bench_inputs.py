"""Inputs for ``deepfake bench-predict`` at DFDC size: a model store and 1080p H.264 videos.

The model store holds one randomly initialised classifier (``--encoder``, default the DFDC-era
``tf_efficientnet_b0``, at ``--size`` px, RGB input) exported to ONNX with the pipeline's own
exporter, so the torch and onnx backends run the same network the issue's comparison used. Weights
are random (no model hub here): speed does not depend on them.

The videos are the sample's clips scaled to ``--width x --height`` and looped (forward, then
backward, so motion stays smooth) to ``--frames`` frames at ``--fps``, each clip frame held for
``fps / clip fps`` frames so people move at the clip's own speed, encoded with libx264 (DFDC's codec).

Two harder kinds join them, made from the first sources (the cases a detector misses):

- ``small-<name>.mp4`` (``--small N``): the clip shrunk so its faces are about ``--small-face-share`` of the
  frame's shorter side (the sample's faces are about 0.40 of theirs: 0.065 gives faces of 5.5-7.6 %,
  59-82 px at 1080p), drifting across a fixed, seeded low-frequency texture;
- ``blur-<name>.mp4`` (``--blurred N``): the full-frame clip under a linear motion blur whose length
  swings between ``--blur-px`` / 4 and ``--blur-px`` pixels and whose direction turns over the video, as
  a shaking hand-held camera smears a frame.

    python scripts/make_bench_inputs.py --videos data/raw/dfdc_train_part_0 --out /tmp/bench
    deepfake bench-predict /tmp/bench/videos_1080p --models /tmp/bench/models --backend onnx
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from deepfake.backends.onnx_export import export_onnx
from deepfake.media.face_input import FaceInput
from deepfake.media.video import FrameSampling, iter_sampled_frames, probe
from deepfake.modeling.models import create_model
from deepfake.modeling.store import Member, ModelStore

logger = logging.getLogger("make_bench_inputs")


def make_models(out: Path, encoder: str, size: int, margin: float) -> None:
    """``out/train/classifier/best.pt`` and ``out/onnx/{classifier.onnx,manifest.json}``."""
    store = ModelStore(out)
    member = Member("classifier", None)
    kwargs = {"encoder": encoder, "dropout": 0.0, "drop_path": 0.0, "input_filter": "none"}
    torch.manual_seed(0)
    model = create_model("classifier", **kwargs).eval()
    face_input = FaceInput(size, margin)
    store.add_model(member, model.state_dict(), kwargs, face_input)  # a model from outside the train stage
    store.folder("onnx").mkdir(parents=True, exist_ok=True)
    names = export_onnx(model, store.graph(member.name, "onnx"), size, opset=18)
    entry = {"name": member.name, "model": "classifier", "file": f"{member.name}.onnx", "outputs": names}
    store.write_manifest("onnx", [entry], face_input, opset=18)


SAMPLE_FACE_SHARE = 0.40  # the sample's faces over their clip's shorter side (median of the bboxes stage's boxes)
Render = Callable[[np.ndarray, int, int], np.ndarray]  # (clip frame BGR, output index, frames) -> output frame


def full_frame(width: int, height: int) -> Render:
    def render(frame: np.ndarray, index: int, frames: int) -> np.ndarray:
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC)

    return render


def small_faces(width: int, height: int, face_share: float, seed: int) -> Render:
    """The clip shrunk so faces are ``face_share`` of the output's shorter side, drifting over a texture."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(40, 200, size=(9, 16, 3), dtype=np.uint8)
    background = cv2.GaussianBlur(cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 25)

    def render(frame: np.ndarray, index: int, frames: int) -> np.ndarray:
        ratio = face_share / SAMPLE_FACE_SHARE * min(width, height) / min(frame.shape[:2])
        small = cv2.resize(frame, None, fx=ratio, fy=ratio, interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        x = round((width - w) * (0.1 + 0.8 * index / max(1, frames - 1)))  # walks across the frame
        y = round((height - h) * 0.6)
        out = background.copy()
        out[y : y + h, x : x + w] = small
        return out

    return render


def motion_blurred(width: int, height: int, length: int) -> Render:
    """A linear motion blur of ``length / 4`` to ``length`` px turning with time (a shaking camera)."""

    def render(frame: np.ndarray, index: int, frames: int) -> np.ndarray:
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_CUBIC)
        phase = 2 * math.pi * index / 45
        size = max(3, round(length * (0.625 + 0.375 * math.sin(phase))) | 1)
        kernel = np.zeros((size, size), np.float32)
        kernel[size // 2, :] = 1.0 / size
        angle = 30 + 60 * math.sin(phase / 3)
        rotation = cv2.getRotationMatrix2D((size / 2 - 0.5, size / 2 - 0.5), angle, 1.0)
        kernel = cv2.warpAffine(kernel, rotation, (size, size))
        return cv2.filter2D(frame, -1, kernel / kernel.sum())

    return render


def make_video(source: Path, target: Path, render: Render, frames: int, fps: int) -> None:
    clip = [f for _, f in iter_sampled_frames(source, FrameSampling(1, 100_000, 10**9))]
    hold = max(1, round(fps / probe(source).fps))
    order = [f for f in clip + clip[-2:0:-1] for _ in range(hold)]  # ping-pong loop at the clip's speed
    with av.open(str(target), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        first = render(order[0], 0, frames)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for index in range(frames):
            frame = render(order[index % len(order)], index, frames)
            rgb = np.ascontiguousarray(frame[:, :, ::-1])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, required=True, help="folder of source clips (the sample's)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=8, help="videos to write (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--frames", type=int, default=300, help="frames per video (DFDC: 300)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--encoder", default="tf_efficientnet_b0")
    parser.add_argument("--size", type=int, default=224, help="model input side (default: %(default)s)")
    parser.add_argument("--margin", type=float, default=0.3333)
    parser.add_argument("--small", type=int, default=2, help="small-face videos (default: %(default)s)")
    parser.add_argument("--small-face-share", type=float, default=0.065, help="their faces over the shorter side")
    parser.add_argument("--blurred", type=int, default=2, help="motion-blurred videos (default: %(default)s)")
    parser.add_argument("--blur-px", type=int, default=41, help="longest blur, output pixels (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_models(args.out / "models", args.encoder, args.size, args.margin)
    folder = args.out / f"videos_{args.height}p"
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in args.videos.iterdir() if p.suffix == ".mp4")[: args.count]
    jobs = [(source.name, full_frame(args.width, args.height), source) for source in sources]
    for index, source in enumerate(sources[: args.small]):
        render = small_faces(args.width, args.height, args.small_face_share, seed=index)
        jobs.append((f"small-{source.name}", render, source))
    for source in sources[args.small : args.small + args.blurred]:  # other people than the small ones
        jobs.append((f"blur-{source.name}", motion_blurred(args.width, args.height, args.blur_px), source))
    for name, render, source in jobs:
        make_video(source, folder / name, render, args.frames, args.fps)
        logger.info("%s", folder / name)


if __name__ == "__main__":
    main()
