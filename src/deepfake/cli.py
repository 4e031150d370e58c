"""The ``deepfake`` command, and the argument/logging helpers the stage scripts share."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepfake.errors import ToolchainError
from deepfake.folds import LeakageError
from deepfake.metadata import MetadataError
from deepfake.params import ParamsError, load_params

# Errors about the user's input or configuration: reported in one line, not as a traceback.
USER_ERRORS = (MetadataError, ParamsError, LeakageError, ToolchainError, FileNotFoundError, ValueError)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def stage_parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def parse_stage_args(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, dict[str, Any]]:
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return args, load_params(args.params)


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage's ``main``; a user error exits 2 with one ``error:`` line (``-v`` keeps the traceback)."""
    try:
        main()
    except USER_ERRORS as err:
        if "-v" in sys.argv or "--verbose" in sys.argv:
            raise
        logging.getLogger("deepfake").error("%s: %s", type(err).__name__, err)
        sys.exit(2)


def _cmd_sample(args: argparse.Namespace) -> int:
    from deepfake.params import section
    from deepfake.sample import SampleConfig, build_sample

    config = SampleConfig.from_params(section(load_params(args.params), "sample"))
    summary = build_sample(args.out, config)
    logging.getLogger("deepfake").info("sample written to %s: %s", args.out, summary)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from deepfake.bench import run_preprocess_bench

    run_preprocess_bench(load_params(args.params), data_root=args.data_root, videos=args.videos)
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from deepfake.bench import run_train_bench
    from deepfake.data import DataRoots

    roots = DataRoots(args.data / "crops", args.data / "landmarks", args.data / "masks")
    params = load_params(args.params)
    for model in args.model or params["models"]:
        run_train_bench(params, model, args.data / "folds.csv", roots, args.steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake", description="Deepfake-detection pipeline tools.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)

    sample = commands.add_parser("sample", help="build the built-in DFDC-format sample dataset")
    sample.add_argument("--out", type=Path, default=Path("data/raw"), help="output root (default: %(default)s)")
    sample.set_defaults(func=_cmd_sample)

    bench = commands.add_parser("bench", help="print preprocessing throughput on a dataset (default: the sample)")
    bench.add_argument("--data-root", type=Path, default=None, help="default: data.root from params")
    bench.add_argument("--videos", type=int, default=None, help="at most this many REAL videos per part")
    bench.set_defaults(func=_cmd_bench)

    bench_train = commands.add_parser("bench-train", help="print training images/s and the data-loading share")
    bench_train.add_argument("--model", action="append", help="a model from params (default: all in `models`)")
    bench_train.add_argument("--steps", type=int, default=20, help="timed steps (default: %(default)s)")
    bench_train.add_argument(
        "--data", type=Path, default=Path("data"), help="holds folds.csv, crops/, landmarks/, masks/"
    )
    bench_train.set_defaults(func=_cmd_bench_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        logging.getLogger("deepfake").error("%s: %s", type(err).__name__, err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
