"""The ``deepfake`` command: predict, explain, sample and the benchmarks."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from deepfake.backends.base import BACKENDS, EXPLAIN_BACKENDS
from deepfake.core.command import report_failure, setup_logging
from deepfake.core.errors import InputError
from deepfake.core.params import Params, load_params, load_params_for_models

SERVE_BACKENDS = ("torch", "onnx", "onnx-int8", "triton")  # the serve section's choices (ServeParams.backend)


def _stage_params(args: argparse.Namespace) -> Params:
    """The commands that work on a checkout read its params.yaml (or --params)."""
    return load_params(args.params or Path("params.yaml"))


def _model_params(args: argparse.Namespace, models: Path) -> Params:
    """predict, explain and serve: --params or ./params.yaml when there is one, else the model package's
    own settings (its manifest) over the packaged defaults, so they run from any folder."""
    from deepfake.modeling.store import ModelStore

    params, source = load_params_for_models(args.params, lambda: ModelStore(models).settings())
    logging.getLogger("deepfake").info("settings from %s", source)
    return params


def _model_card(models: Path) -> dict[str, object]:
    """The model package's card reference for the verdicts; a demonstration model (or one without a card) is
    announced with one warning line on stderr."""
    from deepfake.modeling.card import package_card

    card = package_card(models)
    notice = card.notice()
    if notice:
        print(f"warning: {card.name} {card.version}: {notice}", file=sys.stderr)
    return card.reference()


def _cmd_sample(args: argparse.Namespace) -> int:
    from deepfake.stages import sample

    summary = sample.run(sample.Config.from_params(_stage_params(args)), sample.Paths(args.out))
    logging.getLogger("deepfake").info("sample written to %s: %s", args.out, summary)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from deepfake.apps.bench import run_preprocess_bench

    run_preprocess_bench(_stage_params(args), data_root=args.data_root, videos=args.videos)
    return 0


def _cmd_bench_train(args: argparse.Namespace) -> int:
    from deepfake.apps.bench import run_train_bench
    from deepfake.modeling.data import DataRoots

    roots = DataRoots(args.data / "crops", args.data / "landmarks", args.data / "masks")
    params = _stage_params(args)
    for model in args.model or params.models:
        run_train_bench(params, model, args.data / "folds.csv", roots, args.steps)
    return 0


def _predict_run(args: argparse.Namespace, params: Params, outputs: Any, resume: bool = False) -> dict[str, Any]:
    """``deepfake predict``'s run of ``args.inputs`` with the package in ``args.models`` (also what ``deepfake
    calibrate`` scores its labelled videos with): params validated, then the package checked, before any video."""
    from tqdm import tqdm

    from deepfake.apps.package_check import check_package
    from deepfake.apps.predict import PredictConfig, load_decision, predict_videos
    from deepfake.apps.zoo_predict import package_stream
    from deepfake.backends.base import create_backend
    from deepfake.modeling.store import ModelStore

    config = PredictConfig.from_params(params)  # every section predict reads is validated before any work
    store = ModelStore(args.models)
    backend_name = args.backend or params.predict.backend
    check_package(args.models, backend_name)  # a damaged package stops here, before any video is read
    backend = create_backend(backend_name, store, params, args.url)
    return predict_videos(
        args.inputs,
        backend,
        config,
        outputs,
        resume=resume,
        progress=lambda v: tqdm(v, unit="video", disable=args.quiet),
        model=_model_card(args.models),
        stream=package_stream(store, backend, config.aggregation),
        decision=load_decision(args.models),
    )


def _cmd_predict(args: argparse.Namespace) -> int:
    from deepfake.apps.predict import FALLBACK_PROBABILITY, Outputs

    params = _model_params(args, args.models)
    outputs = Outputs(csv=args.csv, json=args.json, jsonl=args.jsonl or args.json.with_suffix(".jsonl"))
    summary = _predict_run(args, params, outputs, resume=args.resume)
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
        log.warning("%s: not scored (%s); the CSV carries %s", name, status, FALLBACK_PROBABILITY)
    for name, reason in summary["skipped"].items():
        log.info("%s: skipped, %s (listed in %s)", name, reason, outputs.json)
    if summary["errors"]:
        log.error("%d videos failed with an error (a bug: tracebacks above and in %s)", summary["errors"], outputs.json)
        return 1
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import json

    from deepfake.apps.calibrate import calibrate_package, predictions_records, read_labels
    from deepfake.stages.calibrate import Config

    params = _model_params(args, args.models)
    fit = Config.from_params(params).fit  # the calibrate section: methods, rates, the verdict rule
    labels = read_labels(args.labels)
    if args.predictions is not None:
        records = predictions_records(args.predictions)
    elif not args.inputs:
        raise InputError("give the labelled videos (files or folders), or --predictions of an earlier predict run")
    else:
        import tempfile

        from deepfake.apps.predict import Outputs

        with tempfile.TemporaryDirectory(prefix="deepfake-calibrate-") as scratch:  # predict's outputs, then gone
            folder = Path(scratch)
            outputs = Outputs(folder / "p.csv", folder / "p.json", folder / "p.jsonl")
            _predict_run(args, params, outputs)
            records = predictions_records(outputs.json)
    summary = calibrate_package(records, labels, args.models, args.out, fit)
    print(json.dumps({k: v for k, v in summary.items() if k != "left_out_videos"}, indent=1))
    log = logging.getLogger("deepfake")
    for path in summary["left_out_videos"]["unlabelled"][:20]:
        log.warning("%s: no label in %s: left out", path, args.labels)
    for path, status in list(summary["left_out_videos"]["unscored"].items())[:20]:
        log.warning("%s: not scored (%s): left out", path, status)
    log.info("calibrated package written to %s (version %s)", args.out, summary["model"]["version"])
    return 0


def _cmd_bench_predict(args: argparse.Namespace) -> int:
    from deepfake.apps.bench import run_predict_bench
    from deepfake.apps.predict import collect_videos

    params = _model_params(args, args.models)
    videos = collect_videos(args.inputs or [Path(next(iter(params.data.datasets.values())).root)])
    run_predict_bench(params, videos[: args.videos], args.models, args.backend or list(BACKENDS), args.url)
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from deepfake.apps.explain import explain
    from deepfake.apps.package_check import check_package
    from deepfake.modeling.store import ModelStore

    params = _model_params(args, args.models)
    store = ModelStore(args.models)
    check_package(args.models, args.backend)  # a damaged package stops here, before the video is read
    _model_card(args.models)  # the warning of a demonstration model
    rows = args.montage if args.montage is not None else params.explain.montage_rows
    fps = args.fps if args.fps is not None else params.explain.overlay_fps
    summary = explain(args.video, params, store, args.out, rows, fps, args.backend)
    logging.getLogger("deepfake").info("%d faces explained: %s (montage.png, overlay.mp4)", summary["faces"], args.out)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from deepfake.apps.serve.app import create_app
    from deepfake.apps.serve.settings import ServeConfig
    from deepfake.core.errors import InputError, one_line

    models = args.models or Path(_serve_models_default(args))
    params = _model_params(args, models)
    config = ServeConfig.from_params(
        params,
        models=models,
        data=args.data,
        host=args.host,
        port=args.port,
        backend=args.backend,
        triton_url=args.url,
        workers=args.workers,
        api_keys_file=args.api_keys_file,
        allow_anonymous_remote=args.allow_anonymous_remote,
    )
    app = create_app(config)  # the keys first, then the model package: each refusal is one line
    try:
        app.state.service.start()  # the workers load the models before uvicorn takes over
    except RuntimeError as err:
        raise InputError(f"{config.models}: {one_line(err)}") from err
    logging.getLogger("deepfake").info(
        "serving %s (%s backend, %d workers) on http://%s:%d/ with the job store in %s",
        config.models,
        config.backend,
        config.workers,
        config.host,
        config.port,
        config.data,
    )
    # open requests get serve.shutdown_grace_s to finish, then the app's shutdown gives the workers' jobs as long
    # X-Forwarded-For is believed only from serve.trusted_proxies (uvicorn's default trusts 127.0.0.1)
    trusted = list(config.trusted_proxies)
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level="info",
        timeout_graceful_shutdown=config.shutdown_grace_s,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        limit_concurrency=config.max_connections,
        server_header=False,
    )
    return 0


def _serve_models_default(args: argparse.Namespace) -> str:
    """serve.models from --params or ./params.yaml when there is one, else models/ (whose settings apply)."""
    path = args.params or Path("params.yaml")
    return load_params(path).serve.models if path.is_file() else "models"


def _cmd_serve_key(args: argparse.Namespace) -> int:
    from deepfake.apps.serve.settings import KEY_HASHES_ENV, hash_key, new_key

    key = new_key()
    print(f"API key (give it to the client; it is not stored anywhere): {key}")
    print(f"line for serve.api_keys_file (or {KEY_HASHES_ENV}): {args.label} {hash_key(key)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake", description="Deepfake-detection pipeline tools.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params file (default: params.yaml; without one, predict, explain and serve use the model package's)",
    )
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
        "--jsonl",
        type=Path,
        help="every record (default: the --json path with .jsonl); written as they are produced to <jsonl>.partial, "
        "renamed with the CSV and JSON at the end",
    )
    predict.add_argument(
        "--resume",
        action="store_true",
        help="keep the records of an earlier run (<jsonl>.partial of a cut one, else --jsonl) and score only the rest",
    )
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=_cmd_predict)

    calibrate = commands.add_parser(
        "calibrate",
        help="fit a package's calibration and operating points on your labelled videos; write a new version",
    )
    calibrate.add_argument("inputs", type=Path, nargs="*", help="the labelled videos: files and/or folders")
    calibrate.add_argument("--labels", type=Path, required=True, help="CSV with columns video,label (REAL/FAKE)")
    calibrate.add_argument("--models", type=Path, default=Path("models"), help="the package's models/ root")
    calibrate.add_argument("--out", type=Path, required=True, help="models/ root of the new version (onnx/ in it)")
    calibrate.add_argument("--predictions", type=Path, help="an earlier `deepfake predict --json` of these videos")
    calibrate.add_argument("--backend", choices=BACKENDS, help="default: predict.backend from params")
    calibrate.add_argument("--url", help="Triton server for --backend triton")
    calibrate.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    calibrate.set_defaults(func=_cmd_calibrate)

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
    explain.add_argument("--montage", type=int, help="face rows in montage.png (default: explain.montage_rows)")
    explain.add_argument("--fps", type=float, help="overlay.mp4 frame rate (default: explain.overlay_fps)")
    explain.set_defaults(func=_cmd_explain)

    serve = commands.add_parser("serve", help="the verdict service: REST API, web page, job store (docs/service.md)")
    serve.add_argument("--models", type=Path, help="the model package (default: serve.models)")
    serve.add_argument("--data", type=Path, help="job store, uploads and results (default: serve.data)")
    serve.add_argument("--host", help="listen address (default: serve.host)")
    serve.add_argument("--port", type=int, help="port (default: serve.port)")
    serve.add_argument("--backend", choices=SERVE_BACKENDS, help="default: serve.backend")
    serve.add_argument("--url", help="Triton server for --backend triton (host:8000 or grpc://host:8001)")
    serve.add_argument("--workers", type=int, help="worker processes (default: serve.workers)")
    serve.add_argument("--api-keys-file", type=Path, help="file of API key hashes (default: serve.api_keys_file)")
    serve.add_argument(
        "--allow-anonymous-remote",
        action="store_true",
        default=None,
        help="serve without API keys on a non-loopback --host (anyone who reaches the port may use it)",
    )
    serve.set_defaults(func=_cmd_serve)

    serve_key = commands.add_parser("serve-key", help="make an API key and print the hash line to store for it")
    serve_key.add_argument("--label", default="client", help="a name for the key in logs (default: %(default)s)")
    serve_key.set_defaults(func=_cmd_serve_key)
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
