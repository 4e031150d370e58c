"""ruff and mypy are part of the test suite, so CI's single test command enforces them."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run([ruff, "check", "src", "stages", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    """mypy with pyproject.toml's [tool.mypy] settings; its incremental cache is the repository's .mypy_cache."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True)


def test_mypy_is_clean() -> None:
    result = _mypy()  # files = src/deepfake
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_flags_a_wrong_params_key(tmp_path: Path) -> None:
    snippet = tmp_path / "wrong_keys.py"
    snippet.write_text(
        "from deepfake.core.params import Params, TrainParams\n\n\n"
        "def epochs(params: Params) -> int:\n"
        "    return params.trian.epochs\n\n\n"
        "def section() -> TrainParams:\n"
        "    return TrainParams(epoch=3)\n"
    )
    result = _mypy(str(snippet))
    assert result.returncode == 1, result.stdout + result.stderr
    # by file name: mypy's incremental cache may report the path a same-named snippet had in an earlier run
    assert f'{snippet.name}:5: error: "Params" has no attribute "trian"' in result.stdout, result.stdout
    wrong_keyword = f'{snippet.name}:9: error: Unexpected keyword argument "epoch" for "TrainParams"'
    assert wrong_keyword in result.stdout, result.stdout
