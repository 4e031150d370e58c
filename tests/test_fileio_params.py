from pathlib import Path

import pytest

from deepfake.core.fileio import atomic_dir, atomic_path, write_json_atomic
from deepfake.core.params import ParamsError, load_params


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_keeps_old_output_until_success(tmp_path: Path) -> None:
    out = tmp_path / "part"
    out.mkdir()
    (out / "a").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "b").write_text("new")
        raise RuntimeError("killed")
    assert [p.name for p in out.iterdir()] == ["a"]
    (tmp_path / ".part.partial").mkdir()  # what a SIGKILL leaves behind is cleared by the next run
    (tmp_path / ".part.partial" / "junk").write_text("x")
    with atomic_dir(out) as tmp:
        assert list(tmp.iterdir()) == []
        (tmp / "b").write_text("new")
    assert [p.name for p in out.iterdir()] == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part"]


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    import os

    write_json_atomic(tmp_path / "a.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_json_is_written_with_sorted_keys(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "a.json", {"b": 1, "a": 2})
    assert (tmp_path / "a.json").read_text() == '{\n "a": 2,\n "b": 1\n}\n'


def test_params_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(tmp_path / "list.yaml")
