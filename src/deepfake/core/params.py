"""params.yaml, described once: every key has a type and a range; unknown and missing keys are errors.

params.yaml is the only place defaults live. The schema below has no defaults of its own: every key is
required, so a renamed or deleted key is reported as missing instead of silently falling back to a
value hidden in the code. The only optional keys are optional by design (a model's ``weights`` file,
the ``model.<name>`` sections of architectures that ``models`` does not train) and default to None.

What is validated where:

- Field types and ranges: on each section model (``BboxesParams.thresholds`` is three numbers in
  [0, 1], ``CropsParams.margin`` lies in [0, 2], ...). Strict: a boolean is never a number and the
  string "3" is never an int; an int is accepted where a float is expected. NaN and infinities are
  refused everywhere.
- Relations inside one section: ``model_validator``s on that section (``build_trt`` needs
  ``1 <= min_batch <= opt_batch <= max_batch``, ``bboxes.scale_rule`` limits must increase, a U-YNet
  needs one decoder channel count per encoder stage, ...).
- Relations across sections: ``Params``'s ``model_validator`` (every name in ``models`` has a
  ``model.<name>`` section; the holdout and validation folds differ and exist for the fold strategy;
  a U-YNet's input size is divisible by ``2 ** depth``; SGD's Nesterov momentum is positive; the
  ``part`` strategy can read a number from every data part's name; ``train.datasets`` names no
  test-only dataset; a test set holds ``data.datasets`` entries or test-only ones, never both).
- Reporting: ``validate_params`` turns pydantic's errors into one ``ParamsError`` with one line per
  problem, ``<source>: <dotted.key>: <problem>``; an unknown key names the nearest valid one.

Stage configs (``deepfake.stages.<stage>.Config.from_params``) read these validated models by
attribute and check nothing again: the checks live here, once.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from deepfake.core.errors import ParamsError
from deepfake.core.vocabulary import PART_NUMBER, Compression, LayoutName, Split

__all__ = [
    "AugmentParams",
    "BboxesParams",
    "BuildTrtParams",
    "ClassifierParams",
    "CompileDpuParams",
    "ConfidentParams",
    "CropsParams",
    "DataParams",
    "DatasetParams",
    "DiffsParams",
    "EnsembleParams",
    "EvaluateParams",
    "ExecutorParams",
    "ExplainParams",
    "ExportParams",
    "FoldsParams",
    "LandmarksParams",
    "ModelParams",
    "Params",
    "ParamsError",
    "PredictParams",
    "QuantizeParams",
    "SampleParams",
    "ServeParams",
    "TrainParams",
    "TritonParams",
    "UYNetParams",
    "VideoParams",
    "load_params",
    "load_params_for_models",
    "package_settings",
    "validate_params",
]


# ---- reusable field types ---------------------------------------------------------------------


class _Problems(ValueError):
    """Cross-field problems, each with the dotted key (relative to the model that found it) to blame."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))
        self.problems = problems


def _raise_problems(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise _Problems(problems)


def _fail(key: str, message: str) -> None:
    raise _Problems([(key, message)])


def _unique(values: list[Any]) -> list[Any]:
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate entries {', '.join(duplicates)}")
    return values


def _plain_name(name: str) -> str:
    # Part names become folder names (data/<stage>/<part>): no paths, no hidden (temporary-looking) names.
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError("must be a plain folder name (no '/', '\\', leading '.')")
    return name


_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def _fixed_device(device: str) -> str:
    if not _DEVICE.fullmatch(device):
        raise ValueError("must be cpu, cuda or cuda:N")
    return device


def _device_or_auto(device: str) -> str:
    if device != "auto" and not _DEVICE.fullmatch(device):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return device


def _detection_scale(value: Any) -> str | float:
    if isinstance(value, str) and value == "auto":
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError("must be 'auto' or a positive number")


def _odd_window(size: int) -> int:
    if size < 3 or size % 2 == 0:
        raise ValueError("must be an odd number >= 3")
    return size


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0)]  # numpy's generators refuse negative seeds
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
NonEmptyStr = Annotated[str, Field(min_length=1)]
PartName = Annotated[str, AfterValidator(_plain_name)]
PartList = Annotated[list[PartName], Field(min_length=1), AfterValidator(_unique)]
Device = Annotated[str, AfterValidator(_fixed_device)]  # cpu, cuda, cuda:N (handed to MTCNN as is)
AutoDevice = Annotated[str, AfterValidator(_device_or_auto)]  # also auto (core.device.resolve_device)
Thresholds = Annotated[list[Probability], Field(min_length=3, max_length=3)]  # MTCNN P/R/O-net
# MTCNN's NMS overlaps: P-Net within a pyramid level, across levels, R-Net, O-Net (0 would keep one box per image)
NmsThresholds = Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=4, max_length=4)]
PyramidFactor = Annotated[float, Field(gt=0, lt=1)]  # MTCNN: each pyramid level's scale over the previous one's
ScaleRow = Annotated[list[PositiveFloat], Field(min_length=2, max_length=2)]  # [shorter side up to, scale]
DetectionScale = Annotated[Literal["auto"] | float, PlainValidator(_detection_scale)]
InputFilter = Literal["none", "srm"]  # modeling.models.INPUT_FILTERS
# An optional weights file (modeling.models.create_model(weights=...)); None builds random weights.
WeightsPath = Annotated[str, Field(min_length=1)] | None


class _Section(BaseModel):
    """Strict, closed and immutable: the semantics every params model shares."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# ---- one model per section of params.yaml ---------------------------------------------------------


Layout = LayoutName  # the vocabulary's names (deepfake.media.layouts registers one adapter each)
MethodList = Annotated[list[NonEmptyStr], AfterValidator(_unique)]


class DatasetParams(_Section):
    """One dataset: its layout, its root folder and the layout's options (the adapter in
    deepfake.media.layouts refuses an option its layout does not take)."""

    layout: Layout
    root: NonEmptyStr
    compression: Compression | None = None  # ffpp
    methods: MethodList | None = None  # ffpp: manipulated_sequences/<method> folders to read (default: all)
    splits: NonEmptyStr | None = None  # ffpp: folder of train/val/test.json (default <root>/splits)
    variants: MethodList | None = None  # deeperforensics: manipulated_videos/<variant> folders
    ffpp_root: NonEmptyStr | None = None  # deeperforensics: its reals are FF++'s youtube c23 videos
    split: Split | None = None  # dfdc_test: the split its videos belong to (default test)
    identities: NonEmptyStr | None = None  # CSV path,identity: who each video shows, across datasets

    def options(self) -> dict[str, Any]:
        """The layout options that are set (layout and root left out)."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"layout", "root"})

    @property
    def extra_roots(self) -> tuple[str, ...]:
        """Folders besides ``root`` that the dataset's videos may lie in."""
        return (self.ffpp_root,) if self.ffpp_root else ()


class DataParams(_Section):
    # name -> dataset; one ingest and one stage of each preprocessing step per dataset (dvc.yaml foreach); all of
    # them are folded (the folds stage), so train.datasets and the holdout test sets name these
    datasets: Annotated[dict[PartName, DatasetParams], Field(min_length=1)]
    # name -> test-only dataset (may be empty): ingested, boxed and cropped by the ingest_test, bboxes_test and
    # crops_test stages, never folded or trained on; a test set of them scores every video (docs/datasets.md)
    test_datasets: dict[PartName, DatasetParams]

    @model_validator(mode="after")
    def _one_role_per_dataset(self) -> DataParams:
        both = sorted(set(self.datasets) & set(self.test_datasets))
        if both:
            _fail(
                "test_datasets",
                f"{', '.join(both)} also in data.datasets: a dataset is either folded and trainable (data.datasets) "
                "or test-only (data.test_datasets), and its name names its outputs (data/index/<name>.csv)",
            )
        return self

    def spec(self, name: str) -> DatasetParams | None:
        """Dataset ``name``'s entry, from ``datasets`` or ``test_datasets`` (None if neither has it)."""
        return self.datasets.get(name) or self.test_datasets.get(name)

    def extra_roots(self, name: str) -> tuple[Path, ...]:
        """The folders besides its root that dataset ``name``'s videos may lie in (none if unknown)."""
        spec = self.spec(name)
        return tuple(Path(root) for root in spec.extra_roots) if spec else ()


# The built-in sample's settings (deepfake.sample) are checked here only: SampleConfig reads them as they are.
SAMPLE_MIN_FRAMES, SAMPLE_MIN_SIDE, SAMPLE_MIN_GENERATOR_SIZE = 8, 64, 16
# the layouts deepfake.sample.writers can write (a test keeps its WRITERS equal to them)
SampleDataset = Literal["ffpp", "celebdf", "dfdc_test", "dfdcp", "deeperforensics"]
SAMPLE_DATASETS: tuple[str, ...] = typing.get_args(SampleDataset)
SAMPLE_IDENTITIES = "identities"  # the sample's folder of identities/<dataset>.csv maps, beside the datasets


class SampleParams(_Section):
    seed: Seed
    parts: PartList  # DFDC training parts
    datasets: Annotated[list[SampleDataset], AfterValidator(_unique)]  # extra layouts (may be empty)
    frames: Annotated[int, Field(ge=SAMPLE_MIN_FRAMES)]
    fps: PositiveInt
    width: Annotated[int, Field(ge=SAMPLE_MIN_SIDE)]
    height: Annotated[int, Field(ge=SAMPLE_MIN_SIDE)]
    fakes_per_real: PositiveInt  # at most; capped by the identity group's size
    identity_groups: PositiveInt
    test_groups: NonNegativeInt
    val_groups: NonNegativeInt
    generator_size: Annotated[int, Field(ge=SAMPLE_MIN_GENERATOR_SIZE)]
    hq_generator_size: Annotated[int, Field(ge=SAMPLE_MIN_GENERATOR_SIZE)]

    @model_validator(mode="after")
    def _landscape_even(self) -> SampleParams:
        sides = (("width", self.width), ("height", self.height))
        problems = [(key, f"must be even (mp4v), got {value}") for key, value in sides if value % 2]
        if self.width <= self.height:
            problems.append(("width", f"must exceed sample.height (landscape), got {self.width}x{self.height}"))
        if self.hq_generator_size <= self.generator_size:
            problems.append(
                (
                    "hq_generator_size",
                    f"must exceed sample.generator_size ({self.generator_size}), got {self.hq_generator_size}",
                )
            )
        if self.test_groups + self.val_groups >= self.identity_groups:
            problems.append(
                (
                    "test_groups",
                    f"test_groups + val_groups ({self.test_groups} + {self.val_groups}) must leave at "
                    f"least one of the {self.identity_groups} identity_groups for train",
                )
            )
        clash = sorted(set(self.parts) & {*self.datasets, SAMPLE_IDENTITIES})
        if clash:
            problems.append(("parts", f"{clash} clash with the folders of sample.datasets"))
        _raise_problems(problems)
        return self


class VideoParams(_Section):
    frame_stride: PositiveInt
    max_frames: PositiveInt
    max_pixels: PositiveInt


# distributed.Client addresses: <protocol>://<host>[:<port>] (the port defaults to 8786)
_SCHEDULER = re.compile(r"(tcp|tls|ucx|ws|wss|inproc)://[^\s/:]+(:\d{1,5})?")


def _scheduler_address(address: str) -> str:
    if not _SCHEDULER.fullmatch(address):
        raise ValueError(
            "must be a Dask scheduler address <protocol>://<host>[:<port>] (tcp://10.0.0.5:8786; tcp, tls, ucx, ws, "
            "wss), or null to start a LocalCluster on this machine"
        )
    return address


class ExecutorParams(_Section):
    """Where per-video work runs (deepfake.core.parallel.ExecutorConfig); outputs do not depend on it."""

    kind: Literal["local", "dask"]
    scheduler: Annotated[str, AfterValidator(_scheduler_address)] | None  # dask only; None: a LocalCluster per stage
    retries: NonNegativeInt  # dask: reruns of a task whose worker died (the scheduler's allowed-failures)

    @model_serializer(mode="wrap")
    def _keep_null_scheduler(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # scheduler is a required key whose null means "a LocalCluster": Params.to_dict (exclude_none) keeps it
        data = handler(self)
        data.setdefault("scheduler", self.scheduler)
        return data


# the smallest face of interest as a share of the frame's shorter side; below 1 or nothing could be found
FaceShare = Annotated[float, Field(ge=0, lt=1)]


class DetectorParams(_Section):
    """MTCNN on whole frames (media.faces.Detection): the bboxes stage's and prediction's own (predict_detector)."""

    device: Device
    batch_size: PositiveInt
    thresholds: Thresholds
    min_face_size: PositiveInt  # MTCNN divides by it
    min_face_share: FaceShare
    pyramid_factor: PyramidFactor
    nms_thresholds: NmsThresholds
    runtime: Literal["onnx", "torch"]  # media.faces.DETECTOR_RUNTIMES
    scale: DetectionScale
    scale_rule: Annotated[list[ScaleRow], Field(min_length=1)]

    @model_validator(mode="after")
    def _limits_increase(self) -> DetectorParams:
        limits = [row[0] for row in self.scale_rule]
        if any(b <= a for a, b in itertools.pairwise(limits)):
            _fail("scale_rule", f"limits must increase row by row (the first match wins), got {limits}")
        return self


class BboxesParams(DetectorParams):
    workers: PositiveInt
    torch_threads: PositiveInt


class CropsParams(_Section):
    margin: Annotated[float, Field(ge=0, le=2)]
    workers: PositiveInt


class LandmarksParams(_Section):
    device: Device
    thresholds: Thresholds
    min_face_size: PositiveInt
    min_face_share: FaceShare
    pyramid_factor: PyramidFactor
    nms_thresholds: NmsThresholds
    runtime: Literal["onnx", "torch"]
    workers: PositiveInt
    torch_threads: PositiveInt


class DiffsParams(_Section):
    win_size: Annotated[int, AfterValidator(_odd_window)]  # SSIM window
    mask_threshold: Annotated[int, Field(ge=0, le=255)]
    workers: PositiveInt


class FoldsParams(_Section):
    strategy: Literal["original", "part"]
    n_splits: Annotated[int, Field(ge=2)]
    seed: Seed
    identity: bool
    part_splits: PositiveInt
    parts_total: PositiveInt

    @model_validator(mode="after")
    def _splits_fit(self) -> FoldsParams:
        if self.part_splits > self.parts_total:
            _fail("part_splits", f"must not exceed folds.parts_total ({self.parts_total})")
        return self

    @property
    def fold_count(self) -> int:
        """How many folds the strategy makes (numbered 0 .. count - 1; modeling.splits)."""
        return self.n_splits if self.strategy == "original" else self.part_splits


class ClassifierParams(_Section):
    """``create_model("classifier", ...)``'s keyword arguments (modeling.models._classifier)."""

    encoder: NonEmptyStr  # a timm model name
    dropout: Probability
    drop_path: Probability
    input_filter: InputFilter
    weights: WeightsPath = None  # optional by design: only a pretrained start sets it


# smp's and timm-universal encoders take 1 to 5 stages
UYNET_MAX_DEPTH = 5


class UYNetParams(_Section):
    """``create_model("uynet", ...)``'s keyword arguments (modeling.models._uynet)."""

    encoder: NonEmptyStr  # an smp encoder; tu-<name> takes a timm one
    dropout: Probability
    depth: Annotated[int, Field(ge=1, le=UYNET_MAX_DEPTH)]
    decoder_channels: Annotated[list[PositiveInt], Field(min_length=1)]
    input_filter: InputFilter
    weights: WeightsPath = None  # optional by design: only a pretrained start sets it

    @model_validator(mode="after")
    def _one_channel_count_per_stage(self) -> UYNetParams:
        if len(self.decoder_channels) != self.depth:
            got = len(self.decoder_channels)
            _fail("decoder_channels", f"needs {self.depth} entries (one per encoder stage, uynet.depth), got {got}")
        return self


class ModelParams(_Section):
    """One optional section per registered architecture; ``Params`` requires those ``models`` names."""

    # optional by design: a section may stay absent while `models` does not train that architecture
    classifier: ClassifierParams | None = None
    uynet: UYNetParams | None = None


class TrainParams(_Section):
    seed: Seed
    datasets: PartList  # whose training folds train (keys of data.datasets)
    holdout_methods: MethodList  # manipulation methods never trained on: the unseen-method test
    holdout_fold: NonNegativeInt
    val_fold: NonNegativeInt
    image_size: PositiveInt
    epochs: PositiveInt
    batch_size: PositiveInt
    optimizer: Literal["adamw", "sgd"]
    lr: PositiveFloat
    momentum: Probability  # SGD only (Nesterov: > 0, checked in Params)
    weight_decay: NonNegativeFloat
    poly_power: NonNegativeFloat
    grad_clip: NonNegativeFloat  # 0 turns clipping off
    label_clip: Annotated[float, Field(ge=0, lt=0.5)]  # labels clipped to [label_clip, 1 - label_clip]
    seg_weight: NonNegativeFloat
    fake_weight: NonNegativeFloat
    ignore_epochs: NonNegativeInt
    checkpoint_every: PositiveInt
    num_workers: NonNegativeInt
    device: AutoDevice


class EnsembleParams(_Section):
    seeds: Annotated[list[Seed], AfterValidator(_unique)]  # may be empty: no extra members


def _odd_kernel(side: int) -> int:
    if side < 3 or side % 2 == 0:
        raise ValueError("must be an odd number >= 3")
    return side


Pair = Field(min_length=2, max_length=2)


class AugmentParams(_Section):
    jpeg: Probability
    jpeg_quality: Annotated[list[Annotated[int, Field(ge=1, le=100)]], Pair]
    noise: Probability
    noise_std: Annotated[list[Probability], Pair]  # [low, high] share of the pixel range
    blur: Probability
    blur_kernel: Annotated[list[Annotated[int, AfterValidator(_odd_kernel)]], Pair]  # [low, high] odd sides
    flip: Probability
    color: Probability
    gray: Probability
    affine: Probability
    affine_shift: Annotated[float, Field(ge=0, lt=1)]  # share of the side, each way
    affine_scale: Annotated[list[PositiveFloat], Pair]  # [low, high]
    affine_rotate: Annotated[int, Field(ge=0, le=180)]  # degrees, each way
    landmark_cutout: Probability
    hull_cutout: Probability
    quadrant_cutout: Probability
    self_blend: Probability
    min_changed_pixels: NonNegativeInt

    @model_validator(mode="after")
    def _ranges_ordered(self) -> AugmentParams:
        problems = [
            (key, f"must be [low, high] with low <= high, got {getattr(self, key)}")
            for key in ("jpeg_quality", "noise_std", "blur_kernel", "affine_scale")
            if getattr(self, key)[0] > getattr(self, key)[1]
        ]
        _raise_problems(problems)
        return self


class ConfidentParams(_Section):
    """DFDC-1st's confident strategy (modeling.metrics.ConfidentStrategy)."""

    threshold: Probability
    min_fakes: NonNegativeInt
    min_fake_divisor: PositiveFloat
    low: Probability
    low_fraction: Probability


_TESTSET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


def _testset_name(name: str) -> str:
    # A test set names a DVC stage (evaluate@<name>), a file (metrics/evaluate/<name>.json) and a matrix column.
    if not _TESTSET_NAME.fullmatch(name):
        raise ValueError("must be a plain name: letters, digits, '_', '.', '-' (not first), at most 100 characters")
    return name


TestsetName = Annotated[str, AfterValidator(_testset_name)]


class EvaluateParams(_Section):
    aggregation: Literal["confident", "mean"]
    confident: ConfidentParams
    batch_size: PositiveInt
    device: AutoDevice
    # test set -> the datasets whose holdout-fold rows it holds, or test-only datasets (data.test_datasets) whose
    # every video it holds, never both kinds (one evaluate@<test set> stage each, in this order)
    testsets: Annotated[dict[TestsetName, PartList], Field(min_length=1)]


OpenRate = Annotated[float, Field(gt=0, lt=1)]


class CalibrateParams(_Section):
    """Calibration, operating points and the verdict rule (deepfake.modeling.calibration), fitted on the
    validation fold by the calibrate stage and on a user's labelled videos by ``deepfake calibrate``."""

    methods: Annotated[list[Literal["temperature", "isotonic"]], AfterValidator(_unique)]  # besides none
    cv_folds: Annotated[int, Field(ge=2)]  # folds of the cross-validation that picks the method
    seed: Seed  # shuffles those folds
    # operating points: each threshold flags at most this share of the fitting reals
    false_positive_rates: Annotated[list[OpenRate], Field(min_length=1), AfterValidator(_unique)]
    confidence: OpenRate  # of the operating points' intervals (Clopper-Pearson)
    likely_fake_at: OpenRate  # the verdict: likely fake at or above this operating point's threshold
    likely_real_below: OpenRate  # likely real below this one's; uncertain between
    batch_size: PositiveInt
    device: AutoDevice

    @model_validator(mode="after")
    def _verdict_points(self) -> CalibrateParams:
        problems = [
            (key, f"{getattr(self, key)} is not one of false_positive_rates {self.false_positive_rates}")
            for key in ("likely_fake_at", "likely_real_below")
            if getattr(self, key) not in self.false_positive_rates
        ]
        if self.likely_fake_at > self.likely_real_below:
            problems.append(
                (
                    "likely_fake_at",
                    f"must not exceed likely_real_below ({self.likely_real_below}): the stricter "
                    "false-positive rate decides 'likely fake'",
                )
            )
        _raise_problems(problems)
        return self


X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
]


class RobustnessEncodingParams(_Section):
    """The re-encode every perturbed variant and the baseline go through (media.perturbations.Encoding)."""

    crf: Annotated[int, Field(ge=0, le=51)]  # x264's constant rate factor
    preset: X264Preset
    threads: PositiveInt  # pinned: x264's bytes depend on its thread count, never on the machine's cores


class RobustnessParams(_Section):
    """perturb@<test set> and robustness@<test set> (families checked against media.perturbations there)."""

    grid: dict[NonEmptyStr, list[Annotated[int, Field(ge=1, le=5)]]]  # family -> levels (1 mildest .. 5)
    full_grid: bool  # every family at every level, whatever grid says
    max_videos: PositiveInt  # of each label per test set
    seed: Seed
    workers: PositiveInt  # videos perturbed at once (threads; each encode uses encoding.threads)
    encoding: RobustnessEncodingParams


class ExportParams(_Section):
    opset: Annotated[int, Field(ge=17)]
    parity_crops: PositiveInt
    tolerance: PositiveFloat
    name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]  # the model card's
    license: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class QuantizeParams(_Section):
    config: Literal["XINT8", "XINT8_ADAROUND", "XINT8_ADAQUANT"]  # Quark default configs for the DPU
    calib_crops: PositiveInt
    seed: Seed
    batch_size: PositiveInt


class TritonParams(_Section):
    max_batch_size: PositiveInt
    preferred_batch_sizes: list[PositiveInt]
    max_queue_delay_us: NonNegativeInt

    @model_validator(mode="after")
    def _sizes_fit(self) -> TritonParams:
        if any(size > self.max_batch_size for size in self.preferred_batch_sizes):
            sizes, largest = self.preferred_batch_sizes, self.max_batch_size
            _fail("preferred_batch_sizes", f"must lie in [1, triton.max_batch_size={largest}], got {sizes}")
        return self


class BuildTrtParams(_Section):
    precisions: Annotated[list[Literal["fp16", "int8"]], Field(min_length=1), AfterValidator(_unique)]
    min_batch: PositiveInt
    opt_batch: PositiveInt
    max_batch: PositiveInt
    workspace_mib: PositiveInt

    @model_validator(mode="after")
    def _profile_ordered(self) -> BuildTrtParams:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            batches = f"{self.min_batch}, {self.opt_batch}, {self.max_batch}"
            _fail("opt_batch", f"needs min_batch <= opt_batch <= max_batch, got {batches}")
        return self


class CompileDpuParams(_Section):
    arch: NonEmptyStr  # the DPU's arch.json inside the Vitis AI image


class PredictParams(_Section):
    frames: PositiveInt
    max_decoded: PositiveInt  # frames decoded per video at most (the work bound of whole-duration sampling)
    skip_nonref: bool  # the decoder drops frames no other frame references
    detect_every: PositiveInt  # the detector runs on every k-th sampled frame; face tracks carry boxes between
    track_iou: Annotated[float, Field(gt=0, le=1)]
    track_max_gap: NonNegativeInt
    track_max_shift: PositiveFloat  # a face's most movement per sampled frame, in face sides, a track may bridge
    track_min_share: Annotated[float, Field(ge=0, le=1)]
    batch_size: PositiveInt
    workers: NonNegativeInt  # 0: videos are prepared in the predict process itself
    torch_threads: PositiveInt  # per worker process (predict's and the service's)
    inference_threads: NonNegativeInt  # ONNX Runtime's intra_op_num_threads for the models; 0: its default
    backend: Literal["torch", "onnx", "onnx-int8", "tensorrt", "triton", "vart"]  # backends.base.BACKENDS
    credentials: bool  # read each file's C2PA content credentials (media.credentials)
    trust_anchors: NonEmptyStr | None = None  # optional by design: a PEM file; None: signers are not checked


class ExplainParams(_Section):
    montage_rows: PositiveInt  # face rows in montage.png
    overlay_fps: PositiveFloat  # overlay.mp4's frame rate


class ServeParams(_Section):
    host: NonEmptyStr
    port: Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (tests)
    models: NonEmptyStr  # the model package (models/ as `dvc pull export` leaves it)
    data: NonEmptyStr  # the job store (SQLite), uploads and results
    backend: Literal["torch", "onnx", "onnx-int8", "triton"]
    triton_url: NonEmptyStr | None = None  # optional by design: only backend triton sets it (host:8000, grpc://...)
    workers: PositiveInt  # worker processes, each with its own copy of the models
    queue_size: PositiveInt  # queued jobs at most; a new upload beyond it gets 429
    max_upload_mb: PositiveFloat
    max_duration_s: PositiveFloat
    max_frames: PositiveInt  # frames the video's header may claim
    retention_hours: PositiveFloat
    disk_quota_mb: PositiveFloat
    max_attempts: PositiveInt  # runs of a job in all, counting those a server restart interrupted
    job_timeout_s: PositiveFloat
    worker_memory_mb: NonNegativeInt  # a worker's data segment at most (RLIMIT_DATA); 0: no limit
    explain: bool
    explain_faces: PositiveInt  # faces explained per analysis at most
    api_keys_file: NonEmptyStr | None = None  # optional by design: keys are off unless it (or the env) is set
    rate_limit_per_minute: NonNegativeInt  # uploads per API key (or client address); 0: no limit
    cors_origins: list[NonEmptyStr]
    allowed_hosts: Annotated[list[NonEmptyStr], Field(min_length=1)]  # Host headers served; "*": any
    allow_anonymous_remote: bool  # keys off on a non-loopback address: refused unless true
    trusted_proxies: list[NonEmptyStr]  # addresses whose X-Forwarded-For names the client; empty: none
    read_timeout_s: PositiveFloat  # an upload that sends nothing for this long ends with 408
    max_connections: PositiveInt  # open connections at most (uvicorn's limit_concurrency): more get 503
    poll_s: PositiveFloat  # an idle worker's wait between looks at the queue
    start_timeout_s: PositiveFloat  # for the workers to load the models
    shutdown_grace_s: NonNegativeInt  # uvicorn's graceful shutdown and then the workers' (one value, so they agree)


# ---- the model zoo: published detectors (deepfake.zoo) ------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")
ZOO_LAYOUTS = ("dfdc1st", "icpr2020")  # deepfake.zoo.layouts.LAYOUTS (a test keeps them equal)
ZOO_PIPELINES = ("project", "dfdc1st")  # project: the project's own prediction; dfdc1st: the winner's inference


def _https_url(url: str) -> str:
    # Weights are code-adjacent (a pickle reader parses them): only HTTPS from a named host, and http only for
    # the loopback test servers.
    if not re.fullmatch(r"https://[A-Za-z0-9.\-]+(:[0-9]+)?/\S+|http://127\.0\.0\.1:[0-9]+/\S+", url):
        raise ValueError("must be an https:// URL (http:// only to 127.0.0.1, for tests)")
    return url


def _sha256(value: str) -> str:
    if not _SHA256.fullmatch(value):
        raise ValueError("must be 64 lower-case hex digits (a SHA-256)")
    return value


class ZooFileParams(_Section):
    name: PartName  # the file's name in models/zoo/<entry>/download
    url: Annotated[str, AfterValidator(_https_url)]
    # optional by design: absent, the first download records it (zoo/checksums/<entry>.json)
    sha256: Annotated[str, AfterValidator(_sha256)] | None = None


class ZooFigureParams(_Section):
    metric: NonEmptyStr
    testset: NonEmptyStr  # the test set or benchmark the publisher measured it on
    value: float | None = None  # optional by design: absent, the figure is in the source, not restated here
    source: NonEmptyStr


class ZooEntryParams(_Section):
    """One publisher's release: where its files are, their license, and how they become a model package."""

    title: NonEmptyStr
    source: NonEmptyStr
    license: NonEmptyStr
    layout: Literal["dfdc1st", "icpr2020"]  # ZOO_LAYOUTS
    model: NonEmptyStr  # a registry architecture (deepfake.modeling.models)
    model_kwargs: dict[NonEmptyStr, Any]
    image_size: PositiveInt
    margin: Annotated[float, Field(ge=0, le=2)]
    pipeline: Literal["project", "dfdc1st"]  # ZOO_PIPELINES
    trained_on: NonEmptyStr
    evaluation: list[ZooFigureParams]
    files: Annotated[list[ZooFileParams], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_files(self) -> ZooEntryParams:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"file names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return self


class ZooPackageParams(_Section):
    entry: PartName  # a key of zoo.entries
    files: Literal["all"] | Annotated[list[PartName], Field(min_length=1), AfterValidator(_unique)]


class Dfdc1stParams(_Section):
    """The DFDC winner's inference numbers (deepfake.zoo.dfdc1st.Dfdc1stConfig; the package records them)."""

    frames: PositiveInt
    thresholds: Annotated[list[Probability], Field(min_length=3, max_length=3)]
    downscale: PositiveInt
    margin_divisor: PositiveInt
    max_faces: PositiveInt
    confident: ConfidentParams


class ZooParams(_Section):
    timeout_s: PositiveFloat
    retries: NonNegativeInt
    dfdc1st: Dfdc1stParams
    entries: dict[PartName, ZooEntryParams]
    packages: dict[TestsetName, ZooPackageParams]  # a package names a folder and a DVC stage, as a test set does

    @model_validator(mode="after")
    def _packages_name_files(self) -> ZooParams:
        problems: list[tuple[str, str]] = []
        for name, package in self.packages.items():
            entry = self.entries.get(package.entry)
            if entry is None:
                problems.append((f"zoo.packages.{name}.entry", f"{package.entry!r} is not a key of zoo.entries"))
            elif package.files != "all":
                known = [f.name for f in entry.files]
                for file in package.files:
                    if file not in known:
                        problems.append((f"zoo.packages.{name}.files", f"{file!r} is not a file of {package.entry}"))
        _raise_problems(problems)
        return self

    def package_files(self, name: str) -> list[ZooFileParams]:
        """The files of package ``name``, in the entry's order."""
        package = self.packages[name]
        files = self.entries[package.entry].files
        return list(files) if package.files == "all" else [f for f in files if f.name in package.files]


class Params(_Section):
    """The whole of params.yaml: one attribute per top-level section."""

    data: DataParams
    sample: SampleParams
    video: VideoParams
    executor: ExecutorParams
    bboxes: BboxesParams
    crops: CropsParams
    landmarks: LandmarksParams
    diffs: DiffsParams
    folds: FoldsParams
    models: Annotated[list[NonEmptyStr], Field(min_length=1), AfterValidator(_unique)]
    model: ModelParams
    train: TrainParams
    ensemble: EnsembleParams
    augment: AugmentParams
    evaluate: EvaluateParams
    calibrate: CalibrateParams
    export: ExportParams
    robustness: RobustnessParams
    quantize: QuantizeParams
    triton: TritonParams
    build_trt: BuildTrtParams
    compile_dpu: CompileDpuParams
    predict: PredictParams
    predict_detector: DetectorParams
    explain: ExplainParams
    serve: ServeParams
    zoo: ZooParams

    @model_validator(mode="after")
    def _across_sections(self) -> Params:
        problems: list[tuple[str, str]] = []
        registered = list(ModelParams.model_fields)
        for index, name in enumerate(self.models):
            if name not in registered:
                near = difflib.get_close_matches(name, registered, n=1)
                hint = f"; did you mean {near[0]}?" if near else f" (registered: {', '.join(registered)})"
                problems.append((f"models[{index}]", f"unknown architecture {name!r}{hint}"))
            elif getattr(self.model, name) is None:
                problems.append((f"model.{name}", f"missing (models lists {name!r})"))
        train, folds = self.train, self.folds
        if train.val_fold == train.holdout_fold:
            problems.append(("train.val_fold", f"must differ from train.holdout_fold (both {train.val_fold})"))
        count_key = "folds.n_splits" if folds.strategy == "original" else "folds.part_splits"
        for key in ("holdout_fold", "val_fold"):
            fold = getattr(train, key)
            if fold >= folds.fold_count:
                problems.append(
                    (
                        f"train.{key}",
                        f"must be below {count_key}={folds.fold_count} (strategy {folds.strategy}), got {fold}",
                    )
                )
        if self.model.uynet is not None and "uynet" in self.models:
            multiple = 2**self.model.uynet.depth
            if train.image_size % multiple:
                problems.append(
                    (
                        "train.image_size",
                        f"must be a multiple of {multiple} (2 ** model.uynet.depth), got {train.image_size}",
                    )
                )
        if train.optimizer == "sgd" and train.momentum <= 0:
            problems.append(("train.momentum", "must be > 0 with optimizer sgd (Nesterov)"))
        if folds.strategy == "part":
            for name in self.data.datasets:
                if not PART_NUMBER.search(name):
                    problems.append(
                        (f"data.datasets.{name}", "has no trailing number, which folds.strategy part needs")
                    )
        test_only = self.data.test_datasets
        for index, name in enumerate(train.datasets):
            if name in test_only:
                problems.append(
                    (
                        f"train.datasets[{index}]",
                        f"{name!r} is a test-only dataset (data.test_datasets): it is never folded or trained on; "
                        "move its entry to data.datasets to train on it",
                    )
                )
            elif name not in self.data.datasets:
                problems.append((f"train.datasets[{index}]", f"{name!r} is not a key of data.datasets"))
        testsets = getattr(self.evaluate, "testsets", None) or {}
        for testset, names in testsets.items():
            for index, name in enumerate(names):
                if name not in self.data.datasets and name not in test_only:
                    problems.append(
                        (
                            f"evaluate.testsets.{testset}[{index}]",
                            f"{name!r} is not a key of data.datasets or data.test_datasets",
                        )
                    )
            folded = [name for name in names if name in self.data.datasets]
            whole = [name for name in names if name in test_only]
            if folded and whole:
                problems.append(
                    (
                        f"evaluate.testsets.{testset}",
                        f"mixes test-only datasets ({', '.join(whole)}: every video scored) with data.datasets "
                        f"entries ({', '.join(folded)}: their holdout-fold rows); give each kind its own test set",
                    )
                )
        _raise_problems(problems)
        return self

    def model_spec(self, name: str) -> dict[str, Any]:
        """``create_model(name, **spec)``'s keyword arguments from ``model.<name>`` (unset keys left out)."""
        spec = getattr(self.model, name, None) if name in ModelParams.model_fields else None
        if spec is None:
            known = ", ".join(k for k in ModelParams.model_fields if getattr(self.model, k) is not None)
            raise ParamsError(f"params.yaml: model.{name}: missing (sections present: {known or 'none'})")
        return spec.model_dump(mode="json", exclude_none=True)

    def to_dict(self) -> dict[str, Any]:
        """The values as plain JSON-able data (lists, not tuples; unset optional keys left out)."""
        return self.model_dump(mode="json", exclude_none=True)


# ---- reading and reporting ---------------------------------------------------------------------------


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``annotation`` (through Optional / Union / Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType or origin is Annotated:
        for arg in typing.get_args(annotation):
            found = _model_class(arg)
            if found is not None:
                return found
    return None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the section at ``loc`` (empty when ``loc`` does not lead to a section)."""
    cls: type[BaseModel] | None = Params
    for part in loc:
        field = cls.model_fields.get(part) if cls is not None and isinstance(part, str) else None
        cls = _model_class(field.annotation) if field is not None else None
    return list(cls.model_fields) if cls is not None else []


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _shown(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _problem_lines(error: Any, source: str) -> list[str]:
    loc = tuple(error["loc"])
    key = _dotted(loc)
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Problems):
        lines = []
        for relative, message in cause.problems:
            full = f"{key}.{relative}" if key else relative
            lines.append(f"{source}: {full}: {message}")
        return lines
    if error["type"] == "extra_forbidden":
        near = difflib.get_close_matches(str(loc[-1]), _allowed_keys(loc[:-1]), n=1)
        message = "unknown key" + (f"; did you mean {near[0]}?" if near else "")
    elif error["type"] == "missing":
        message = "missing"
    elif error["type"] == "value_error" and cause is not None:
        message = f"{cause} (got {_shown(error['input'])})"  # our own validators: without "Value error, "
    else:
        message = f"{error['msg']} (got {_shown(error['input'])})"
    return [f"{source}: {key}: {message}" if key else f"{source}: {message}"]


def validate_params(raw: Mapping[str, Any], source: str = "params.yaml") -> Params:
    """Check ``raw`` (params.yaml's mapping) against the schema; one ParamsError lists every problem."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(dict(raw))
    except ValidationError as err:
        lines = [line for error in err.errors() for line in _problem_lines(error, source)]
        raise ParamsError("\n".join(lines)) from None


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: ``1e-3`` is a number, as DVC (ruamel, YAML 1.2) reads
    and writes it (``dvc exp run -S train.lr=1e-3``), not the string PyYAML's YAML 1.1 rules make of it."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml; a ParamsError names the file and every bad key."""
    path = Path(path)
    return validate_params(read_yaml_params(path), source=str(path))


# ---- model packages -----------------------------------------------------------------------------------

# The params a model package (models/onnx/manifest.json, written by the export stage) records: what
# prediction needs to see faces, cut them and score videos as the pipeline did, so `deepfake predict` and
# `deepfake serve` work from any folder. Machine-specific knobs (devices, workers, batch sizes) stay out.
# A detector section's keys that decide which faces it finds (not where or how fast it runs)
DETECTOR_SETTINGS = (
    "thresholds",
    "min_face_size",
    "min_face_share",
    "pyramid_factor",
    "nms_thresholds",
    "scale",
    "scale_rule",
)
PACKAGE_SETTINGS: dict[str, tuple[str, ...] | None] = {
    "video": ("max_pixels",),
    "bboxes": DETECTOR_SETTINGS,  # how the faces the models trained on were found (provenance)
    "crops": ("margin",),
    "models": None,  # a whole top-level value
    "ensemble": ("seeds",),
    "train": ("image_size",),
    "evaluate": ("aggregation", "confident"),
    "predict": (
        "frames",
        "max_decoded",
        "skip_nonref",
        "detect_every",
        "track_iou",
        "track_max_gap",
        "track_max_shift",
        "track_min_share",
    ),
    "predict_detector": DETECTOR_SETTINGS,  # how prediction finds faces
}
# The defaults that ship inside the package (a link to the repository's params.yaml, copied into a wheel)
PACKAGED_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def package_settings(params: Params) -> dict[str, Any]:
    """The ``PACKAGE_SETTINGS`` values of ``params`` as plain data, for a model package's manifest."""
    values = params.to_dict()
    return {
        section: values[section] if keys is None else {k: values[section][k] for k in keys}
        for section, keys in PACKAGE_SETTINGS.items()
    }


def read_yaml_params(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.load(path.read_text(), Loader=_Yaml12Loader)  # a SafeLoader subclass: no objects
    except FileNotFoundError as err:
        raise ParamsError(f"{path}: not found (run from the repository root or pass --params)") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


def load_params_for_models(path: Path | None, settings: Callable[[], Mapping[str, Any] | None]) -> tuple[Params, str]:
    """Params for prediction and its source: ``path`` or ./params.yaml when there is one (it overrides
    everything), else the packaged defaults with the model package's recorded ``settings()`` over them."""
    local = Path("params.yaml")
    if path is not None or local.is_file():
        chosen = path or local
        return load_params(chosen), str(chosen)
    raw = read_yaml_params(PACKAGED_PARAMS)
    recorded = settings() or {}
    unknown = sorted(set(recorded) - set(PACKAGE_SETTINGS))
    for section, keys in PACKAGE_SETTINGS.items():
        if keys is not None and isinstance(recorded.get(section), Mapping):
            unknown += [f"{section}.{k}" for k in recorded[section] if k not in keys]
    if unknown:
        raise ParamsError(f"the model package records unknown settings {unknown}; known: {PACKAGE_SETTINGS}")
    for section, value in recorded.items():
        if PACKAGE_SETTINGS[section] is None or not isinstance(value, Mapping):
            raw[section] = value
        else:
            raw[section] = {**raw[section], **value}
    source = "the packaged defaults + the model package's settings" if recorded else "the packaged defaults"
    return validate_params(raw, source=source), source
