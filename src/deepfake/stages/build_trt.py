"""Stage build_trt: TensorRT engines (fp16, int8) from the exported ONNX models; needs TensorRT and a GPU.

The toolchain is checked first and a ToolchainError names what is missing before anything is written:
there is never a placeholder engine. Not run on the machines this project is built on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake.backends.tensorrt_backend import check_tensorrt
from deepfake.core.fileio import atomic_dir, write_json_atomic
from deepfake.core.params import Params
from deepfake.modeling.data import CropDataset, ModelStagePaths, calibration_batches, calibration_rows, read_folds
from deepfake.modeling.store import INPUT_NAME, ModelStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    precisions: tuple[str, ...]  # fp16 and/or int8
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mib: int
    calib_crops: int
    seed: int
    holdout_fold: int

    @classmethod
    def from_params(cls, params: Params) -> Config:
        sect = params.build_trt
        return cls(
            precisions=tuple(sect.precisions),
            min_batch=sect.min_batch,
            opt_batch=sect.opt_batch,
            max_batch=sect.max_batch,
            workspace_mib=sect.workspace_mib,
            calib_crops=params.quantize.calib_crops,
            seed=params.quantize.seed,
            holdout_fold=params.train.holdout_fold,
        )


Paths = ModelStagePaths  # the models/ root: reads onnx/, writes trt/


def _int8_calibrator(trt: Any, batches: list[np.ndarray], cache: Path) -> Any:
    """TensorRT's entropy calibrator over the calibration crops, with a cache file beside the engine."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = iter(batches)
            self.device_batch = torch.empty(batches[0].shape, device="cuda")

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None or batch.shape != batches[0].shape:
                return None
            self.device_batch.copy_(torch.from_numpy(batch))
            return [int(self.device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: bytes) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_engine(
    trt: Any, onnx_path: Path, engine: Path, precision: str, image_size: int, config: Config, calib: list[np.ndarray]
) -> dict[str, Any]:
    """Parse the ONNX file, build one engine with a dynamic-batch profile, and save it."""
    logger_ = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger_)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger_)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    shape = (3, image_size, image_size)
    profile.set_shape(INPUT_NAME, (config.min_batch, *shape), (config.opt_batch, *shape), (config.max_batch, *shape))
    builder_config.add_optimization_profile(profile)
    builder_config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        builder_config.set_flag(trt.BuilderFlag.INT8)
        builder_config.set_calibration_profile(profile)
        builder_config.int8_calibrator = _int8_calibrator(trt, calib, engine.with_suffix(".calib"))
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT failed to build the {precision} engine")
    engine.write_bytes(bytes(serialized))
    return {
        "precision": precision,
        "tensorrt": trt.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "batch": [config.min_batch, config.opt_batch, config.max_batch],
        "bytes": engine.stat().st_size,
    }


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """Engines ``<member>.plan`` (fp16) and ``<member>-int8.plan`` with metadata JSON beside each."""
    trt = check_tensorrt("build_trt")  # before any work or output
    store = ModelStore(paths.models)
    manifest = store.read_manifest("onnx")
    image_size = store.face_input("onnx").image_size
    calib: list[np.ndarray] = []
    if "int8" in config.precisions:
        rows = calibration_rows(read_folds(paths.folds), config.holdout_fold, config.calib_crops, config.seed)
        dataset = CropDataset(rows, paths.roots, image_size)
        calib = [b.numpy() for b in calibration_batches(dataset, config.opt_batch)]
    engines = {}
    out_dir = store.folder("tensorrt")
    with atomic_dir(out_dir) as tmp:
        for member in manifest["members"]:
            for precision in config.precisions:
                engine = tmp / store.engine(member["name"], precision).name
                onnx_path = store.graph(member["name"], "onnx")
                meta = build_engine(trt, onnx_path, engine, precision, image_size, config, calib)
                write_json_atomic(engine.with_suffix(".json"), {"onnx": member["file"], **meta})
                engines[engine.stem] = meta
                logger.info("%s: %s", engine.stem, json.dumps(meta))
    report = {"engines": engines}
    write_json_atomic(paths.report, report)
    return report
