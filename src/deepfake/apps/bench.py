"""Throughput benchmarks that print figures (speed targets live here, never in timed tests)."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

from deepfake.core.errors import InputError, UserError
from deepfake.core.parallel import set_torch_threads
from deepfake.core.params import Params
from deepfake.media.metadata import load_metadata
from deepfake.media.video import FrameSampling, SpanSampling, iter_sampled_frames
from deepfake.stages import bboxes, crops

if TYPE_CHECKING:  # training's modules load torch: run_train_bench imports them when it runs
    from deepfake.modeling.data import DataRoots


def machine_summary() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, OpenCV {cv2.__version__}"


def _timed(func: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = func(*args)
    return time.perf_counter() - started, result


def _decode_all(path: Path, max_frames: int) -> int:
    """Every frame decoded and converted, as a naive reader would."""
    return sum(1 for _ in iter_sampled_frames(path, FrameSampling(1, max_frames, 10**9)))


def _decode_sampled(path: Path, sampling: FrameSampling) -> int:
    return sum(1 for _ in iter_sampled_frames(path, sampling))


def run_preprocess_bench(params: Params, data_root: Path | None = None, videos: int | None = None) -> dict:
    """Time decoding, the bboxes stage and the crops stage per REAL video; print and return the figures."""
    # the DFDC-layout datasets (their metadata.json is read directly: no ingest needed for a benchmark)
    parts = {
        name: Path(data_root) / name if data_root else Path(spec.root)
        for name, spec in params.data.datasets.items()
        if spec.layout == "dfdc"
    }
    box_config = replace(bboxes.Config.from_params(params), workers=1)
    crop_config = replace(crops.Config.from_params(params), workers=1)
    sampling = box_config.sampling
    set_torch_threads(box_config.torch_threads)
    totals = dict.fromkeys(
        ("videos", "frames_all", "s_decode_all", "frames_sampled", "s_decode_sampled", "s_bboxes", "s_crops"), 0.0
    )
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        warm = True
        for folder in parts.values():
            metadata = load_metadata(folder)
            for entry in metadata.reals[:videos]:
                path = metadata.video_path(entry.name)
                box_task = bboxes.BboxesTask(path, scratch_dir / f"{entry.stem}.json", box_config)
                if warm:  # build the detector outside the timings
                    bboxes.detect_video(box_task)
                    warm = False
                seconds, frames = _timed(_decode_all, path, sampling.max_frames)
                totals["s_decode_all"] += seconds
                totals["frames_all"] += frames
                seconds, frames = _timed(_decode_sampled, path, sampling)
                totals["s_decode_sampled"] += seconds
                totals["frames_sampled"] += frames
                seconds, _ = _timed(bboxes.detect_video, box_task)
                totals["s_bboxes"] += seconds
                crop_task = crops.CropsTask(entry, path, box_task.out, scratch_dir / entry.stem, crop_config)
                seconds, _ = _timed(crops.crop_video, crop_task)
                totals["s_crops"] += seconds
                totals["videos"] += 1
    if not totals["videos"]:
        raise InputError(f"no REAL video found in the DFDC-layout datasets {sorted(parts)}")
    figures = {
        "machine": machine_summary(),
        "videos": int(totals["videos"]),
        "frame_stride": sampling.stride,
        "decode_all_frames_per_s": totals["frames_all"] / totals["s_decode_all"],
        "decode_sampled_frames_per_s": totals["frames_sampled"] / totals["s_decode_sampled"],
        "decode_sampled_s_per_video": totals["s_decode_sampled"] / totals["videos"],
        "bboxes_sampled_frames_per_s": totals["frames_sampled"] / totals["s_bboxes"],
        "bboxes_s_per_video": totals["s_bboxes"] / totals["videos"],
        "crops_sampled_frames_per_s": totals["frames_sampled"] / totals["s_crops"],
        "crops_s_per_video": totals["s_crops"] / totals["videos"],
    }
    print(f"machine: {figures['machine']}")
    print(
        f"{figures['videos']} REAL videos in {len(parts)} DFDC-layout datasets, every {sampling.stride}th frame sampled"
    )
    for key, value in figures.items():
        if isinstance(value, float):
            print(f"  {key:32s} {value:10.2f}")
    return figures


def run_train_bench(
    params: Params, model_name: str, folds_csv: Path, roots: DataRoots, steps: int, warmup: int = 2
) -> dict:
    """Images/s of training steps on the training folds, and the share of step time spent waiting for data."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from deepfake.core.device import resolve_device
    from deepfake.modeling.data import CropDataset, epoch_indices, read_folds
    from deepfake.modeling.models import create_model
    from deepfake.stages.train import Runtime, TrainConfig, build_optimizer, train_step, training_rows

    config = TrainConfig.from_params(params, model_name)
    device = resolve_device(config.device)
    rows = training_rows(read_folds(folds_csv), config)
    dataset = CropDataset(rows, roots, config.image_size, config.augment, config.seed)
    model = create_model(config.model, **config.model_kwargs).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer, _ = build_optimizer(model, config, steps + warmup)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    runtime = Runtime(device)
    timed_images, data_seconds, step_seconds, done, epoch = 0, 0.0, 0.0, 0, 0
    while done < steps + warmup:
        dataset.set_epoch(epoch)
        indices = epoch_indices(dataset.labels, epoch, config.seed, config.augment.self_blend).tolist()
        loader = DataLoader(Subset(dataset, indices), batch_size=config.batch_size, num_workers=config.num_workers)
        fetch_started = time.perf_counter()
        for batch in loader:
            fetched = time.perf_counter()
            train_step(model, batch, optimizer, config, runtime, scaler)
            if device.type == "cuda":
                torch.cuda.synchronize()
            finished = time.perf_counter()
            if done >= warmup:
                data_seconds += fetched - fetch_started
                step_seconds += finished - fetch_started
                timed_images += len(batch["image"])
            done += 1
            fetch_started = time.perf_counter()
            if done >= steps + warmup:
                break
        epoch += 1
    figures = {
        "machine": machine_summary(),
        "model": model_name,
        "encoder": config.model_kwargs.get("encoder"),
        "image_size": config.image_size,
        "batch_size": config.batch_size,
        "device": str(device),
        "amp": device.type == "cuda",
        "steps": steps,
        "images_per_s": timed_images / step_seconds,
        "data_loading_share": data_seconds / step_seconds,
    }
    print(f"machine: {figures['machine']}")
    print(
        f"{model_name} ({figures['encoder']}) at {config.image_size}px, batch {config.batch_size}, "
        f"{figures['device']}, AMP {'on' if figures['amp'] else 'off'}, {steps} timed steps"
    )
    print(f"  {'images_per_s':32s} {figures['images_per_s']:10.2f}")
    print(f"  {'data_loading_share':32s} {figures['data_loading_share']:10.2f}")
    return figures


def decode_floor(videos: list[Path], sampling: SpanSampling) -> float:
    """Seconds per video to decode (and convert to RGB) just the frames predict samples: the floor of any engine."""
    from deepfake.media.video import SpanReader

    started = time.perf_counter()
    for video in videos:
        for _ in SpanReader(video, sampling):
            pass
    return (time.perf_counter() - started) / len(videos)


def _time_package_stream(name: str, stream: Callable[..., Any], videos: list[Path]) -> dict[str, Any]:
    """s/video of a package's own pipeline (one process, as its publisher runs it), after one warm-up video."""
    list(stream(videos[:1], None))  # warm-up: the runtime's first allocations
    started = time.perf_counter()
    records = list(stream(videos, None))
    seconds = time.perf_counter() - started
    result = {
        "pipeline": records[0].get("pipeline") if records else None,
        "videos_per_s": len(records) / seconds,
        "s_per_video": seconds / len(records),
        "statuses": sorted({r["status"].split(":")[0] for r in records}),
    }
    print(
        f"{name:10s} pipeline {result['pipeline']} (the publisher's own inference, one process) | "
        f"{result['videos_per_s']:.3f} videos/s ({result['s_per_video']:.2f} s/video)"
    )
    return result


def run_predict_bench(
    params: Params, videos: list[Path], models_root: Path, backends: list[str], url: str | None = None
) -> dict[str, Any]:
    """``deepfake predict``'s engine on ``videos`` per backend: videos/s (wall, worker start excluded), the mean
    milliseconds per video of each step (summed over the worker processes), and the decode floor.

    A backend whose runtime or models are absent is reported as skipped with the reason.
    """
    import numpy as np

    from deepfake.apps.predict import STEPS, PredictConfig, score_stream, video_pool
    from deepfake.apps.zoo_predict import package_stream
    from deepfake.backends.base import create_backend
    from deepfake.modeling.store import ModelStore

    config = PredictConfig.from_params(params)
    print(f"machine: {machine_summary()}")
    print(
        f"{len(videos)} videos, {config.frames} frames each, detector on every {config.detect_every}, "
        f"{config.workers} worker processes, crops batch {config.batch_size}"
    )
    floor = decode_floor(videos, config.sampling)
    print(f"{'decode floor':10s} {floor * 1000:7.1f} ms per video (the sampled frames alone, one process)")
    results: dict[str, Any] = {"decode_floor_s": floor}
    for name in backends:
        try:
            backend = create_backend(name, ModelStore(models_root), params, url)
        except UserError as err:  # a runtime or its models absent here: reported, the others still run
            print(f"{name:10s} skipped: {err}")
            results[name] = {"skipped": str(err)}
            continue
        store = ModelStore(models_root)
        stream = package_stream(store, backend, config.aggregation)
        if stream is not None:  # a zoo package naming its publisher's own inference (pipeline dfdc1st)
            results[name] = _time_package_stream(name, stream, videos)
            continue
        with video_pool(config) as pool:
            # warm-up: start the workers, build a detector in each, set up the runtime's sessions
            list(score_stream(videos[: max(1, config.workers)], backend, config, pool, None))
            started = time.perf_counter()
            records = list(score_stream(videos, backend, config, pool, None))
            seconds = time.perf_counter() - started
        ms = {s: float(np.mean([r.get("ms", {}).get(s, 0.0) for r in records])) for s in STEPS}
        crops = sum(r.get("crops", 0) for r in records)
        infer_s = sum(r.get("ms", {}).get("infer", 0.0) for r in records) / 1000
        results[name] = {
            "ms_per_video": ms,
            "videos_per_s": len(records) / seconds,
            "s_per_video": seconds / len(records),
            "crops_per_s_infer": crops / infer_s if infer_s > 0 else None,
            "statuses": sorted({r["status"].split(":")[0] for r in records}),
        }
        rate, crop_rate = results[name]["videos_per_s"], results[name]["crops_per_s_infer"] or 0.0
        stage_ms = "  ".join(f"{s} {ms[s]:7.1f} ms" for s in STEPS)
        print(
            f"{name:10s} {stage_ms}  | {rate:.3f} videos/s ({seconds / len(records):.2f} s/video), "
            f"inference {crop_rate:.0f} crops/s"
        )
    return results
