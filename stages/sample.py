"""DVC stage sample: build the built-in DFDC-format sample dataset from the packaged face photos."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import sample


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="root that receives the part folders")
    args, params = parse_stage_args(parser, argv)
    sample.run(sample.Config.from_params(params), sample.Paths(args.out))


if __name__ == "__main__":
    run_stage(main)
