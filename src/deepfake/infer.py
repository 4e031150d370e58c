"""Score videos: sampled frames -> MTCNN -> crops -> a backend's ensemble -> one probability per video.

Per video (DFDC-1st's inference): ``predict.frames`` evenly spaced frames, batched face detection
with the pipeline's ``bboxes`` detector params, crops with the training margin (``crops.margin``),
isotropic resize + pad and ImageNet normalisation as in training, one batched forward per ensemble
member, the ``evaluate`` aggregation per member (confident strategy by default), and the mean over
members. A video that cannot be decoded or shows no face gets a status saying so; its CSV row
carries 0.5 because the submission format needs a number, never silently.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.augment import eval_transform
from deepfake.data import IMAGENET_MEAN, IMAGENET_STD
from deepfake.errors import ToolchainError
from deepfake.evaluate import EvalConfig
from deepfake.faces import DetectorConfig, FaceDetector, detection_scale, expand_box
from deepfake.fileio import atomic_path, write_json_atomic
from deepfake.metrics import aggregate_video
from deepfake.params import section
from deepfake.video import FrameSampling, VideoError, iter_sampled_frames, probe

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8", "tensorrt", "triton", "vart")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FALLBACK_PROBABILITY = 0.5  # what the CSV must carry for a video without a score (status says why)


@dataclass(frozen=True)
class PredictConfig:
    frames: int
    batch_size: int
    detect_batch: int
    margin: float
    detector: DetectorConfig
    scale: Any
    scale_rule: tuple[tuple[float, float], ...]
    max_frames: int
    max_pixels: int
    eval: EvalConfig

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PredictConfig:
        sect, boxes, video = section(params, "predict"), section(params, "bboxes"), section(params, "video")
        config = cls(
            frames=int(sect["frames"]),
            batch_size=int(sect["batch_size"]),
            detect_batch=int(boxes["batch_size"]),
            margin=float(section(params, "crops")["margin"]),
            detector=DetectorConfig.from_params(boxes),
            scale=boxes["scale"],
            scale_rule=tuple((float(a), float(b)) for a, b in boxes["scale_rule"]),
            max_frames=int(video["max_frames"]),
            max_pixels=int(video["max_pixels"]),
            eval=EvalConfig.from_params(params),
        )
        if config.frames < 1 or config.batch_size < 1:
            raise ValueError("predict.frames and predict.batch_size must be >= 1")
        return config


# ---- backends: a normalised (N, 3, S, S) float32 batch in, one logit per crop per member out -------


class Backend:
    name = "backend"
    members: list[str]
    image_size: int

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, params: dict[str, Any], models_dir: Path) -> None:
        import torch

        from deepfake.device import resolve_device
        from deepfake.evaluate import ensemble_members, load_member

        self.device = resolve_device(str(section(params, "evaluate")["device"]))
        members = ensemble_members(params, models_dir)
        self.models = {m.name: load_member(m, self.device) for m in members}
        self.members = list(self.models)
        self.image_size = int(section(params, "train")["image_size"])
        self._torch = torch

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        with self._torch.no_grad():
            batch = self._torch.from_numpy(images).to(self.device)
            return {n: m(batch)["logit"].float().reshape(-1).cpu().numpy() for n, m in self.models.items()}


class OnnxBackend(Backend):
    def __init__(self, folder: Path, name: str) -> None:
        from deepfake.export import onnx_session, read_manifest

        manifest = read_manifest(folder, "quantize" if name == "onnx-int8" else "export")
        self.name = name
        self.sessions = {m["name"]: onnx_session(folder / m["file"]) for m in manifest["members"]}
        self.members = list(self.sessions)
        self.image_size = int(manifest["input"]["image_size"])

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return {n: s.run(["logit"], {"image": images})[0].reshape(-1) for n, s in self.sessions.items()}


class TensorRTBackend(Backend):
    """Engines ``<member>.plan`` from build_trt, run with TensorRT 10's tensor-address API."""

    name = "tensorrt"

    def __init__(self, folder: Path, onnx_dir: Path) -> None:
        import torch

        from deepfake.compile import check_tensorrt
        from deepfake.export import read_manifest

        trt = check_tensorrt()
        manifest = read_manifest(onnx_dir)
        self.image_size = int(manifest["input"]["image_size"])
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.contexts = {}
        for member in manifest["members"]:
            plan = folder / f"{member['name']}.plan"
            if not plan.is_file():
                raise FileNotFoundError(f"{plan}: no engine; run `dvc repro deploy/dvc.yaml:build_trt`")
            engine = runtime.deserialize_cuda_engine(plan.read_bytes())
            self.contexts[member["name"]] = (engine, engine.create_execution_context(), member["outputs"])
        self.members = list(self.contexts)
        self._torch = torch

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        batch = torch.from_numpy(images).cuda()
        stream = torch.cuda.current_stream()
        out = {}
        for name, (_engine, context, outputs) in self.contexts.items():
            context.set_input_shape("image", tuple(batch.shape))
            context.set_tensor_address("image", batch.data_ptr())
            buffers = {o: torch.empty(tuple(context.get_tensor_shape(o)), device="cuda") for o in outputs}
            for o, buffer in buffers.items():
                context.set_tensor_address(o, buffer.data_ptr())
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT engine {name} failed to run")
            stream.synchronize()
            out[name] = buffers["logit"].reshape(-1).cpu().numpy()
        return out


class TritonBackend(Backend):
    """A running Triton server (``--url``, HTTP host:8000 or grpc://host:8001) serving models/triton."""

    name = "triton"

    def __init__(self, url: str, onnx_dir: Path) -> None:
        from deepfake.export import read_manifest

        grpc = url.startswith("grpc://")
        try:
            if grpc:
                import tritonclient.grpc as client_module
            else:
                import tritonclient.http as client_module
        except (ImportError, RuntimeError) as err:  # tritonclient raises RuntimeError for a missing extra
            raise ToolchainError(f"tritonclient is not installed ({err}); pip install -r requirements.txt") from err
        address = url.removeprefix("grpc://").removeprefix("http://")
        self.module = client_module
        self.client = client_module.InferenceServerClient(url=address)
        try:
            live = self.client.is_server_live()
        except Exception as err:  # connection refused, DNS, timeouts: all mean "no server there"
            raise ToolchainError(f"no Triton server answers at {url}: {err}") from err
        if not live:
            raise ToolchainError(f"the Triton server at {url} is not live")
        manifest = read_manifest(onnx_dir)
        self.members = [m["name"] for m in manifest["members"]]
        self.image_size = int(manifest["input"]["image_size"])
        for member in self.members:
            if not self.client.is_model_ready(member):
                raise ToolchainError(f"the Triton server at {url} has no ready model {member!r} (models/triton)")

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for member in self.members:
            request = self.module.InferInput("image", list(images.shape), "FP32")
            request.set_data_from_numpy(images)
            result = self.client.infer(member, [request], outputs=[self.module.InferRequestedOutput("logit")])
            out[member] = result.as_numpy("logit").reshape(-1)
        return out


class VartBackend(Backend):
    """DPU xmodels (``models/dpu/<member>.xmodel``) on a VCK5000 with Vitis AI's VART runtime."""

    name = "vart"

    def __init__(self, folder: Path, params: dict[str, Any], models_dir: Path) -> None:
        try:
            import vart
            import xir
        except ImportError as err:
            raise ToolchainError(
                f"VART is not installed ({err}): run inside the Vitis AI runtime on a VCK5000"
            ) from err
        from deepfake.evaluate import ensemble_members

        self.image_size = int(section(params, "train")["image_size"])
        self.runners = {}
        for member in ensemble_members(params, models_dir):
            path = folder / f"{member.name}.xmodel"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no xmodel; run `dvc repro deploy/dvc.yaml:compile_dpu`")
            graph = xir.Graph.deserialize(str(path))
            subgraphs = [
                s
                for s in graph.get_root_subgraph().toposort_child_subgraph()
                if s.has_attr("device") and s.get_attr("device").upper() == "DPU"
            ]
            if len(subgraphs) != 1:
                raise RuntimeError(f"{path}: expected one DPU subgraph, found {len(subgraphs)}")
            self.runners[member.name] = vart.Runner.create_runner(subgraphs[0], "run")
        self.members = list(self.runners)

    def logits(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # the DPU takes NHWC
        for name, runner in self.runners.items():
            tensor_in, tensor_out = runner.get_input_tensors()[0], runner.get_output_tensors()[0]
            batch = int(tensor_in.dims[0])
            scale_in = 2.0 ** tensor_in.get_attr("fix_point")
            scale_out = 2.0 ** -tensor_out.get_attr("fix_point")
            values = []
            for start in range(0, len(nhwc), batch):
                chunk = nhwc[start : start + batch]
                data_in = np.zeros(tuple(tensor_in.dims), np.int8)
                data_in[: len(chunk)] = np.clip(np.round(chunk * scale_in), -128, 127)
                data_out = np.zeros(tuple(tensor_out.dims), np.int8)
                runner.wait(runner.execute_async([data_in], [data_out]))
                values.append(data_out[: len(chunk)].reshape(len(chunk), -1)[:, 0].astype(np.float32) * scale_out)
            out[name] = np.concatenate(values)
        return out


def create_backend(name: str, params: dict[str, Any], models_root: Path, url: str | None = None) -> Backend:
    """The backend ``name`` over the models under ``models_root`` (train/, onnx/, int8/, trt/, dpu/)."""
    if name == "torch":
        return TorchBackend(params, models_root / "train")
    if name == "onnx":
        return OnnxBackend(models_root / "onnx", "onnx")
    if name == "onnx-int8":
        return OnnxBackend(models_root / "int8", "onnx-int8")
    if name == "tensorrt":
        return TensorRTBackend(models_root / "trt", models_root / "onnx")
    if name == "triton":
        if not url:
            raise ValueError("the triton backend needs --url (host:8000, or grpc://host:8001)")
        return TritonBackend(url, models_root / "onnx")
    if name == "vart":
        return VartBackend(models_root / "dpu", params, models_root / "train")
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


# ---- one video --------------------------------------------------------------------------------------


def even_stride(frame_count: int, frames: int, max_frames: int) -> int:
    """The stride that spreads ``frames`` samples over the video (its header count, capped)."""
    usable = min(frame_count, max_frames) if frame_count > 0 else max_frames
    return max(1, usable // frames)


def sample_frames(path: Path, config: PredictConfig) -> Iterator[tuple[int, np.ndarray]]:
    """Up to ``config.frames`` evenly spaced RGB frames, decoded one at a time (VideoError when none decodes)."""
    info = probe(path)
    stride = even_stride(info.frame_count, config.frames, config.max_frames)
    sampling = FrameSampling(stride=stride, max_frames=config.max_frames, max_pixels=config.max_pixels)
    for count, (index, frame) in enumerate(iter_sampled_frames(path, sampling), start=1):
        yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if count >= config.frames:
            return


def frame_batches(frames: Iterable[tuple[int, np.ndarray]], batch_size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Detector batches as frames arrive; a frame of another size (a mid-stream change) starts a new batch."""
    batch: list[tuple[int, np.ndarray]] = []
    for item in frames:
        if batch and (item[1].shape != batch[0][1].shape or len(batch) >= batch_size):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def detect_batch(detector: FaceDetector, frames: Sequence[np.ndarray], config: PredictConfig) -> list[np.ndarray]:
    """Boxes per frame for frames of one size, at the detection scale the bboxes stage uses."""
    height, width = frames[0].shape[:2]
    return detector.detect(list(frames), detection_scale(width, height, config.scale_rule, config.scale))


def detect(detector: FaceDetector, frames: Sequence[tuple[int, np.ndarray]], config: PredictConfig) -> list[np.ndarray]:
    """Boxes per frame for frames already in memory (explain keeps them to draw on)."""
    found: list[np.ndarray] = []
    for batch in frame_batches(frames, config.detect_batch):
        found.extend(detect_batch(detector, [frame for _, frame in batch], config))
    return found


def preprocess(crops: Sequence[np.ndarray], image_size: int) -> np.ndarray:
    """Training's evaluation transform: isotropic resize + centred zero pad, ImageNet mean/std, NCHW."""
    transform = eval_transform(image_size)
    return normalize([transform(image=c)["image"] for c in crops])


def normalize(images: Sequence[np.ndarray]) -> np.ndarray:
    """Model-sized uint8 RGB images (the eval transform's output) to the normalised NCHW float32 batch."""
    mean = np.array(IMAGENET_MEAN, np.float32) * 255
    std = np.array(IMAGENET_STD, np.float32) * 255
    batch = [((image.astype(np.float32) - mean) / std).transpose(2, 0, 1) for image in images]
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values.astype(np.float64)))


def predict_video(path: Path, detector: FaceDetector, backend: Backend, config: PredictConfig) -> dict[str, Any]:
    """One video's record: probability, label, status, and per-frame per-face boxes and scores.

    Frames stream through detection one detector batch at a time and each face is resized to the
    model's input as soon as it is cut out, so memory follows ``bboxes.batch_size`` full-size frames,
    not the video's length, its resolution times ``predict.frames``, or the faces' size.
    """
    record: dict[str, Any] = {
        "filename": path.name,
        "path": str(path),
        "probability": None,
        "label": None,
        "status": "ok",
    }
    timings = dict.fromkeys(("decode", "detect", "crop", "infer", "aggregate"), 0.0)
    transform = eval_transform(backend.image_size)
    crops: list[np.ndarray] = []  # model-sized uint8 faces
    owners: list[tuple[int, int]] = []
    frame_records: list[dict[str, Any]] = []
    try:
        batches = frame_batches(sample_frames(path, config), config.detect_batch)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            timings["decode"] += time.perf_counter() - started
            if batch is None:
                break
            started = time.perf_counter()
            boxes = detect_batch(detector, [frame for _, frame in batch], config)
            timings["detect"] += time.perf_counter() - started
            started = time.perf_counter()
            for index, faces in _crop_batch(batch, boxes, config.margin, transform, crops):
                owners.extend((len(frame_records), face) for face in range(len(faces)))
                frame_records.append({"frame": index, "faces": faces})
            timings["crop"] += time.perf_counter() - started
            del batch, boxes  # the full-size frames go (no other reference holds them); the crops stay
    except VideoError as err:
        return {**record, "status": f"unreadable: {err}", "frames": [], "ms": {}}
    record["frames"] = frame_records
    if not crops:
        return {
            **record,
            "status": f"no_face: no face found in {len(frame_records)} sampled frames",
            "ms": _ms(timings),
        }

    started = time.perf_counter()
    logits: dict[str, list[np.ndarray]] = {m: [] for m in backend.members}
    for start in range(0, len(crops), config.batch_size):
        batch_in = normalize(crops[start : start + config.batch_size])
        for member, values in backend.logits(batch_in).items():
            logits[member].append(values)
    probs = {m: _sigmoid(np.concatenate(v)) for m, v in logits.items()}
    timings["infer"] = time.perf_counter() - started

    started = time.perf_counter()
    for crop_index, (frame_slot, face_slot) in enumerate(owners):
        face = frame_records[frame_slot]["faces"][face_slot]
        face["scores"] = {m: round(float(p[crop_index]), 5) for m, p in probs.items()}
    per_member = {m: aggregate_video(p, config.eval.aggregation, config.eval.confident) for m, p in probs.items()}
    probability = float(np.mean(list(per_member.values())))
    timings["aggregate"] = time.perf_counter() - started
    if not math.isfinite(probability):
        return {**record, "status": "error: the models returned a non-finite score", "ms": _ms(timings)}
    return {
        **record,
        "probability": probability,
        "label": "FAKE" if probability >= 0.5 else "REAL",
        "members": {m: round(v, 5) for m, v in per_member.items()},
        "crops": len(crops),
        "ms": _ms(timings),
    }


def _crop_batch(
    batch: Sequence[tuple[int, np.ndarray]],
    boxes: Sequence[np.ndarray],
    margin: float,
    transform: Callable[..., dict[str, Any]],
    crops: list[np.ndarray],
) -> list[tuple[int, list[dict[str, Any]]]]:
    """Append each face, cut out and resized by ``transform`` (so its frame can be freed), to ``crops``."""
    out = []
    for (index, frame), frame_boxes in zip(batch, boxes, strict=True):
        height, width = frame.shape[:2]
        faces = []
        for box in frame_boxes:
            rect = expand_box(box, margin, width, height)
            if rect is None:
                continue
            left, top, right, bottom = rect
            faces.append({"box": [round(float(v), 1) for v in box[:4]], "detector_score": round(float(box[4]), 4)})
            # copied: a crop already at the model size may come back as a view that would pin the frame
            crops.append(transform(image=frame[top:bottom, left:right])["image"].copy())
        out.append((index, faces))
    return out


def _ms(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v * 1000, 1) for k, v in timings.items()}


# ---- many videos --------------------------------------------------------------------------------------


def collect_videos(inputs: Iterable[Path]) -> list[Path]:
    """Video files among ``inputs``; a folder contributes its video files (not recursive), sorted."""
    videos: list[Path] = []
    for item in inputs:
        if item.is_dir():
            videos.extend(sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES))
        elif item.exists():
            videos.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    if not videos:
        raise FileNotFoundError("no video files found in the given inputs")
    return videos


def write_submission(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """DFDC submission CSV ``filename,label`` (label = P(fake)); unscored videos carry 0.5."""
    with atomic_path(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"])
        for r in records:
            value = r["probability"] if r["probability"] is not None else FALLBACK_PROBABILITY
            writer.writerow([r["filename"], f"{value:.6f}"])


def predict(
    inputs: Sequence[Path],
    backend: Backend,
    config: PredictConfig,
    csv_path: Path,
    json_path: Path,
    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
) -> dict[str, Any]:
    """Score every video; writes the CSV and JSON; returns the summary (videos/s, statuses)."""
    videos = collect_videos(inputs)
    detector = FaceDetector(config.detector)
    started = time.perf_counter()
    records = [predict_video(v, detector, backend, config) for v in (progress(videos) if progress else videos)]
    seconds = time.perf_counter() - started
    summary = {
        "backend": backend.name,
        "members": backend.members,
        "videos": len(records),
        "scored": sum(r["probability"] is not None for r in records),
        "not_scored": {r["filename"]: r["status"] for r in records if r["probability"] is None},
        "seconds": round(seconds, 2),
        "videos_per_s": round(len(records) / seconds, 3) if seconds > 0 else None,
    }
    write_submission(csv_path, records)
    write_json_atomic(json_path, {"summary": summary, "videos": records})
    return summary
