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


def _cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deepfake.infer import PredictConfig, create_backend, predict
    from deepfake.params import section

    params = load_params(args.params)
    backend_name = args.backend or str(section(params, "predict")["backend"])
    backend = create_backend(backend_name, params, args.models, args.url)
    config = PredictConfig.from_params(params)
    summary = predict(
        args.inputs, backend, config, args.csv, args.json, progress=lambda v: tqdm(v, unit="video", disable=args.quiet)
    )
    log = logging.getLogger("deepfake")
    log.info(
        "%d videos (%d scored) with %s [%s] in %.1f s: %.2f videos/s; %s, %s",
        summary["videos"],
        summary["scored"],
        summary["backend"],
        ", ".join(summary["members"]),
        summary["seconds"],
        summary["videos_per_s"] or 0.0,
        args.csv,
        args.json,
    )
    for name, status in summary["not_scored"].items():
        log.warning("%s: not scored (%s); the CSV carries 0.5", name, status)
    return 0


# the backend names, kept here so `deepfake --help` does not import torch
BACKENDS = ("torch", "onnx", "onnx-int8", "tensorrt", "triton", "vart")


def _cmd_bench_predict(args: argparse.Namespace) -> int:
    from deepfake.bench import run_predict_bench
    from deepfake.infer import collect_videos

    params = load_params(args.params)
    videos = collect_videos(args.inputs or [Path(params["data"]["root"]) / params["data"]["parts"][0]])
    run_predict_bench(params, videos[: args.videos], args.models, args.backend or list(BACKENDS), args.url)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from deepfake.explain import explain

    params = load_params(args.params)
    summary = explain(args.video, params, args.models, args.out, args.montage, args.fps, args.backend)
    logging.getLogger("deepfake").info("%d faces explained: %s (montage.png, overlay.mp4)", summary["faces"], args.out)
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

    predict = commands.add_parser("predict", help="score videos: P(fake) per video as CSV (DFDC format) and JSON")
    predict.add_argument("inputs", type=Path, nargs="+", help="video files and/or folders of videos")
    predict.add_argument("--backend", choices=BACKENDS, help="default: predict.backend from params")
    predict.add_argument("--models", type=Path, default=Path("models"), help="holds train/, onnx/, int8/, trt/, dpu/")
    predict.add_argument("--url", help="Triton server for --backend triton (host:8000 or grpc://host:8001)")
    predict.add_argument("--csv", type=Path, default=Path("predictions.csv"), help="default: %(default)s")
    predict.add_argument("--json", type=Path, default=Path("predictions.json"), help="default: %(default)s")
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=_cmd_predict)

    bench_predict = commands.add_parser("bench-predict", help="print predict's per-stage ms and videos/s per backend")
    bench_predict.add_argument("inputs", type=Path, nargs="*", help="videos or folders (default: the first data part)")
    bench_predict.add_argument("--backend", action="append", choices=BACKENDS, help="default: every backend")
    bench_predict.add_argument("--videos", type=int, default=8, help="at most this many videos (default: %(default)s)")
    bench_predict.add_argument("--models", type=Path, default=Path("models"))
    bench_predict.add_argument("--url", help="Triton server for the triton backend")
    bench_predict.set_defaults(func=_cmd_bench_predict)

    explain = commands.add_parser("explain", help="Grad-CAM and U-YNet mask overlays for one video")
    explain.add_argument("video", type=Path)
    explain.add_argument("--out", type=Path, required=True, help="folder for the PNGs, overlay.mp4 and montage.png")
    explain.add_argument("--models", type=Path, default=Path("models"), help="holds train/, onnx/, int8/")
    explain.add_argument(
        "--backend", choices=("torch", "onnx", "onnx-int8"), default="torch", help="torch gives Grad-CAM (default)"
    )
    explain.add_argument("--montage", type=int, default=4, help="face rows in montage.png (default: %(default)s)")
    explain.add_argument("--fps", type=float, default=4.0, help="overlay.mp4 frame rate (default: %(default)s)")
    explain.set_defaults(func=_cmd_explain)
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
