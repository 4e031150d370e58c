"""A tiny built-in sample in every supported dataset layout, made from the packaged face photos.

Each photo is one person and becomes one REAL clip (the still animated with a smooth pan, zoom,
small rotation and lighting drift). Fakes are made from those clips by three manipulation families
(:mod:`deepfake.media.manipulations`): a face swap (the donor's face rendered by a face-swap
generator at ``generator_size`` pixels, or ``hq_generator_size`` for the improved generators of
Celeb-DF and DeeperForensics, then warped, colour-matched and feathered in), an expression
reenactment (Face2Face) and a re-rendered lower-face texture (NeuralTextures).

People, groups and splits
-------------------------
People are split at random (from ``seed``) into ``identity_groups`` groups; with the 9 photos and
5 groups that is four groups of two and one person alone. Within a group people are paired in
order (a, b), (c, d), ...; a pair is one FF++ pair, and every fake of the extra layouts is made
within its pair (b's face swapped onto a's clip, b's motion driving a's expressions), so no face
leaves its group. Whole groups are assigned to the official splits, again from ``seed``: in a random
order, groups with a person left unpaired first (they hold Celeb-DF's YouTube-real people, which
its test list includes; it also keeps a pair in val), the first ``test_groups`` go to test, the next
``val_groups`` to val, the rest to train: with the defaults, test = one pair + the person alone,
val = one pair, train = two pairs. Every layout's official split follows that assignment, so
a person is in one split everywhere: FF++'s ``splits/*.json``, DeeperForensics'
``lists/splits/*.txt``, Celeb-DF's test list and DFDCP's ``set``. Celeb-DF and DFDCP have no val
split (whatever is not test counts as train there), so they leave the val groups' people out rather
than call them train; the DFDC public test set holds the test groups' people only. The DFDC
training parts hold everyone, with DFDC's own ``split: train``, as the real ones do.

Layouts written under ``out_root`` (each folder complete or not at all):

- ``<part>/`` for each of ``parts`` (DFDC training parts): every person's clip plus up to
  ``fakes_per_real`` swaps whose donors come from the person's group, the person included (a
  self-swap); ``metadata.json`` with ``original: null`` on REALs and the optional ``identity`` key.
- ``ffpp/`` (FaceForensics++ c23): ``original_sequences/youtube/c23/videos/NNN.mp4`` for each
  paired person, ``manipulated_sequences/<method>/{c23,masks}/videos/<target>_<source>.mp4`` for
  both directions of every pair and the methods ``Deepfakes`` (the face swap), ``Face2Face`` and
  ``NeuralTextures`` (the held-out method), and ``splits/{train,val,test}.json``. People without a
  pair are not in FF++.
- ``celebdf/`` (Celeb-DF v2): ``Celeb-real/id<k>_0000.mp4`` (paired people),
  ``YouTube-real/NNNNN.mp4`` (people without a pair), ``Celeb-synthesis/id<t>_id<s>_0000.mp4`` (the
  higher-quality swap) and ``List_of_testing_videos.txt`` (``1`` = REAL, ``0`` = FAKE).
- ``dfdc_test/`` (DFDC public test): the test people's clips and swaps under new DFDC-style names,
  ``labels.csv`` (``filename,label``, 1 = fake), no originals.
- ``dfdcp/`` (DFDC preview): ``original_videos/videos/<id>/``, ``method_A`` (the swap) and
  ``method_B`` (the higher-quality swap) ``/videos/<id>/<id>_<A|B>/``, ``dataset.json``.
- ``deeperforensics/``: ``manipulated_videos/end_to_end/<ffpp id>_<actor>.mp4`` (the higher-quality
  swap of the pair partner, the "actor", onto the FF++ target) and ``lists/splits/*.txt``; its reals
  are FF++'s and are not shipped.
- ``identities/<dataset>.csv`` (``path,identity``) for each extra layout: who each video shows
  (the photo stem, as DFDC's ``identity`` key), so folds can keep a person in one fold across
  datasets. A swap shows its donor; a reenactment or re-texture shows its target. DeeperForensics'
  also labels its FF++ reals, by the path its index gives them (``../ffpp/...``, via ``ffpp_root``).

Each REAL clip and each (clip, manipulation) fake is rendered once and its bytes copied wherever it
appears: DFDC's partner swaps are FF++'s Deepfakes, DFDCP's method_A and DFDC test's fakes; the
higher-quality swaps are Celeb-DF's synthesis, DFDCP's method_B and DeeperForensics' videos.

Generation is pure NumPy + OpenCV driven by ``numpy.random.default_rng(seed)`` (each manipulation
by a generator seeded from ``seed`` and its people), so the same config gives byte-identical files
on the same software stack. The face detector (MTCNN) runs only in :func:`write_annotations`,
whose output ``landmarks.json`` ships with the photos.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.fileio import atomic_dir, atomic_path, json_bytes, write_json_atomic
from deepfake.media.manipulations import (
    TEMPLATE,
    TextureStyle,
    apply_affine,
    expression_drive,
    reenact_face,
    render_generator_face,
    retexture_face,
    swap_face,
)

__all__ = [
    "DATASETS",
    "LANDMARKS_FILE",
    "TEMPLATE",
    "ClipPlan",
    "Config",
    "DatasetLayout",
    "Entry",
    "FakePlan",
    "Paths",
    "RenderKey",
    "SampleConfig",
    "SamplePlan",
    "annotate_faces",
    "build_sample",
    "faces_dir",
    "identity_of",
    "layout_datasets",
    "leave_profile",
    "load_annotations",
    "plan_sample",
    "render_fake",
    "render_generator_face",
    "render_manipulation",
    "render_real",
    "run",
    "swap_face",
    "write_annotations",
]

logger = logging.getLogger(__name__)

LANDMARKS_FILE = "landmarks.json"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
FOURCC = "mp4v"
MIN_FRAMES = 8
MIN_SIDE = 64
MIN_GENERATOR_SIZE = 16

# The extra layouts the sample can write, each into out_root/<name> (params sample.datasets).
DATASETS = ("ffpp", "celebdf", "dfdc_test", "dfdcp", "deeperforensics")
IDENTITIES = "identities"  # out_root/identities/<dataset>.csv
SPLITS = ("train", "val", "test")
FFPP_METHODS = ("Deepfakes", "Face2Face", "NeuralTextures")
FFPP_COMPRESSION = "c23"
# DeeperForensics names its actors M/W + a number; the letter of each photo's person.
ACTOR_LETTER = {
    "astronaut.jpg": "W",
    "grace_hopper.jpg": "W",
    "t1_person0.jpg": "W",
    "t1_person1.jpg": "W",
    "t1_person2.jpg": "M",
    "t1_person3.jpg": "M",
    "t1_person4.jpg": "M",
    "t1_person5.jpg": "W",
    "tom_hanks.png": "M",
}

# Fixed roles, so the special clips never depend on the seed.
TWO_FACE_PHOTO = "t1_person2.jpg"  # two full faces; both stay in view, only the subject is swapped
LEAVING_PHOTO = "astronaut.jpg"  # nothing face-like beside her, so the off-screen frames hold no face
PORTRAIT_PHOTO = "grace_hopper.jpg"  # a tall photo, so the portrait canvas suits it
# Detections below this score are not "faces that must stay in view" (t1_person2 has a hand at 0.79).
CONFIDENT_FACE = 0.95
# Faces whose areas differ by less than this fraction count as equally large.
SUBJECT_TIE = 0.05

# Subject face width as a fraction of the canvas's shorter side, before zoom.
FACE_FRACTION = (0.28, 0.36)
ZOOM_AMPLITUDE = (0.03, 0.08)  # keeps the face within about 25-40 % of the shorter side
ROTATION_DEG = (2.0, 6.0)
PAN_SLACK_USE = (0.3, 0.9)  # fraction of the free room the pan may use
WAVE_FREQ = (0.3, 1.0)  # cycles per clip: slow, smooth motion
GAIN_AMPLITUDE = (0.03, 0.10)
GAMMA_AMPLITUDE = (0.03, 0.12)
MARGIN = 0.03  # of the shorter side, kept between a face that must stay in view and the border
# The leaving clip: the face is fully off the canvas for t in [LEAVE_START, LEAVE_END] (t = i / frames).
LEAVE_START, LEAVE_END, LEAVE_RAMP = 0.35, 0.55, 0.15


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SampleConfig:
    """What the sample looks like; validated on construction."""

    seed: int
    parts: tuple[str, ...]
    frames: int
    fps: int
    width: int
    height: int
    fakes_per_real: int
    identity_groups: int
    generator_size: int
    hq_generator_size: int
    test_groups: int
    val_groups: int
    datasets: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("parts", "datasets"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_int("seed", self.seed, 0)
        _check_int("frames", self.frames, MIN_FRAMES)
        _check_int("fps", self.fps, 1)
        _check_int("width", self.width, MIN_SIDE)
        _check_int("height", self.height, MIN_SIDE)
        _check_int("fakes_per_real", self.fakes_per_real, 1)
        _check_int("identity_groups", self.identity_groups, 1)
        _check_int("generator_size", self.generator_size, MIN_GENERATOR_SIZE)
        _check_int("hq_generator_size", self.hq_generator_size, self.generator_size + 1)
        _check_int("test_groups", self.test_groups, 0)
        _check_int("val_groups", self.val_groups, 0)
        if self.width % 2 or self.height % 2:
            raise ParamsError(f"sample width and height must be even (mp4v), got {self.width}x{self.height}")
        if self.width <= self.height:
            raise ParamsError(f"sample width must exceed height (landscape), got {self.width}x{self.height}")
        if self.test_groups + self.val_groups >= self.identity_groups:
            raise ParamsError(
                f"sample.test_groups ({self.test_groups}) + sample.val_groups ({self.val_groups}) must leave at "
                f"least one of the {self.identity_groups} identity groups for train"
            )
        _check_parts(self.parts)
        _check_datasets(self.datasets, self.parts)

    @classmethod
    def from_params(cls, params: Any) -> SampleConfig:
        """From the validated ``sample`` section."""
        sect = params.sample
        return cls(
            seed=sect.seed,
            parts=tuple(sect.parts),
            frames=sect.frames,
            fps=sect.fps,
            width=sect.width,
            height=sect.height,
            fakes_per_real=sect.fakes_per_real,
            identity_groups=sect.identity_groups,
            generator_size=sect.generator_size,
            hq_generator_size=sect.hq_generator_size,
            test_groups=sect.test_groups,
            val_groups=sect.val_groups,
            datasets=tuple(sect.datasets),
        )

    @property
    def folders(self) -> tuple[str, ...]:
        """Every folder the sample writes under its output root (the DVC stage's outs)."""
        return (*self.parts, *self.datasets, *((IDENTITIES,) if self.datasets else ()))


def _check_int(name: str, value: object, minimum: int) -> None:
    # bool is an int subclass; "frames: true" in YAML is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ParamsError(f"sample.{name} must be an integer >= {minimum}, got {value!r}")


def _check_parts(parts: tuple[str, ...]) -> None:
    if not parts:
        raise ParamsError("sample.parts must name at least one part")
    for part in parts:
        # Parts become folder names under out_root: no paths, no hidden (temporary-looking) names.
        if not isinstance(part, str) or not part or "/" in part or "\\" in part or part.startswith("."):
            raise ParamsError(f"sample.parts: {part!r} is not a plain folder name")
    if len(set(parts)) != len(parts):
        raise ParamsError(f"sample.parts has duplicates: {list(parts)}")


def _check_datasets(datasets: tuple[str, ...], parts: tuple[str, ...]) -> None:
    unknown = [d for d in datasets if d not in DATASETS]
    if unknown:
        raise ParamsError(f"sample.datasets: unknown {unknown}; choose from {list(DATASETS)}")
    if len(set(datasets)) != len(datasets):
        raise ParamsError(f"sample.datasets has duplicates: {list(datasets)}")
    clash = sorted(set(parts) & {*datasets, IDENTITIES})
    if clash:
        raise ParamsError(f"sample.parts {clash} clash with the folders of sample.datasets")


# ----------------------------------------------------------------------------- annotations


def faces_dir() -> Path:
    """The packaged folder of face photos (and their ``landmarks.json``)."""
    return Path(__file__).resolve().parents[1] / "assets" / "faces"


def _photo_paths(faces: Path) -> list[Path]:
    paths = sorted(p for p in Path(faces).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise InputError(f"no face photos ({', '.join(PHOTO_SUFFIXES)}) in {faces}")
    return paths


def _read_photo(path: Path) -> np.ndarray:
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
    for path in _photo_paths(Path(faces)):
        image = _read_photo(path)
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
            f"{path} is missing; create it once with deepfake.stages.sample.write_annotations({str(faces)!r})"
        )
    annotations = json.loads(path.read_text(encoding="utf-8"))
    photos = {p.name for p in _photo_paths(Path(faces))}
    if set(annotations) != photos:
        raise InputError(
            f"{path} does not match the photos in {faces} (rerun deepfake.stages.sample.write_annotations): "
            f"annotated {sorted(annotations)}, photos {sorted(photos)}"
        )
    for name, entry in annotations.items():
        if not entry.get("faces") or not 0 <= entry.get("subject", -1) < len(entry["faces"]):
            raise InputError(f"{path}: entry {name!r} has no valid subject face")
    return annotations


def _subject(annotations: dict, photo: str) -> dict:
    entry = annotations[photo]
    return entry["faces"][entry["subject"]]


# ----------------------------------------------------------------------------- geometry


def _similarity(scale: float, angle: float, anchor: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix that scales and rotates (radians) about ``anchor`` and moves it to ``target``."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    linear = np.array([[c, -s], [s, c]])
    return np.hstack([linear, (np.asarray(target) - linear @ np.asarray(anchor))[:, None]])


def _box_corners(box: list[float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


# ----------------------------------------------------------------------------- clip plans


@dataclass(frozen=True)
class FakePlan:
    """One fake clip: its file name and the photo whose face is swapped in."""

    name: str
    donor: str


@dataclass(frozen=True)
class ClipPlan:
    """One real clip (and its fakes): everything needed to render it, known before rendering."""

    name: str
    person: str
    part: str
    role: str  # "plain", "two_faces", "leaves_frame" or "portrait"
    size: tuple[int, int]  # (width, height) of the canvas
    transforms: np.ndarray = field(repr=False)  # (frames, 2, 3): photo -> canvas, per frame
    gains: np.ndarray = field(repr=False)  # (frames,)
    gammas: np.ndarray = field(repr=False)  # (frames,)
    landmarks: np.ndarray = field(repr=False)  # (frames, 5, 2): the subject's landmarks on the canvas
    visible: np.ndarray = field(repr=False)  # (frames,) bool: the subject's box overlaps the canvas
    fakes: tuple[FakePlan, ...] = ()


@dataclass(frozen=True)
class _Motion:
    """The random draws of one clip: smooth waves for zoom, rotation, pan and lighting."""

    face_fraction: float
    zoom: float
    rotation: float  # radians
    pan: tuple[float, float]  # fraction of the free room used, x and y
    gain: float
    gamma: float
    freqs: np.ndarray  # 6 waves: zoom, rotation, pan x, pan y, gain, gamma
    phases: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Motion:
        return cls(
            face_fraction=float(rng.uniform(*FACE_FRACTION)),
            zoom=float(rng.uniform(*ZOOM_AMPLITUDE)),
            rotation=math.radians(float(rng.uniform(*ROTATION_DEG))),
            pan=(float(rng.uniform(*PAN_SLACK_USE)), float(rng.uniform(*PAN_SLACK_USE))),
            gain=float(rng.uniform(*GAIN_AMPLITUDE)),
            gamma=float(rng.uniform(*GAMMA_AMPLITUDE)),
            freqs=rng.uniform(*WAVE_FREQ, size=6),
            phases=rng.uniform(0.0, 2.0 * np.pi, size=6),
        )

    def waves(self, frames: int) -> np.ndarray:
        """(6, frames) sine waves in -1..1, smooth in time."""
        t = np.arange(frames) / frames
        return np.sin(2.0 * np.pi * self.freqs[:, None] * t[None, :] + self.phases[:, None])


def _smootherstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def leave_profile(frames: int) -> np.ndarray:
    """0 -> 1 -> 0 per frame: 1 (face off-screen) for t = i / frames in [LEAVE_START, LEAVE_END]."""
    t = np.arange(frames) / frames
    going = _smootherstep((t - (LEAVE_START - LEAVE_RAMP)) / LEAVE_RAMP)
    coming = _smootherstep((LEAVE_END + LEAVE_RAMP - t) / LEAVE_RAMP)
    return np.minimum(going, coming)


def _keep_boxes(annotations: dict, photo: str, role: str, photo_shape: tuple[int, ...]) -> list[list[float]]:
    """Boxes that must stay in view: the subject, plus every confident face in the two-face clip."""
    entry = annotations[photo]
    boxes = [_subject(annotations, photo)["box"]]
    if role == "two_faces":
        others = [f for i, f in enumerate(entry["faces"]) if i != entry["subject"] and f["score"] >= CONFIDENT_FACE]
        if not others:
            raise InputError(f"{photo} should hold a second confident face (score >= {CONFIDENT_FACE})")
        height, width = photo_shape[:2]
        # A face cut by the photo's edge can only be kept in view as far as the photo goes.
        boxes += [
            [max(b[0], 0.0), max(b[1], 0.0), min(b[2], width), min(b[3], height)] for b in (o["box"] for o in others)
        ]
    return boxes


def _clip_transforms(
    motion: _Motion,
    keep: list[list[float]],
    face_width: float,
    size: tuple[int, int],
    frames: int,
    leaves: bool,
) -> np.ndarray:
    """(frames, 2, 3) photo -> canvas similarity transforms for one clip."""
    width, height = size
    short = min(width, height)
    margin = MARGIN * short
    corners = np.concatenate([_box_corners(b) for b in keep])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    anchor, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    cos_r, sin_r = math.cos(motion.rotation), math.sin(motion.rotation)
    # Half extents of the kept boxes on the canvas per unit scale, at the largest rotation.
    reach = np.array([half[0] * cos_r + half[1] * sin_r, half[0] * sin_r + half[1] * cos_r])
    top_zoom = 1.0 + motion.zoom
    fits = float(min((width / 2.0 - margin) / reach[0], (height / 2.0 - margin) / reach[1])) / top_zoom
    scale = min(motion.face_fraction * short / face_width, fits)
    extent = reach * scale * top_zoom
    room = np.maximum(np.array([width / 2.0, height / 2.0]) - margin - extent, 0.0)
    amplitude = room * np.array(motion.pan)
    waves = motion.waves(frames)
    shift_x = amplitude[0] * waves[2]
    if leaves:
        # Push the face past the right edge, beyond any pan: its nearest edge clears the canvas by margin.
        shift_x = shift_x + leave_profile(frames) * (width / 2.0 + extent[0] + margin + amplitude[0])
    centre = np.array([width / 2.0, height / 2.0])
    return np.stack(
        [
            _similarity(
                scale * (1.0 + motion.zoom * waves[0, i]),
                motion.rotation * waves[1, i],
                anchor,
                centre + np.array([shift_x[i], amplitude[1] * waves[3, i]]),
            )
            for i in range(frames)
        ]
    )


def _box_on_canvas(matrix: np.ndarray, box: list[float], size: tuple[int, int]) -> tuple[bool, bool]:
    """(fully inside, overlapping) for a photo box mapped onto the canvas."""
    pts = apply_affine(matrix, _box_corners(box))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    inside = bool(lo[0] >= 0 and lo[1] >= 0 and hi[0] <= size[0] and hi[1] <= size[1])
    overlaps = bool(hi[0] > 0 and hi[1] > 0 and lo[0] < size[0] and lo[1] < size[1])
    return inside, overlaps


def _check_clip(clip: ClipPlan, keep: list[list[float]], subject_box: list[float], frames: int) -> None:
    """Guard the promises the tests and users rely on; a failure here is a bug in the motion plan."""
    out = leave_profile(frames) >= 1.0
    for i, matrix in enumerate(clip.transforms):
        inside = all(_box_on_canvas(matrix, box, clip.size)[0] for box in keep)
        off = not _box_on_canvas(matrix, subject_box, clip.size)[1]
        if clip.role == "leaves_frame" and out[i] and not off:
            raise RuntimeError(f"{clip.name}: the face should be off the canvas in frame {i}")
        if (clip.role != "leaves_frame" or i in (0, frames - 1)) and not inside:
            raise RuntimeError(f"{clip.name}: a face that must stay in view leaves it in frame {i}")


def _draw_name(rng: np.random.Generator, taken: set[str]) -> str:
    """A DFDC-like name: 10 random lowercase letters + .mp4, unique within the sample."""
    while True:
        name = "".join(chr(ord("a") + int(k)) for k in rng.integers(0, 26, size=10)) + ".mp4"
        if name not in taken:
            taken.add(name)
            return name


def _role(photo: str) -> str:
    return {TWO_FACE_PHOTO: "two_faces", LEAVING_PHOTO: "leaves_frame", PORTRAIT_PHOTO: "portrait"}.get(photo, "plain")


@dataclass(frozen=True)
class SamplePlan:
    """Who is who: every person's clip, identity group, pair, official split and ids in each layout."""

    people: tuple[str, ...]  # photo file names, sorted
    clips: tuple[ClipPlan, ...]  # one per person, in ``people`` order
    groups: tuple[tuple[str, ...], ...]  # identity groups (members in draw order)
    group_splits: tuple[str, ...]  # the official split of each group
    pairs: tuple[tuple[str, str], ...]  # FF++ pairs: consecutive members of a group
    ffpp_ids: dict[str, str] = field(repr=False)  # paired person -> "000", ...
    celebdf_ids: dict[str, str] = field(repr=False)  # paired person outside val -> "id<k>"
    youtube_ids: dict[str, str] = field(repr=False)  # unpaired person outside val -> "00000", ...
    dfdcp_ids: dict[str, str] = field(repr=False)  # person outside val -> 7 digits
    dfdc_test_names: dict[str, tuple[str, str | None]] = field(repr=False)  # test person -> (real, fake)

    def clip(self, person: str) -> ClipPlan:
        return self.clips[self.people.index(person)]

    def group_of(self, person: str) -> int:
        return next(k for k, members in enumerate(self.groups) if person in members)

    def split_of(self, person: str) -> str:
        return self.group_splits[self.group_of(person)]

    def partner(self, person: str) -> str | None:
        """The other member of the person's pair, or None for a person without one."""
        for a, b in self.pairs:
            if person in (a, b):
                return b if person == a else a
        return None

    def people_in(self, *splits: str) -> list[str]:
        return [p for p in self.people if self.split_of(p) in splits]


def plan_sample(config: SampleConfig, annotations: dict, faces: Path | None = None) -> SamplePlan:
    """Every clip's name, part, motion, landmarks and donors, and every layout's people and names,
    drawn from ``config.seed`` only."""
    faces = Path(faces) if faces is not None else faces_dir()
    people = sorted(annotations)  # sorted: the RNG is consumed in a fixed order
    for photo in (TWO_FACE_PHOTO, LEAVING_PHOTO, PORTRAIT_PHOTO):
        if photo not in annotations:
            raise InputError(f"the sample needs {photo} in {faces}")
    if len(config.parts) > len(people):
        raise ParamsError(f"{len(config.parts)} parts but only {len(people)} people to spread over them")
    if config.identity_groups > len(people):
        raise ParamsError(f"identity_groups={config.identity_groups} but only {len(people)} people")
    largest = -(-len(people) // config.identity_groups)
    if config.fakes_per_real > largest:
        raise ParamsError(
            f"fakes_per_real={config.fakes_per_real} but the largest of {config.identity_groups} identity groups "
            f"of {len(people)} people has only {largest} donors per person (the person included: a self-swap)"
        )
    rng = np.random.default_rng(config.seed)
    groups = np.array_split(rng.permutation(len(people)), len(config.parts))
    part_of = {people[int(j)]: config.parts[k] for k, group in enumerate(groups) for j in group}
    members = tuple(
        tuple(people[int(j)] for j in group)
        for group in np.array_split(rng.permutation(len(people)), config.identity_groups)
    )
    group_of = {person: k for k, group in enumerate(members) for person in group}
    taken: set[str] = set()
    clips = []
    for photo in people:
        clip = _plan_clip(rng, config, annotations, faces, photo, part_of[photo], taken)
        # Donors from the same identity group only: with folds keeping a group together, no face
        # seen in a training fake belongs to a person whose real clip is validated or tested on.
        # The person is a candidate too: a self-swap keeps the identity and changes only the
        # rendering (generator resolution, colour, blend), as reenactment-style methods do. A
        # person in a group smaller than fakes_per_real gets one fake per member.
        candidates = [p for p in people if group_of[p] == group_of[photo]]
        count = min(config.fakes_per_real, len(candidates))
        donors = rng.choice(candidates, size=count, replace=False)
        fakes = tuple(FakePlan(_draw_name(rng, taken), str(donor)) for donor in donors)
        clips.append(replace(clip, fakes=fakes))
    # Whole groups to the official splits: the first test_groups of a random order to test, the
    # next val_groups to val, the rest to train. Groups with a person left unpaired come first:
    # they hold Celeb-DF's YouTube-real people, which its test list includes, and val keeps pairs.
    unpaired = [len(group) % 2 for group in members]
    order = sorted((int(k) for k in rng.permutation(config.identity_groups)), key=lambda k: -unpaired[k])
    rank = {group: i for i, group in enumerate(order)}
    group_splits = tuple(
        "test"
        if rank[k] < config.test_groups
        else "val"
        if rank[k] < config.test_groups + config.val_groups
        else "train"
        for k in range(config.identity_groups)
    )
    pairs = tuple((group[i], group[i + 1]) for group in members for i in range(0, len(group) - 1, 2))
    paired = [person for pair in pairs for person in pair]
    split_of = {person: group_splits[group_of[person]] for person in people}
    no_val = [p for p in people if split_of[p] != "val"]  # Celeb-DF and DFDCP have no val split
    ffpp_ids = _numbered(rng, paired, "{:03d}")
    celebdf_ids = _numbered(rng, [p for p in paired if p in no_val], "id{}")
    youtube_ids = _numbered(rng, [p for p in no_val if p not in paired], "{:05d}")
    dfdcp_numbers = rng.choice(900_000, size=len(no_val), replace=False) + 1_000_000
    dfdcp_ids = {person: str(int(n)) for person, n in zip(no_val, dfdcp_numbers, strict=True)}
    dfdc_test_names = {
        person: (_draw_name(rng, taken), _draw_name(rng, taken) if person in paired else None)
        for person in people
        if split_of[person] == "test"
    }
    return SamplePlan(
        people=tuple(people),
        clips=tuple(clips),
        groups=members,
        group_splits=group_splits,
        pairs=pairs,
        ffpp_ids=ffpp_ids,
        celebdf_ids=celebdf_ids,
        youtube_ids=youtube_ids,
        dfdcp_ids=dfdcp_ids,
        dfdc_test_names=dfdc_test_names,
    )


def _numbered(rng: np.random.Generator, people: list[str], pattern: str) -> dict[str, str]:
    """Number ``people`` 0, 1, ... in a random order, formatted by ``pattern``."""
    order = rng.permutation(len(people))
    return {people[int(j)]: pattern.format(k) for k, j in enumerate(order)}


def _plan_clip(
    rng: np.random.Generator,
    config: SampleConfig,
    annotations: dict,
    faces: Path,
    photo: str,
    part: str,
    taken: set[str],
) -> ClipPlan:
    role = _role(photo)
    size = (config.height, config.width) if role == "portrait" else (config.width, config.height)
    shape = _photo_shape(faces / photo)
    subject = _subject(annotations, photo)
    keep = _keep_boxes(annotations, photo, role, shape)
    motion = _Motion.draw(rng)
    face_width = subject["box"][2] - subject["box"][0]
    transforms = _clip_transforms(motion, keep, face_width, size, config.frames, role == "leaves_frame")
    waves = motion.waves(config.frames)
    landmarks = np.stack([apply_affine(m, subject["landmarks"]) for m in transforms])
    visible = np.array([_box_on_canvas(m, subject["box"], size)[1] for m in transforms])
    clip = ClipPlan(
        name=_draw_name(rng, taken),
        person=photo,
        part=part,
        role=role,
        size=size,
        transforms=transforms,
        gains=1.0 + motion.gain * waves[4],
        gammas=np.exp(motion.gamma * waves[5]),
        landmarks=landmarks,
        visible=visible,
    )
    _check_clip(clip, keep, subject["box"], config.frames)
    return clip


def _photo_shape(path: Path) -> tuple[int, ...]:
    return _read_photo(path).shape


# ----------------------------------------------------------------------------- rendering


def _lighting_lut(gain: float, gamma: float) -> np.ndarray:
    levels = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.rint(255.0 * gain * levels**gamma), 0, 255).astype(np.uint8)


def render_real(photo: np.ndarray, clip: ClipPlan) -> list[np.ndarray]:
    """The real clip's frames (BGR uint8), before encoding."""
    frames = []
    for matrix, gain, gamma in zip(clip.transforms, clip.gains, clip.gammas, strict=True):
        # REPLICATE, never REFLECT: a mirrored copy of a face would be a second face.
        frame = cv2.warpAffine(photo, matrix, clip.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        frames.append(cv2.LUT(frame, _lighting_lut(float(gain), float(gamma))))
    return frames


def render_fake(
    real: list[np.ndarray], clip: ClipPlan, donor_image: np.ndarray, donor_landmarks: np.ndarray, generator_size: int
) -> list[np.ndarray]:
    """The fake clip's frames: the donor's face, rendered at ``generator_size``, swapped into each
    real frame where the face is in view."""
    donor_image, donor_landmarks = render_generator_face(donor_image, donor_landmarks, generator_size)
    fake = []
    for frame, landmarks, visible in zip(real, clip.landmarks, clip.visible, strict=True):
        fake.append(swap_face(frame, landmarks, donor_image, donor_landmarks)[0] if visible else frame.copy())
    return fake


def _write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Encode frames as mp4v under a temporary name, check it reads back, then rename."""
    height, width = frames[0].shape[:2]
    with atomic_path(path, suffix=".mp4") as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*FOURCC), float(fps), (width, height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot open an {FOURCC} writer for {path}")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()
        _verify_video(tmp, len(frames), (width, height))


def _verify_video(path: Path, frames: int, size: tuple[int, int]) -> None:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            raise OSError(f"OpenCV cannot read back {path}")
        got = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = 0
        while capture.grab():
            count += 1
    finally:
        capture.release()
    if count != frames or got != size:
        raise OSError(f"{path} reads back as {count} frames of {got}, expected {frames} of {size}")


class RenderKey(NamedTuple):
    """One video to render once: a person's real clip, or one manipulation of it."""

    kind: str  # "real", "swap", "reenact" or "retexture"
    target: str  # the photo whose clip it is
    source: str = ""  # swap: the donor; reenact: the driver; retexture: the pair partner
    size: int = 0  # swap: the generator's face size


KINDS = ("real", "swap", "reenact", "retexture")
FFPP_KINDS = {"Deepfakes": "swap", "Face2Face": "reenact", "NeuralTextures": "retexture"}


def _manipulation_rng(config: SampleConfig, key: RenderKey, people: tuple[str, ...]) -> np.random.Generator:
    """The generator of one manipulation: from the seed and its people, whatever the render order."""
    source = people.index(key.source) if key.source else len(people)
    return np.random.default_rng([config.seed, KINDS.index(key.kind), people.index(key.target), source, key.size])


def render_manipulation(
    real: list[np.ndarray],
    key: RenderKey,
    plan: SamplePlan,
    photos: dict[str, np.ndarray],
    annotations: dict,
    config: SampleConfig,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The frames (BGR uint8) and soft masks (float32 0..1) of the fake ``key`` of the clip ``real``."""
    clip = plan.clip(key.target)
    empty = np.zeros(clip.size[::-1], dtype=np.float32)
    if key.kind == "swap":
        donor_landmarks = np.asarray(_subject(annotations, key.source)["landmarks"])
        face, face_landmarks = render_generator_face(photos[key.source], donor_landmarks, key.size)

        def one(frame: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
            return swap_face(frame, clip.landmarks[i], face, face_landmarks)

    elif key.kind == "reenact":
        drive = expression_drive(
            plan.clip(key.source).landmarks, _manipulation_rng(config, key, plan.people), config.fps
        )

        def one(frame: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
            return reenact_face(frame, clip.landmarks[i], drive[i])

    elif key.kind == "retexture":
        style = TextureStyle.draw(_manipulation_rng(config, key, plan.people))

        def one(frame: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
            return retexture_face(frame, clip.landmarks[i], style)

    else:
        raise ValueError(f"not a manipulation: {key}")
    frames, masks = [], []
    for i, frame in enumerate(real):
        fake, mask = one(frame, i) if clip.visible[i] else (frame.copy(), empty)
        frames.append(fake)
        masks.append(mask)
    return frames, masks


# ----------------------------------------------------------------------------- layouts


class Entry(NamedTuple):
    """One video of a layout, as the real dataset labels it (vocabulary translated)."""

    path: str  # relative to the dataset root
    label: str  # REAL or FAKE
    method: str  # FAKE: the layout's method name, "" when the layout does not say
    split: str  # the split its people belong to (train, val, test)
    identity: str  # whose face it shows


@dataclass(frozen=True)
class DatasetLayout:
    """One output folder: which render goes where, the list files, and every video's labels."""

    name: str
    videos: dict[str, RenderKey]  # relative path -> render
    masks: dict[str, RenderKey]  # relative path -> the fake whose mask it is
    texts: dict[str, bytes]  # relative path -> metadata / list file
    entries: tuple[Entry, ...] = ()
    # identities of videos the dataset uses from a declared extra root (path with ..), not shipped here
    borrowed: tuple[tuple[str, str], ...] = ()

    def counts(self) -> dict[str, Any]:
        """real/fake totals, fakes per method, real/fake per split."""
        fakes = [e for e in self.entries if e.label == "FAKE"]
        splits: dict[str, dict[str, int]] = {}
        for entry in self.entries:
            row = splits.setdefault(entry.split or "none", {"real": 0, "fake": 0})
            row["real" if entry.label == "REAL" else "fake"] += 1
        return {
            "real": len(self.entries) - len(fakes),
            "fake": len(fakes),
            "methods": dict(sorted(Counter(e.method or "unknown" for e in fakes).items())),
            "splits": dict(sorted(splits.items())),
            "masks": len(self.masks),
        }


def identity_of(photo: str) -> str:
    """The identity label of the person in ``photo`` (its file stem), as in metadata.json and identities/*.csv."""
    return Path(photo).stem


def _real(person: str) -> RenderKey:
    return RenderKey("real", person)


def _swap(target: str, donor: str, size: int) -> RenderKey:
    return RenderKey("swap", target, donor, size)


def _ffpp_key(method: str, target: str, source: str, config: SampleConfig) -> RenderKey:
    kind = FFPP_KINDS[method]
    return RenderKey(kind, target, source, config.generator_size if kind == "swap" else 0)


def _shows(key: RenderKey) -> str:
    """Whose face a render shows: a swap its donor, anything else its target."""
    return identity_of(key.source if key.kind == "swap" else key.target)


def _lines(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _layout_parts(plan: SamplePlan, config: SampleConfig) -> list[DatasetLayout]:
    """The DFDC training parts: videos + metadata.json (null originals on REALs, identity on all)."""
    layouts = []
    for part in config.parts:
        videos: dict[str, RenderKey] = {}
        metadata: dict[str, dict] = {}
        for clip in plan.clips:
            if clip.part != part:
                continue
            videos[clip.name] = _real(clip.person)
            metadata[clip.name] = {
                "label": "REAL",
                "split": "train",
                "original": None,
                "identity": identity_of(clip.person),
            }
            for fake in clip.fakes:
                videos[fake.name] = _swap(clip.person, fake.donor, config.generator_size)
                metadata[fake.name] = {
                    "label": "FAKE",
                    "split": "train",
                    "original": clip.name,
                    "identity": identity_of(fake.donor),
                }
        entries = [Entry(name, e["label"], "", e["split"], e["identity"]) for name, e in sorted(metadata.items())]
        layouts.append(DatasetLayout(part, videos, {}, {"metadata.json": json_bytes(metadata)}, tuple(entries)))
    return layouts


def _layout_ffpp(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    ids = plan.ffpp_ids
    videos: dict[str, RenderKey] = {}
    masks: dict[str, RenderKey] = {}
    entries = []
    for person in sorted(ids, key=ids.__getitem__):
        path = f"original_sequences/youtube/{FFPP_COMPRESSION}/videos/{ids[person]}.mp4"
        videos[path] = _real(person)
        entries.append(Entry(path, "REAL", "", plan.split_of(person), identity_of(person)))
    for a, b in plan.pairs:
        for target, source in ((a, b), (b, a)):  # FF++ ships both directions of a pair
            name = f"{ids[target]}_{ids[source]}.mp4"
            for method in FFPP_METHODS:
                key = _ffpp_key(method, target, source, config)
                path = f"manipulated_sequences/{method}/{FFPP_COMPRESSION}/videos/{name}"
                videos[path] = key
                masks[f"manipulated_sequences/{method}/masks/videos/{name}"] = key
                entries.append(Entry(path, "FAKE", method, plan.split_of(target), _shows(key)))
    texts = {}
    for split in SPLITS:
        pairs = sorted(sorted([ids[a], ids[b]]) for a, b in plan.pairs if plan.split_of(a) == split)
        texts[f"splits/{split}.json"] = (json.dumps(pairs, indent=2) + "\n").encode("utf-8")
    return DatasetLayout("ffpp", videos, masks, texts, tuple(sorted(entries)))


def _layout_celebdf(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    ids = plan.celebdf_ids
    videos: dict[str, RenderKey] = {}
    entries = []

    def split(person: str) -> str:  # Celeb-DF lists its test videos; everything else is train
        return "test" if plan.split_of(person) == "test" else "train"

    for person, celeb_id in ids.items():
        path = f"Celeb-real/{celeb_id}_0000.mp4"
        videos[path] = _real(person)
        entries.append(Entry(path, "REAL", "", split(person), identity_of(person)))
    for person, number in plan.youtube_ids.items():
        path = f"YouTube-real/{number}.mp4"
        videos[path] = _real(person)
        entries.append(Entry(path, "REAL", "", split(person), identity_of(person)))
    for a, b in plan.pairs:
        if a not in ids:  # a val pair: Celeb-DF has no val split
            continue
        for target, source in ((a, b), (b, a)):
            key = _swap(target, source, config.hq_generator_size)
            path = f"Celeb-synthesis/{ids[target]}_{ids[source]}_0000.mp4"
            videos[path] = key
            entries.append(Entry(path, "FAKE", "Celeb-synthesis", split(target), _shows(key)))
    entries.sort()
    # Celeb-DF's inverted convention: 1 = real, 0 = fake.
    listed = [f"{1 if e.label == 'REAL' else 0} {e.path}" for e in entries if e.split == "test"]
    return DatasetLayout("celebdf", videos, {}, {"List_of_testing_videos.txt": _lines(listed)}, tuple(entries))


def _layout_dfdc_test(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    videos: dict[str, RenderKey] = {}
    entries = []
    for person, (real_name, fake_name) in plan.dfdc_test_names.items():
        videos[real_name] = _real(person)
        entries.append(Entry(real_name, "REAL", "", "test", identity_of(person)))
        partner = plan.partner(person)
        if fake_name is not None and partner is not None:
            key = _swap(person, partner, config.generator_size)
            videos[fake_name] = key
            entries.append(Entry(fake_name, "FAKE", "", "test", _shows(key)))
    entries.sort()
    labels = _csv(["filename", "label"], [[e.path, 1 if e.label == "FAKE" else 0] for e in entries])
    return DatasetLayout("dfdc_test", videos, {}, {"labels.csv": labels}, tuple(entries))


def _layout_dfdcp(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    ids = plan.dfdcp_ids
    videos: dict[str, RenderKey] = {}
    entries = []
    for person, pid in ids.items():
        split = plan.split_of(person)  # train or test: val people are left out
        path = f"original_videos/videos/{pid}/{pid}_A_001.mp4"
        videos[path] = _real(person)
        entries.append(Entry(path, "REAL", "", split, identity_of(person)))
        partner = plan.partner(person)
        if partner is None:
            continue
        for method, size in (("A", config.generator_size), ("B", config.hq_generator_size)):
            key = _swap(person, partner, size)
            path = f"method_{method}/videos/{pid}/{pid}_{method}/{ids[partner]}_{pid}_{method}_001.mp4"
            videos[path] = key
            entries.append(Entry(path, "FAKE", f"method_{method}", split, _shows(key)))
    entries.sort()
    dataset = {e.path: {"label": e.label.lower(), "set": e.split} for e in entries}
    return DatasetLayout("dfdcp", videos, {}, {"dataset.json": json_bytes(dataset)}, tuple(entries))


def _actor(person: str, people: tuple[str, ...]) -> str:
    if person not in ACTOR_LETTER:
        raise InputError(f"{person}: add its DeeperForensics actor letter (M/W) to ACTOR_LETTER in {__name__}")
    return f"{ACTOR_LETTER[person]}{people.index(person):03d}"


def _layout_deeperforensics(plan: SamplePlan, config: SampleConfig) -> DatasetLayout:
    videos: dict[str, RenderKey] = {}
    entries = []
    for person, ffpp_id in plan.ffpp_ids.items():
        partner = plan.partner(person)
        assert partner is not None  # FF++ ids go to paired people only
        key = _swap(person, partner, config.hq_generator_size)
        path = f"manipulated_videos/end_to_end/{ffpp_id}_{_actor(partner, plan.people)}.mp4"
        videos[path] = key
        entries.append(Entry(path, "FAKE", "end_to_end", plan.split_of(person), _shows(key)))
    entries.sort()
    texts = {
        f"lists/splits/{split}.txt": _lines([Path(e.path).name for e in entries if e.split == split])
        for split in SPLITS
    }
    # Its reals are the FF++ targets, which the index reaches through ffpp_root (../ffpp beside it):
    # label them too, so the same clip is the same person in both datasets.
    borrowed = tuple(
        (f"../ffpp/original_sequences/youtube/{FFPP_COMPRESSION}/videos/{ffpp_id}.mp4", identity_of(person))
        for person, ffpp_id in sorted(plan.ffpp_ids.items(), key=lambda item: item[1])
        if "ffpp" in config.datasets
    )
    return DatasetLayout("deeperforensics", videos, {}, texts, tuple(entries), borrowed)


LAYOUTS = {
    "ffpp": _layout_ffpp,
    "celebdf": _layout_celebdf,
    "dfdc_test": _layout_dfdc_test,
    "dfdcp": _layout_dfdcp,
    "deeperforensics": _layout_deeperforensics,
}


def layout_datasets(plan: SamplePlan, config: SampleConfig) -> list[DatasetLayout]:
    """Every output folder of the sample (``config.folders``), planned but not rendered."""
    layouts = _layout_parts(plan, config)
    extra = [LAYOUTS[name](plan, config) for name in config.datasets]
    if extra:
        texts = {
            f"{layout.name}.csv": _csv(
                ["path", "identity"],
                sorted([[e.path, e.identity] for e in layout.entries] + list(map(list, layout.borrowed))),
            )
            for layout in extra
        }
        extra.append(DatasetLayout(IDENTITIES, {}, {}, texts))
    return layouts + extra


# ----------------------------------------------------------------------------- writing


def _cache_name(key: RenderKey, people: tuple[str, ...], mask: bool = False) -> str:
    source = people.index(key.source) if key.source else "-"
    return f"{key.kind}_{people.index(key.target)}_{source}_{key.size}{'_mask' if mask else ''}.mp4"


@contextmanager
def _render_cache(out_root: Path) -> Iterator[Path]:
    """A scratch folder for the renders, beside the outputs (copies stay on one file system).

    Its name is fixed, so a run killed midway leaves at most one, which the next run clears.
    """
    cache = out_root / ".sample-renders.partial"
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    try:
        yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _mask_video_frames(masks: list[np.ndarray]) -> list[np.ndarray]:
    """FF++'s mask videos: white where the frame was manipulated, black elsewhere."""
    return [cv2.cvtColor(np.where(m > 0, 255, 0).astype(np.uint8), cv2.COLOR_GRAY2BGR) for m in masks]


def _render_all(
    cache: Path,
    layouts: list[DatasetLayout],
    plan: SamplePlan,
    photos: dict[str, np.ndarray],
    annotations: dict,
    config: SampleConfig,
) -> dict[str, int]:
    """Render every video (and mask) the layouts need, each once, into ``cache``."""
    videos = {key for layout in layouts for key in layout.videos.values()}
    masks = {key for layout in layouts for key in layout.masks.values()}
    done = Counter()
    for person in plan.people:
        keys = sorted(k for k in videos | masks if k.target == person)
        if not keys:
            continue
        clip = plan.clip(person)
        real = render_real(photos[person], clip)
        for key in keys:
            if key.kind == "real":
                _write_video(cache / _cache_name(key, plan.people), real, config.fps)
                done["real"] += 1
                continue
            frames, soft = render_manipulation(real, key, plan, photos, annotations, config)
            if key in videos:
                _write_video(cache / _cache_name(key, plan.people), frames, config.fps)
                done[key.kind] += 1
            if key in masks:
                _write_video(cache / _cache_name(key, plan.people, mask=True), _mask_video_frames(soft), config.fps)
                done["mask"] += 1
        logger.debug("rendered %s: %s", person, [tuple(k) for k in keys])
    return dict(sorted(done.items()))


def _write_layout(out_root: Path, layout: DatasetLayout, cache: Path, people: tuple[str, ...]) -> int:
    """Copy the layout's renders and write its list files into ``out_root/<name>``, all or nothing;
    return its size in bytes."""
    # Built beside its final place, then swapped in: a crash never leaves a half-written dataset.
    with atomic_dir(out_root / layout.name) as tmp:
        copies = [(path, _cache_name(key, people)) for path, key in layout.videos.items()]
        copies += [(path, _cache_name(key, people, mask=True)) for path, key in layout.masks.items()]
        for path, name in copies:
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache / name, tmp / path)
        for path, data in layout.texts.items():
            (tmp / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp / path).write_bytes(data)
        return sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())


def build_sample(out_root: Path, config: SampleConfig, faces: Path | None = None) -> dict:
    """Write the sample's folders (``config.folders``) under ``out_root``; return a summary."""
    faces = Path(faces) if faces is not None else faces_dir()
    out_root = Path(out_root)
    annotations = load_annotations(faces)
    plan = plan_sample(config, annotations, faces)
    layouts = layout_datasets(plan, config)
    photos = {photo: _read_photo(faces / photo) for photo in plan.people}
    summary: dict[str, Any] = {
        "parts": {},
        "datasets": {},
        "identities": {},
        "videos": 0,
        "masks": 0,
        "bytes": 0,
        "frames": config.frames,
        "people": {split: [identity_of(p) for p in plan.people_in(split)] for split in SPLITS},
        "roles": {clip.role: f"{clip.part}/{clip.name}" for clip in plan.clips if clip.role != "plain"},
    }
    out_root.mkdir(parents=True, exist_ok=True)
    with _render_cache(out_root) as cache:
        summary["renders"] = _render_all(cache, layouts, plan, photos, annotations, config)
        for layout in layouts:
            summary["bytes"] += _write_layout(out_root, layout, cache, plan.people)
            if layout.name == IDENTITIES:
                summary["identities"] = {Path(p).stem: data.count(b"\n") - 1 for p, data in layout.texts.items()}
                continue
            counts = layout.counts()
            summary["datasets"][layout.name] = counts
            summary["videos"] += len(layout.videos)
            summary["masks"] += len(layout.masks)
            if layout.name in config.parts:
                summary["parts"][layout.name] = {"real": counts["real"], "fake": counts["fake"]}
            logger.info(
                "%s: %d real, %d fake videos%s",
                layout.name,
                counts["real"],
                counts["fake"],
                f", {len(layout.masks)} masks" if layout.masks else "",
            )
    return summary


# ---- the stage contract -------------------------------------------------------------------------

Config = SampleConfig


@dataclass(frozen=True)
class Paths:
    out: Path  # receives one folder per sample part and per extra dataset (SampleConfig.folders)


def run(config: SampleConfig, paths: Paths) -> dict:
    """The sample stage: write the sample's folders under ``paths.out``."""
    return build_sample(paths.out, config)
