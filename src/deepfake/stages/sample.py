"""A tiny built-in dataset in the exact DFDC layout, made from the packaged face photos.

Each photo becomes one REAL clip (the still animated with a smooth pan, zoom, small rotation
and lighting drift); each FAKE clip is its original with a donor's face swapped in, frame by
frame, the way a face-swap autoencoder's output is pasted: the donor's face is rendered as an
aligned face of ``generator_size`` pixels (DF-128-style generators output 64-256 px faces that
DFDC pasted into 1080p frames, 3-5x upscaled), then warped onto the target with a similarity
transform, LAB colour transfer and a feathered mask.

People are split into ``identity_groups``; a fake's donor comes from its original's group (the
person themself included: a self-swap). metadata.json labels every video with the ``identity``
whose face it shows, so the folds stage can keep each group in one fold (DFDC's own metadata has
no such label; the key is optional).

Generation is pure NumPy + OpenCV driven by ``numpy.random.default_rng(seed)``, so the same
config gives byte-identical files on the same software stack. The face detector (MTCNN) runs
only in :func:`write_annotations`, whose output ``landmarks.json`` ships with the photos.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.core.errors import InputError, ParamsError
from deepfake.core.fileio import atomic_dir, atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

LANDMARKS_FILE = "landmarks.json"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
FOURCC = "mp4v"
MIN_FRAMES = 8
MIN_SIDE = 64
MIN_GENERATOR_SIZE = 16

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

# ArcFace's 5-point template (eyes, nose tip, mouth corners) in a 112 x 112 crop; the mask ellipse
# below is drawn in the same coordinates, so it follows each face's landmarks.
TEMPLATE_SIDE = 112
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
# Covers the brows and a band of forehead (y 24, below most hairlines and cap brims) down to below
# the lips (y 104), cheek to cheek.
MASK_CENTRE, MASK_AXES, MASK_POINTS = (56.0, 64.0), (35.0, 40.0), 72
FEATHER = 0.25  # feather radius as a fraction of the mask's half width
COLOUR_RATIO = (0.1, 4.0)  # clamp on std ratios: grey photos have (almost) no chroma spread


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

    def __post_init__(self) -> None:
        if isinstance(self.parts, list):
            object.__setattr__(self, "parts", tuple(self.parts))
        _check_int("seed", self.seed, 0)
        _check_int("frames", self.frames, MIN_FRAMES)
        _check_int("fps", self.fps, 1)
        _check_int("width", self.width, MIN_SIDE)
        _check_int("height", self.height, MIN_SIDE)
        _check_int("fakes_per_real", self.fakes_per_real, 1)
        _check_int("identity_groups", self.identity_groups, 1)
        _check_int("generator_size", self.generator_size, MIN_GENERATOR_SIZE)
        if self.width % 2 or self.height % 2:
            raise ParamsError(f"sample width and height must be even (mp4v), got {self.width}x{self.height}")
        if self.width <= self.height:
            raise ParamsError(f"sample width must exceed height (landscape), got {self.width}x{self.height}")
        _check_parts(self.parts)

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
        )


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


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst, as a 2x3."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.array([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / (src_c**2).sum(axis=1).mean())
    shift = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, shift[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., 2) points through a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def _similarity(scale: float, angle: float, anchor: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix that scales and rotates (radians) about ``anchor`` and moves it to ``target``."""
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    linear = np.array([[c, -s], [s, c]])
    return np.hstack([linear, (np.asarray(target) - linear @ np.asarray(anchor))[:, None]])


def _box_corners(box: list[float]) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


# ----------------------------------------------------------------------------- face swap


def face_mask(shape: tuple[int, int], landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hard (uint8 0/255) and feathered (float32 0..1) face masks of a frame, from 5 landmarks.

    The feathered mask is zero wherever the hard one is: it is eroded before it is blurred.
    """
    hard = np.zeros(shape[:2], dtype=np.uint8)
    soft = np.zeros(shape[:2], dtype=np.float32)
    found = _mask_roi(shape, landmarks)
    if found is not None:
        (x0, y0, x1, y1), hard_roi, soft_roi = found
        hard[y0:y1, x0:x1], soft[y0:y1, x0:x1] = hard_roi, soft_roi
    return hard, soft


def _mask_roi(shape: tuple[int, ...], landmarks: np.ndarray) -> tuple[tuple[int, ...], np.ndarray, np.ndarray] | None:
    """The mask's bounding box in the frame plus its hard and soft masks there; None when off-frame."""
    to_frame = umeyama(TEMPLATE, landmarks)
    angles = np.linspace(0.0, 2.0 * np.pi, MASK_POINTS, endpoint=False)
    ellipse = np.stack(
        [MASK_CENTRE[0] + MASK_AXES[0] * np.cos(angles), MASK_CENTRE[1] + MASK_AXES[1] * np.sin(angles)],
        axis=1,
    )
    polygon = apply_affine(to_frame, ellipse)
    scale = float(np.hypot(*to_frame[:, 0]))
    radius = max(1, round(FEATHER * MASK_AXES[0] * scale))
    height, width = shape[:2]
    x0 = max(0, math.floor(polygon[:, 0].min()) - 2)
    y0 = max(0, math.floor(polygon[:, 1].min()) - 2)
    x1 = min(width, math.ceil(polygon[:, 0].max()) + 3)
    y1 = min(height, math.ceil(polygon[:, 1].max()) + 3)
    if x1 <= x0 or y1 <= y0:
        return None
    hard = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    # 4 fractional bits: sub-pixel polygon edges, still integer (deterministic) rasterisation.
    points = np.rint((polygon - [x0, y0]) * 16.0).astype(np.int32)
    cv2.fillPoly(hard, [points], 255, lineType=cv2.LINE_8, shift=4)
    if not hard.any():
        return None
    # A square erosion of radius r then a (2r+1)-wide blur keeps the feather inside the hard mask.
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    eroded = cv2.erode(hard, kernel, borderType=cv2.BORDER_REPLICATE)
    soft = cv2.GaussianBlur(eroded.astype(np.float32) / 255.0, (2 * radius + 1, 2 * radius + 1), radius / 2.0)
    soft[hard == 0] = 0.0
    return (x0, y0, x1, y1), hard, soft


def _match_colour(source: np.ndarray, target: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``source`` (BGR uint8) with its LAB mean/std inside ``region`` moved to ``target``'s.

    Returns float32 BGR in 0..1.
    """
    src = cv2.cvtColor(source.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    dst = cv2.cvtColor(target.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    inside = region.astype(bool)
    src_px, dst_px = src[inside].astype(np.float64), dst[inside].astype(np.float64)
    src_mean, dst_mean = src_px.mean(axis=0), dst_px.mean(axis=0)
    # +1 keeps a grey photo's near-zero chroma spread from exploding the ratio.
    ratio = np.clip((dst_px.std(axis=0) + 1.0) / (src_px.std(axis=0) + 1.0), *COLOUR_RATIO)
    moved = ((src - src_mean) * ratio + dst_mean).astype(np.float32)
    return np.clip(cv2.cvtColor(moved, cv2.COLOR_LAB2BGR), 0.0, 1.0)


def render_generator_face(
    donor_image: np.ndarray, donor_landmarks: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The donor's face as a face-swap generator outputs it: aligned to the 5-point template in a
    ``size`` x ``size`` image. Returns (face, its landmarks). Upscaling it into a larger target face
    leaves the soft, detail-poor look that face-swap videos show."""
    points = np.asarray(donor_landmarks, dtype=np.float64).reshape(5, 2)
    template = TEMPLATE * (size / TEMPLATE_SIDE)
    scale = float(np.hypot(*umeyama(points, template)[:, 0]))
    if scale < 1.0:  # shrink with area averaging first: a bilinear warp alone would alias
        shrunk = (max(1, round(donor_image.shape[1] * scale)), max(1, round(donor_image.shape[0] * scale)))
        points = points * (shrunk[0] / donor_image.shape[1], shrunk[1] / donor_image.shape[0])
        donor_image = cv2.resize(donor_image, shrunk, interpolation=cv2.INTER_AREA)
    face = cv2.warpAffine(
        donor_image, umeyama(points, template), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return face, template


def swap_face(
    frame: np.ndarray, target_landmarks: np.ndarray, donor_image: np.ndarray, donor_landmarks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Swap the donor's face onto the face at ``target_landmarks``; return (new frame, soft mask).

    Pixels where the returned mask is 0 are exactly the input frame's.
    """
    out = frame.copy()
    mask = np.zeros(frame.shape[:2], dtype=np.float32)
    target = np.asarray(target_landmarks, dtype=np.float64).reshape(5, 2)
    found = _mask_roi(frame.shape, target)
    if found is None:
        return out, mask
    (x0, y0, x1, y1), hard, soft = found
    warp = umeyama(donor_landmarks, target)
    warp[:, 2] -= (x0, y0)  # draw straight into the region of interest
    donor = cv2.warpAffine(
        donor_image, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    region = frame[y0:y1, x0:x1]
    matched = _match_colour(donor, region, hard)
    alpha = soft[..., None]
    blended = region.astype(np.float32) / 255.0 * (1.0 - alpha) + matched * alpha
    blended = np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(alpha > 0, blended, region)
    mask[y0:y1, x0:x1] = soft
    return out, mask


# ----------------------------------------------------------------------------- clip plans


@dataclass(frozen=True)
class FakePlan:
    """One fake clip: its file name and the photo whose face is swapped in."""

    name: str
    donor: str


def identity_of(photo: str) -> str:
    """The metadata identity label of the person in ``photo`` (its file stem)."""
    return Path(photo).stem


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


def plan_sample(config: SampleConfig, annotations: dict, faces: Path | None = None) -> list[ClipPlan]:
    """Every clip's name, part, motion, landmarks and donors, drawn from ``config.seed`` only."""
    faces = Path(faces) if faces is not None else faces_dir()
    people = sorted(annotations)  # sorted: the RNG is consumed in a fixed order
    for photo in (TWO_FACE_PHOTO, LEAVING_PHOTO, PORTRAIT_PHOTO):
        if photo not in annotations:
            raise InputError(f"the sample needs {photo} in {faces}")
    if len(config.parts) > len(people):
        raise ParamsError(f"{len(config.parts)} parts but only {len(people)} people to spread over them")
    if config.identity_groups > len(people):
        raise ParamsError(f"identity_groups={config.identity_groups} but only {len(people)} people")
    smallest = len(people) // config.identity_groups
    if config.fakes_per_real > smallest:
        raise ParamsError(
            f"fakes_per_real={config.fakes_per_real} but the smallest of {config.identity_groups} identity groups "
            f"of {len(people)} people has only {smallest} donors per person (the person included: a self-swap)"
        )
    rng = np.random.default_rng(config.seed)
    groups = np.array_split(rng.permutation(len(people)), len(config.parts))
    part_of = {people[int(j)]: config.parts[k] for k, group in enumerate(groups) for j in group}
    identity_groups = np.array_split(rng.permutation(len(people)), config.identity_groups)
    group_of = {people[int(j)]: k for k, group in enumerate(identity_groups) for j in group}
    taken: set[str] = set()
    clips = []
    for photo in people:
        clip = _plan_clip(rng, config, annotations, faces, photo, part_of[photo], taken)
        # Donors from the same identity group only: with folds keeping a group together, no face
        # seen in a training fake belongs to a person whose real clip is validated or tested on.
        # The person is a candidate too: a self-swap keeps the identity and changes only the
        # rendering (generator resolution, colour, blend), as reenactment-style methods do.
        candidates = [p for p in people if group_of[p] == group_of[photo]]
        donors = rng.choice(candidates, size=config.fakes_per_real, replace=False)
        fakes = tuple(FakePlan(_draw_name(rng, taken), str(donor)) for donor in donors)
        clips.append(replace(clip, fakes=fakes))
    return clips


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


def _write_part(
    folder: Path, part: str, clips: list[ClipPlan], photos: dict, annotations: dict, config: SampleConfig
) -> dict:
    """Render and write one part's videos into ``folder``; return its metadata."""
    fps = config.fps
    metadata: dict[str, dict] = {}
    for clip in clips:
        if clip.part != part:
            continue
        real = render_real(photos[clip.person], clip)
        _write_video(folder / clip.name, real, fps)
        metadata[clip.name] = {
            "label": "REAL",
            "split": "train",
            "original": None,
            "identity": identity_of(clip.person),
        }
        for fake in clip.fakes:
            donor_landmarks = np.asarray(_subject(annotations, fake.donor)["landmarks"])
            frames = render_fake(real, clip, photos[fake.donor], donor_landmarks, config.generator_size)
            _write_video(folder / fake.name, frames, fps)
            metadata[fake.name] = {
                "label": "FAKE",
                "split": "train",
                "original": clip.name,
                "identity": identity_of(fake.donor),
            }
        logger.debug("%s: %s (%s) + %d fake(s)", part, clip.name, clip.person, len(clip.fakes))
    return metadata


def build_sample(out_root: Path, config: SampleConfig, faces: Path | None = None) -> dict:
    """Write the sample under ``out_root/<part>/`` (videos + metadata.json); return a summary."""
    faces = Path(faces) if faces is not None else faces_dir()
    out_root = Path(out_root)
    annotations = load_annotations(faces)
    clips = plan_sample(config, annotations, faces)
    photos = {photo: _read_photo(faces / photo) for photo in sorted(annotations)}
    summary: dict[str, Any] = {"parts": {}, "videos": 0, "bytes": 0, "frames": config.frames, "roles": {}}
    out_root.mkdir(parents=True, exist_ok=True)
    for part in config.parts:
        # Built beside its final place, then swapped in: a crash never leaves a half-written part.
        with atomic_dir(out_root / part) as tmp:
            metadata = _write_part(tmp, part, clips, photos, annotations, config)
            write_json_atomic(tmp / "metadata.json", metadata)
            size = sum(p.stat().st_size for p in tmp.iterdir())
        labels = [entry["label"] for entry in metadata.values()]
        summary["parts"][part] = {"real": labels.count("REAL"), "fake": labels.count("FAKE")}
        summary["videos"] += len(metadata)
        summary["bytes"] += size
        logger.info("%s: %d real, %d fake videos", part, labels.count("REAL"), labels.count("FAKE"))
    summary["roles"] = {clip.role: f"{clip.part}/{clip.name}" for clip in clips if clip.role != "plain"}
    return summary


# ---- the stage contract -------------------------------------------------------------------------

Config = SampleConfig


@dataclass(frozen=True)
class Paths:
    out: Path  # receives one folder per sample part


def run(config: SampleConfig, paths: Paths) -> dict:
    """The sample stage: write the sample parts under ``paths.out``."""
    return build_sample(paths.out, config)
