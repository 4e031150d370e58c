"""Face recall and cost of predict's detection settings, against the detector as it was.

The reference is facenet-pytorch's own MTCNN (``MTCNN.detect``) on every sampled frame with the
pyramid bounded only by ``bboxes.min_face_size`` (the detector before ``min_face_share``, the ONNX
Runtime nets and ``detect_every``). Each candidate setting runs predict's own detection path
(``deepfake.apps.predict._FaceBoxes``: detection on every k-th sampled frame and the last, boxes carried
along face tracks between) on the same frames. A reference face counts as found when a candidate box
in the same frame overlaps it with IoU >= 0.5.

    python scripts/detector_recall.py data/raw/dfdc_train_part_0 /tmp/bench/videos_1080p
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from deepfake.apps.predict import PredictConfig, _FaceBoxes, _Timer, collect_videos
from deepfake.core.parallel import set_torch_threads
from deepfake.core.params import load_params
from deepfake.media.face_input import FaceInput
from deepfake.media.faces import FaceDetector
from deepfake.media.video import SpanReader
from deepfake.modeling.tracks import iou_matrix


def reference_boxes(frames: list, config: PredictConfig) -> tuple[list[np.ndarray], float]:
    """facenet-pytorch's MTCNN.detect on every frame, at the pipeline's detection scale."""
    import cv2
    from facenet_pytorch import MTCNN

    detector = config.detection.detector
    mtcnn = MTCNN(
        keep_all=True,
        post_process=False,
        select_largest=False,
        thresholds=list(detector.thresholds),
        min_face_size=detector.min_face_size,
    )
    height, width = frames[0].image.shape[:2]
    scale = config.detection.scale_for(width, height)
    size = (round(width * scale), round(height * scale))
    images = np.stack([cv2.resize(f.image, size, interpolation=cv2.INTER_AREA) for f in frames])
    found: list[np.ndarray] = []
    started = time.perf_counter()
    for start in range(0, len(images), config.detection.batch_size):
        boxes, _ = mtcnn.detect(images[start : start + config.detection.batch_size])
        found.extend(np.zeros((0, 4)) if b is None else np.asarray(b, np.float32) / scale for b in boxes)
    return found, time.perf_counter() - started


def candidate_boxes(frames: list, config: PredictConfig, detector: FaceDetector) -> tuple[list[np.ndarray], float]:
    timer = _Timer()
    faces = _FaceBoxes(detector, config, FaceInput(64, 0.3333), timer)
    for frame in frames:
        faces.add(frame)
    faces.finish()
    return [faces.boxes[slot] for slot in range(len(frames))], timer.seconds["detect"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--videos", type=int, default=6, help="videos per folder (default: %(default)s)")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.05, 0.08, 0.12])
    parser.add_argument("--every", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    set_torch_threads(1)
    base = PredictConfig.from_params(load_params(args.params))
    detectors = {share: FaceDetector(replace(base.detection.detector, min_face_share=share)) for share in args.shares}
    for folder in args.folders:
        videos = collect_videos([folder])[: args.videos]
        clips = [list(SpanReader(v, base.sampling)) for v in videos]
        references = [reference_boxes(frames, base) for frames in clips]
        ref_faces = sum(len(b) for boxes, _ in references for b in boxes)
        ref_ms = 1000 * sum(s for _, s in references) / sum(len(c) for c in clips)
        height, width = clips[0][0].image.shape[:2]
        print(f"{folder}: {len(videos)} videos, {width}x{height}, {base.frames} frames, {ref_faces} reference faces")
        print(f"  reference (facenet-pytorch MTCNN.detect, every frame): {ref_ms:6.1f} ms per sampled frame")
        for share, detector in detectors.items():
            for every in args.every:
                config = replace(base, detect_every=every, detection=replace(base.detection, detector=detector.config))
                found = missed = extra = 0
                seconds = 0.0
                for frames, (ref, _) in zip(clips, references, strict=True):
                    boxes, spent = candidate_boxes(frames, config, detector)
                    seconds += spent
                    for ref_frame, cand in zip(ref, boxes, strict=True):
                        if len(ref_frame) and len(cand):
                            iou = iou_matrix(ref_frame, cand)
                            hit = (iou >= 0.5).any(axis=1)
                            found += int(hit.sum())
                            missed += int((~hit).sum())
                            extra += int((~(iou >= 0.5).any(axis=0)).sum())
                        else:
                            missed += len(ref_frame)
                            extra += len(cand)
                ms = 1000 * seconds / sum(len(c) for c in clips)
                recall = found / max(1, found + missed)
                print(
                    f"  share {share:4.2f} every {every}: recall {recall:6.3f} ({missed} missed, {extra} extra boxes), "
                    f"{ms:6.1f} ms per sampled frame"
                )


if __name__ == "__main__":
    main()
