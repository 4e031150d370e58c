"""The packaged face photos and their landmarks: where they are, reading them, and ``landmarks.json``.

``landmarks.json`` holds every photo's MTCNN faces (box, score, five landmarks) and which face is the
photo's subject. It is written once by :func:`write_annotations` and ships with the photos, so the
sample's generation never runs a detector (pure NumPy + OpenCV).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from deepfake.core.errors import InputError
from deepfake.core.fileio import write_json_atomic

__all__ = [
    "LANDMARKS_FILE",
    "annotate_faces",
    "faces_dir",
    "load_annotations",
    "photo_paths",
    "read_photo",
    "subject_face",
    "write_annotations",
]

logger = logging.getLogger(__name__)

LANDMARKS_FILE = "landmarks.json"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
# Faces whose areas differ by less than this fraction count as equally large.
SUBJECT_TIE = 0.05


def faces_dir() -> Path:
    """The packaged folder of face photos (and their ``landmarks.json``)."""
    return Path(__file__).resolve().parents[1] / "assets" / "faces"


def photo_paths(faces: Path) -> list[Path]:
    """The face photos in ``faces``, sorted by name."""
    paths = sorted(p for p in Path(faces).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise InputError(f"no face photos ({', '.join(PHOTO_SUFFIXES)}) in {faces}")
    return paths


def read_photo(path: Path) -> np.ndarray:
    """A photo as BGR uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path}")
    return image


def annotate_faces(faces: Path) -> dict:
    """Detect every face in every photo with MTCNN; pick each photo's subject (largest, then central)."""
    import torch  # heavy imports only here: build_sample never needs them
    from facenet_pytorch import MTCNN

    torch.manual_seed(0)
    detector = MTCNN(keep_all=True, post_process=False, device="cpu")
    annotations: dict[str, dict] = {}
    for path in photo_paths(Path(faces)):
        image = read_photo(path)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        boxes, probs, points = detector.detect(rgb, landmarks=True)
        if boxes is None:
            raise InputError(f"MTCNN found no face in {path}")
        # NumPy 2: detect() may hand back object arrays; make them plain float arrays.
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        probs = np.asarray(probs, dtype=np.float32).reshape(-1)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
        found = [
            {"box": _rounded(box), "score": round(float(prob), 2), "landmarks": [_rounded(p) for p in pts]}
            for box, prob, pts in zip(boxes, probs, points, strict=True)
        ]
        annotations[path.name] = {"faces": found, "subject": _pick_subject(found, image.shape)}
        logger.info("%s: %d face(s), subject %d", path.name, len(found), annotations[path.name]["subject"])
    return annotations


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in values]


def _pick_subject(found: list[dict], shape: tuple[int, ...]) -> int:
    """Index of the largest face; faces within SUBJECT_TIE of the largest tie, the most central wins."""
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in found]
    largest = max(areas)
    centre = np.array([shape[1] / 2.0, shape[0] / 2.0])

    def distance(i: int) -> float:
        box = found[i]["box"]
        return float(np.hypot(*(np.array([box[0] + box[2], box[1] + box[3]]) / 2.0 - centre)))

    candidates = [i for i, area in enumerate(areas) if area >= (1.0 - SUBJECT_TIE) * largest]
    return min(candidates, key=lambda i: (distance(i), i))


def write_annotations(faces: Path) -> Path:
    """Run :func:`annotate_faces` and write ``faces/landmarks.json`` (sorted keys); return its path."""
    path = Path(faces) / LANDMARKS_FILE
    write_json_atomic(path, annotate_faces(Path(faces)))
    return path


def load_annotations(faces: Path) -> dict:
    """Read ``faces/landmarks.json``, checking it matches the photos beside it."""
    path = Path(faces) / LANDMARKS_FILE
    if not path.is_file():
        raise InputError(
            f"{path} is missing; create it once with deepfake.sample.annotations.write_annotations({str(faces)!r})"
        )
    annotations = json.loads(path.read_text(encoding="utf-8"))
    photos = {p.name for p in photo_paths(Path(faces))}
    if set(annotations) != photos:
        raise InputError(
            f"{path} does not match the photos in {faces} (rerun deepfake.sample.annotations.write_annotations): "
            f"annotated {sorted(annotations)}, photos {sorted(photos)}"
        )
    for name, entry in annotations.items():
        if not entry.get("faces") or not 0 <= entry.get("subject", -1) < len(entry["faces"]):
            raise InputError(f"{path}: entry {name!r} has no valid subject face")
    return annotations


def subject_face(annotations: dict, photo: str) -> dict:
    """The subject's face of ``photo`` (``box``, ``score``, ``landmarks``)."""
    entry = annotations[photo]
    return entry["faces"][entry["subject"]]
