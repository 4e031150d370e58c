"""A damaged or inconsistent model package stops predict and serve before any video is read, with one line
naming the file and what is wrong (deepfake.apps.package_check)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from deepfake.apps.package_check import check_package
from deepfake.core.errors import InputError


@pytest.fixture
def package(models_root: dict, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(models_root["root"], root)
    return root


def _member(package: Path, fmt: str = "onnx") -> Path:
    manifest = json.loads((package / fmt / "manifest.json").read_text())
    return package / fmt / manifest["members"][0]["file"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _not_a_model(path: Path) -> None:
    path.write_text("an HTML error page saved in place of the model\n" * 20)


def _remove(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    ("damage", "said"),
    [(_truncate, "is not an ONNX model"), (_not_a_model, "is not an ONNX model"), (_remove, "is missing")],
)
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_damaged_member_is_one_line_naming_it(
    package: Path, damage: Callable[[Path], None], said: str, backend: str
) -> None:
    member = _member(package, "onnx" if backend == "onnx" else "int8")
    damage(member)
    with pytest.raises(InputError) as refused:
        check_package(package, backend)
    assert str(member) in str(refused.value) and said in str(refused.value) and "\n" not in str(refused.value)


def test_a_member_whose_input_size_differs_from_the_manifest(package: Path) -> None:
    manifest_path = package / "onnx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    size = manifest["input"]["image_size"]
    manifest["input"]["image_size"] = size + 32
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=rf"takes input .*x3x{size}x{size} but the manifest says 3x{size + 32}"):
        check_package(package, "onnx")


def test_a_manifest_naming_a_file_outside_the_package(package: Path) -> None:
    manifest_path = package / "onnx" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["members"][0]["file"] = "../train/classifier/best.pt"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="must be a plain file name"):
        check_package(package, "onnx")


def test_a_whole_package_passes_and_predict_stops_before_reading_a_video(
    package: Path, hostile_part: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deepfake.cli import main as cli_main

    for backend in ("onnx", "onnx-int8", "triton", "torch"):  # torch: the checkpoints, its loader's to check
        check_package(package, backend)
    member = _member(package)
    _truncate(member)
    out = tmp_path / "out"
    out.mkdir()
    status = cli_main(
        [
            "predict",
            "--models",
            str(package),
            str(hostile_part),
            "--json",
            str(out / "p.json"),
            "--csv",
            str(out / "p.csv"),
        ]
    )
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert status == 2 and len(errors) == 1 and str(member) in errors[0], errors
    assert list(out.iterdir()) == []  # no output: nothing was read or scored


def test_explain_stops_on_a_damaged_onnx_member_and_torch_on_a_damaged_checkpoint(
    package: Path, hostile_part: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from deepfake.cli import main as cli_main

    def errors_of(*args: str) -> tuple[int, list[str]]:
        caplog.clear()
        status = cli_main(list(args))
        return status, [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]

    member = _member(package)
    _not_a_model(member)
    video = str(hostile_part / "reala.mp4")
    out = tmp_path / "explained"
    status, errors = errors_of("explain", video, "--models", str(package), "--backend", "onnx", "--out", str(out))
    assert status == 2 and len(errors) == 1 and str(member) in errors[0] and "\n" not in errors[0], errors
    assert not out.exists()
    # the torch backend's checkpoints are checked by their loader, as the backend is built: before any video
    checkpoint = next((package / "train").rglob("best.pt"))
    _truncate(checkpoint)
    csv = tmp_path / "p.csv"
    status, errors = errors_of("predict", "--models", str(package), "--backend", "torch", video, "--csv", str(csv))
    assert status == 2 and len(errors) == 1 and "best.pt" in errors[0] and "\n" not in errors[0], errors
    assert not csv.exists()
