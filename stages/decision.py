"""DVC stage decision: the experiments' one-screen summary of every test set's decision and robustness figures."""

from pathlib import Path

from deepfake.core.command import parse_stage_args, run_stage, stage_parser
from deepfake.stages import decision


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--decisions", type=Path, required=True, help="folder of <testset>.json (metrics/decision)")
    parser.add_argument("--robustness", type=Path, required=True, help="folder of <testset>.json (metrics/robustness)")
    parser.add_argument("--out", type=Path, required=True, help="the summary (metrics/decision.json)")
    args, params = parse_stage_args(parser, argv)
    decision.run(decision.Config.from_params(params), decision.Paths(args.decisions, args.robustness, args.out))


if __name__ == "__main__":
    run_stage(main)
