"""DVC stage sample: build the built-in DFDC-format sample dataset from the packaged face photos."""

from pathlib import Path

from deepfake.cli import parse_stage_args, run_stage, stage_parser
from deepfake.params import section
from deepfake.sample import SampleConfig, build_sample


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True, help="root that receives the part folders")
    args, params = parse_stage_args(parser, argv)
    build_sample(args.out, SampleConfig.from_params(section(params, "sample")))


if __name__ == "__main__":
    run_stage(main)
