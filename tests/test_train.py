"""Data, training loop, resume and DDP on the tiny processed part (CPU, small encoders)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from deepfake.core.fileio import partial_writes
from deepfake.modeling.augment import (
    AugmentConfig,
    hull_cutout,
    landmark_cutout,
    quadrant_cutout,
    quadrant_masks,
    self_blend,
    train_transform,
)
from deepfake.modeling.data import CropDataset, DataRoots, epoch_indices, read_folds, shard
from deepfake.modeling.models import CheckpointError, create_model, load_weights
from deepfake.modeling.store import LOGIT
from deepfake.stages.train import Runtime, TrainConfig, build_optimizer, fit, pick_best, train_step
from tests.conftest import as_params, free_port, tiny_params


@pytest.fixture(scope="module")
def train_data(processed: dict, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataRoots]:
    """folds.csv of the processed part with one original per fold: reala trains (2), realb validates (1)."""
    out = processed["out"]
    table = pd.read_csv(out / "folds.csv", keep_default_na=False)
    table["fold"] = table["original"].map({"reala.mp4": 2, "realb.mp4": 1})
    folds_csv = tmp_path_factory.mktemp("train") / "folds.csv"
    table.to_csv(folds_csv, index=False)
    return folds_csv, DataRoots(out / "crops", out / "landmarks", out / "masks")


def config(hostile_part: Path, model: str = "classifier", **overrides: object) -> TrainConfig:
    base = TrainConfig.from_params(as_params(tiny_params(hostile_part.parent)), model)
    return replace(base, **overrides)


def test_the_augmentation_strengths_come_from_params(tmp_path: Path) -> None:
    changes = {
        "augment__noise_std": [0.1, 0.2],
        "augment__blur_kernel": [5, 7],
        "augment__affine_shift": 0.1,
        "augment__affine_scale": [0.8, 1.25],
        "augment__affine_rotate": 20,
    }
    config = AugmentConfig.from_params(as_params(tiny_params(tmp_path, **changes)))
    steps = {type(t).__name__: t for t in train_transform(64, config).transforms}
    assert steps["GaussNoise"].get_transform_init_args()["std_range"] == (0.1, 0.2)
    assert steps["GaussianBlur"].get_transform_init_args()["blur_limit"] == (5, 7)
    affine = steps["Affine"].get_transform_init_args()
    assert affine["translate_percent"] == {"x": (-0.1, 0.1), "y": (-0.1, 0.1)}
    assert affine["scale"] == {"x": (0.8, 1.25), "y": (0.8, 1.25)}
    assert affine["rotate"] == (-20, 20)


def test_dataset_items_are_normalised_tensors(train_data: tuple[Path, DataRoots], hostile_part: Path) -> None:
    folds_csv, roots = train_data
    rows = read_folds(folds_csv)
    augment = AugmentConfig.from_params(as_params(tiny_params(hostile_part.parent)))
    dataset = CropDataset(rows, roots, 64, augment, seed=3)
    item = dataset[0]
    assert item["image"].shape == (3, 64, 64)
    assert item["mask"].shape == (1, 64, 64)
    assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert -3 < float(item["image"].mean()) < 3
    fake = int(np.flatnonzero(dataset.labels == 1)[0])
    assert float(dataset[fake]["label"]) == 1.0
    assert float(dataset[fake]["mask"].sum()) > 0
    # the same (seed, epoch, index) gives the same sample; another epoch another augmentation
    again = dataset[0]["image"]
    assert torch.equal(item["image"], again)
    dataset.set_epoch(1)
    assert not torch.equal(item["image"], dataset[0]["image"])


def test_dataset_serves_self_blended_reals_as_fakes(train_data: tuple[Path, DataRoots], hostile_part: Path) -> None:
    folds_csv, roots = train_data
    rows = read_folds(folds_csv)
    params = as_params(tiny_params(hostile_part.parent, augment__self_blend=0.5))
    dataset = CropDataset(rows, roots, 64, AugmentConfig.from_params(params), seed=3)
    assert len(dataset) == 2 * len(rows)
    real = int(np.flatnonzero(dataset.labels == 0)[0])
    item = dataset[len(rows) + real]
    assert float(item["label"]) == 1.0 and float(item["valid"]) == 1.0
    assert float(item["mask"].sum()) > 0
    fake = int(np.flatnonzero(dataset.labels == 1)[0])
    with pytest.raises(IndexError, match="only real crops"):
        dataset[len(rows) + fake]
    with pytest.raises(IndexError):
        dataset[2 * len(rows)]


def test_epoch_sampling_is_balanced_and_seeded() -> None:
    labels = np.array([0] * 3 + [1] * 10)
    first = epoch_indices(labels, 0, 111, 0.0)
    assert sorted(labels[first]) == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(first, epoch_indices(labels, 0, 111, 0.0))
    assert not np.array_equal(first, epoch_indices(labels, 1, 111, 0.0))
    parts = [shard(np.arange(7), rank, 2) for rank in range(2)]
    assert len(parts[0]) == len(parts[1]) == 4
    assert set(np.concatenate(parts)) == set(range(7))


def test_self_blended_reals_fill_the_given_share_of_fake_slots() -> None:
    labels = np.array([0] * 4 + [1] * 10)
    indices = epoch_indices(labels, 0, 111, 0.5)
    blended = indices[indices >= len(labels)] - len(labels)
    assert len(indices) == 8 and len(blended) == 2
    assert set(labels[blended]) == {0}  # only reals are self-blended
    assert (labels[indices[indices < len(labels)]] == 1).sum() == 2
    # data without fakes (reals-only training, as SBI does): every fake slot is a self-blend
    only_reals = epoch_indices(np.zeros(5, np.int64), 0, 111, 0.5)
    assert sorted(only_reals) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_self_blend_changes_the_face_and_marks_it() -> None:
    rng = np.random.default_rng(0)
    image = (np.random.default_rng(1).random((120, 100, 3)) * 255).astype(np.uint8)
    landmarks = np.array([[35, 45], [65, 45], [50, 60], [38, 75], [62, 75]], np.float32)
    for marks in (landmarks, None):
        fake, mask = self_blend(image, marks, rng)
        assert fake.shape == image.shape and fake.dtype == np.uint8
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        assert 0.05 < mask.mean() < 0.6
        changed = np.abs(fake.astype(int) - image).sum(axis=2) > 0
        assert changed[mask > 0].mean() > 0.9
        assert not changed[:5, :5].any() and not changed[-5:, -5:].any()  # corners stay the real crop


def test_cutouts_black_out_only_part_of_the_crop() -> None:
    rng = np.random.default_rng(0)
    image = np.full((100, 100, 3), 200, np.uint8)
    landmarks = np.array([[35, 40], [65, 40], [50, 55], [38, 70], [62, 70]], np.float32)
    for cut in (landmark_cutout(image, landmarks, rng), hull_cutout(image, landmarks, rng)):
        black = (cut == 0).all(axis=2).mean()
        assert 0.005 < black < 0.5
    mask = np.zeros((100, 100), np.uint8)
    mask[10:30, 10:30] = 1  # changed pixels only in the top-left quadrant
    cut_image, cut_mask = quadrant_cutout(image, mask, True, 20, rng)
    assert cut_mask.sum() > 20  # a fake keeps enough changed pixels
    assert 0 < (cut_image == 0).all(axis=2).mean() < 1  # part of the crop is zeroed, not all of it
    assert len(quadrant_masks(10, 10)) == 6


def fixed_batch(train_data: tuple[Path, DataRoots], size: int = 8) -> dict[str, torch.Tensor]:
    folds_csv, roots = train_data
    rows = read_folds(folds_csv)
    rows = pd.concat([rows[rows["label"] == "REAL"].head(size // 2), rows[rows["label"] == "FAKE"].head(size // 2)])
    dataset = CropDataset(rows, roots, 64)
    items = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


@pytest.mark.parametrize("model_name", ["classifier", "uynet"])
def test_training_steps_lower_the_loss(train_data: tuple[Path, DataRoots], hostile_part: Path, model_name: str) -> None:
    torch.manual_seed(0)
    cfg = config(hostile_part, model_name)
    model = create_model(model_name, **cfg.model_kwargs)
    optimizer, _ = build_optimizer(model, cfg, 100)
    batch = fixed_batch(train_data)
    runtime = Runtime(torch.device("cpu"))
    losses = [train_step(model, batch, optimizer, cfg, runtime)["loss"] for _ in range(15)]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_classifier_overfits_eight_crops(train_data: tuple[Path, DataRoots], hostile_part: Path) -> None:
    torch.manual_seed(0)
    cfg = config(hostile_part, lr=0.003)
    model = create_model("classifier", **cfg.model_kwargs)
    optimizer, _ = build_optimizer(model, cfg, 1000)
    batch = fixed_batch(train_data)
    runtime = Runtime(torch.device("cpu"))
    for _ in range(60):
        train_step(model, batch, optimizer, cfg, runtime)
    model.train()  # batch statistics: what the model fitted
    with torch.no_grad():
        probs = torch.sigmoid(model(batch["image"])[LOGIT]).reshape(-1)
    assert torch.equal((probs > 0.5).float(), batch["label"])


def test_fit_writes_checkpoints_and_resumes_after_a_crash(
    train_data: tuple[Path, DataRoots], hostile_part: Path, tmp_path: Path
) -> None:
    folds_csv, roots = train_data
    cfg = config(hostile_part, epochs=3, batch_size=8)
    # dropout draws from torch's RNG: the resumed run matches only if last.pt restores it
    cfg = replace(cfg, model_kwargs={**cfg.model_kwargs, "dropout": 0.5})
    history = fit(cfg, folds_csv, roots, tmp_path / "whole")
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert {p.name for p in (tmp_path / "whole").iterdir()} == {
        "last.pt",
        "best.pt",
        "epoch_0.pt",
        "epoch_1.pt",
        "epoch_2.pt",
    }
    assert 0 <= history[-1]["data_share"] <= 1
    assert np.isfinite(history[-1]["val_weighted_loss"])
    best = torch.load(tmp_path / "whole" / "best.pt", weights_only=True)
    assert best["epoch"] == pick_best(history, cfg.ignore_epochs)

    class Crash(RuntimeError):
        pass

    def crash_after_first_epoch(record: dict) -> None:
        if record["epoch"] == 0:
            raise Crash

    with pytest.raises(Crash):
        fit(cfg, folds_csv, roots, tmp_path / "resumed", log_epoch=crash_after_first_epoch)
    # a process killed inside a checkpoint write leaves atomic_path's temporary file beside last.pt: the
    # resumed run removes it (DVC would hash it as part of the output); files of other names stay
    handle, name = tempfile.mkstemp(prefix=".last.pt.", suffix=".pt", dir=tmp_path / "resumed")  # atomic_path's
    os.write(handle, b"half a checkpoint")
    os.close(handle)
    assert partial_writes(tmp_path / "resumed", ".pt") == [Path(name)]
    kept = tmp_path / "resumed" / ".notes.txt"
    kept.write_text("not a checkpoint write")
    seen: list[int] = []
    resumed = fit(cfg, folds_csv, roots, tmp_path / "resumed", log_epoch=lambda r: seen.append(r["epoch"]))
    assert seen == [0, 1, 2]  # the resumed epoch is replayed to the logger, then training goes on
    assert [h["train_loss"] for h in resumed] == [h["train_loss"] for h in history]  # bit for bit
    assert {p.name for p in (tmp_path / "resumed").iterdir()} == {p.name for p in (tmp_path / "whole").iterdir()} | {
        kept.name
    }
    for name in ("last.pt", "best.pt", "epoch_2.pt"):  # the same bytes, so DVC hashes the resumed run alike
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    again = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(whole[k], again[k]) for k in whole)
    model = create_model("classifier", **cfg.model_kwargs)
    assert load_weights(model, tmp_path / "resumed" / "best.pt")["epoch"] == best["epoch"]


def test_a_tampered_last_checkpoint_stops_training_and_never_runs(
    train_data: tuple[Path, DataRoots], hostile_part: Path, tmp_path: Path
) -> None:
    folds_csv, roots = train_data
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # what a hostile last.pt would carry
            return (Path.touch, (marker,))

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"fingerprint": Payload()}, out / "last.pt")
    with pytest.raises(CheckpointError, match="refused to load"):
        fit(config(hostile_part, epochs=1, batch_size=8), folds_csv, roots, out)
    assert not marker.exists()


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    from deepfake.stages.train import prepare_model, seed_everything, setup_runtime, unwrap

    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    runtime = setup_runtime("cpu")
    seed_everything(0)  # same initial weights on both replicas
    model = prepare_model(create_model("classifier", encoder="mobilenetv3_small_050"), runtime)
    cfg = replace(
        TrainConfig.from_params(as_params(tiny_params(Path(out).parent)), "classifier"),
        image_size=32,
        optimizer="sgd",
        lr=0.05,
        seg_weight=0.0,
    )
    optimizer, _ = build_optimizer(model, cfg, 10)
    generator = torch.Generator().manual_seed(100 + rank)  # each replica sees different data
    batch = {
        "image": torch.randn(4, 3, 32, 32, generator=generator),
        "label": torch.tensor([1.0, 0.0, 1.0, 0.0]),
        "valid": torch.ones(4),
        "mask": torch.zeros(4, 1, 32, 32),
    }
    train_step(model, batch, optimizer, cfg, runtime)
    # parameters, not BN running stats: DDP re-broadcasts buffers from rank 0 at every forward
    flat = torch.cat([p.detach().reshape(-1) for p in unwrap(model).parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        seed_everything(0)  # the weights both replicas started from
        initial = create_model("classifier", encoder="mobilenetv3_small_050")
        start = torch.cat([p.detach().reshape(-1) for p in initial.parameters()])
        changed = start.shape == flat.shape and not torch.equal(start, flat)
        torch.save({"equal": all(torch.equal(gathered[0], g) for g in gathered), "changed": changed}, out)
    dist.destroy_process_group()


def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    result = torch.load(out, weights_only=True)
    assert result["equal"]
    assert result["changed"]


def test_training_benchmark_prints_figures(train_data: tuple[Path, DataRoots], hostile_part: Path, capsys) -> None:
    from deepfake.apps.bench import run_train_bench

    folds_csv, roots = train_data
    figures = run_train_bench(
        as_params(tiny_params(hostile_part.parent)), "classifier", folds_csv, roots, steps=2, warmup=1
    )
    assert figures["images_per_s"] > 0
    assert 0 <= figures["data_loading_share"] <= 1
    assert "images_per_s" in capsys.readouterr().out
