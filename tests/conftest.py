"""Shared fixtures: tiny DFDC-format parts built with OpenCV, bad files included."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from deepfake.core.params import Params, validate_params
from deepfake.modeling.data import DataRoots
from deepfake.modeling.store import ModelStore, members
from deepfake.stages import bboxes, calibrate, crops, diffs, export, folds, ingest, landmarks, quantize
from deepfake.stages.train import TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "src" / "deepfake" / "assets" / "faces"
SIZE = (320, 180)  # width, height: below 300 px on the short side, so detection runs at 2x
FRAMES = 16
# small encoders for tests that build models without training them
SMALL_MODELS = {"classifier": {"encoder": "mobilenetv3_small_050"}, "uynet": {"encoder": "resnet18", "depth": 3}}


PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"

# The unit tests' params: the real params.yaml, shrunk. Only these keys differ from it.
SHRINK = {
    "train.datasets": ["dfdc_train_part_0"],
    "evaluate.testsets": {"dfdc": ["dfdc_train_part_0"]},
    "video.frame_stride": 4,
    "bboxes.batch_size": 4,
    "bboxes.thresholds": [0.6, 0.7, 0.7],
    "crops.workers": 1,
    "landmarks.thresholds": [0.6, 0.7, 0.7],
    "diffs.workers": 1,
    "folds.n_splits": 2,
    "folds.seed": 1,
    "train.seed": 7,
    "train.image_size": 64,
    "train.epochs": 2,
    "train.batch_size": 4,
    "train.weight_decay": 0.0,
    "train.ignore_epochs": 0,
    "train.checkpoint_every": 1,
    "train.device": "cpu",
    "ensemble.seeds": [8],
    "evaluate.batch_size": 8,
    "evaluate.device": "cpu",
    "export.parity_crops": 6,
    "quantize.calib_crops": 8,
    "quantize.seed": 1,
    "quantize.batch_size": 8,
    "predict.frames": 6,
    "predict.batch_size": 8,
    "predict_detector.batch_size": 4,
    "predict.workers": 0,  # in-process: no worker start-up per test (tests/test_predict.py runs the pool once)
}


def set_key(raw: dict, dotted: str, value: object) -> None:
    """``raw["a"]["b"] = value`` for ``dotted`` "a.b"; the key must already exist (no silent additions)."""
    *path, last = dotted.split(".")
    node = raw
    for key in path:
        node = node[key]
    if last not in node:
        raise KeyError(f"{dotted} is not a key of params.yaml")
    node[last] = copy.deepcopy(value)


def tiny_params(root: Path, **changes: object) -> dict:
    """params.yaml as a dict, shrunk for unit tests (``SHRINK``), with one dataset: the DFDC part
    ``root/dfdc_train_part_0``.

    ``changes`` use ``__`` for dots: ``tiny_params(root, train__epochs=1)``.
    """
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    datasets = {"dfdc_train_part_0": {"layout": "dfdc", "root": str(Path(root) / "dfdc_train_part_0")}}
    for dotted, value in {"data.datasets": datasets, **SHRINK}.items():
        set_key(raw, dotted, value)
    for key, value in changes.items():
        set_key(raw, key.replace("__", "."), value)
    return raw


def as_params(raw: dict) -> Params:
    """The validated params a command would get from ``raw``."""
    return validate_params(raw, "tests/conftest.py (params.yaml, shrunk)")


def face_frames(photo: str, frames: int = FRAMES, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """The photo scaled into a canvas, drifting a few pixels per frame."""
    image = cv2.imread(str(FACES / photo), cv2.IMREAD_COLOR)
    width, height = size
    scale = height / image.shape[0]
    out = []
    for i in range(frames):
        matrix = np.float32([[scale, 0, width / 2 - image.shape[1] * scale / 2 + i], [0, scale, 0]])
        out.append(cv2.warpAffine(image, matrix, size, borderMode=cv2.BORDER_REPLICATE))
    return out


def tamper(frames: list[np.ndarray]) -> list[np.ndarray]:
    """A crude 'fake': the central region blurred and tinted, the rest untouched."""
    out = []
    for frame in frames:
        fake = frame.copy()
        h, w = frame.shape[:2]
        region = fake[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3]
        region[:] = cv2.GaussianBlur(region, (15, 15), 0) // 2 + 60
        out.append(fake)
    return out


def write_video(path: Path, frames: list[np.ndarray], fps: int = 15) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def write_av(
    path: Path,
    frames: list[np.ndarray],
    fps: int = 15,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    fmt: str | None = None,
) -> Path:
    """Encode RGB ``frames`` with PyAV, any even size down to 2x2 (``options``: encoder options, e.g.
    {"g": "10"} for the GOP length; ``path`` may be a writable file object with ``fmt``)."""
    import av  # lazy: only the video tests need it

    height, width = frames[0].shape[:2]
    with av.open(str(path) if isinstance(path, Path) else path, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_raw_h264(path: Path, parts: list[tuple[int, int, int]]) -> Path:
    """A raw H.264 stream (no container, so no duration) of ``count`` frames at each ``(width, height, count)``,
    one part after the other, each with its own parameter sets, as a spliced stream is: small frames first and
    huge ones later is the amplification attack on a decoder that trusts the header."""
    data = b""
    for width, height, count in parts:
        frames = [np.full((height, width, 3), 40 + 20 * (i % 10), np.uint8) for i in range(count)]
        data += write_av(path.with_suffix(f".{width}x{height}.h264"), frames, fmt="h264").read_bytes()
    path.write_bytes(data)
    return path


def write_boxes(folder: Path, stem: str, size: tuple[int, int], box: list[float], text: str | None = None) -> None:
    """A boxes file for ``stem``: ``box`` on frames 0, 2 and 4 of a ``size`` (width, height) video, or ``text``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "format": 1,
        "video": f"{stem}.mp4",
        "width": size[0],
        "height": size[1],
        "detection_scale": 1.0,
        "frames": {str(i): [box] for i in range(0, 6, 2)},
    }
    (folder / f"{stem}.json").write_text(text if text is not None else json.dumps(data))


def touch(path: Path, data: bytes = b"") -> Path:
    """A file (parents made) holding ``data``: the layouts only check that videos exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_hostile_part(root: Path, part: str = "dfdc_train_part_0") -> Path:
    """A part with two good originals and their fakes, plus one of each kind of bad input."""
    folder = root / part
    folder.mkdir(parents=True)
    real_a, real_b = face_frames("grace_hopper.jpg"), face_frames("astronaut.jpg")
    write_video(folder / "reala.mp4", real_a)
    write_video(folder / "fakea.mp4", tamper(real_a))
    write_video(folder / "realb.mp4", real_b)
    write_video(folder / "fakeb.mp4", tamper(real_b))
    blank = [np.full((SIZE[1], SIZE[0], 3), 90 + i, np.uint8) for i in range(FRAMES)]
    write_video(folder / "noface.mp4", blank)
    write_video(folder / "fakenoface.mp4", blank)
    (folder / "zero.mp4").write_bytes(b"")
    whole = (folder / "reala.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notvideo.mp4").write_text("this is not a video\n")
    (folder / "fakemissing.mp4").write_bytes((folder / "fakea.mp4").read_bytes())
    metadata = {
        "reala.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakea.mp4": {"label": "FAKE", "split": "train", "original": "reala.mp4"},
        "realb.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakeb.mp4": {"label": "FAKE", "split": "train", "original": "realb.mp4"},
        "noface.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakenoface.mp4": {"label": "FAKE", "split": "train", "original": "noface.mp4"},
        "zero.mp4": {"label": "REAL", "split": "train", "original": None},
        "truncated.mp4": {"label": "REAL", "split": "train", "original": None},
        "notvideo.mp4": {"label": "FAKE", "split": "train", "original": "reala.mp4"},
        "missing.mp4": {"label": "REAL", "split": "train", "original": None},
        "fakemissing.mp4": {"label": "FAKE", "split": "train", "original": "missing.mp4"},
        "orphan.mp4": {"label": "FAKE", "split": "train", "original": "ghost.mp4"},
        "../escape.mp4": {"label": "REAL", "split": "train", "original": None},
        "badlabel.mp4": {"label": "MAYBE", "split": "train", "original": None},
    }
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@pytest.fixture(scope="session")
def hostile_part(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_hostile_part(tmp_path_factory.mktemp("raw"))


def ingest_part(part_dir: Path, out: Path, layout: str = "dfdc") -> Path:
    """The ingest stage on a dataset folder (a DFDC part by default); returns its canonical index."""
    index = out / f"{part_dir.name}.csv"
    config = ingest.Config(dataset=part_dir.name, layout=layout)
    ingest.run(config, ingest.Paths(part_dir, index, out / f"{part_dir.name}.ingest.json"))
    return index


@pytest.fixture(scope="session")
def processed(hostile_part: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run ingest and every preprocessing stage once on the hostile part."""
    out = tmp_path_factory.mktemp("processed")
    params = as_params(tiny_params(hostile_part.parent))
    part = hostile_part.name
    reports = out / "reports"
    result = {"out": out, "part": part}
    result["ingest"] = ingest.run(
        ingest.Config.from_params(params, part), ingest.Paths(hostile_part, out / "index.csv", reports / "ingest.json")
    )
    index = out / "index.csv"
    result["index"] = index
    result["bboxes"] = bboxes.run(
        bboxes.Config.from_params(params),
        bboxes.Paths(part, index, hostile_part, out / "bboxes" / part, reports / "bboxes.json"),
    )
    result["crops"] = crops.run(
        crops.Config.from_params(params),
        crops.Paths(part, index, hostile_part, out / "bboxes" / part, out / "crops" / part, reports / "crops.json"),
    )
    result["landmarks"] = landmarks.run(
        landmarks.Config.from_params(params),
        landmarks.Paths(out / "crops", part, out / "landmarks" / part, reports / "landmarks.json"),
    )
    result["diffs"] = diffs.run(
        diffs.Config.from_params(params),
        diffs.Paths(out / "crops", part, out / "diffs" / part, out / "masks" / part, reports / "diffs.json"),
    )
    result["folds"] = folds.run(
        folds.Config.from_params(params),
        folds.Paths(
            out / "crops", out / "landmarks", out / "diffs", out / "masks", out / "folds.csv", reports / "folds.json"
        ),
    )
    return result


@pytest.fixture(scope="session")
def trained(processed: dict, hostile_part: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of every model and ensemble seed; reala trains, realb validates and is the holdout.

    ``store`` is the trained models' ``ModelStore`` (its ``train/`` holds every member's checkpoints).
    """
    root = tmp_path_factory.mktemp("evaluate")
    out = processed["out"]
    table = pd.read_csv(out / "folds.csv", keep_default_na=False)
    table["fold"] = table["original"].map({"reala.mp4": 2, "realb.mp4": 1})
    table = pd.concat([table, table[table["fold"] == 1].assign(fold=0)])  # realb doubles as the holdout
    folds_csv = root / "folds.csv"
    table.to_csv(folds_csv, index=False)
    roots = DataRoots(out / "crops", out / "landmarks", out / "masks")
    raw = tiny_params(hostile_part.parent, train__epochs=1)
    params = as_params(raw)
    store = ModelStore(root / "models")
    for member in members(params.models, params.ensemble.seeds):
        config = replace(TrainConfig.from_params(params, member.model, member.seed), batch_size=8)
        fit(config, folds_csv, roots, store.checkpoint_dir(member))
    return {"root": root, "raw": raw, "params": params, "folds": folds_csv, "roots": roots, "store": store}


def store_linking(root: Path, fmt: str, target: Path) -> ModelStore:
    """A fresh models/ folder whose ``fmt`` folder is a link to ``target`` (the stage under test writes beside it)."""
    store = ModelStore(root / "models")
    store.root.mkdir(parents=True)
    store.folder(fmt).symlink_to(target, target_is_directory=True)
    return store


def store_with_checkpoints(trained: dict, root: Path) -> ModelStore:
    """A fresh models/ folder whose train/ is the ``trained`` fixture's."""
    return store_linking(root, "checkpoint", trained["store"].folder("checkpoint"))


@pytest.fixture(scope="session")
def models_root(trained: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A models/ folder as the pipeline lays it out: train/, onnx/, int8/ (one classifier, one U-YNet)."""
    root = tmp_path_factory.mktemp("predict") / "models"
    shutil.copytree(trained["store"].folder("checkpoint"), root / "train")
    raw = copy.deepcopy(trained["raw"])
    raw["ensemble"]["seeds"] = []
    params = as_params(raw)
    calibration = root / "calibration.json"  # where the pipeline's calibrate stage writes it (models/)
    calibrate.run(
        calibrate.Config.from_params(params),
        calibrate.Paths(trained["folds"], trained["roots"], root, calibration, root / "c.json"),
    )
    export.run(
        export.Config.from_params(params),
        export.Paths(trained["folds"], trained["roots"], root, root / "e.json", calibration=calibration),
    )
    quantize.run(
        quantize.Config.from_params(params), quantize.Paths(trained["folds"], trained["roots"], root, root / "q.json")
    )
    return {"root": root, "raw": raw, "params": params, "store": ModelStore(root)}


# ---- the reproduced pipeline (end-to-end tests) ----------------------------------------------------


def isolated_env(home: Path) -> dict[str, str]:
    """This environment with DVC's and git's user and site settings kept under ``home``."""
    env = dict(os.environ)
    # torch's JIT extension builds (AMD Quark's custom ops: about 12 s to compile) are shared with the suite
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    # `python` in the stage commands must be this interpreter, as it is in an activated venv
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        HOME=str(home),
    )
    for key in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "DVCLIVE_TEST"):
        env.pop(key, None)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command; fail the test with its output unless it exits 0; return stdout + stderr."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


# The end-to-end repository's params: the real params.yaml with only these keys shrunk. The sample, every
# dataset, model and stage stay as they are; training, its inputs and the int8 calibration get smaller.
# (The committed dvc.lock records the full run; tests/test_e2e_pipeline.py checks it against params.yaml.)
PIPELINE_SHRINK = {
    "video.frame_stride": 16,  # 4 of the sample's 64 frames: half the crops to train and score
    "train.image_size": 64,
    "train.epochs": 4,  # past ignore_epochs (2); the killed-training test kills after epoch 2, one left
    "export.parity_crops": 8,
    "quantize.calib_crops": 32,
}


def pipeline_params() -> dict:
    """params.yaml with ``PIPELINE_SHRINK`` applied."""
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    for dotted, value in PIPELINE_SHRINK.items():
        set_key(raw, dotted, value)
    return raw


def _build_pipeline(folder: Path) -> None:
    """``folder/repo``: a git + DVC repository with the tracked files of this checkout (no committed
    results) and params.yaml shrunk by ``PIPELINE_SHRINK``, `dvc repro` run once (the README's first
    command); ``folder/home``: the isolated HOME its commands run with."""
    repo, home = folder / "repo", folder / "home"
    repo.mkdir(parents=True)
    home.mkdir()
    env = isolated_env(home)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, files.stdout.split("\0")):
        if name.startswith(("data/", "metrics/", "models/", "plots/")) or name == "dvc.lock":
            continue  # start from nothing: no committed results
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(pipeline_params(), sort_keys=False))
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "init"], repo, env)
    run(["dvc", "repro"], repo, env)


@pytest.fixture(scope="session")
def pipeline_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The reproduced pipeline (``_build_pipeline``), built once per test run, shared by the pytest-xdist
    workers (the first to ask builds it under a file lock; a failed build fails the others at once) and
    never changed: each end-to-end module works on its own copy (``copy_pipeline``)."""
    from filelock import FileLock  # a test extra; only the end-to-end tests need it

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder
    folder, failed = shared / "pipeline", shared / "pipeline.failed"
    with FileLock(str(shared / "pipeline.lock")):
        if failed.is_file():
            pytest.fail(f"the shared pipeline build failed in another worker:\n{failed.read_text()}")
        if not (folder / "built").is_file():
            try:
                _build_pipeline(folder)
            except BaseException as err:
                failed.write_text(f"{type(err).__name__}: {err}")
                raise
            (folder / "built").touch()
    return folder / "repo", isolated_env(folder / "home")


def copy_pipeline(build: tuple[Path, dict[str, str]], dest: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the reproduced repository at ``dest`` (workspace, git, DVC cache; file times kept), with the
    build's environment."""
    repo, env = build
    shutil.copytree(repo, dest, symlinks=True)
    return dest, env


# Collection order (pytest_collection_modifyitems). The rerun module comes first: its worker builds the
# pipeline (about 410 s in CI) and reruns it. The other worker works through the other modules in name order
# and meets the experiment module (about 135 s) after EXPERIMENT_AFTER: about 480 s of its work in CI, so the
# build is done and the experiment runs beside the reruns instead of alone at the end. The publishing module
# comes last, to whichever worker is free.
E2E_FIRST, E2E_EXPERIMENT, E2E_LAST = (
    "tests/test_e2e_pipeline.py",
    "tests/test_e2e_experiment.py",
    "tests/test_e2e_models.py",
)
EXPERIMENT_AFTER = "tests/test_sample.py"


def _collection_rank(module: str) -> int:
    if module == E2E_FIRST:
        return 0
    if module == E2E_EXPERIMENT:
        return 2
    if module == E2E_LAST:
        return 4
    return 1 if module <= EXPERIMENT_AFTER else 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end modules placed for pytest-xdist (`--dist loadscope --no-loadscope-reorder`,
    pyproject.toml), which hands whole modules to the workers in collection order: see ``_collection_rank``.
    Each end-to-end module works on its own copy of the one reproduced repository (``pipeline_build``)."""
    items.sort(key=lambda item: _collection_rank(item.nodeid.split("::")[0]))


# ---- the verdict service (test_serve_api.py, test_serve_hardening.py) ----------------------------------------

LOCAL = "http://127.0.0.1"  # a Host the service answers to (serve.allowed_hosts), as a browser on this machine sends


def serve_config(tmp_path: Path, **overrides: object) -> Any:
    """The tiny params' ServeConfig over a store in ``tmp_path``, with ``overrides``."""
    from deepfake.apps.serve.settings import ServeConfig

    params = as_params(tiny_params(tmp_path / "raw"))
    return ServeConfig.from_params(params, **{"data": tmp_path / "serve", "models": tmp_path / "models", **overrides})


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", face_frames("grace_hopper.jpg", frames=8))


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """A store-only service (no worker processes, no models): uploads queue and stay queued. ``make(**overrides)``
    gives a client; ``raise_server_exceptions=False`` lets a test see the 500 a client would."""
    from fastapi.testclient import TestClient

    from deepfake.apps.serve.app import create_app

    clients: list[TestClient] = []

    def make(raise_server_exceptions: bool = True, **overrides: object) -> TestClient:
        app = create_app(serve_config(tmp_path, **overrides), start_workers=False)
        client = TestClient(app, base_url=LOCAL, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
