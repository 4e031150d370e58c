"""DVC stage crops: face crops of every video of one dataset (fakes are cut with their original's boxes)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import crops


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True, help="the dataset (a key of data.datasets or data.test_datasets)")
    parser.add_argument("--index", type=Path, required=True, help="its canonical index (data/index/<dataset>.csv)")
    parser.add_argument("--root", type=Path, required=True, help="its root folder")
    parser.add_argument("--boxes", type=Path, required=True, help="the bboxes stage's folder for this dataset")
    parser.add_argument("--out", type=Path, required=True, help="folder for <video>/<frame>_<face>.png and index.csv")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    paths = crops.Paths(
        args.dataset, args.index, args.root, args.boxes, args.out, args.report, params.data.extra_roots(args.dataset)
    )
    crops.run(crops.Config.from_params(params), paths)


if __name__ == "__main__":
    run_stage(main)
