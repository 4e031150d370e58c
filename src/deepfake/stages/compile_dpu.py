"""Stage compile_dpu: VCK5000 DPU xmodels with Vitis AI (pytorch_nndct + vai_c_xir).

The toolchain is checked first and a ToolchainError names what is missing before anything is written:
there is never a placeholder xmodel. Not run on the machines this project is built on.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepfake.core.errors import ToolchainError
from deepfake.core.fileio import atomic_dir, write_json_atomic
from deepfake.core.params import Params
from deepfake.modeling.data import CropDataset, ModelStagePaths, calibration_batches, calibration_rows, read_folds
from deepfake.modeling.store import Member, ModelStore, ensemble

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    arch: Path  # the DPU's arch.json (VCK5000: DPUCVDX8H)
    calib_crops: int
    seed: int
    image_size: int
    holdout_fold: int
    members: tuple[Member, ...]  # the ensemble: every model with train.seed and each ensemble seed

    @classmethod
    def from_params(cls, params: Params) -> Config:
        return cls(
            arch=Path(params.compile_dpu.arch),
            calib_crops=params.quantize.calib_crops,
            seed=params.quantize.seed,
            image_size=params.train.image_size,
            holdout_fold=params.train.holdout_fold,
            members=ensemble(params),
        )


Paths = ModelStagePaths  # the models/ root: reads train/, writes dpu/


def check_vitis_ai(config: Config) -> Any:
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


def compile_dpu_member(
    store: ModelStore, member: Member, calib: CropDataset, config: Config, work: Path, out_dir: Path
) -> Path:
    """Quantize (calib, then test) with pytorch_nndct and compile with vai_c_xir; returns the xmodel."""
    torch_quantizer = check_vitis_ai(config)
    model = store.load_torch(member)
    example = torch.zeros(1, 3, config.image_size, config.image_size)
    quant_dir = work / member.name
    quantizer = torch_quantizer("calib", model, (example,), output_dir=str(quant_dir), device=torch.device("cpu"))
    with torch.no_grad():
        for batch in calibration_batches(calib, 8):
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


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """xmodels ``<member>.xmodel`` for every ensemble member, compiled for the configured DPU."""
    check_vitis_ai(config)  # before any work or output
    store = ModelStore(paths.models)
    rows = calibration_rows(read_folds(paths.folds), config.holdout_fold, config.calib_crops, config.seed)
    calib = CropDataset(rows, paths.roots, config.image_size)
    with atomic_dir(store.folder("xmodel")) as tmp:
        work = tmp / "quantizer"
        xmodels = {}
        for member in config.members:
            path = compile_dpu_member(store, member, calib, config, work, tmp)
            xmodels[member.name] = {"file": path.name, "bytes": path.stat().st_size}
        shutil.rmtree(work)
    report = {"arch": str(config.arch), "calib_crops": len(calib), "xmodels": xmodels}
    write_json_atomic(paths.report, report)
    return report
