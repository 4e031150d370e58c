"""``deepfake explain``: why a video scored as it did, frame by frame.

For each sampled frame's faces (the same sampling, detection, face tracks and crops as ``deepfake predict``):
the classifier's Grad-CAM on its last encoder feature map (ReLU of the gradient-weighted channel
sum, as TrustNet draws it; occlusion sensitivity on the ONNX backends, which have no gradients)
and U-YNet's predicted manipulation mask, drawn over the model's input view of the crop (resized
and padded as the model sees it). Writes one PNG per face, an MP4 of
the panels, a montage PNG, ``tracks.png`` (one strip of faces per face track, with its score) and
``explain.json`` with the scores, the tracks and the frames they span.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from deepfake.apps.predict import PredictConfig, PreparedVideo, prepare_video
from deepfake.backends.base import EXPLAIN_BACKENDS
from deepfake.core.errors import InputError, ParamsError
from deepfake.core.fileio import atomic_path, write_json_atomic, write_png_atomic
from deepfake.core.params import Params
from deepfake.media.face_input import normalize_batch, probabilities, to_picture
from deepfake.modeling.models import Classifier, UYNet
from deepfake.modeling.store import INPUT_NAME, LOGIT, MASK, Member, ModelStore, params_face_input, shared_face_input

logger = logging.getLogger(__name__)

PANEL = 256  # pixels per panel side in the PNGs, the MP4 and the montage


def grad_cam(model: Classifier, image: torch.Tensor) -> tuple[np.ndarray, float]:
    """Grad-CAM (H, W) in [0, 1] at the input size, and the crop's P(fake), for one (1, 3, H, W) input."""
    model.eval()
    with torch.enable_grad():
        features = model.encoder.forward_features(model.stem(image))
        features.retain_grad()
        pooled = model.encoder.forward_head(features)
        logit = model.fc(model.dropout(pooled)).sum()
        logit.backward()
    weights = features.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * features).sum(dim=1, keepdim=True)).detach()
    cam = nn.functional.interpolate(cam, size=image.shape[2:], mode="bilinear", align_corners=False)[0, 0]
    peak = float(cam.max())
    return (cam / peak).numpy() if peak > 0 else cam.numpy(), float(probabilities(float(logit.detach())))


@torch.no_grad()
def predicted_mask(model: UYNet, image: torch.Tensor) -> tuple[np.ndarray, float]:
    """U-YNet's mask probability (H, W) and the crop's P(fake)."""
    out = model.eval()(image)
    return probabilities(out[MASK][0, 0].numpy()), float(probabilities(float(out[LOGIT].reshape(-1)[0])))


def overlay(picture: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(colour, alpha, picture, 1 - alpha, 0)


def _titled(picture: np.ndarray, title: str) -> np.ndarray:
    panel = cv2.resize(picture, (PANEL, PANEL), interpolation=cv2.INTER_LINEAR)
    cv2.rectangle(panel, (0, 0), (PANEL, 22), (0, 0, 0), -1)
    cv2.putText(panel, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def occlusion_map(session: Any, image: np.ndarray, patches: int = 8) -> tuple[np.ndarray, float]:
    """Occlusion sensitivity for a backend without gradients (ONNX): how much the fake logit drops
    when each of ``patches`` x ``patches`` squares is set to the mean colour (0 after normalisation)."""
    size = image.shape[1]
    step = max(size // patches, 1)
    corners = [(y, x) for y in range(0, size, step) for x in range(0, size, step)]
    batch = np.repeat(image[None], len(corners) + 1, axis=0)
    for k, (y, x) in enumerate(corners, start=1):
        batch[k, :, y : y + step, x : x + step] = 0.0
    logits = session.run([LOGIT], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0].reshape(-1)
    drops = np.maximum(logits[0] - logits[1:], 0.0)
    heat: np.ndarray = np.zeros((size, size), np.float32)
    for drop, (y, x) in zip(drops, corners, strict=True):
        heat[y : y + step, x : x + step] = drop
    heat = cv2.GaussianBlur(heat, (0, 0), step / 2)
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat), float(probabilities(logits[0]))


class Explainers:
    """The train@<model> classifier and U-YNet (not the seed members) behind one interface.

    ``torch``: Grad-CAM for the classifier. ``onnx`` / ``onnx-int8``: the exported graphs, with
    occlusion sensitivity for the classifier (no gradients there). U-YNet's mask comes from its
    own output in every backend.
    """

    def __init__(self, backend: str, params: Params, store: ModelStore) -> None:
        self.backend = backend
        names = list(params.models)
        if backend == "torch":
            loaded = {n: store.load_member(Member(n)) for n in names}
            self.models = {n: model for n, (model, _) in loaded.items()}
            self.kinds = {n: "classifier" if isinstance(m, Classifier) else "uynet" for n, m in self.models.items()}
            self.face_input = shared_face_input({n: fi for n, (_, fi) in loaded.items()}, params_face_input(params))
        elif backend in ("onnx", "onnx-int8"):
            from deepfake.backends.onnx_backend import onnx_session

            manifest = store.read_manifest(backend)
            members = {m["name"]: m for m in manifest["members"] if m["name"] in names}
            folder, threads = store.folder(backend), params.predict.inference_threads
            self.models = {n: onnx_session(folder / m["file"], threads=threads) for n, m in members.items()}
            self.kinds = {n: m["model"] for n, m in members.items()}
            self.face_input = store.face_input(backend)
        else:
            raise ParamsError(f"explain supports the {', '.join(EXPLAIN_BACKENDS)} backends, not {backend!r}")
        if not self.models:
            raise InputError(f"{store.root}: none of the models {names} found to explain")

    def panels(self, image: np.ndarray, view: np.ndarray) -> tuple[list[np.ndarray], dict[str, float]]:
        panels, scores = [], {}
        for name, model in self.models.items():
            if self.kinds[name] == "classifier":
                if self.backend == "torch":
                    heat, prob = grad_cam(model, torch.from_numpy(image[None]))
                    title = f"{name} Grad-CAM  p={prob:.2f}"
                else:
                    heat, prob = occlusion_map(model, image)
                    title = f"{name} occlusion  p={prob:.2f}"
            elif self.backend == "torch":
                heat, prob = predicted_mask(model, torch.from_numpy(image[None]))
                title = f"{name} mask  p={prob:.2f}"
            else:
                logit, mask = model.run([LOGIT, MASK], {INPUT_NAME: image[None]})
                heat = probabilities(mask[0, 0])
                prob = float(probabilities(logit.reshape(-1)[0]))
                title = f"{name} mask  p={prob:.2f}"
            panels.append(_titled(overlay(view, heat), title))
            scores[name] = prob
        return panels, scores


def explain_face(
    explainers: Explainers, image: np.ndarray, label: str = "input"
) -> tuple[np.ndarray, dict[str, float]]:
    """The panel row for one preprocessed crop and its per-model P(fake)."""
    view = to_picture(image)
    panels, scores = explainers.panels(image, view)
    return np.concatenate([_titled(view, label), *panels], axis=1), scores


TRACK_STRIP = 8  # faces per track in tracks.png


def track_strips(views: dict[int, list[tuple[str, np.ndarray]]], scores: dict[int, float]) -> np.ndarray:
    """``tracks.png``: one row per face track, up to TRACK_STRIP of its faces in time order, the most fake first."""
    rows = []
    for track in sorted(views, key=lambda t: -scores[t]):
        faces = views[track]
        picks = np.unique(np.linspace(0, len(faces) - 1, min(TRACK_STRIP, len(faces))).round().astype(int))
        panels = [_titled(faces[i][1], f"track {track} {faces[i][0]}") for i in picks]
        panels[0] = _titled(faces[picks[0]][1], f"track {track}  p={scores[track]:.2f}")
        blank = np.zeros_like(panels[0])
        rows.append(np.concatenate(panels + [blank] * (TRACK_STRIP - len(panels)), axis=1))
    return np.concatenate(rows, axis=0)


def montage(rows: list[np.ndarray], limit: int) -> np.ndarray:
    """Up to ``limit`` panel rows, evenly chosen, stacked."""
    picks = np.unique(np.linspace(0, len(rows) - 1, min(limit, len(rows))).round().astype(int))
    return np.concatenate([rows[i] for i in picks], axis=0)


def write_mp4(path: Path, rows: list[np.ndarray], fps: float) -> None:
    """H.264 (yuv420p, moov atom first) so a browser plays it: the service's page shows it in a <video>."""
    import av

    height, width = rows[0].shape[:2]
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = width - width % 2, height - height % 2  # 4:2:0 needs even sides
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for row in rows:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(row[: stream.height, : stream.width]), "bgr24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def explain(
    video: Path,
    params: Params,
    store: ModelStore,
    out_dir: Path,
    montage_rows: int,
    fps: float,
    backend: str = "torch",
) -> dict[str, Any]:
    """Write per-face PNGs, ``overlay.mp4``, ``montage.png``, ``tracks.png`` and ``explain.json`` into ``out_dir``."""
    config = PredictConfig.from_params(params)
    explainers = Explainers(backend, params, store)
    prepared = prepare_video(video, config, explainers.face_input)
    record = prepared.record
    if record["status"] != "ok":
        raise InputError(f"cannot explain {video}: {record['status']}")
    if not len(prepared.crops):
        raise InputError(f"{video}: no face found in {len(record['frames'])} sampled frames; nothing to explain")
    return explain_prepared(prepared, explainers, out_dir, montage_rows, fps, face_pngs=True)


def explain_prepared(
    prepared: PreparedVideo,
    explainers: Explainers,
    out_dir: Path,
    montage_rows: int,
    fps: float,
    face_pngs: bool = True,
    max_faces: int | None = None,
) -> dict[str, Any]:
    """``explain`` for a video ``prepare_video`` has decoded, detected and cut already (the service
    scores and explains from one decode); ``face_pngs`` False writes no per-face PNGs; ``max_faces``
    explains that many faces at most, evenly spread over the video (occlusion maps cost one forward
    pass per square)."""
    record = prepared.record
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    views: dict[int, list[tuple[str, np.ndarray]]] = {}
    count = len(prepared.crops)
    chosen = np.unique(np.linspace(0, count - 1, min(max_faces or count, count)).round().astype(int))
    for index in chosen:
        crop, (slot, face), track = prepared.crops[index], prepared.crop_faces[index], prepared.crop_tracks[index]
        frame = record["frames"][slot]
        entry = frame["faces"][face]
        image = normalize_batch([crop])[0]
        row, scores = explain_face(explainers, image, f"track {track}  frame {frame['frame']}")
        if face_pngs:
            write_png_atomic(out_dir / f"frame{frame['frame']:05d}_face{face}.png", row)
        rows.append(row)
        views.setdefault(track, []).append((f"t={frame['t']:.1f}s", to_picture(image)))
        records.append(
            {
                "frame": frame["frame"],
                "t": frame["t"],
                "face": face,
                "track": track,
                "detected": entry["detected"],  # False: the box was carried along the track
                "box": entry["box"],
                **scores,
            }
        )
    tracks = []
    for track in record["tracks"]:
        mine = [r for r in records if r["track"] == track["id"]]
        if not mine:
            continue  # none of its faces among the max_faces explained
        means = {name: round(float(np.mean([r[name] for r in mine])), 5) for name in explainers.models}
        tracks.append({**track, "mean_scores": means})
    track_score = {t["id"]: max(t["mean_scores"].values()) for t in tracks}
    write_mp4(out_dir / "overlay.mp4", rows, fps)
    write_png_atomic(out_dir / "montage.png", montage(rows, montage_rows))
    write_png_atomic(out_dir / "tracks.png", track_strips(views, track_score))
    summary = {
        "video": record["filename"],
        "backend": explainers.backend,
        "faces": len(records),
        "sampling": record["sampling"],
        "tracks": tracks,
        "records": records,
    }
    write_json_atomic(out_dir / "explain.json", summary)
    logger.info("explained %d faces in %d tracks of %s in %s", len(records), len(tracks), record["filename"], out_dir)
    return summary
