"""The ``deepfake`` command: predict, explain, sample and the benchmarks."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from deepfake.backends.base import BACKENDS, EXPLAIN_BACKENDS
from deepfake.core.command import report_failure, setup_logging
from deepfake.core.params import load_params


def _cmd_sample(args: argparse.Namespace) -> int:
    from deepfake.stages import sample

    summary = sample.run(sample.Config.from_params(load_params(args.params)), sample.Paths(args.out))
    logging.getLogger("deepfake").info("sample written to %s: %s", args.out, summary)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from deepfake.apps.bench import run_preprocess_bench

    run_preprocess_bench(load_params(args.params), data_root=args.data_root, videos=args.videos)
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from deepfake.apps.bench import run_train_bench
    from deepfake.modeling.data import DataRoots

    roots = DataRoots(args.data / "crops", args.data / "landmarks", args.data / "masks")
    params = load_params(args.params)
    for model in args.model or params.models:
        run_train_bench(params, model, args.data / "folds.csv", roots, args.steps)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from deepfake.apps.predict import Outputs, PredictConfig, predict_videos
    from deepfake.backends.base import create_backend
    from deepfake.modeling.store import ModelStore

    params = load_params(args.params)
    config = PredictConfig.from_params(params)  # every section predict reads is validated before any work
    outputs = Outputs(csv=args.csv, json=args.json, jsonl=args.jsonl or args.json.with_suffix(".jsonl"))
    backend = create_backend(args.backend or params.predict.backend, ModelStore(args.models), params, args.url)
    summary = predict_videos(
        args.inputs,
        backend,
        config,
        outputs,
        resume=args.resume,
        progress=lambda v: tqdm(v, unit="video", disable=args.quiet),
    )
    log = logging.getLogger("deepfake")
    log.info(
        "%d videos (%d scored, %d from an earlier run) with %s [%s] in %.1f s: %.2f videos/s; %s, %s, %s",
        summary["videos"],
        summary["scored"],
        summary["resumed"],
        summary["backend"],
        ", ".join(summary["members"]),
        summary["seconds"],
        summary["videos_per_s"] or 0.0,
        outputs.csv,
        outputs.json,
        outputs.jsonl,
    )
    for name, status in summary["not_scored"].items():
        log.warning("%s: not scored (%s); the CSV carries 0.5", name, status)
    if summary["errors"]:
        log.error("%d videos failed with an error (a bug: tracebacks above and in %s)", summary["errors"], outputs.json)
        return 1
    return 0


def _cmd_bench_predict(args: argparse.Namespace) -> int:
    from deepfake.apps.bench import run_predict_bench
    from deepfake.apps.predict import collect_videos

    params = load_params(args.params)
    videos = collect_videos(args.inputs or [Path(next(iter(params.data.datasets.values())).root)])
    run_predict_bench(params, videos[: args.videos], args.models, args.backend or list(BACKENDS), args.url)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from deepfake.apps.explain import explain
    from deepfake.modeling.store import ModelStore

    params = load_params(args.params)
    store = ModelStore(args.models)
    summary = explain(args.video, params, store, args.out, args.montage, args.fps, args.backend)
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
    bench.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the DFDC parts by name (default: each dataset's root in params)",
    )
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
    predict.add_argument(
        "--jsonl", type=Path, help="records as they are produced (default: the --json path with .jsonl)"
    )
    predict.add_argument(
        "--resume", action="store_true", help="keep the --jsonl records of an earlier run and score only the rest"
    )
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
    explain.add_argument("--backend", choices=EXPLAIN_BACKENDS, default="torch", help="torch gives Grad-CAM (default)")
    explain.add_argument("--montage", type=int, default=4, help="face rows in montage.png (default: %(default)s)")
    explain.add_argument("--fps", type=float, default=4.0, help="overlay.mp4 frame rate (default: %(default)s)")
    explain.set_defaults(func=_cmd_explain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except Exception as err:
        status = report_failure(err, args.verbose)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
