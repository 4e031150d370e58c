"""DVC stage zoo_fetch: one published detector's files, downloaded and verified (zoo/dvc.yaml)."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import zoo_fetch


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--entry", required=True, help="a key of zoo.entries")
    parser.add_argument("--out", type=Path, required=True, help="the download folder")
    parser.add_argument("--record", type=Path, required=True, help="the entry's checksum record (kept in git)")
    parser.add_argument("--report", type=Path, required=True, help="report JSON")
    parser.add_argument("--pulled", type=Path, help="where dvc pull left the entry's files (taken once verified)")
    args, params = parse_stage_args(parser, argv)
    config = zoo_fetch.Config.from_params(params, args.entry)
    zoo_fetch.run(config, zoo_fetch.Paths(args.out, args.record, args.report, args.pulled))


if __name__ == "__main__":
    run_stage(main)
