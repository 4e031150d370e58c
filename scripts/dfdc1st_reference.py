"""Reference probabilities from the DFDC winner's own inference code (selimsef/dfdc_deepfake_challenge).

Writes a seeded random-weight checkpoint in the publisher's layout (``deepfake.zoo.dfdc1st.write_checkpoint``)
to a temporary folder, then runs the winner's ``predict_folder.py`` unchanged (``runpy``, as ``__main__``,
imported from ``--winner``, a clone of their repository: their files are never edited) on the CPU over
the given videos, and writes each video's probability and the provenance to ``--out`` (JSON).

Run-time shims (nothing else of theirs is changed):

- device: their code says "cuda". ``torch.nn.Module.to`` and ``torch.tensor`` map a "cuda" device to the
  CPU, and ``kernel_utils.MTCNN`` (the name their ``FaceExtractor`` builds) is facenet-pytorch's MTCNN
  with ``device="cpu"``;
- precision: ``torch.nn.Module.half`` and ``torch.Tensor.half`` return their object unchanged, so the
  models and inputs stay float32 (their GPU run was float16);
- weights: ``predict_folder.py`` builds ``DeepFakeClassifier(encoder="tf_efficientnet_b7_ns")``; the entry
  ``training.zoo.classifiers.encoder_params["tf_efficientnet_b7_ns"]`` is replaced by ``--encoder``
  (timm's current name) built with ``pretrained=False`` (their entry downloads ImageNet weights) and
  its feature count; their ``torch.load(path, map_location="cpu")`` runs under torch >= 2.6's
  ``weights_only=True`` default, inside ``torch.serialization.safe_globals(dfdc1st.ALLOWED_GLOBALS)``
  (the numpy float64 ``bce_best``);
- names gone from current libraries, set only when missing: ``numpy.int`` (= ``int``, their frame
  indices), ``albumentations.augmentations.functional.image_compression`` (imported by
  ``kernel_utils``; unused by ``predict_folder.py``) and timm's ``tf_efficientnet_b*_ns`` functions
  (imported by ``classifiers.py``; calling one raises: only the replaced entry is ever built).

The videos are linked into a temporary folder (their script lists one folder). Their script returns 0.5
for a video it fails on (its exception handler prints "Prediction error on video ..."); that message is
recorded per video as ``their_error``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import importlib
import importlib.metadata
import io
import json
import runpy
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfake.zoo import dfdc1st

WINNER_ENCODER = "tf_efficientnet_b7_ns"  # the name predict_folder.py builds
OLD_TIMM_NAMES = [f"tf_efficientnet_b{i}_ns" for i in (2, 3, 4, 5, 6, 7)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--winner", type=Path, required=True, help="a clone of selimsef/dfdc_deepfake_challenge")
    parser.add_argument("--videos", type=Path, nargs="+", required=True, help="video files or folders of .mp4")
    parser.add_argument("--encoder", default="tf_efficientnet_b7", help="timm encoder name (current timm)")
    parser.add_argument("--seed", type=int, default=1, help="write_checkpoint's seed")
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write")
    return parser.parse_args(argv)


def video_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.mp4")) if path.is_dir() else [path])
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise SystemExit("error: two videos share a file name (their script reads one folder)")
    return files


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A digest of the weights (names, shapes, bytes): the legacy file format itself is not byte-stable
    (it names storages by their memory address)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _cpu(device: Any) -> Any:
    if (isinstance(device, str) and device.startswith("cuda")) or (
        isinstance(device, torch.device) and device.type == "cuda"
    ):
        return "cpu"
    return device


def _shim_names() -> None:
    if "int" not in np.__dict__:
        np.int = int  # type: ignore[attr-defined]
    try:
        importlib.import_module("albumentations.augmentations.functional")
    except ModuleNotFoundError:
        from albumentations.augmentations.pixel import functional as pixel

        stub = types.ModuleType("albumentations.augmentations.functional")
        stub.image_compression = pixel.image_compression  # type: ignore[attr-defined]
        sys.modules[stub.__name__] = stub
    efficientnet = importlib.import_module("timm.models.efficientnet")
    for name in OLD_TIMM_NAMES:
        if not hasattr(efficientnet, name):
            setattr(efficientnet, name, partial(_unavailable, name))


def _unavailable(name: str, *args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(f"{name} is not built by the reference run (only the replaced entry is)")


@contextlib.contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    old = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


@contextlib.contextmanager
def cpu_fp32() -> Iterator[None]:
    """Their "cuda" and ``.half()`` on the CPU in float32."""
    module_to, tensor = torch.nn.Module.to, torch.tensor

    def to(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        return module_to(self, *(_cpu(a) for a in args), **{k: _cpu(v) for k, v in kwargs.items()})

    def make_tensor(*args: Any, **kwargs: Any) -> torch.Tensor:
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        return tensor(*args, **kwargs)

    def same(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self

    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(torch.nn.Module, "to", to))
        stack.enter_context(patched(torch, "tensor", make_tensor))
        stack.enter_context(patched(torch.nn.Module, "half", same))
        stack.enter_context(patched(torch.Tensor, "half", same))
        yield


def import_winner(winner: Path, encoder: str) -> None:
    """Import their modules (so predict_folder.py finds them patched) and redirect the two names."""
    import timm
    from facenet_pytorch import MTCNN

    sys.path.insert(0, str(winner))
    _shim_names()
    kernel_utils = importlib.import_module("kernel_utils")
    classifiers = importlib.import_module("training.zoo.classifiers")
    features = timm.create_model(encoder, pretrained=False).num_features
    classifiers.encoder_params[WINNER_ENCODER] = {
        "features": features,
        "init_op": partial(timm.create_model, encoder, pretrained=False, drop_path_rate=0.2),
    }
    kernel_utils.MTCNN = _cpu_mtcnn(MTCNN)


def _cpu_mtcnn(mtcnn: type) -> Callable[..., Any]:
    def build(*args: Any, **kwargs: Any) -> Any:
        kwargs["device"] = "cpu"
        return mtcnn(*args, **kwargs)

    return build


class Tee(io.TextIOBase):
    def __init__(self, stream: Any) -> None:
        self.stream, self.text = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.text.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_theirs(winner: Path, checkpoint: Path, videos: Path, output: Path) -> str:
    """predict_folder.py as __main__; returns what it printed."""
    argv = ["predict_folder.py", "--weights-dir", str(checkpoint.parent), "--models", checkpoint.name]
    argv += ["--test-dir", str(videos), "--output", str(output)]
    tee = Tee(sys.stdout)
    with (
        patched(sys, "argv", argv),
        cpu_fp32(),
        torch.serialization.safe_globals(list(dfdc1st.ALLOWED_GLOBALS)),
        contextlib.redirect_stdout(tee),
    ):
        runpy.run_path(str(winner / "predict_folder.py"), run_name="__main__")
    return tee.text.getvalue()


def their_errors(printed: str) -> dict[str, str]:
    prefix = "Prediction error on video "
    errors: dict[str, str] = {}
    for line in printed.splitlines():
        if line.startswith(prefix):
            path, _, message = line[len(prefix) :].partition(": ")
            errors[Path(path).name] = message
    return errors


def versions() -> dict[str, str]:
    names = ("torch", "timm", "facenet-pytorch", "numpy", "opencv-python-headless", "pillow", "albumentations")
    found: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    files = video_files(args.videos)
    winner = args.winner.resolve()
    commit = subprocess.run(["git", "-C", str(winner), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = folder / "weights" / f"final_{args.seed}_DeepFakeClassifier_{args.encoder}_0"
        checkpoint.parent.mkdir()
        dfdc1st.write_checkpoint(checkpoint, args.encoder, args.seed)
        weights_sha = state_sha256(dfdc1st.read_checkpoint(checkpoint)[0])
        videos = folder / "videos"
        videos.mkdir()
        for file in files:
            (videos / file.name).symlink_to(file.resolve())
        import_winner(winner, args.encoder)
        printed = run_theirs(winner, checkpoint, videos, folder / "submission.csv")
        with (folder / "submission.csv").open() as handle:
            rows = {row["filename"]: float(row["label"]) for row in csv.DictReader(handle)}
    errors = their_errors(printed)
    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "winner_repository": "https://github.com/selimsef/dfdc_deepfake_challenge",
        "winner_commit": commit.stdout.strip(),
        "encoder": args.encoder,
        "seed": args.seed,
        "weights_sha256": weights_sha,
        "device": "cpu",
        "precision": "float32",
        "versions": versions(),
        "videos": {
            file.name: {
                "path": file.as_posix(),
                "sha256": sha256(file),
                "probability": rows[file.name],
                "their_error": errors.get(file.name),
            }
            for file in files
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
