"""Training: one model, one seed. Runs alone or under ``torchrun`` (DDP, SyncBatchNorm).

Checkpoints (rank 0 only) go to the output folder, in the model store's format
(``deepfake.modeling.store``: its file names, keys and writer):
- ``last.pt``: model, optimiser, schedule, torch RNG state, epoch, history and a fingerprint of the
  config and the folds file; a rerun with the same fingerprint resumes from it (bit for bit on CPU:
  the data order and augmentations are seeded per epoch, dropout draws from the restored RNG), any
  other fingerprint starts over;
- ``epoch_<k>.pt``: the model every ``checkpoint_every`` epochs;
- ``best.pt``: the model with the lowest weighted validation loss after ``ignore_epochs`` (the last
  epoch's if none qualifies).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset

from deepfake.core.device import resolve_device
from deepfake.core.errors import InputError
from deepfake.core.params import Params
from deepfake.core.vocabulary import FAKE
from deepfake.modeling.augment import AugmentConfig
from deepfake.modeling.data import (
    CropDataset,
    DataRoots,
    epoch_indices,
    read_folds,
    select_folds,
    select_training_data,
    shard,
)
from deepfake.modeling.losses import total_loss
from deepfake.modeling.metrics import balanced_log_loss, log_loss, roc_auc
from deepfake.modeling.models import create_model
from deepfake.modeling.scoring import predict_crops
from deepfake.modeling.store import (
    BEST,
    LAST,
    CheckpointFolder,
    Member,
    ModelStore,
    epoch_checkpoint,
    resume_payload,
    weights_of,
    weights_payload,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    model: str
    model_kwargs: dict[str, Any]
    seed: int
    holdout_fold: int
    val_fold: int
    image_size: int
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    poly_power: float
    grad_clip: float
    label_clip: float
    seg_weight: float
    fake_weight: float
    ignore_epochs: int
    checkpoint_every: int
    num_workers: int
    device: str
    augment: AugmentConfig = field(repr=False, default=None)  # type: ignore[assignment]
    data_fingerprint: str = ""  # sizes of the files behind folds.csv (set by run_training)
    datasets: tuple[str, ...] = ()  # train.datasets: whose rows train and validate (empty: every dataset)
    holdout_methods: tuple[str, ...] = ()  # train.holdout_methods: fakes of these never train or validate

    @classmethod
    def from_params(cls, params: Params, model: str, seed: int | None = None) -> TrainConfig:
        """``model`` with ``seed`` (an ensemble member) or with ``train.seed`` (the train@<model> stage)."""
        sect = params.train
        return cls(
            model=model,
            model_kwargs=params.model_spec(model),
            seed=sect.seed if seed is None else seed,
            holdout_fold=sect.holdout_fold,
            val_fold=sect.val_fold,
            image_size=sect.image_size,
            epochs=sect.epochs,
            batch_size=sect.batch_size,
            optimizer=sect.optimizer,
            lr=sect.lr,
            momentum=sect.momentum,
            weight_decay=sect.weight_decay,
            poly_power=sect.poly_power,
            grad_clip=sect.grad_clip,
            label_clip=sect.label_clip,
            seg_weight=sect.seg_weight,
            fake_weight=sect.fake_weight,
            ignore_epochs=sect.ignore_epochs,
            checkpoint_every=sect.checkpoint_every,
            num_workers=sect.num_workers,
            device=sect.device,
            augment=AugmentConfig.from_params(params),
            datasets=tuple(sect.datasets),
            holdout_methods=tuple(sect.holdout_methods),
        )

    def fingerprint(self, folds_csv: Path) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode())
        digest.update(folds_csv.read_bytes())
        return digest.hexdigest()


# ---- process setup ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_runtime(requested: str) -> Runtime:
    """Pick the device; join the process group when launched by torchrun (NCCL on GPU, gloo on CPU)."""
    device = resolve_device(requested)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Runtime(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        return Runtime(torch.device("cuda", local_rank), rank, world_size)
    return Runtime(device, rank, world_size)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # CPU runs are repeatable bit for bit; warn (not fail) for the few ops without a deterministic kernel
    torch.use_deterministic_algorithms(True, warn_only=True)


def prepare_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    model = model.to(runtime.device)
    if runtime.world_size > 1:
        if runtime.device.type == "cuda":  # PyTorch's SyncBatchNorm runs on GPUs only; gloo replicas keep own BN stats
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def build_optimizer(model: nn.Module, config: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    optimizer: torch.optim.Optimizer
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    power, steps = config.poly_power, max(total_steps, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps) ** power)
    return optimizer, schedule


# ---- one step, one epoch, validation -----------------------------------------------------------


def train_step(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    optimizer: Any,
    config: TrainConfig,
    runtime: Runtime,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    model.train()
    device = runtime.device
    images = batch["image"].to(device, non_blocking=True)
    use_amp = scaler is not None and device.type == "cuda"
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        outputs = model(images)
    loss, parts = total_loss(
        outputs,
        batch["label"].to(device),
        batch["valid"].to(device),
        batch["mask"].to(device),
        config.seg_weight,
        config.label_clip,
    )
    optimizer.zero_grad(set_to_none=True)
    if use_amp and scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if config.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    if use_amp and scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return {"loss": float(loss.detach()), **parts}


def video_losses(rows: pd.DataFrame, probs: np.ndarray, fake_weight: float) -> dict[str, float]:
    """DFDC-1st's validation: mean probability per video, log loss on fakes and reals separately."""
    frame = rows.assign(prob=probs, y=(rows["label"] == FAKE).astype(int))
    videos = frame.groupby("video").agg(prob=("prob", "mean"), y=("y", "first"))
    fakes, reals = videos[videos["y"] == 1], videos[videos["y"] == 0]
    fake_loss = log_loss(fakes["y"], fakes["prob"]) if len(fakes) else float("nan")
    real_loss = log_loss(reals["y"], reals["prob"]) if len(reals) else float("nan")
    return {
        "val_fake_loss": fake_loss,
        "val_real_loss": real_loss,
        "val_balanced_log_loss": balanced_log_loss(videos["y"], videos["prob"]),
        "val_weighted_loss": (fake_weight * fake_loss + real_loss) / (fake_weight + 1),
        "val_auc": roc_auc(videos["y"], videos["prob"]),
    }


# ---- the whole run -----------------------------------------------------------------------------


def training_rows(table: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """The rows of every fold but the holdout and the validation fold, of the training datasets and methods."""
    table = select_training_data(table, config.datasets, config.holdout_methods)
    return select_folds(table, sorted(set(table["fold"]) - {config.holdout_fold, config.val_fold}))


def validation_rows(table: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """The validation fold's rows of the training datasets and methods (they pick the checkpoint)."""
    table = select_training_data(table, config.datasets, config.holdout_methods)
    return select_folds(table, [config.val_fold], drop_unmasked_fakes=False)


def pick_best(history: list[dict[str, float]], ignore_epochs: int) -> int | None:
    """The epoch with the lowest weighted validation loss, ignoring the first ``ignore_epochs``."""
    candidates = [h for h in history if h["epoch"] >= ignore_epochs and np.isfinite(h["val_weighted_loss"])]
    if not candidates:
        return None
    return int(min(candidates, key=lambda h: h["val_weighted_loss"])["epoch"])


def _resume_state(checkpoints: CheckpointFolder, fingerprint: str) -> dict[str, Any] | None:
    last = checkpoints.file(LAST)
    if not last.is_file():
        return None
    state = checkpoints.read(LAST)  # a tampered last.pt is refused with a clear error, never unpickled
    if state.get("fingerprint") != fingerprint:
        logger.info("%s belongs to another config or data: starting over", last)
        return None
    if int(state["epoch"]) + 1 >= int(state.get("epochs", -1)):
        logger.info("%s is a finished run: a rerun trains again from scratch", last)
        return None
    return state


def fit(
    config: TrainConfig, folds_csv: Path, roots: DataRoots, out_dir: Path, log_epoch: Any = None
) -> list[dict[str, float]]:
    """Train ``config.model`` with ``config.seed``; returns the per-epoch history.

    ``log_epoch(record)`` (rank 0) receives each epoch's record, the resumed ones included.
    """
    runtime = setup_runtime(config.device)
    seed_everything(config.seed)
    table = read_folds(folds_csv)
    train_rows = training_rows(table, config)
    val_rows = validation_rows(table, config)
    if train_rows.empty or val_rows.empty:
        raise InputError(f"{folds_csv}: the training folds or validation fold {config.val_fold} hold no crops")
    train_set = CropDataset(train_rows, roots, config.image_size, config.augment, config.seed)
    val_set = CropDataset(val_rows, roots, config.image_size, None, config.seed, config.augment.min_changed_pixels)
    labels = train_set.labels
    steps_per_epoch = -(
        -len(shard(epoch_indices(labels, 0, config.seed, config.augment.self_blend), 0, runtime.world_size))
        // config.batch_size
    )

    model = prepare_model(create_model(config.model, **config.model_kwargs), runtime)
    optimizer, schedule = build_optimizer(model, config, steps_per_epoch * config.epochs)
    scaler = torch.amp.GradScaler("cuda") if runtime.device.type == "cuda" else None
    fingerprint = config.fingerprint(folds_csv)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = CheckpointFolder(out_dir)

    history: list[dict[str, float]] = []
    start = 0
    if runtime.main:
        for stray in checkpoints.discard_partial_writes():
            logger.warning("removed %s: a checkpoint write that a killed run left unfinished", stray)
    state = _resume_state(checkpoints, fingerprint)
    if state is None:
        if runtime.main:
            checkpoints.clear()
    else:
        unwrap(model).load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        _restore_rng(state.get("rng", {}), runtime.device)
        history, start = list(state["history"]), int(state["epoch"]) + 1
        logger.info("resuming %s from epoch %d", out_dir, start)
        if log_epoch and runtime.main:
            for logged in history:
                log_epoch(logged)

    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        train_set.set_epoch(epoch)
        indices = shard(
            epoch_indices(labels, epoch, config.seed, config.augment.self_blend), runtime.rank, runtime.world_size
        )
        loader = DataLoader(
            Subset(train_set, indices.tolist()), batch_size=config.batch_size, num_workers=config.num_workers
        )
        losses, data_seconds, fetch_started = [], 0.0, time.perf_counter()
        for batch in loader:
            data_seconds += time.perf_counter() - fetch_started
            losses.append(train_step(model, batch, optimizer, config, runtime, scaler)["loss"])
            schedule.step()
            fetch_started = time.perf_counter()
        record: dict[str, float] = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "lr": float(schedule.get_last_lr()[0]),
        }
        if runtime.main:
            predictions = predict_crops(unwrap(model), val_set, config.batch_size, runtime.device)
            record.update(video_losses(val_rows, predictions["prob"], config.fake_weight))
            if "iou" in predictions:
                fakes = (val_rows["label"] == FAKE).to_numpy()
                record["val_mask_iou"] = float(np.mean(predictions["iou"][fakes])) if fakes.any() else float("nan")
            record["seconds"] = time.perf_counter() - started
            record["data_share"] = data_seconds / max(record["seconds"], 1e-9)
            history.append(record)
            _checkpoint(unwrap(model), optimizer, schedule, epoch, history, fingerprint, config, checkpoints)
            if log_epoch:
                log_epoch(record)
            logger.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if runtime.world_size > 1:
            dist.barrier()
    if runtime.main:
        _finish_best(checkpoints)
    if runtime.world_size > 1:
        dist.barrier()
    return history


TIMING_KEYS = ("seconds", "data_share")  # per-epoch record fields that measure time, not the model


def _checkpoint(
    model: nn.Module,
    optimizer: Any,
    schedule: Any,
    epoch: int,
    history: list[dict[str, float]],
    fingerprint: str,
    config: TrainConfig,
    checkpoints: CheckpointFolder,
) -> None:
    weights = weights_payload(model.state_dict(), epoch, config.model, config.model_kwargs)
    if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
        checkpoints.write(epoch_checkpoint(epoch), weights)
    if pick_best(history, config.ignore_epochs) == epoch:
        checkpoints.write(BEST, weights)
    checkpoints.write(
        LAST,
        resume_payload(
            weights,
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
            # wall-clock fields stay out, so a rerun (or a resumed run) writes the same bytes
            history=[{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history],
            fingerprint=fingerprint,
            epochs=config.epochs,
            rng=_rng_state(),
        ),
    )


def _rng_state() -> dict[str, Any]:
    """Torch's generators (dropout, drop path): the only randomness not re-seeded per epoch."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    if "cpu" in state:
        torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _finish_best(checkpoints: CheckpointFolder) -> None:
    """If no epoch qualified as best (all within ignore_epochs), the last epoch's weights are best.pt."""
    if checkpoints.file(BEST).is_file():
        return
    checkpoints.write(BEST, weights_of(checkpoints.read(LAST)))


# ---- the DVC stage: one model, one seed ---------------------------------------------------------


def _file_sizes_fingerprint(folds_csv: Path, roots: DataRoots) -> str:
    """Sizes of every crop, landmark and mask file: a cheap check that the data behind folds.csv is unchanged."""
    table = read_folds(folds_csv)
    digest = hashlib.sha256()
    for root, column in ((roots.crops, "file"), (roots.landmarks, "landmarks"), (roots.masks, "mask")):
        for relative in table[column]:
            if relative:
                path = root / relative
                digest.update(f"{relative}:{path.stat().st_size if path.exists() else -1};".encode())
    return digest.hexdigest()


Config = TrainConfig


@dataclass(frozen=True)
class Paths:
    folds: Path
    roots: DataRoots
    models: Path  # the models/ root: the checkpoints go to the member's folder in the model store
    live: Path  # DVCLive folder (metrics.json, plots)
    loss_plot: Path
    seed: int | None = None  # an ensemble member's seed (train_seed@); None: train.seed (train@)


def run(config: TrainConfig, paths: Paths) -> list[dict[str, float]]:
    """Train, log every epoch with DVCLive into ``paths.live``, and draw the loss curves (rank 0)."""
    member = Member(config.model, paths.seed)
    out_dir = ModelStore(paths.models).checkpoint_dir(member)
    config = replace(config, data_fingerprint=_file_sizes_fingerprint(paths.folds, paths.roots))
    live = None
    if int(os.environ.get("RANK", "0")) == 0:
        from dvclive import Live

        if paths.live.exists():
            shutil.rmtree(paths.live)  # a resumed run replays its history, so start the log afresh
        live = Live(str(paths.live), dvcyaml=False, save_dvc_exp=False, report=None)

    def log_epoch(record: dict[str, float]) -> None:
        if live is None:
            return
        for key, value in record.items():
            if key != "epoch" and np.isfinite(value):
                live.log_metric(key, float(value), plot=key not in ("lr", "seconds", "data_share"))
        live.next_step()

    history = fit(config, paths.folds, paths.roots, out_dir, log_epoch)
    if live is not None:
        live.end()
        best = pick_best(history, config.ignore_epochs)
        title = f"{config.model}, seed {config.seed}"
        from deepfake.modeling.plots import loss_curves

        loss_curves(history, best, config.ignore_epochs, title, paths.loss_plot)
    return history
