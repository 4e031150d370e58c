"""DVC stage zoo_convert: a published detector's files converted into a model package (zoo/dvc.yaml)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import zoo_convert


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--package", required=True, help="a key of zoo.packages")
    parser.add_argument("--download", type=Path, required=True, help="the entry's download folder")
    parser.add_argument("--record", type=Path, required=True, help="the entry's checksum record")
    parser.add_argument("--out", type=Path, required=True, help="the package folder (a model store)")
    parser.add_argument("--report", type=Path, required=True, help="report JSON")
    args, params = parse_stage_args(parser, argv)
    config = zoo_convert.Config.from_params(params, args.package)
    zoo_convert.run(config, zoo_convert.Paths(args.download, args.record, args.out, args.report))


if __name__ == "__main__":
    run_stage(main)
