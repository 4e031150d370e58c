"""The MTCNN cascade (P-Net pyramid -> R-Net -> O-Net) on facenet-pytorch's weights, driven with NumPy and OpenCV.

Why not facenet-pytorch's own ``detect_face``: on a CPU it spends more time resizing than in the nets
(every pyramid level and every candidate box goes through ``torch.nn.functional.interpolate``, one call
per box), and its nets run on PyTorch only. Here each frame's integral image (one OpenCV call) gives
every pyramid level and every candidate crop by gathers: the same "area" resampling as torch's
(``adaptive_avg_pool2d``: output cell i averages input rows ``floor(i*h/oh)`` to ``ceil((i+1)*h/oh)``),
in float, so the nets see what facenet-pytorch feeds them. The nets run on ONNX Runtime or PyTorch
behind one callable each. The cascade's arithmetic (box generation, regression, squaring, clipping,
the final NMS measuring overlap by the smaller box, "Min") follows facenet-pytorch; its tunable numbers, the
pyramid factor and the four NMS thresholds, come from params (``bboxes`` / ``landmarks``: ``pyramid_factor``,
``nms_thresholds``), where params.yaml keeps MTCNN's published values. Why exact: MTCNN's thresholds
sit close to the scores of blurry or low-resolution faces (a swapped face's), and a plain
``cv2.INTER_AREA`` on uint8 moved some of them below 0.95.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deepfake.core.fileio import atomic_path

logger = logging.getLogger(__name__)

# Fixed by the pretrained nets' architecture: P-Net's window and output stride, R-/O-Net's input sides
CELL = 12  # P-Net's window: the smallest face the pyramid reaches is min_size at scale CELL / min_size
STRIDE = 2  # P-Net's output stride
RNET_SIDE, ONET_SIDE = 24, 48
# Sizes of the nets' calls. Results do not depend on them (ONNX Runtime's nets give the same bits for any batch,
# tests/test_faces.py); speed does: a batch whose activations outgrow the CPU's cache runs at memory speed, so
# P-Net sees one 960x540 frame's finest level at a time rather than sixteen (30 % less time on a 2-core EPYC),
# and R-/O-Net take their candidates in small batches (20 % less than 512), which also bounds memory on a frame
# full of candidates.
PNET_PIXELS = 1 << 17  # input pixels per P-Net call: whole frames of a level, at least one
NET_BATCH = 32  # candidate crops per R-/O-Net call

Net = Callable[[np.ndarray], list[np.ndarray]]  # float32 NCHW in, the net's outputs out


@dataclass(frozen=True)
class Cascade:
    """The cascade's tunable numbers (``bboxes`` / ``landmarks``: ``pyramid_factor``, ``nms_thresholds``)."""

    factor: float  # each pyramid level's scale over the previous one's
    nms_scale: float  # P-Net's boxes within one pyramid level (IoU)
    nms_pyramid: float  # P-Net's boxes across the levels (IoU)
    nms_rnet: float  # R-Net's boxes (IoU)
    nms_onet: float  # O-Net's final boxes (overlap over the smaller box)


@dataclass(frozen=True)
class Nets:
    pnet: Net
    rnet: Net
    onet: Net


NET_NAMES = ("pnet", "rnet", "onet")
# The exported graphs are cached per user (``onnx_graphs``), keyed by this, the exporter's (torch's) version and
# the weight files' bytes: bump it when the export below changes.
ONNX_EXPORT_FORMAT = 1


def load_nets(runtime: str, device: str, threads: int) -> Nets:
    """facenet-pytorch's pretrained P/R/O-nets on ONNX Runtime's CPU provider ("onnx") or PyTorch ("torch")."""
    if runtime == "torch":
        import torch

        return Nets(*(_torch_net(m, torch.device(device)) for m in _pretrained_modules()))
    return Nets(*(_onnx_net(graph, threads) for graph in onnx_graphs()))


def _pretrained_modules() -> tuple[Any, Any, Any]:
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    return PNet().eval(), RNet().eval(), ONet().eval()  # pretrained weights ship with facenet-pytorch


def _torch_net(module: Any, device: Any) -> Net:
    import torch

    module = module.to(device)

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [o.float().cpu().numpy() for o in module(torch.from_numpy(x).to(device))]

    return run


def _onnx_net(graph: bytes, threads: int) -> Net:
    """One net's ONNX graph run by ONNX Runtime with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # unused by the sequential executor these sessions run on; no pool to start
    options.log_severity_level = 3
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})


def weight_files() -> tuple[Path, Path, Path]:
    """facenet-pytorch's P/R/O-net weight files, found without importing it (nor torch)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("facenet-pytorch is not installed: MTCNN's weights ship with it")
    data = Path(spec.origin).parent / "data"
    return data / "pnet.pt", data / "rnet.pt", data / "onet.pt"


def onnx_cache_key() -> str:
    """What the exported graphs depend on: the export's format, the exporter's version and the weights."""
    digest = hashlib.sha256(f"{ONNX_EXPORT_FORMAT} torch {importlib.metadata.version('torch')}".encode())
    for path in weight_files():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:32]


def onnx_graphs(cache: Path | None = None) -> tuple[bytes, ...]:
    """The three nets as ONNX graphs: from ``cache`` (default: this user's cache folder, ``mtcnn-onnx`` in
    platformdirs' ``user_cache_dir("deepfake")``, e.g. ``~/.cache/deepfake``), or exported from the weights and
    cached there.

    Why cache: the export needs torch and torchvision (about 6 s to import on a 2-core CPU) in every process
    that detects faces, while a cached graph needs neither. The key covers everything the graphs depend on,
    and a graph is written whole or not at all (renamed into place). A cache that cannot be written (a
    read-only home) only costs the export in every process: it is logged, never an error.
    """
    if cache is None:
        import platformdirs

        cache = Path(platformdirs.user_cache_dir("deepfake")) / "mtcnn-onnx"
    folder = cache / onnx_cache_key()
    paths = [folder / f"{name}.onnx" for name in NET_NAMES]
    if all(path.is_file() for path in paths):
        return tuple(path.read_bytes() for path in paths)
    graphs = _export_onnx()
    try:
        for path, graph in zip(paths, graphs, strict=True):
            with atomic_path(path) as tmp:
                tmp.write_bytes(graph)
    except OSError as err:
        logger.warning("MTCNN's ONNX graphs are not cached (%s): every detector process exports them again", err)
    return graphs


def _export_onnx() -> tuple[bytes, ...]:
    """The pretrained nets exported to ONNX (TorchScript exporter), with dynamic batch (and P-Net's image) axes."""
    import torch

    pnet_example = 2 * CELL  # any side >= CELL: P-Net's height and width are dynamic axes
    examples = (
        torch.zeros(1, 3, pnet_example, pnet_example),
        torch.zeros(2, 3, RNET_SIDE, RNET_SIDE),
        torch.zeros(2, 3, ONET_SIDE, ONET_SIDE),
    )
    axes = ({0: "batch", 2: "height", 3: "width"}, {0: "batch"}, {0: "batch"})
    graphs = []
    for module, example, axis in zip(_pretrained_modules(), examples, axes, strict=True):
        outputs = [f"out{i}" for i in range(len(module(example)))]
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # the TorchScript exporter: these tiny nets need none of torch.export's tracing
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # torch types it as a path; the TorchScript exporter takes a file too
                input_names=["x"],
                output_names=outputs,
                dynamic_axes={"x": axis},
                dynamo=False,
            )
        graphs.append(buffer.getvalue())
    return tuple(graphs)


def pyramid_scales(
    height: int, width: int, min_size: float, factor: float, smallest_face: float | None = None
) -> list[float]:
    """Scales at which P-Net's 12-px window sees faces from ``min_size`` px up to the whole frame, each level
    ``factor`` times the one before (``bboxes.pyramid_factor``).

    ``smallest_face`` drops the finest levels, those whose faces are smaller than it by more than one
    pyramid step. The levels kept are exactly those of the full pyramid: moving the grid instead (starting
    it at ``smallest_face``) changes which scales every face is seen at, and MTCNN's scores for blurry
    faces near its thresholds with them.
    """
    scale = CELL / min_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= CELL:
        if smallest_face is None or CELL / scale > smallest_face * factor:
            scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def _normalise(images: np.ndarray) -> np.ndarray:
    """0-255 NHWC -> float32 NCHW in [-1, 1) as the nets were trained (fixed by the weights)."""
    return np.ascontiguousarray(((images.astype(np.float32) - 127.5) * 0.0078125).transpose(0, 3, 1, 2))


INT32_SUM_LIMIT = 2**31 - 1


def _pyramid_level(tables: Sequence[np.ndarray], height: int, width: int, size: tuple[int, int]) -> np.ndarray:
    """Every image resized to ``size`` (``area_resize``) and normalised (``_normalise``), written straight into
    one NCHW batch: the same float32 operations in the same order, without a stacked NHWC copy between."""
    out = np.empty((len(tables), 3, *size), np.float32)
    for index, table in enumerate(tables):
        level = area_resize(table, 0, 0, height, width, size)
        level -= 127.5
        level *= 0.0078125
        out[index] = level.transpose(2, 0, 1)
    return out


def integral(image: np.ndarray) -> np.ndarray:
    """The (h+1, w+1, c) integral image of a uint8 image: any rectangle's sum in four lookups.

    Exact integers either way: int32 while the whole image's sum fits (half the bytes of float64 to write and
    to gather from, so a 960x540 frame's table costs a third of the time), float64 beyond."""
    depth = cv2.CV_32S if image.shape[0] * image.shape[1] * 255 <= INT32_SUM_LIMIT else cv2.CV_64F
    return cv2.integral(image, sdepth=depth).reshape(image.shape[0] + 1, image.shape[1] + 1, -1)


def _edges(start: int, length: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(cells)
    return start + (i * length) // cells, start - ((-(i + 1) * length) // cells)  # floor, ceil


def area_resize(table: np.ndarray, top: int, left: int, height: int, width: int, out: tuple[int, int]) -> np.ndarray:
    """The region ``[top:top+height, left:left+width]`` of the image behind ``table`` resized to ``out``
    (rows, cols) by torch's "area" rule, as float32 (no rounding to uint8).

    Rows first: the difference of two row gathers holds, per output row, the running sums along x of its
    window's rows, so two column gathers finish each cell (half the gathers of four corner lookups). The sums
    are integers, exact in float64, so the result is the same whichever way they are added."""
    y0, y1 = _edges(top, height, out[0])
    x0, x1 = _edges(left, width, out[1])
    rows = table[y1] - table[y0]
    sums = (rows[:, x1] - rows[:, x0]).astype(np.float64)
    return (sums / ((y1 - y0)[:, None] * (x1 - x0)[None, :])[..., None]).astype(np.float32)


def area_resize_boxes(
    table: np.ndarray, tops: np.ndarray, lefts: np.ndarray, heights: np.ndarray, widths: np.ndarray, side: int
) -> np.ndarray:
    """``area_resize`` of many regions of one image to ``side x side`` each, in one gather: ``(n, side, side, 3)``."""
    cells = np.arange(side)
    y0 = tops[:, None] + (cells * heights[:, None]) // side
    y1 = tops[:, None] - ((-(cells + 1) * heights[:, None]) // side)
    x0 = lefts[:, None] + (cells * widths[:, None]) // side
    x1 = lefts[:, None] - ((-(cells + 1) * widths[:, None]) // side)
    ys0, ys1, xs0, xs1 = y0[:, :, None], y1[:, :, None], x0[:, None, :], x1[:, None, :]
    sums = (table[ys1, xs1] - table[ys0, xs1] - table[ys1, xs0] + table[ys0, xs0]).astype(np.float64)
    area = (y1 - y0)[:, :, None] * (x1 - x0)[:, None, :]
    return (sums / area[..., None]).astype(np.float32)


def _nms(boxes: np.ndarray, groups: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy NMS within each group (image), highest score first: a box overlapping a kept one
    by more than ``threshold`` is dropped; overlap is IoU ("union") or the intersection over the smaller box
    ("min", MTCNN's last stage)."""
    if not len(boxes):
        return np.zeros(0, np.int64)
    offset = (groups.astype(np.float64) * (boxes[:, :4].max() + 1))[:, None]
    x1, y1, x2, y2 = (boxes[:, :4] + offset).T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(boxes[:, 4], kind="stable")
    keep = []
    while order.size:
        i = order[-1]
        keep.append(i)
        rest = order[:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denominator = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / denominator <= threshold]
    return np.asarray(keep, np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    h, w = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2:4] = out[:, :2] + side[:, None]
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + reg[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def _crops(
    tables: Sequence[np.ndarray], shape: tuple[int, int], boxes: np.ndarray, groups: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each box cut from its image (clipped to it) and resized to ``size``; also which boxes had pixels."""
    height, width = shape
    ints = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(ints[:, 0], 1), np.maximum(ints[:, 1], 1)
    ex, ey = np.minimum(ints[:, 2], width), np.minimum(ints[:, 3], height)
    valid = (ey > y - 1) & (ex > x - 1)
    stacked = np.zeros((int(valid.sum()), size, size, 3), np.float32)
    kept = np.nonzero(valid)[0]
    for group in np.unique(groups[kept]):  # one gather per image for all of its boxes
        rows = np.nonzero(groups[kept] == group)[0]
        mine = kept[rows]
        top, left = y[mine] - 1, x[mine] - 1
        stacked[rows] = area_resize_boxes(tables[group], top, left, ey[mine] - top, ex[mine] - left, size)
    return stacked, valid


def _batched(net: Net, x: np.ndarray) -> list[np.ndarray]:
    parts = [net(x[i : i + NET_BATCH]) for i in range(0, len(x), NET_BATCH)]
    return [np.concatenate(outs) for outs in zip(*parts, strict=True)]


def _proposals(
    tables: Sequence[np.ndarray],
    shape: tuple[int, int],
    nets: Nets,
    min_size: float,
    smallest_face: float,
    threshold: float,
    cascade: Cascade,
) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: P-Net over the pyramid; boxes (n, 9: x1 y1 x2 y2 score + regression) and their image."""
    height, width = shape
    boxes, groups = [], []
    for scale in pyramid_scales(height, width, min_size, cascade.factor, smallest_face):
        size = (int(height * scale + 1), int(width * scale + 1))
        per_call = max(1, PNET_PIXELS // (size[0] * size[1]))
        for first in range(0, len(tables), per_call):
            # each chunk's level is resized, normalised and run while it is still in the cache
            reg, prob = nets.pnet(_pyramid_level(tables[first : first + per_call], height, width, size))
            image, row, col = np.nonzero(prob[:, 1] >= threshold)
            if not len(image):
                continue
            cells = np.stack([col, row], axis=1).astype(np.float32)
            q1 = np.floor((STRIDE * cells + 1) / scale)
            q2 = np.floor((STRIDE * cells + CELL) / scale)
            found = np.concatenate([q1, q2, prob[image, 1, row, col][:, None], reg[image, :, row, col]], axis=1).astype(
                np.float32
            )
            keep = _nms(found, image, cascade.nms_scale)
            boxes.append(found[keep])
            groups.append(image[keep] + first)
    if not boxes:
        return np.zeros((0, 9), np.float32), np.zeros(0, np.int64)
    return np.concatenate(boxes), np.concatenate(groups)


def detect_faces(
    images: np.ndarray,
    nets: Nets,
    min_size: float,
    smallest_face: float,
    thresholds: Sequence[float],
    cascade: Cascade,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Faces in equally sized RGB uint8 images ``(n, h, w, 3)``: per image, boxes ``(k, 5)`` [x1 y1 x2 y2 score]
    by descending score, and 5-point landmarks ``(k, 5, 2)``. An image smaller than ``min_size`` has none."""
    count = len(images)
    shape = images.shape[1:3]
    tables = [integral(image) for image in images]
    boxes, groups = _proposals(tables, shape, nets, min_size, smallest_face, thresholds[0], cascade)
    keep = _nms(boxes, groups, cascade.nms_pyramid)
    boxes, groups = boxes[keep], groups[keep]
    points = np.zeros((0, 5, 2), np.float32)
    if len(boxes):  # P-Net's own regression (scaled by the box side without the +1 of later stages), squared
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        regressed = boxes[:, :4] + boxes[:, 5:9] * np.stack([w, h, w, h], axis=1)
        boxes = _square(np.concatenate([regressed, boxes[:, 4:5]], axis=1))
    if len(boxes):  # stage 2: R-Net refines and rejects
        crops, valid = _crops(tables, shape, boxes, groups, RNET_SIDE)
        boxes, groups = boxes[valid], groups[valid]
        reg, prob = _batched(nets.rnet, _normalise(crops))
        passed = prob[:, 1] > thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], axis=1)
        groups, reg = groups[passed], reg[passed]
        keep = _nms(boxes, groups, cascade.nms_rnet)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        groups = groups[keep]
    if len(boxes):  # stage 3: O-Net, landmarks, final boxes
        crops, valid = _crops(tables, shape, boxes, groups, ONET_SIDE)
        boxes, groups = boxes[valid], groups[valid]
        reg, marks, prob = _batched(nets.onet, _normalise(crops))
        passed = prob[:, 1] > thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], prob[passed, 1:2]], axis=1)
        groups, reg, marks = groups[passed], reg[passed], marks[passed]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack([w * marks[:, :5] + boxes[:, :1] - 1, h * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2)
        boxes = _regress(boxes, reg)
        keep = _nms(boxes, groups, cascade.nms_onet, "min")
        boxes, groups, points = boxes[keep], groups[keep], points[keep]
    per_image_boxes, per_image_points = [], []
    for index in range(count):
        mine = np.nonzero(groups == index)[0]
        mine = mine[np.argsort(-boxes[mine, 4], kind="stable")]
        per_image_boxes.append(boxes[mine].astype(np.float32).reshape(-1, 5))
        per_image_points.append(points[mine].astype(np.float32).reshape(-1, 5, 2))
    return per_image_boxes, per_image_points


def refine_boxes(
    tables: Sequence[np.ndarray], shape: tuple[int, int], nets: Nets, boxes: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """O-Net's verdict on given boxes (``(n, >=4)``, box ``i`` in image ``groups[i]``): per box ``[x1 y1 x2 y2
    score]``, the box as O-Net regresses it (from the box squared, as the cascade feeds O-Net) and O-Net's face
    score; a box with no pixels in its image scores 0. The cascade's last stage run on boxes from elsewhere (a
    face track's interpolation), to check that a face is there without the pyramid."""
    out = np.zeros((len(boxes), 5), np.float32)
    if not len(boxes):
        return out
    squared = _square(np.asarray(boxes, np.float32)[:, :4])
    crops, valid = _crops(tables, shape, squared, groups, ONET_SIDE)
    if not len(crops):
        return out
    reg, _, prob = _batched(nets.onet, _normalise(crops))
    scored = np.concatenate([squared[valid], prob[:, 1:2]], axis=1)
    out[valid] = _regress(scored, reg)
    return out
