"""int8 quantization with AMD Quark's ONNX flow (XINT8: power-of-two scales, as the DPU needs).

Two steps, as Vitis AI runs them:
1. calibrate: Quark quantizes each exported ONNX model to an int8 QDQ model, with activation
   ranges from ``quantize.calib_crops`` crops of the *training* folds only;
2. test: the int8 and the fp32 model score the holdout, and the report puts their metrics and
   file sizes side by side.
A DPU operator report lists which operator types of the quantized graph the DPUCVDX8H (VCK5000)
runs and which would fall back to the CPU. The graphs end in logits: the sigmoid is left to the
caller, on the CPU, as the DPU deployment of U-YNet does.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.backends.onnx_backend import onnx_session
from deepfake.core.errors import ToolchainError
from deepfake.core.fileio import atomic_path, write_json_atomic
from deepfake.core.params import Params
from deepfake.modeling.data import CropDataset, DataRoots, ModelStagePaths, calibration_rows, read_folds, select_folds
from deepfake.modeling.scoring import Aggregation, predict_crops_with, score
from deepfake.modeling.store import INPUT_NAME, LOGIT, ModelStore

logger = logging.getLogger(__name__)


# DPUCVDX8H operator support (AMD PG403 "DPUCVDX8H Feature Support", Table 1): convolution,
# depthwise and transposed convolution, max/average pooling, ReLU / LeakyReLU / ReLU6 /
# hard-sigmoid / hard-swish, element-wise sum and multiply, concat, fully connected. Batch norm is
# folded into convolutions by the quantizer; Flatten/Reshape before a fully connected layer are
# layout operations the compiler absorbs.
DPU_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Relu",
        "LeakyRelu",
        "Clip",
        "HardSigmoid",
        "HardSwish",
        "Add",
        "Mul",
        "Concat",
        "Gemm",
        "MatMul",
        "BatchNormalization",
        "Flatten",
        "Reshape",
    }
)
# Operators the DPU has no engine for; vai_c_xir assigns them to a CPU subgraph.
CPU_OPS = frozenset({"Sigmoid", "Softmax", "Exp", "Log", "Div", "Sqrt", "Pow", "Tanh", "Erf", "ReduceMean", "Sub"})
# Quantize/dequantize nodes mark the int8 boundaries and constants hold weights: not compute.
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
NOT_COMPUTE = QDQ_OPS | {"Constant"}


@dataclass(frozen=True)
class Config:
    config_name: str  # a Quark default config name
    calib_crops: int  # calibration crops from the training folds (fewer when there are fewer)
    seed: int
    batch_size: int
    holdout_fold: int
    image_size: int
    aggregation: Aggregation

    @classmethod
    def from_params(cls, params: Params) -> Config:
        sect = params.quantize
        return cls(
            config_name=sect.config,
            calib_crops=sect.calib_crops,
            seed=sect.seed,
            batch_size=sect.batch_size,
            holdout_fold=params.train.holdout_fold,
            image_size=params.train.image_size,
            aggregation=Aggregation.from_params(params),
        )


Paths = ModelStagePaths  # the models/ root: reads onnx/, writes int8/


class CropReader:
    """Quark/ONNX Runtime calibration reader: one ``{"image": (1, 3, S, S)}`` feed per crop."""

    def __init__(self, dataset: CropDataset) -> None:
        self.dataset = dataset
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.dataset):
            return None
        image = self.dataset[self.position]["image"].numpy()[None]
        self.position += 1
        return {INPUT_NAME: image}

    def rewind(self) -> None:
        self.position = 0


def quark_quantize(source: Path, target: Path, reader: CropReader, config_name: str) -> None:
    """Quantize ``source`` to ``target`` with Quark's ``config_name`` (e.g. XINT8)."""
    try:
        from quark.onnx import ModelQuantizer
        from quark.onnx.quantization.config.config import QConfig
    except ImportError as err:
        raise ToolchainError(f"AMD Quark is not installed ({err}); pip install -r requirements.txt") from err
    quantizer = ModelQuantizer(QConfig.get_default_config(config_name))
    # Quark appends a quantized_info.csv to the current directory; keep it out of the repository
    source, target = source.resolve(), target.resolve()  # absolute before the directory change
    with atomic_path(target) as tmp, tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        quantizer.quantize_model(str(source), str(tmp), reader)


def operator_report(path: Path) -> dict[str, Any]:
    """Operator types of a quantized graph, split into DPU, CPU and unknown (compiler decides)."""
    import onnx

    nodes = onnx.load(str(path)).graph.node
    counts = Counter(node.op_type for node in nodes if node.op_type not in NOT_COMPUTE)
    split: dict[str, dict[str, int]] = {"dpu": {}, "cpu": {}, "unknown": {}}
    for op, n in sorted(counts.items()):
        key = "dpu" if op in DPU_OPS else "cpu" if op in CPU_OPS else "unknown"
        split[key][op] = n
    return {
        **split,
        "cpu_after_graph": ["Sigmoid"],  # the graphs end in logits; the caller's sigmoid runs on the CPU
        "qdq_nodes": sum(1 for node in nodes if node.op_type in QDQ_OPS),
    }


def onnx_probabilities(session: Any, dataset: CropDataset, batch_size: int) -> np.ndarray:
    """P(fake) of the ``logit`` output over ``dataset`` in row order."""
    return predict_crops_with(lambda batch: session.run([LOGIT], {INPUT_NAME: batch})[0], dataset, batch_size)


def _summary(metrics: dict[str, Any]) -> dict[str, float]:
    return {f"{level}_{key}": metrics[level][key] for level in ("frame", "video") for key in ("auc", "log_loss", "ece")}


def run(config: Config, paths: Paths) -> dict[str, Any]:
    """The quantize stage: calibrate every exported model to int8, then test it on the holdout."""
    store = ModelStore(paths.models)
    # absolute: the calibration reader loads crops while Quark runs in a scratch directory
    roots = DataRoots(paths.roots.crops.resolve(), paths.roots.landmarks.resolve(), paths.roots.masks.resolve())
    manifest = store.read_manifest("onnx")
    face_input = store.face_input("onnx")
    table = read_folds(paths.folds)
    calib = CropDataset(
        calibration_rows(table, config.holdout_fold, config.calib_crops, config.seed), roots, face_input.image_size
    )
    holdout_rows = select_folds(table, [config.holdout_fold], drop_unmasked_fakes=False)
    holdout = CropDataset(holdout_rows, roots, face_input.image_size)
    out_dir = store.folder("onnx-int8")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {m["name"] for m in manifest["members"]}
    for stale in out_dir.glob("*.onnx"):
        if stale.stem not in names:
            stale.unlink()
    members: dict[str, Any] = {}
    for member in manifest["members"]:
        source, target = store.graph(member["name"], "onnx"), store.graph(member["name"], "onnx-int8")
        started = time.perf_counter()
        quark_quantize(source, target, CropReader(calib), config.config_name)
        calibrate_seconds = time.perf_counter() - started
        fp32_probs = onnx_probabilities(onnx_session(source), holdout, config.batch_size)
        int8_probs = onnx_probabilities(onnx_session(target), holdout, config.batch_size)
        fp32 = score(holdout_rows, fp32_probs, config.aggregation)[0]
        int8 = score(holdout_rows, int8_probs, config.aggregation)[0]
        members[member["name"]] = {
            "fp32": _summary(fp32),
            "int8": _summary(int8),
            "bytes": {"fp32": source.stat().st_size, "int8": target.stat().st_size},
            "calibrate_seconds": round(calibrate_seconds, 2),
            "dpu_operators": operator_report(target),
        }
        logger.info(
            "%s: int8 %s, fp32 %s", member["name"], members[member["name"]]["int8"], members[member["name"]]["fp32"]
        )
    store.write_manifest(
        "onnx-int8",
        manifest["members"],
        face_input,
        opset=manifest.get("opset"),
        precision="int8",
        quark_config=config.config_name,
    )
    report = {
        "config": config.config_name,
        "calib_crops": len(calib),
        "holdout_crops": len(holdout),
        "members": members,
    }
    write_json_atomic(paths.report, report)
    return report
