"""DVC stage diffs: difference maps and binarised masks (mask videos where the dataset ships them, else SSIM)
for the fake crops of one dataset."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import diffs


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--crops", type=Path, required=True, help="the crops root (holds <dataset>/index.csv)")
    parser.add_argument("--part", required=True, help="the dataset (a key of data.datasets)")
    parser.add_argument("--index", type=Path, required=True, help="its canonical index (data/index/<dataset>.csv)")
    parser.add_argument("--root", type=Path, required=True, help="its root folder (mask videos)")
    parser.add_argument("--boxes", type=Path, required=True, help="the bboxes stage's folder for the dataset")
    parser.add_argument("--diffs-out", type=Path, required=True, help="folder for <fake>/<frame>_<face>.png diffs")
    parser.add_argument("--masks-out", type=Path, required=True, help="folder for <fake>/<frame>_<face>.png masks")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    paths = diffs.Paths(
        args.crops,
        args.part,
        args.diffs_out,
        args.masks_out,
        args.report,
        index=args.index,
        root=args.root,
        boxes=args.boxes,
        extra_roots=params.data.extra_roots(args.part),
    )
    diffs.run(diffs.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
