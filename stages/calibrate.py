"""DVC stage calibrate: every model and ensemble's calibration and operating points, on the validation fold."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.modeling.data import DataRoots
from deepfake.stages import calibrate


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--folds", type=Path, required=True)
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="fake crops are read with their masks")
    parser.add_argument("--models", type=Path, required=True, help="the models/ root (reads train/)")
    parser.add_argument("--out", type=Path, required=True, help="every row's decision (models/calibration.json)")
    parser.add_argument("--report", type=Path, required=True, help="report JSON")
    args, params = parse_stage_args(parser, argv)
    paths = calibrate.Paths(args.folds, DataRoots(args.crops, Path(), args.masks), args.models, args.out, args.report)
    calibrate.run(calibrate.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
