"""DVC stage ingest: a dataset root in any supported layout -> its canonical index (data/index/<dataset>.csv)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import ingest


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True, help="a key of data.datasets or data.test_datasets in params")
    parser.add_argument("--root", type=Path, required=True, help="the dataset root (data.datasets.<dataset>.root)")
    parser.add_argument("--out", type=Path, required=True, help="canonical index CSV")
    parser.add_argument("--report", type=Path, required=True, help="stage report JSON")
    args, params = parse_stage_args(parser, argv)
    ingest.run(ingest.Config.from_params(params, args.dataset), ingest.Paths(args.root, args.out, args.report))


if __name__ == "__main__":
    run_stage(main)
