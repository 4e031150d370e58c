"""Experiment helper: train one model with params overrides outside DVC, then score it.

    python scripts/train_eval.py /tmp/run classifier train.epochs=40 augment.jpeg=0

Trains into OUT (checkpoints, DVCLive folder, loss plot) from the current data/ outputs, then
prints video- and frame-level AUC of best.pt and last.pt on the holdout and validation folds.
Used for docs/experiments.md; the pipeline itself never calls it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from deepfake.data import CropDataset, DataRoots, read_folds, select_folds
from deepfake.evaluate import EvalConfig, Member, load_member, predict, score
from deepfake.train import run_training


def override(params: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the nested params dict."""
    key, _, value = assignment.partition("=")
    *path, last = key.split(".")
    node = params
    for name in path:
        node = node[name]
    if last not in node:
        raise SystemExit(f"unknown params key {key!r}")
    node[last] = yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("model")
    parser.add_argument("overrides", nargs="*", help="params overrides, key.path=value")
    args = parser.parse_args()
    params = yaml.safe_load(Path("params.yaml").read_text())
    for assignment in args.overrides:
        override(params, assignment)
    roots = DataRoots(Path("data/crops"), Path("data/landmarks"), Path("data/masks"))
    folds_csv = Path("data/folds.csv")
    out = args.out
    run_training(params, args.model, None, folds_csv, roots, out / "model", out / "live", out / "loss.png")
    config, device = EvalConfig.from_params(params), torch.device("cpu")
    table = read_folds(folds_csv)
    for fold in (config.holdout_fold, params["train"]["val_fold"]):
        rows = select_folds(table, [fold], drop_unmasked_fakes=False)
        dataset = CropDataset(rows, roots, config.image_size)
        for checkpoint in ("best", "last"):
            member = Member(args.model, args.model, args.out / "model" / f"{checkpoint}.pt")
            metrics, _ = score(rows, predict(load_member(member, device), dataset, 32, device)["prob"], config)
            print(
                f"fold {fold} {checkpoint}.pt: video AUC {metrics['video']['auc']:.3f}, "
                f"frame AUC {metrics['frame']['auc']:.3f}"
            )


if __name__ == "__main__":
    main()
