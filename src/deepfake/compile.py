"""Hardware targets: a VCK5000 DPU xmodel (Vitis AI) and TensorRT engines.

Both need toolchains that no package registry carries (Vitis AI's ``pytorch_nndct`` and
``vai_c_xir``; TensorRT with a CUDA GPU). Each target first checks for everything it needs and
stops with a ``ToolchainError`` naming what is missing, before writing anything: there is never a
placeholder xmodel or engine. Neither has been run on the machines this project is built on.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake.data import CropDataset, DataRoots, read_folds
from deepfake.errors import ToolchainError
from deepfake.evaluate import Member, ensemble_members, load_member
from deepfake.export import INPUT_NAME, read_manifest
from deepfake.fileio import atomic_dir, write_json_atomic
from deepfake.params import section
from deepfake.quantize import calibration_rows

logger = logging.getLogger(__name__)


# ---- DPU (Vitis AI) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DpuConfig:
    arch: Path  # the DPU's arch.json (VCK5000: DPUCVDX8H)
    calib_crops: int
    seed: int
    image_size: int
    holdout_fold: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DpuConfig:
        sect, train = section(params, "compile_dpu"), section(params, "train")
        return cls(
            arch=Path(sect["arch"]),
            calib_crops=int(section(params, "quantize")["calib_crops"]),
            seed=int(section(params, "quantize")["seed"]),
            image_size=int(train["image_size"]),
            holdout_fold=int(train["holdout_fold"]),
        )


def check_vitis_ai(config: DpuConfig) -> Any:
    """Vitis AI's PyTorch quantizer, ``vai_c_xir`` and the arch.json, or a ToolchainError naming the gaps."""
    missing = []
    try:
        from pytorch_nndct.apis import torch_quantizer
    except ImportError:
        torch_quantizer = None
        missing.append("pytorch_nndct (the Vitis AI PyTorch quantizer)")
    if shutil.which("vai_c_xir") is None:
        missing.append("vai_c_xir (the Vitis AI compiler) on PATH")
    if not config.arch.is_file():
        missing.append(f"the DPU arch file {config.arch} (compile_dpu.arch)")
    if missing:
        raise ToolchainError(
            "compile_dpu needs the Vitis AI toolchain (run it inside the Vitis AI docker image); missing: "
            + "; ".join(missing)
            + ". Nothing was written."
        )
    return torch_quantizer


def _calibration_batches(dataset: CropDataset, batch_size: int) -> list[torch.Tensor]:
    return [
        torch.stack([dataset[i]["image"] for i in range(start, min(start + batch_size, len(dataset)))])
        for start in range(0, len(dataset), batch_size)
    ]


def compile_dpu_member(member: Member, calib: CropDataset, config: DpuConfig, work: Path, out_dir: Path) -> Path:
    """Quantize (calib, then test) with pytorch_nndct and compile with vai_c_xir; returns the xmodel."""
    torch_quantizer = check_vitis_ai(config)
    model = load_member(member, torch.device("cpu"))
    example = torch.zeros(1, 3, config.image_size, config.image_size)
    quant_dir = work / member.name
    quantizer = torch_quantizer("calib", model, (example,), output_dir=str(quant_dir), device=torch.device("cpu"))
    with torch.no_grad():
        for batch in _calibration_batches(calib, 8):
            quantizer.quant_model(batch)
    quantizer.export_quant_config()
    quantizer = torch_quantizer("test", model, (example,), output_dir=str(quant_dir), device=torch.device("cpu"))
    with torch.no_grad():
        quantizer.quant_model(calib[0]["image"][None])  # test mode traces one batch of 1 for the xmodel
    quantizer.export_xmodel(output_dir=str(quant_dir), deploy_check=False)
    quantized = sorted(quant_dir.glob("*_int.xmodel"))
    if len(quantized) != 1:
        raise RuntimeError(f"{quant_dir}: expected one *_int.xmodel from the quantizer, found {quantized}")
    command = ["vai_c_xir", "-x", str(quantized[0]), "-a", str(config.arch), "-o", str(out_dir), "-n", member.name]
    logger.info("%s", " ".join(command))
    subprocess.run(command, check=True)
    return out_dir / f"{member.name}.xmodel"


def compile_dpu(
    params: dict[str, Any], folds_csv: Path, roots: DataRoots, models_dir: Path, out_dir: Path, report: Path
) -> None:
    config = DpuConfig.from_params(params)
    check_vitis_ai(config)  # before any work or output
    rows = calibration_rows(read_folds(folds_csv), config.holdout_fold, config.calib_crops, config.seed)
    calib = CropDataset(rows, roots, config.image_size)
    with atomic_dir(out_dir) as tmp:
        work = tmp / "quantizer"
        xmodels = {}
        for member in ensemble_members(params, models_dir):
            path = compile_dpu_member(member, calib, config, work, tmp)
            xmodels[member.name] = {"file": path.name, "bytes": path.stat().st_size}
        shutil.rmtree(work)
    write_json_atomic(report, {"arch": str(config.arch), "calib_crops": len(calib), "xmodels": xmodels})


# ---- TensorRT ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrtConfig:
    precisions: tuple[str, ...]  # fp16 and/or int8
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mib: int
    calib_crops: int
    seed: int
    holdout_fold: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrtConfig:
        sect = section(params, "build_trt")
        config = cls(
            precisions=tuple(str(p) for p in sect["precisions"]),
            min_batch=int(sect["min_batch"]),
            opt_batch=int(sect["opt_batch"]),
            max_batch=int(sect["max_batch"]),
            workspace_mib=int(sect["workspace_mib"]),
            calib_crops=int(section(params, "quantize")["calib_crops"]),
            seed=int(section(params, "quantize")["seed"]),
            holdout_fold=int(section(params, "train")["holdout_fold"]),
        )
        if not set(config.precisions) <= {"fp16", "int8"} or not config.precisions:
            raise ValueError(f"build_trt.precisions must be fp16 and/or int8, got {config.precisions}")
        if not 1 <= config.min_batch <= config.opt_batch <= config.max_batch:
            raise ValueError("build_trt needs 1 <= min_batch <= opt_batch <= max_batch")
        return config


def check_tensorrt() -> Any:
    """The tensorrt module with a CUDA GPU, or a ToolchainError naming what is missing."""
    missing = []
    try:
        import tensorrt as trt
    except ImportError:
        trt = None
        missing.append("the tensorrt Python package (NVIDIA TensorRT 10)")
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    if missing:
        raise ToolchainError("build_trt needs " + " and ".join(missing) + ". Nothing was written.")
    return trt


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
    trt: Any, onnx_path: Path, engine: Path, precision: str, image_size: int, config: TrtConfig, calib: list[np.ndarray]
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


def build_trt(
    params: dict[str, Any], folds_csv: Path, roots: DataRoots, onnx_dir: Path, out_dir: Path, report: Path
) -> None:
    """Engines ``<member>.plan`` (fp16) and ``<member>-int8.plan`` with metadata JSON beside each."""
    config = TrtConfig.from_params(params)
    trt = check_tensorrt()  # before any work or output
    manifest = read_manifest(onnx_dir)
    image_size = int(manifest["input"]["image_size"])
    calib: list[np.ndarray] = []
    if "int8" in config.precisions:
        rows = calibration_rows(read_folds(folds_csv), config.holdout_fold, config.calib_crops, config.seed)
        dataset = CropDataset(rows, roots, image_size)
        calib = [b.numpy() for b in _calibration_batches(dataset, config.opt_batch)]
    engines = {}
    with atomic_dir(out_dir) as tmp:
        for member in manifest["members"]:
            for precision in config.precisions:
                name = member["name"] if precision == "fp16" else f"{member['name']}-int8"
                meta = build_engine(
                    trt, onnx_dir / member["file"], tmp / f"{name}.plan", precision, image_size, config, calib
                )
                write_json_atomic(tmp / f"{name}.json", {"onnx": member["file"], **meta})
                engines[name] = meta
                logger.info("%s: %s", name, json.dumps(meta))
    write_json_atomic(report, {"engines": engines})
