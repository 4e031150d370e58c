"""Experiment helper: train one model with params overrides outside DVC, then score it.

    python scripts/train_eval.py /tmp/run classifier train.epochs=40 augment.jpeg=0

Trains into OUT (a model store: OUT/models/train/<model>/ holds the checkpoints; DVCLive folder
OUT/live, loss plot OUT/loss.png) from the current data/ outputs, then prints video- and frame-level
AUC of best.pt and last.pt on the holdout and validation folds. The overridden params are validated
as every stage validates params.yaml. Used for docs/experiments.md; the pipeline itself never calls it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

from deepfake.core.errors import UserError, describe_user_error
from deepfake.core.params import validate_params
from deepfake.modeling.data import CropDataset, DataRoots, read_folds, select_folds
from deepfake.modeling.scoring import Aggregation, predict_crops, score
from deepfake.modeling.store import BEST, LAST, Member, ModelStore
from deepfake.stages import train


def override(params: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the nested params dict."""
    key, _, value = assignment.partition("=")
    *path, last = key.split(".")
    node = params
    for name in path:
        if not isinstance(node, dict) or name not in node:
            raise SystemExit(f"unknown params key {key!r}")
        node = node[name]
    if not isinstance(node, dict) or last not in node:
        raise SystemExit(f"unknown params key {key!r}")
    node[last] = yaml.safe_load(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("model")
    parser.add_argument("overrides", nargs="*", help="params overrides, key.path=value")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="default: %(default)s")
    parser.add_argument("--data", type=Path, default=Path("data"), help="holds folds.csv, crops/, landmarks/, masks/")
    args = parser.parse_intermixed_args(argv)
    raw = yaml.safe_load(args.params.read_text())
    for assignment in args.overrides:
        override(raw, assignment)
    params: Any = validate_params(raw, f"{args.params} with {' '.join(args.overrides) or 'no overrides'}")
    if args.model not in params.models:
        raise SystemExit(f"{args.model!r} is not one of the params' models {list(params.models)}")
    roots = DataRoots(args.data / "crops", args.data / "landmarks", args.data / "masks")
    folds_csv = args.data / "folds.csv"
    out = args.out
    config = train.TrainConfig.from_params(params, args.model)
    train.run(config, train.Paths(folds_csv, roots, out / "models", out / "live", out / "loss.png"))
    store, member = ModelStore(out / "models"), Member(args.model)
    aggregation, device = Aggregation.from_params(params), torch.device("cpu")
    table = read_folds(folds_csv)
    for fold in (params.train.holdout_fold, params.train.val_fold):
        rows = select_folds(table, [fold], drop_unmasked_fakes=False)
        dataset = CropDataset(rows, roots, params.train.image_size)
        for checkpoint in (BEST, LAST):
            model = store.load_torch(member, device, which=checkpoint)
            metrics, _ = score(rows, predict_crops(model, dataset, 32, device)["prob"], aggregation)
            print(
                f"fold {fold} {checkpoint}.pt: video AUC {metrics['video']['auc']:.3f}, "
                f"frame AUC {metrics['frame']['auc']:.3f}"
            )


if __name__ == "__main__":
    try:
        main()
    except UserError as err:  # bad params or inputs: one line, exit 2, as the deepfake commands report them
        print(describe_user_error(err), file=sys.stderr)
        sys.exit(2)
