"""Inputs for ``deepfake bench-predict`` at DFDC size: a model store and 1080p H.264 videos.

The model store holds one randomly initialised classifier (``--encoder``, default the DFDC-era
``tf_efficientnet_b0``, at ``--size`` px, RGB input) exported to ONNX with the pipeline's own
exporter, so the torch and onnx backends run the same network the issue's comparison used. Weights
are random (no model hub here): speed does not depend on them.

The videos are the sample's clips scaled to ``--width x --height`` and looped (forward, then
backward, so motion stays smooth) to ``--frames`` frames at ``--fps``, each clip frame held for
``fps / clip fps`` frames so people move at the clip's own speed, encoded with libx264 (DFDC's codec).

    python scripts/make_bench_inputs.py --videos data/raw/dfdc_train_part_0 --out /tmp/bench
    deepfake bench-predict /tmp/bench/videos_1080p --models /tmp/bench/models --backend onnx
"""

from __future__ import annotations

import argparse
import logging
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


def make_video(source: Path, target: Path, width: int, height: int, frames: int, fps: int) -> None:
    clip = [f for _, f in iter_sampled_frames(source, FrameSampling(1, 100_000, 10**9))]
    hold = max(1, round(fps / probe(source).fps))
    order = [f for f in clip + clip[-2:0:-1] for _ in range(hold)]  # ping-pong loop at the clip's speed
    with av.open(str(target), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for index in range(frames):
            frame = cv2.resize(order[index % len(order)], (width, height), interpolation=cv2.INTER_CUBIC)
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_models(args.out / "models", args.encoder, args.size, args.margin)
    folder = args.out / f"videos_{args.height}p"
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in args.videos.iterdir() if p.suffix == ".mp4")[: args.count]
    for source in sources:
        make_video(source, folder / source.name, args.width, args.height, args.frames, args.fps)
        logger.info("%s", folder / source.name)


if __name__ == "__main__":
    main()
