"""The DFDC winner's detector (Selim Seferbekov, selimsef/dfdc_deepfake_challenge, MIT): its checkpoint
layout and its inference, re-implemented (none of the publisher's code is copied here).

The model is the project's ``classifier`` over timm's EfficientNet-B7 noisy-student
(``tf_efficientnet_b7.ns_jft_in1k``; the publisher's timm called it ``tf_efficientnet_b7_ns``):
``forward_features`` -> global average pool -> dropout -> ``Linear(features, 1)``.

Checkpoint layout (the release 0.0.1 files ``final_*_DeepFakeClassifier_tf_efficientnet_b7_ns_*``):
``{"state_dict": {"module.encoder.*", "module.fc.*"}, "epoch": int, "bce_best": numpy float64}``, written
by ``torch.save`` from a DataParallel model (the ``module.`` prefix) whose encoder kept timm's own
ImageNet head (``encoder.classifier.*``, never used by the forward pass). ``read_checkpoint`` loads it
with ``weights_only=True`` allowing exactly the globals a pickled numpy float64 needs (``ALLOWED_GLOBALS``).

Inference, as the publisher's ``predict_folder.py`` + ``kernel_utils.py`` run it, with every number taken
from a ``Dfdc1stConfig`` (params' ``zoo.dfdc1st`` holds the publisher's values, ``Dfdc1stConfig.from_params``):

1. frames: ``frames`` indices at ``np.linspace(0, count - 1, frames)`` (truncated to int), read with
   OpenCV by grabbing every frame up to the last index and retrieving the wanted ones (RGB);
2. faces: facenet-pytorch's MTCNN (``thresholds``, margin 0) on each frame halved (``downscale``) with
   PIL's ``resize`` (bicubic), boxes scaled back with ``int(v * downscale)``; every face is kept, up to
   ``max_faces`` per video (the publisher's batch holds ``4 * frames`` slots and never fills the last);
3. crop: the box plus ``h // margin_divisor`` / ``w // margin_divisor`` on each side, clipped at 0 only;
4. input: the longest side resized to ``image_size`` (INTER_AREA down, INTER_CUBIC up, ``int()`` sizes),
   zero padded to a centred square, ``(x / 255 - mean) / std`` with the ImageNet mean and std, NCHW float32;
5. score: per model, the sigmoid of each face's logit, then ``confident_strategy``; the video's
   probability is the mean over the models.

Where this differs from the publisher on purpose: a video that cannot be read, has no face, or whose
crop is empty gets a record with a ``status`` other than ``"ok"`` and no probability (the publisher
returns 0.5 for every failure, an exception included); a video with exactly one face is scored (the
publisher's ``squeeze`` turns one face's prediction into a 0-d tensor, its slicing raises, and the
video silently gets 0.5). Probabilities are computed in float64 from the float32 logits (the
publisher's sigmoid and strategy run in float32): the difference is below 1e-6.
"""

from __future__ import annotations

import importlib
import importlib.resources
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from deepfake.core.errors import CheckpointError, InputError, ParamsError
from deepfake.core.params import Dfdc1stParams
from deepfake.media.face_input import IMAGENET_MEAN, IMAGENET_STD, probabilities

# ----------------------------------------------------------------------------- checkpoints

# A numpy float64 (``bce_best``) pickles as ``scalar(dtype, bytes)``; numpy 1 (the publisher's) names the
# function ``numpy.core.multiarray.scalar``, numpy 2 ``numpy._core.multiarray.scalar``, and under numpy 2
# unpickling ``numpy.dtype("f8")`` builds a ``numpy.dtypes.Float64DType`` (its state is set on it).
_SCALAR: Any = importlib.import_module("numpy._core.multiarray").scalar
ALLOWED_GLOBALS: tuple[Any, ...] = (
    (_SCALAR, "numpy.core.multiarray.scalar"),
    _SCALAR,
    np.dtype,
    np.dtypes.Float64DType,
)
# Keys of the publisher's encoder that the project's encoder (timm, ``num_classes=0``) does not have: timm's
# ImageNet head, which the publisher's forward pass never used.
DROPPED_KEYS = frozenset({"encoder.classifier.weight", "encoder.classifier.bias"})
HEAD_KEYS = ("fc.weight", "fc.bias")
ENCODER_PREFIX = "encoder."
PARALLEL_PREFIX = "module."
# numpy 1's name for the scalar constructor, as the publisher's files spell it (protocol 2 GLOBAL opcode)
_NUMPY2_SCALAR = b"cnumpy._core.multiarray\nscalar\n"
_NUMPY1_SCALAR = b"cnumpy.core.multiarray\nscalar\n"
# write_checkpoint's calibration: the photo side and the spread of the photos' logits
CALIBRATION_SIZE = 256
CALIBRATION_LOGIT_STD = 1.5


def _load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: not found")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling refusal, a truncated or foreign file: nothing in it was run
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: refused to load (not a DFDC-1st weights file): {first}") from err


def _meta(path: Path, raw: Mapping[str, Any]) -> dict[str, Any]:
    epoch, bce = raw.get("epoch"), raw.get("bce_best")
    if not isinstance(epoch, int | np.integer) or not isinstance(bce, float | np.floating):
        raise CheckpointError(f"{path}: expected an int 'epoch' and a float 'bce_best', got {epoch!r}, {bce!r}")
    return {"epoch": int(epoch), "bce_best": float(bce)}


def _map_keys(path: Path, state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: the state dict holds something other than named tensors")
    plain = {re.sub(f"^{re.escape(PARALLEL_PREFIX)}", "", k): v for k, v in state.items()}
    unexpected = sorted(k for k in plain if not k.startswith(ENCODER_PREFIX) and k not in HEAD_KEYS)
    if unexpected:
        raise CheckpointError(f"{path}: keys outside the DFDC-1st layout: {unexpected[:5]}")
    missing = [k for k in HEAD_KEYS if k not in plain]
    if missing:
        raise CheckpointError(f"{path}: missing {missing} (the DFDC-1st head)")
    return {k: v for k, v in plain.items() if k not in DROPPED_KEYS}


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``classifier`` state dict (``encoder.*``, ``fc.*``) of a DFDC-1st file and its metadata
    (``epoch``, ``bce_best`` as a float). Keys the encoder cannot hold are the strict load's to refuse."""
    path = Path(path)
    raw = _load(path)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("state_dict"), Mapping):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict' (the DFDC-1st layout)")
    return _map_keys(path, raw["state_dict"]), _meta(path, raw)


class _PublisherModel(torch.nn.Module):
    """The publisher's module tree as its state dict names it: ``encoder`` (timm, its ImageNet head kept)
    and ``fc`` (average pooling and dropout hold no tensors)."""

    encoder: Any  # a timm EfficientNet; timm types it nn.Module

    def __init__(self, encoder: str) -> None:
        super().__init__()
        import timm

        try:
            self.encoder = timm.create_model(encoder, pretrained=False)
        except RuntimeError as err:  # timm's unknown-name error
            raise ParamsError(f"unknown timm encoder {encoder!r}: {err}") from err
        if not isinstance(getattr(self.encoder, "classifier", None), torch.nn.Linear):
            raise ParamsError(f"{encoder!r} is not a timm EfficientNet (no 'classifier' head)")
        self.fc = torch.nn.Linear(int(self.encoder.num_features), 1)


def _read_photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read the packaged photo {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _calibration_batch() -> np.ndarray:
    """The packaged face photos and their mirror images, fitted to ``CALIBRATION_SIZE`` and normalised."""
    folder = Path(str(importlib.resources.files("deepfake"))) / "assets" / "faces"
    photos = [_read_photo(path) for path in sorted(folder.glob("*.jpg"))]
    if not photos:
        raise FileNotFoundError(f"no packaged face photos in {folder}")
    photos += [photo[:, ::-1] for photo in photos]
    size = CALIBRATION_SIZE
    squares = [pad_to_square(isotropic_resize(photo, size), size) for photo in photos]
    return normalize(np.stack(squares))


def _calibrate(model: _PublisherModel) -> None:
    """Give a freshly initialised model face-dependent outputs: the batch norms' statistics measured on the
    packaged face photos (at timm's initialisation the features barely depend on the input), then ``fc``
    scaled and shifted so the photos' logits have mean 0 and standard deviation ``CALIBRATION_LOGIT_STD``."""
    batch = torch.from_numpy(_calibration_batch())
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: the statistics of exactly this batch
    with torch.no_grad():
        model.train()
        model.encoder.forward_features(batch)
        model.eval()
        logits = model.fc(model.encoder.forward_features(batch).mean((2, 3))).squeeze(1)
        scale = CALIBRATION_LOGIT_STD / logits.std()
        model.fc.weight.mul_(scale)
        model.fc.bias.sub_(logits.mean() * scale)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.1  # timm's value again (not saved in the file; kept for a faithful module)


def write_checkpoint(path: str | Path, encoder: str, seed: int, *, numpy1_names: bool = True) -> None:
    """A random-weight checkpoint of timm ``encoder`` (never downloaded) in the publisher's file layout.

    Weights come from timm's initialisation after ``torch.manual_seed(seed)``, with the batch norms and
    ``fc`` calibrated on the packaged face photos (``_calibrate``) so faces get different scores. The file
    is written as the publisher's torch did (the legacy, non-zip ``torch.save`` format), with ``module.``
    prefixes, the encoder's own ``classifier`` keys, an int ``epoch`` and a numpy float64 ``bce_best``.
    ``numpy1_names``: name the scalar's constructor as numpy 1 pickled it (the publisher's files); False
    keeps this numpy's own name (what a numpy-2 ``torch.save`` writes).
    """
    torch.manual_seed(seed)
    model = _PublisherModel(encoder)
    _calibrate(model)
    state = {f"{PARALLEL_PREFIX}{k}": v for k, v in model.state_dict().items()}
    payload = {"epoch": 1 + seed % 50, "state_dict": state, "bce_best": np.float64(0.1 + (seed % 97) / 1000)}
    buffer = io.BytesIO()
    torch.save(payload, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    if numpy1_names:
        if data.count(_NUMPY2_SCALAR) != 1:
            raise RuntimeError("unexpected pickle of the numpy scalar; cannot rename it to numpy 1's")
        data = data.replace(_NUMPY2_SCALAR, _NUMPY1_SCALAR)
    Path(path).write_bytes(data)


# ----------------------------------------------------------------------------- inference


@dataclass(frozen=True)
class Dfdc1stConfig:
    """The winner's inference numbers (params' ``zoo.dfdc1st``, as a package records them, and the input size)."""

    frames: int  # frames sampled per video, evenly spaced
    thresholds: tuple[float, float, float]  # MTCNN's P-, R-, O-Net thresholds
    downscale: int  # frames are divided by this for detection, boxes multiplied back
    margin_divisor: int  # crop margin: box width (height) // this on each side
    image_size: int  # model input side
    max_faces: int  # faces scored per video at most (the publisher's 4 * frames batch minus its unused slot)
    confident_threshold: float  # a face above this is a confident fake
    confident_min_count: int  # more confident fakes than this (and ...)
    confident_fraction_divisor: float  # ... more than faces // this): the mean of the confident ones
    real_threshold: float  # a face below this is a confident real
    real_fraction: float  # more than this fraction of confident reals: the mean of those

    def __post_init__(self) -> None:
        if self.frames < 1 or self.downscale < 1 or self.margin_divisor < 1 or self.image_size < 8:
            raise ParamsError(f"frames, downscale, margin_divisor must be >= 1 and image_size >= 8: {self}")
        if self.max_faces < 1 or self.confident_fraction_divisor <= 0:
            raise ParamsError(f"max_faces must be >= 1 and confident_fraction_divisor > 0: {self}")

    @classmethod
    def from_params(cls, section: Dfdc1stParams, image_size: int) -> Dfdc1stConfig:
        """The config of a ``zoo.dfdc1st`` params section (validated) and a package's input size."""
        confident = section.confident
        return cls(
            frames=section.frames,
            thresholds=(section.thresholds[0], section.thresholds[1], section.thresholds[2]),
            downscale=section.downscale,
            margin_divisor=section.margin_divisor,
            image_size=image_size,
            max_faces=section.max_faces,
            confident_threshold=confident.threshold,
            confident_min_count=confident.min_fakes,
            confident_fraction_divisor=confident.min_fake_divisor,
            real_threshold=confident.low,
            real_fraction=confident.low_fraction,
        )


_MEAN = np.array(IMAGENET_MEAN, np.float32)
_STD = np.array(IMAGENET_STD, np.float32)

ScoreMembers = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def frame_indices(count: int, frames: int) -> list[int]:
    """``frames`` evenly spaced indices of a ``count``-frame video, truncated to int."""
    return [int(i) for i in np.linspace(0, count - 1, frames, endpoint=True).astype(np.int64)]


def _grab_frames(capture: cv2.VideoCapture, wanted: Sequence[int]) -> list[np.ndarray]:
    """Grab every frame from the first wanted one to the last, decode the wanted ones. A repeated index
    (a video shorter than ``frames``) ends the reading there, as the publisher's reader does."""
    frames: list[np.ndarray] = []
    for index in range(wanted[0], wanted[-1] + 1):
        if not capture.grab():
            break
        if index != wanted[len(frames)]:
            continue
        ok, frame = capture.retrieve()
        if not ok or frame is None:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if len(frames) == len(wanted):
            break
    return frames


def sample_frames(path: str | Path, frames: int) -> list[np.ndarray]:
    """The video's sampled frames (RGB uint8); empty when it has no readable frame."""
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return _grab_frames(capture, frame_indices(count, frames)) if count > 0 else []
    finally:
        capture.release()


def build_detector(config: Dfdc1stConfig, device: str | torch.device = "cpu") -> Any:
    """facenet-pytorch's MTCNN as the publisher built it (margin 0, ``config.thresholds``)."""
    from facenet_pytorch import MTCNN

    return MTCNN(margin=0, thresholds=list(config.thresholds), device=torch.device(device))


def _detect_boxes(frame: np.ndarray, detector: Any, downscale: int) -> list[tuple[int, int, int, int]]:
    from PIL import Image

    image = Image.fromarray(frame.astype(np.uint8))
    image = image.resize(size=[side // downscale for side in image.size], resample=Image.Resampling.BICUBIC)
    boxes, _ = detector.detect(image, landmarks=False)
    if boxes is None:
        return []
    scaled = []
    for box in boxes:
        if box is not None:
            xmin, ymin, xmax, ymax = (int(v * downscale) for v in box[:4])
            scaled.append((xmin, ymin, xmax, ymax))
    return scaled


def _crop(frame: np.ndarray, box: tuple[int, int, int, int], divisor: int) -> np.ndarray:
    xmin, ymin, xmax, ymax = box
    pad_w, pad_h = (xmax - xmin) // divisor, (ymax - ymin) // divisor
    return frame[max(ymin - pad_h, 0) : ymax + pad_h, max(xmin - pad_w, 0) : xmax + pad_w]


def detect_faces(frames: Sequence[np.ndarray], detector: Any, config: Dfdc1stConfig) -> list[np.ndarray]:
    """Every detected face of every frame, cropped with its margin (views into the frames), in order."""
    return [
        _crop(frame, box, config.margin_divisor)
        for frame in frames
        for box in _detect_boxes(frame, detector, config.downscale)
    ]


def isotropic_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The longest side to ``size`` (INTER_AREA down, INTER_CUBIC up; sizes truncated to int)."""
    height, width = image.shape[:2]
    if max(width, height) == size:
        return image
    if min(width, height) == 0:
        raise InputError(f"an empty face crop ({width}x{height})")
    scale = size / max(width, height)
    new_w, new_h = (size, height * scale) if width > height else (width * scale, size)
    interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    return cv2.resize(image, (int(new_w), int(new_h)), interpolation=interpolation)


def pad_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (cut to ``size`` if larger) centred on a black ``size`` x ``size`` square."""
    image = image[:size, :size]
    square = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - image.shape[0]) // 2, (size - image.shape[1]) // 2
    square[top : top + image.shape[0], left : left + image.shape[1]] = image
    return square


def model_inputs(crops: Sequence[np.ndarray], config: Dfdc1stConfig) -> np.ndarray:
    """Face crops (RGB uint8) -> the normalised batch (N, 3, S, S) float32: ``(x / 255 - mean) / std``."""
    size = config.image_size
    return normalize(np.stack([pad_to_square(isotropic_resize(crop, size), size) for crop in crops]))


def normalize(squares: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) RGB uint8 -> (N, 3, S, S) float32 ``(x / 255 - mean) / std`` (ImageNet mean and std)."""
    batch = (squares.astype(np.float32) / np.float32(255.0) - _MEAN) / _STD
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def confident_strategy(probs: Sequence[float] | np.ndarray, config: Dfdc1stConfig) -> float:
    """The winner's face -> video aggregation: the mean of the confident fakes when there are enough of
    them, else the mean of the confident reals when nearly all faces are, else the mean of all."""
    values = np.asarray(probs, dtype=np.float64)
    if values.size == 0:
        raise InputError("no face probabilities to aggregate")
    fakes = values[values > config.confident_threshold]
    if fakes.size > values.size // config.confident_fraction_divisor and fakes.size > config.confident_min_count:
        return float(fakes.mean())
    reals = values[values < config.real_threshold]
    if reals.size > config.real_fraction * values.size:
        return float(reals.mean())
    return float(values.mean())


def _failed(path: Path, status: str, reason: str, frames: int = 0, faces: int = 0) -> dict[str, Any]:
    return {
        "video": str(path),
        "status": status,
        "reason": reason,
        "probability": None,
        "frames": frames,
        "faces": faces,
        "members": {},
    }


def score_faces(crops: Sequence[np.ndarray], score_members: ScoreMembers, config: Dfdc1stConfig) -> dict[str, Any]:
    """Per member: each face's P(fake) and the member's video probability; and their mean."""
    logits = score_members(model_inputs(crops, config))
    members: dict[str, dict[str, Any]] = {}
    for name, values in logits.items():
        faces = probabilities(np.asarray(values, dtype=np.float32).reshape(-1))
        members[name] = {"probability": confident_strategy(faces, config), "faces": [float(p) for p in faces]}
    if not members:
        raise InputError("the scorer returned no member")
    mean = math.fsum(m["probability"] for m in members.values()) / len(members)
    return {"probability": mean, "members": members}


def predict_video(
    path: str | Path, score_members: ScoreMembers, detector: Any, config: Dfdc1stConfig
) -> dict[str, Any]:
    """One video's record: ``status`` ("ok", "unreadable", "no_faces", "error"), ``probability`` (None
    unless ok), ``frames`` read, ``faces`` scored, and per member its probability and face scores."""
    path = Path(path)
    frames = sample_frames(path, config.frames)
    if not frames:
        return _failed(path, "unreadable", "no frame could be read")
    crops = detect_faces(frames, detector, config)[: config.max_faces]
    if not crops:
        return _failed(path, "no_faces", "MTCNN found no face", len(frames))
    try:
        scored = score_faces(crops, score_members, config)
    except InputError as err:
        return _failed(path, "error", str(err), len(frames), len(crops))
    return {"video": str(path), "status": "ok", "reason": "", "frames": len(frames), "faces": len(crops), **scored}
