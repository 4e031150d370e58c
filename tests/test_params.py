"""The params.yaml schema: every variant is the real params.yaml with one thing changed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from deepfake.core.errors import UserError
from deepfake.core.params import (
    Params,
    ParamsError,
    load_params,
    validate_params,
)

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"
DELETE = object()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(PARAMS_YAML.read_text())


def variant(raw: dict[str, Any], *changes: tuple[str, Any]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each ``(dotted.key, value)`` set (or deleted with DELETE)."""
    out = copy.deepcopy(raw)
    for key, value in changes:
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return out


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ParamsError) as info:
        validate_params(raw)
    return str(info.value).splitlines()


def test_the_real_params_yaml_validates_and_round_trips(raw: dict[str, Any]) -> None:
    params = load_params(PARAMS_YAML)
    assert isinstance(params, Params)
    assert params == validate_params(raw)
    assert params.to_dict() == raw
    assert validate_params(params.to_dict()) == params
    assert params.bboxes.scale == "auto"
    assert params.models == raw["models"]
    assert params.evaluate.confident.min_fakes == raw["evaluate"]["confident"]["min_fakes"]


def test_params_error_is_a_user_error() -> None:
    assert issubclass(ParamsError, UserError)


def test_a_typo_names_the_nearest_key(raw: dict[str, Any]) -> None:
    bad = variant(raw, ("bboxes.thresholds", DELETE), ("bboxes.thresholdz", raw["bboxes"]["thresholds"]))
    assert problems(bad) == [
        "params.yaml: bboxes.thresholds: missing",
        "params.yaml: bboxes.thresholdz: unknown key; did you mean thresholds?",
    ]


def test_a_removed_key_is_missing(raw: dict[str, Any]) -> None:
    assert problems(variant(raw, ("bboxes.min_face_size", DELETE))) == ["params.yaml: bboxes.min_face_size: missing"]


@pytest.mark.parametrize(
    "key, expected",
    [
        ("cropz", "params.yaml: cropz: unknown key; did you mean crops?"),
        ("zzz", "params.yaml: zzz: unknown key"),
        (
            "evaluate.confident.treshold",
            "params.yaml: evaluate.confident.treshold: unknown key; did you mean threshold?",
        ),
        ("model.classifier.dropuot", "params.yaml: model.classifier.dropuot: unknown key; did you mean dropout?"),
        ("model.resnet", "params.yaml: model.resnet: unknown key"),
    ],
)
def test_unknown_keys_are_refused(raw: dict[str, Any], key: str, expected: str) -> None:
    assert problems(variant(raw, (key, {}))) == [expected]


def test_a_missing_section_is_reported(raw: dict[str, Any]) -> None:
    assert problems(variant(raw, ("crops", DELETE))) == ["params.yaml: crops: missing"]


def test_out_of_range_message_shows_the_value(raw: dict[str, Any]) -> None:
    assert problems(variant(raw, ("crops.margin", -0.1))) == [
        "params.yaml: crops.margin: Input should be greater than or equal to 0 (got -0.1)"
    ]


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("crops.margin", 2.5, "less than or equal to 2"),
        ("video.max_frames", 0, "greater than or equal to 1"),
        ("video.frame_stride", -8, "greater than or equal to 1"),
        ("predict.frames", 0, "greater than or equal to 1"),
        ("predict.backend", "tpu", "'torch', 'onnx', 'onnx-int8', 'tensorrt', 'triton' or 'vart'"),
        ("train.epochs", True, "valid integer (got True)"),  # a bool is not an int
        ("train.lr", True, "valid number (got True)"),  # nor a float
        ("bboxes.batch_size", "16", "valid integer (got '16')"),  # no string-to-int coercion
        ("train.lr", "0.001", "valid number (got '0.001')"),
        ("train.lr", "1e-3", "valid number (got '1e-3')"),  # PyYAML reads 1e-3 (no dot) as a string
        ("train.lr", 0, "greater than 0"),
        ("train.lr", float("nan"), "finite number"),
        ("train.optimizer", "adam", "'adamw' or 'sgd'"),
        ("train.label_clip", 0.5, "less than 0.5"),
        ("train.device", "gpu", "must be auto, cpu, cuda or cuda:N"),
        ("bboxes.device", "auto", "must be cpu, cuda or cuda:N"),
        ("landmarks.device", "cuda:x", "must be cpu, cuda or cuda:N"),
        ("bboxes.thresholds", [0.85, 0.95], "at least 3 items"),
        ("bboxes.thresholds", [0.85, 1.5, 0.95], "less than or equal to 1"),
        ("bboxes.scale", "big", "must be 'auto' or a positive number (got 'big')"),
        ("bboxes.scale", 0, "must be 'auto' or a positive number (got 0)"),
        ("bboxes.scale", False, "must be 'auto' or a positive number (got False)"),
        ("bboxes.scale_rule", [[1000, 1.0], [299, 2.0]], "limits must increase"),
        ("bboxes.scale_rule", [[299, 2.0, 1]], "at most 2 items"),
        ("diffs.win_size", 4, "must be an odd number >= 3"),
        ("diffs.win_size", 1, "must be an odd number >= 3"),
        ("diffs.mask_threshold", 256, "less than or equal to 255"),
        ("folds.strategy", "random", "'original' or 'part'"),
        ("folds.identity", "yes", "valid boolean"),
        ("folds.n_splits", 1, "greater than or equal to 2"),
        ("folds.part_splits", 51, "must not exceed folds.parts_total"),
        ("export.opset", 16, "greater than or equal to 17"),
        ("export.tolerance", 0.0, "greater than 0"),
        ("quantize.config", "INT8", "'XINT8', 'XINT8_ADAROUND' or 'XINT8_ADAQUANT'"),
        ("evaluate.aggregation", "median", "'confident' or 'mean'"),
        ("evaluate.confident.low_fraction", 1.1, "less than or equal to 1"),
        ("build_trt.precisions", ["fp32"], "'fp16' or 'int8'"),
        ("build_trt.precisions", [], "at least 1 item"),
        ("build_trt.precisions", ["fp16", "fp16"], "duplicate entries fp16"),
        ("build_trt.opt_batch", 100, "needs min_batch <= opt_batch <= max_batch"),
        ("triton.preferred_batch_sizes", [8, 128], "must lie in [1, triton.max_batch_size=64]"),
        ("augment.flip", 1.5, "less than or equal to 1"),
        ("augment.jpeg_quality", [90, 60], "low <= high"),
        ("augment.jpeg_quality", [0, 100], "greater than or equal to 1"),
        ("augment.jpeg_quality", [60], "at least 2 items"),
        ("sample.parts", [], "at least 1 item"),
        ("sample.width", 641, "must be even"),
        ("sample.width", 300, "must exceed sample.height"),
        ("data.datasets", {"../escape": {"layout": "dfdc", "root": "x"}}, "plain folder name"),
        ("data.datasets.ffpp.layout", "faceforensics", "'dfdc', 'dfdc_test'"),
        ("data.datasets.ffpp.compression", "c99", "'raw', 'c23' or 'c40'"),
        ("data.datasets", {}, "at least 1 item"),
        ("train.datasets", ["nope"], "'nope' is not a key of data.datasets"),
        ("evaluate.testsets.dfdc", ["dfdc_train_part_0", "nope"], "'nope' is not a key of data.datasets"),
        ("ensemble.seeds", [555, 555], "duplicate entries 555"),
        ("model.uynet.decoder_channels", [64, 32], "needs 5 entries"),
        ("model.uynet.depth", 6, "less than or equal to 5"),
        ("model.classifier.input_filter", "sobel", "'none' or 'srm'"),
        ("compile_dpu.arch", "", "at least 1 character"),
        ("calibrate.false_positive_rates", [0.0, 0.05], "greater than 0"),
        ("calibrate.likely_fake_at", 0.02, "is not one of false_positive_rates"),
        ("calibrate.likely_real_below", 1.0, "less than 1"),
        ("calibrate.cv_folds", 1, "greater than or equal to 2"),
        ("calibrate.methods", ["platt"], "temperature"),
        ("bboxes.pyramid_factor", 1.0, "less than 1"),
        ("landmarks.nms_thresholds", [0.5, 0.7, 0.7], "at least 4 items"),
        ("bboxes.nms_thresholds", [0.5, 0.7, 0.0, 0.7], "greater than 0"),
        ("augment.noise_std", [0.08, 0.02], "low <= high"),
        ("augment.blur_kernel", [4, 5], "must be an odd number >= 3"),
        ("augment.affine_scale", [1.1, 0.9], "low <= high"),
        ("augment.affine_rotate", 200, "less than or equal to 180"),
        ("predict.torch_threads", 0, "greater than or equal to 1"),
        ("predict.inference_threads", -1, "greater than or equal to 0"),
        ("explain.montage_rows", 0, "greater than or equal to 1"),
        ("explain.overlay_fps", 0, "greater than 0"),
        ("serve.explain_faces", 0, "greater than or equal to 1"),
        ("serve.poll_s", 0, "greater than 0"),
        ("serve.shutdown_grace_s", -1, "greater than or equal to 0"),
    ],
)
def test_bad_values_are_refused_naming_the_key(raw: dict[str, Any], key: str, value: Any, fragment: str) -> None:
    lines = problems(variant(raw, (key, value)))
    assert len(lines) == 1, lines
    assert lines[0].startswith("params.yaml: ")
    assert fragment in lines[0]
    named = lines[0].split(": ")[1]
    assert named == key or named.startswith((f"{key}[", f"{key}.")), lines[0]


def test_test_only_datasets_never_train_and_never_share_a_test_set_with_folded_ones(raw: dict[str, Any]) -> None:
    """data.test_datasets (params.yaml declares the sample's dfdc_test there): names of their own, refused in
    train.datasets, and a test set holds either them (every video) or data.datasets entries (holdout rows)."""
    none = variant(raw, ("data.test_datasets", {}), ("evaluate.testsets", {"dfdc": ["dfdc_train_part_0"]}))
    assert validate_params(none).data.test_datasets == {}
    params = validate_params(raw)
    assert params.data.spec("dfdc_test") == params.data.test_datasets["dfdc_test"]
    assert params.data.spec("ffpp") == params.data.datasets["ffpp"] and params.data.spec("nope") is None
    ffpp = raw["data"]["datasets"]["ffpp"]
    for changes, key, fragment in (
        (
            [("train.datasets", ["ffpp", "dfdc_test"])],
            "train.datasets[1]",
            "'dfdc_test' is a test-only dataset (data.test_datasets): it is never folded or trained on; move its "
            "entry to data.datasets to train on it",
        ),
        (
            [("evaluate.testsets.dfdc", ["dfdc_train_part_0", "dfdc_test"])],
            "evaluate.testsets.dfdc",
            "mixes test-only datasets (dfdc_test: every video scored) with data.datasets entries (dfdc_train_part_0: "
            "their holdout-fold rows); give each kind its own test set",
        ),
        (
            [("evaluate.testsets.dfdc_public_test", ["dfdc_test", "nope"])],
            "evaluate.testsets.dfdc_public_test[1]",
            "'nope' is not a key of data.datasets or data.test_datasets",
        ),
        (
            [("data.test_datasets.ffpp", ffpp)],
            "data.test_datasets",
            "ffpp also in data.datasets: a dataset is either folded and trainable (data.datasets) or test-only",
        ),
        ([("data.test_datasets.dfdc_test.layout", "dfdc_tset")], "data.test_datasets.dfdc_test.layout", "'dfdc_test'"),
        ([("data.test_datasets", DELETE)], "data.test_datasets", "missing"),
    ):
        lines = problems(variant(raw, *changes))
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"params.yaml: {key}: "), lines[0]
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.lr", 1),  # an int where a float is expected
        ("bboxes.scale", 0.5),
        ("bboxes.scale", 2),
        ("bboxes.device", "cuda:1"),
        ("train.device", "cuda"),
        ("evaluate.device", "cpu"),
        ("evaluate.aggregation", "mean"),
        ("quantize.config", "XINT8_ADAQUANT"),
        ("predict.backend", "onnx-int8"),
        ("build_trt.precisions", ["int8"]),
        ("ensemble.seeds", []),
        ("train.optimizer", "sgd"),
    ],
)
def test_valid_alternatives_are_accepted(raw: dict[str, Any], key: str, value: Any) -> None:
    params = validate_params(variant(raw, (key, value)))
    assert validate_params(params.to_dict()) == params


def test_models_must_name_a_model_section(raw: dict[str, Any]) -> None:
    assert problems(variant(raw, ("model.uynet", DELETE))) == [
        "params.yaml: model.uynet: missing (models lists 'uynet')"
    ]
    assert problems(variant(raw, ("models", ["classifier", "unet"]))) == [
        "params.yaml: models[1]: unknown architecture 'unet'; did you mean uynet?"
    ]
    # a section whose architecture `models` does not train may go
    params = validate_params(variant(raw, ("models", ["classifier"]), ("model.uynet", DELETE)))
    assert params.model.uynet is None


def test_holdout_and_validation_folds_must_differ(raw: dict[str, Any]) -> None:
    fold = raw["train"]["holdout_fold"]
    assert problems(variant(raw, ("train.val_fold", fold))) == [
        f"params.yaml: train.val_fold: must differ from train.holdout_fold (both {fold})"
    ]


def test_folds_must_exist_for_the_strategy(raw: dict[str, Any]) -> None:
    n_splits = raw["folds"]["n_splits"]
    [line] = problems(variant(raw, ("train.val_fold", n_splits)))
    assert line.startswith(f"params.yaml: train.val_fold: must be below folds.n_splits={n_splits}")
    # 'part' numbers its folds 0 .. part_splits - 1 (and needs DFDC parts only: a number in every name)
    part_splits = raw["folds"]["part_splits"]
    parts = {k: v for k, v in raw["data"]["datasets"].items() if v["layout"] == "dfdc"}
    dfdc_only = variant(raw, ("data.datasets", parts), ("train.datasets", list(parts)))
    dfdc_only["evaluate"]["testsets"] = {"dfdc": list(parts)}
    validate_params(variant(dfdc_only, ("folds.strategy", "part"), ("train.val_fold", part_splits - 1)))
    [line] = problems(variant(dfdc_only, ("folds.strategy", "part"), ("train.holdout_fold", part_splits)))
    assert line.startswith(f"params.yaml: train.holdout_fold: must be below folds.part_splits={part_splits}")
    datasets = {name: raw["data"]["datasets"]["dfdc_train_part_0"] for name in ("dfdc_train_part_0", "extra")}
    changed = variant(raw, ("folds.strategy", "part"), ("data.datasets", datasets), ("train.datasets", ["extra"]))
    changed["evaluate"]["testsets"] = {"dfdc": ["dfdc_train_part_0"]}
    [line] = problems(changed)
    assert line.startswith("params.yaml: data.datasets.extra: has no trailing number")


def test_cross_section_checks(raw: dict[str, Any]) -> None:
    depth = raw["model"]["uynet"]["depth"]
    [line] = problems(variant(raw, ("train.image_size", 2**depth * 3 + 1)))
    assert line.startswith(f"params.yaml: train.image_size: must be a multiple of {2**depth}")
    [line] = problems(variant(raw, ("train.optimizer", "sgd"), ("train.momentum", 0.0)))
    assert line == "params.yaml: train.momentum: must be > 0 with optimizer sgd (Nesterov)"


def test_several_problems_are_all_listed(raw: dict[str, Any]) -> None:
    bad = variant(
        raw,
        ("crops.margin", -0.1),
        ("video.max_frames", 0),
        ("predict.backend", "tpu"),
        ("bboxes.min_face_size", DELETE),
        ("cropz", {}),
    )
    lines = problems(bad)
    assert len(lines) == 5, lines
    for key in ("crops.margin", "video.max_frames", "predict.backend", "bboxes.min_face_size", "cropz"):
        assert sum(line.startswith(f"params.yaml: {key}: ") for line in lines) == 1, key


def test_load_params_names_the_file(tmp_path: Path, raw: dict[str, Any]) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(variant(raw, ("predict.frames", 0))))
    with pytest.raises(ParamsError, match=rf"^{path}: predict\.frames: .*\(got 0\)$"):
        load_params(path)
    with pytest.raises(ParamsError, match="expected a mapping"):
        validate_params(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_model_spec_gives_create_model_kwargs(raw: dict[str, Any]) -> None:
    params = validate_params(raw)
    assert params.model_spec("uynet") == raw["model"]["uynet"]
    assert "weights" not in params.model_spec("classifier")
    with_weights = validate_params(variant(raw, ("model.classifier.weights", "models/pretrained/b7.pt")))
    assert with_weights.model_spec("classifier")["weights"] == "models/pretrained/b7.pt"
    assert with_weights.to_dict()["model"]["classifier"]["weights"] == "models/pretrained/b7.pt"
    only = validate_params(variant(raw, ("models", ["classifier"]), ("model.uynet", DELETE)))
    with pytest.raises(ParamsError, match=r"model\.uynet"):
        only.model_spec("uynet")
    with pytest.raises(ParamsError, match=r"model\.resnet"):
        only.model_spec("resnet")


def test_params_are_immutable(raw: dict[str, Any]) -> None:
    params = validate_params(raw)
    with pytest.raises(pydantic.ValidationError):
        params.train.seed = 1  # type: ignore[misc]


def test_scientific_notation_is_a_number_as_dvc_writes_it(tmp_path: Path) -> None:
    """`dvc exp run -S train.lr=1e-3` writes `lr: 1e-3` (YAML 1.2); PyYAML alone would read a string."""
    text = PARAMS_YAML.read_text().replace("lr: 0.001", "lr: 1e-3").replace("tolerance: 0.0001", "tolerance: 1.0E-4")
    (tmp_path / "params.yaml").write_text(text)
    params = load_params(tmp_path / "params.yaml")
    assert params.train.lr == 1e-3 and params.export.tolerance == 1e-4


def test_the_schemas_choices_are_the_codes_registries() -> None:
    """core cannot import the higher layers, so the schema spells their choices out; this keeps them equal."""
    import typing

    from deepfake.backends.base import BACKENDS
    from deepfake.core.params import InputFilter, ModelParams, PredictParams
    from deepfake.modeling.models import INPUT_FILTERS, list_models

    assert typing.get_args(PredictParams.model_fields["backend"].annotation) == BACKENDS
    assert typing.get_args(InputFilter) == INPUT_FILTERS
    assert set(ModelParams.model_fields) == set(list_models())
