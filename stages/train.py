"""DVC stage train: one model with one seed (train.seed, or --seed for an ensemble member).

Also runs under `PYTHONSAFEPATH=1 torchrun --nproc_per_node N stages/train.py ...` (DDP; PYTHONSAFEPATH
keeps stages/ off sys.path, as `python -P` does for the DVC command).
"""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.modeling.data import DataRoots
from deepfake.stages import train


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", required=True, help="a name from the `models` list in params")
    parser.add_argument("--seed", type=int, default=None, help="an ensemble seed (train_seed@); default: train.seed")
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--models", type=Path, required=True, help="the models/ root (checkpoints go to the store)")
    parser.add_argument("--live", type=Path, required=True, help="DVCLive folder (metrics.json, plots)")
    parser.add_argument("--loss-plot", type=Path, required=True, help="loss curves PNG")
    args, params = parse_stage_args(parser, argv)
    roots = DataRoots(args.crops, args.landmarks, args.masks)
    paths = train.Paths(args.folds, roots, args.models, args.live, args.loss_plot, args.seed)
    train.run(train.Config.from_params(params, args.model, args.seed), paths)


if __name__ == "__main__":
    run_stage(main)
