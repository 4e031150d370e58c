"""The model zoo offline: a loopback server in each publisher's file layout, the fetch and convert stages,
the checkpoint layouts (efficientnet_pytorch's names mapped onto timm's, checked by their outputs)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from deepfake.core.errors import CheckpointError, InputError
from deepfake.core.params import ZOO_LAYOUTS, ZooEntryParams, load_params, validate_params
from deepfake.modeling.card import package_version, read_card
from deepfake.modeling.models import create_model
from deepfake.modeling.store import ModelStore
from deepfake.stages import zoo_convert, zoo_fetch
from deepfake.zoo import dfdc1st, icpr2020
from deepfake.zoo.download import ChecksumMismatch
from deepfake.zoo.layouts import LAYOUTS
from deepfake.zoo.record import read_record

ROOT = Path(__file__).resolve().parents[1]
SMALL_DFDC1ST = "test_efficientnet"  # the winner's layout around timm's tiny EfficientNet (0.36 M weights): fast


# ---- publisher files ---------------------------------------------------------------------------


class _Icpr2020Net(nn.Module):
    """The ICPR 2020 EfficientNetGen module tree (efficientnet_pytorch without _fc, then classifier)."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.efficientnet = EfficientNet.from_name(variant)
        self.classifier = nn.Linear(self.efficientnet._conv_head.out_channels, 1)
        del self.efficientnet._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.efficientnet._avg_pooling(self.efficientnet.extract_features(x)).flatten(start_dim=1)
        return self.classifier(self.efficientnet._dropout(features))


def icpr2020_net(seed: int) -> _Icpr2020Net:
    """Random weights with batch-norm statistics measured on random images, so activations stay alive through
    every block and a wrong mapping shows in the outputs."""
    torch.manual_seed(seed)
    net = _Icpr2020Net("efficientnet-b0")
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(4, 3, 64, 64))
    return net.eval()


def icpr2020_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    torch.save(icpr2020_net(seed).state_dict(), buffer)
    return buffer.getvalue()


def dfdc1st_bytes(tmp: Path, seed: int) -> bytes:
    path = tmp / f"dfdc1st-{seed}"
    dfdc1st.write_checkpoint(path, SMALL_DFDC1ST, seed)
    return path.read_bytes()


class _Marker:
    """A pickle payload: unpickling it would create a file (it must never run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.path,))


# ---- a loopback server ---------------------------------------------------------------------------


class _Server:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[str] = []  # GET paths
        self.heads: list[str] = []  # HEAD paths
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = self._headers()
                if body is not None:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # DVC asks for the size and ETag before it fetches
                outer.heads.append(self.path)
                self._headers()

            def _headers(self) -> bytes | None:
                if self.path in outer.redirects:
                    self.send_response(302)
                    self.send_header("Location", outer.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')  # as release asset stores send
                self.end_headers()
                return body

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    served = _Server()
    yield served
    served.close()


def _entry(layout: str, files: list[dict], image_size: int = 64, pipeline: str = "project") -> ZooEntryParams:
    encoder = SMALL_DFDC1ST if layout == "dfdc1st" else "tf_efficientnet_b0"
    return ZooEntryParams.model_validate(
        {
            "title": f"a small {layout} test entry",
            "source": "http://127.0.0.1/test",
            "license": "MIT",
            "layout": layout,
            "model": "classifier",
            "model_kwargs": {"encoder": encoder, "dropout": 0.0, "input_filter": "none"},
            "image_size": image_size,
            "margin": 0.3333,
            "pipeline": pipeline,
            "trained_on": "nothing: random weights",
            "evaluation": [{"metric": "log loss", "testset": "a benchmark", "value": 0.5, "source": "http://x/y"}],
            "files": files,
        }
    )


def _fetch(tmp: Path, entry: ZooEntryParams, name: str = "entry") -> tuple[zoo_fetch.Config, zoo_fetch.Paths]:
    config = zoo_fetch.Config(name, entry, timeout_s=5.0, retries=1, progress=False)
    paths = zoo_fetch.Paths(tmp / "download", tmp / "checksums.json", tmp / "fetch.json")
    return config, paths


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the layouts ---------------------------------------------------------------------------------


def test_the_layout_registry_matches_the_names_params_accept() -> None:
    assert set(LAYOUTS) == set(ZOO_LAYOUTS)


def test_icpr2020_weights_map_onto_timm_and_give_the_publishers_outputs(tmp_path: Path) -> None:
    net = icpr2020_net(3)
    path = tmp_path / "icpr.pth"
    torch.save(net.state_dict(), path)
    model = create_model("classifier", encoder="tf_efficientnet_b0", dropout=0.0, input_filter="none").eval()
    state, meta = icpr2020.read_checkpoint(path, model.state_dict())
    model.load_state_dict(state, strict=True)
    images = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs, ours = net(images).flatten(), model(images)["logit"].flatten()
    assert meta == {}
    assert theirs.std() > 1e-3  # the check means something: different inputs, different logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)  # float32 noise of two conv paths


def test_icpr2020_reader_refuses_another_encoder_size(tmp_path: Path) -> None:
    path = tmp_path / "icpr.pth"
    torch.save(icpr2020_net(1).state_dict(), path)
    target = create_model("classifier", encoder="tf_efficientnet_b1", dropout=0.0, input_filter="none").state_dict()
    with pytest.raises(CheckpointError, match=r"encoder tensors|does not line up"):
        icpr2020.read_checkpoint(path, target)


@pytest.mark.parametrize("layout", ZOO_LAYOUTS)
def test_a_pickle_payload_is_refused_and_never_runs(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"module.fc.weight": torch.zeros(1)}, "epoch": 1, "bce_best": _Marker(marker)}
    torch.save(payload if layout == "dfdc1st" else {"x": _Marker(marker)}, path)
    target = create_model("classifier", encoder="tf_efficientnet_b0", dropout=0.0, input_filter="none").state_dict()
    with pytest.raises(CheckpointError, match="refused"):
        LAYOUTS[layout](path, target)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the same file under weights_only=False would run it: not done
        torch.load(path, weights_only=True)


# ---- fetch -------------------------------------------------------------------------------------


def test_fetch_follows_a_redirect_records_a_first_hash_and_refuses_changed_bytes(
    tmp_path: Path, server: _Server
) -> None:
    first = dfdc1st_bytes(tmp_path, 1)
    server.files["/assets/signed-1"] = first
    server.redirects["/release/final_1"] = server.url("/assets/signed-1")
    entry = _entry("dfdc1st", [{"name": "final_1", "url": server.url("/release/final_1"), "sha256": None}])
    config, paths = _fetch(tmp_path, entry)

    report = zoo_fetch.run(config, paths)

    assert (paths.out / "final_1").read_bytes() == first
    assert read_record(paths.record) == {"final_1": {"url": server.url("/release/final_1"), "sha256": _sha(first)}}
    assert report["files"]["final_1"]["verified_against"] == "recorded now"

    # a rerun with the file in place checks it against the record and downloads nothing
    server.requests.clear()
    assert zoo_fetch.run(config, paths)["files"]["final_1"]["verified_against"] == "record"
    assert server.requests == []

    # the publisher's file changes: a fresh download is refused in one line naming the URL and both hashes
    (paths.out / "final_1").unlink()
    changed = dfdc1st_bytes(tmp_path, 2)
    server.files["/assets/signed-1"] = changed
    with pytest.raises(ChecksumMismatch) as refused:
        zoo_fetch.run(config, paths)
    message = str(refused.value)
    assert "\n" not in message and server.url("/release/final_1") in message
    assert _sha(first) in message and _sha(changed) in message
    assert not (paths.out / "final_1").exists()
    assert read_record(paths.record)["final_1"]["sha256"] == _sha(first)  # the record is never rewritten


def test_fetch_keeps_a_good_file_when_the_publisher_changes_it(tmp_path: Path, server: _Server) -> None:
    good = icpr2020_bytes(1)
    server.files["/w.pth"] = good
    entry = _entry("icpr2020", [{"name": "w", "url": server.url("/w.pth"), "sha256": _sha(good)}])
    config, paths = _fetch(tmp_path, entry)
    zoo_fetch.run(config, paths)
    server.files["/w.pth"] = icpr2020_bytes(2)
    zoo_fetch.run(config, paths)  # in place and verified: not fetched, not replaced
    assert (paths.out / "w").read_bytes() == good
    assert read_record(paths.record)["w"]["sha256"] == _sha(good)


def test_params_and_record_that_disagree_stop_the_fetch(tmp_path: Path, server: _Server) -> None:
    data = icpr2020_bytes(1)
    server.files["/w.pth"] = data
    entry = _entry("icpr2020", [{"name": "w", "url": server.url("/w.pth"), "sha256": _sha(data)}])
    config, paths = _fetch(tmp_path, entry)
    paths.record.write_text(
        json.dumps({"format": 1, "entry": "entry", "files": {"w": {"url": "x", "sha256": "0" * 64}}})
    )
    with pytest.raises(InputError, match="params give sha256"):
        zoo_fetch.run(config, paths)


def _stage_params(tmp: Path, url: str) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["zoo"]["entries"]["icpr2020_b4_dfdc"]["files"][0]["url"] = url
    params["zoo"]["timeout_s"] = 2
    params["zoo"]["retries"] = 0
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_offline_fetch_is_one_line_naming_the_url(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/w.pth"
    params = _stage_params(tmp_path, url)
    run = subprocess.run(
        [
            *(sys.executable, "-P", "stages/zoo_fetch.py", "--params", str(params), "--entry", "icpr2020_b4_dfdc"),
            *(
                "--out",
                str(tmp_path / "dl"),
                "--record",
                str(tmp_path / "r.json"),
                "--report",
                str(tmp_path / "f.json"),
            ),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and url in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "r.json").exists()


# ---- dvc pull: import stages fetch from the publisher; the fetch stage takes what they fetched ----------


def test_a_pulled_file_is_taken_once_verified_and_refused_when_it_differs(tmp_path: Path, server: _Server) -> None:
    good = dfdc1st_bytes(tmp_path, 1)
    server.files["/release/final_1"] = good
    entry = _entry("dfdc1st", [{"name": "final_1", "url": server.url("/release/final_1"), "sha256": _sha(good)}])
    config, paths = _fetch(tmp_path, entry)
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    paths = replace(paths, pulled=pulled)

    # bytes that are not the publication: refused in one line with the URL and both hashes, nothing placed
    (pulled / "final_1").write_bytes(b"not the publisher's file")
    with pytest.raises(ChecksumMismatch) as refused:
        zoo_fetch.run(config, paths)
    message = str(refused.value)
    assert "\n" not in message and server.url("/release/final_1") in message
    assert _sha(good) in message and _sha(b"not the publisher's file") in message
    assert not (paths.out / "final_1").exists()

    # the right bytes: taken without a request
    (pulled / "final_1").write_bytes(good)
    report = zoo_fetch.run(config, paths)
    assert server.requests == []
    assert (paths.out / "final_1").read_bytes() == good
    assert report["files"]["final_1"]["source"] == "dvc pull"


@pytest.mark.slow
def test_dvc_pull_fetches_the_zoo_from_the_publisher_through_a_redirect(tmp_path: Path, server: _Server) -> None:
    from deepfake.zoo.imports import ImportSpec, write_import_stages
    from tests.conftest import isolated_env, run

    body = dfdc1st_bytes(tmp_path, 2)
    server.files["/signed/final_2"] = body
    server.redirects["/release/final_2"] = server.url("/signed/final_2")  # as a GitHub release link does
    url = server.url("/release/final_2")
    env = isolated_env(tmp_path / "home")
    origin = tmp_path / "origin"
    origin.mkdir()
    run(["git", "init", "-q"], origin, env)
    run(["dvc", "init", "-q"], origin, env)
    out = Path("models/zoo/entry/pulled/final_2")
    written = write_import_stages(origin, [ImportSpec("entry", "final_2", url, out)])
    assert written == [out.with_name("final_2.dvc")]
    assert not (origin / out).exists()  # the stage records the ETag and size; nothing is downloaded
    run(["git", "add", "-A"], origin, env)
    run(["git", "commit", "-qm", "zoo imports"], origin, env)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    server.requests.clear()
    run(["dvc", "pull"], clone, env)
    assert (clone / out).read_bytes() == body
    assert "/signed/final_2" in server.requests

    # the fetch stage then verifies it and downloads nothing
    entry = _entry("dfdc1st", [{"name": "final_2", "url": url, "sha256": None}])
    config, paths = _fetch(tmp_path, entry)
    server.requests.clear()
    report = zoo_fetch.run(config, replace(paths, pulled=clone / out.parent))
    assert server.requests == []
    assert (paths.out / "final_2").read_bytes() == body
    assert read_record(paths.record)["final_2"]["sha256"] == _sha(body)
    assert report["files"]["final_2"]["source"] == "dvc pull"


def test_writing_import_stages_offline_is_one_line_naming_the_url(tmp_path: Path) -> None:
    from deepfake.zoo.imports import ImportSpec, write_import_stages
    from tests.conftest import isolated_env, run

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/final_3"
    run(["git", "init", "-q"], tmp_path, isolated_env(tmp_path / "home"))
    run(["dvc", "init", "-q"], tmp_path, isolated_env(tmp_path / "home"))
    with pytest.raises(InputError) as refused:
        write_import_stages(tmp_path, [ImportSpec("entry", "final_3", url, Path("pulled/final_3"))])
    assert url in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "pulled/final_3.dvc").exists()


# ---- convert -------------------------------------------------------------------------------------


def _converted(tmp: Path, server: _Server, layout: str, count: int, pipeline: str = "project") -> Path:
    files = []
    for seed in range(1, count + 1):
        data = dfdc1st_bytes(tmp, seed) if layout == "dfdc1st" else icpr2020_bytes(seed)
        server.files[f"/f{seed}"] = data
        files.append({"name": f"file_{seed}", "url": server.url(f"/f{seed}"), "sha256": None})
    entry = _entry(layout, files, pipeline=pipeline)
    fetch_config, fetch_paths = _fetch(tmp, entry)
    zoo_fetch.run(fetch_config, fetch_paths)
    config = zoo_convert.Config(
        package="pkg",
        entry_name="entry",
        entry=entry,
        files=tuple(entry.files),
        opset=18,
        tolerance=1e-2,  # random weights give logits in the tens: float32 noise is larger than on trained ones
        settings=zoo_convert.package_settings(entry, count),
    )
    out = tmp / "models" / "zoo" / "pkg"
    zoo_convert.run(config, zoo_convert.Paths(fetch_paths.out, fetch_paths.record, out, tmp / "convert.json"))
    return out


def test_convert_writes_a_model_package_the_backends_take(tmp_path: Path, server: _Server) -> None:
    """Two files of the winner's layout (the ICPR layout's reader is checked against its publisher's module
    above; the stage around it is the same)."""
    count = 2
    out = _converted(tmp_path, server, "dfdc1st", count)
    store = ModelStore(out)
    manifest = store.read_manifest("onnx")
    assert [m["name"] for m in manifest["members"]] == ["classifier", "classifier-2"][:count]
    assert manifest["pipeline"] == "project" and manifest["zoo"]["license"] == "MIT"
    assert manifest["settings"]["ensemble"] == {"seeds": list(range(2, count + 1))}
    assert store.face_input().image_size == 64
    assert "License: MIT" in (out / zoo_convert.LICENSE_FILE).read_text()
    report = json.loads((tmp_path / "convert.json").read_text())
    assert report["max_abs_diff"] <= 1e-2
    card = read_card(store.folder("onnx"))
    assert (card.name, card.license, card.demonstration) == ("pkg", "MIT", False)
    assert card.version == package_version(store.folder("onnx")) and report["card"] == card.reference()
    assert [(f.metric, f.value, f.source) for f in card.evaluation] == [("log loss", 0.5, "http://x/y")]
    assert "classifier <- file_1" in card.description
    assert [m["file"] for m in report["members"]] == [f"file_{i}" for i in range(1, count + 1)]

    from deepfake.backends.onnx_backend import OnnxBackend

    params = load_params(ROOT / "params.yaml")
    backend = OnnxBackend.create(store, params, None)
    images = np.zeros((2, 3, 64, 64), np.float32)
    logits = backend.logits(images)
    assert set(logits) == {m["name"] for m in manifest["members"]}
    assert all(v.shape == (2,) and np.isfinite(v).all() for v in logits.values())

    from deepfake.backends.torch_backend import TorchBackend

    on_torch = TorchBackend.create(store, params, None)  # the repository's params name other members: not used
    assert on_torch.members == list(logits) and on_torch.face_input == store.face_input()
    for name, values in on_torch.logits(images).items():
        np.testing.assert_allclose(values, logits[name], atol=1e-2)


def test_convert_refuses_a_file_changed_after_the_fetch(tmp_path: Path, server: _Server) -> None:
    server.files["/f1"] = icpr2020_bytes(1)
    entry = _entry("icpr2020", [{"name": "file_1", "url": server.url("/f1"), "sha256": None}])
    fetch_config, fetch_paths = _fetch(tmp_path, entry)
    zoo_fetch.run(fetch_config, fetch_paths)
    (fetch_paths.out / "file_1").write_bytes(icpr2020_bytes(9))  # swapped after the fetch recorded its hash
    out = tmp_path / "models" / "zoo" / "pkg"
    out.mkdir(parents=True)
    (out / "previous").write_text("the package already here")
    config = zoo_convert.Config("pkg", "entry", entry, tuple(entry.files), 18, 1e-2, {})
    with pytest.raises(ChecksumMismatch, match="refused"):
        zoo_convert.run(config, zoo_convert.Paths(fetch_paths.out, fetch_paths.record, out, tmp_path / "c.json"))
    assert [p.name for p in out.iterdir()] == ["previous"]  # the previous package stays whole


def test_params_refuse_a_package_naming_an_unknown_file() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["zoo"]["packages"]["dfdc1st-b7"]["files"] = ["no_such_file"]
    from deepfake.core.errors import ParamsError

    with pytest.raises(ParamsError, match="no_such_file"):
        validate_params(raw)


# ---- the DFDC winner's inference, end to end ----------------------------------------------------------

REFERENCE = ROOT / "docs" / "zoo" / "dfdc1st-reference-b0.json"
PARITY_VIDEOS = ROOT / "tests" / "data" / "dfdc1st"


@pytest.mark.slow
def test_fetch_convert_predict_gives_the_winners_probabilities(tmp_path: Path, server: _Server) -> None:
    """The reference's checkpoint (a seeded small encoder in the winner's file layout) served over HTTP, fetched,
    converted with pipeline dfdc1st, and `deepfake predict` (ONNX backend, from a folder without params.yaml,
    so the package's own settings apply) gives every committed clip the probability the winner's own
    predict_folder.py gave it (docs/zoo/dfdc1st-reference-b0.json), within 1e-4."""
    reference = json.loads(REFERENCE.read_text())
    weights = tmp_path / "weights"
    dfdc1st.write_checkpoint(weights, reference["encoder"], reference["seed"])
    server.files["/release/final_1"] = weights.read_bytes()
    params = load_params(ROOT / "params.yaml")
    entry = _entry("dfdc1st", [{"name": "final_1", "url": server.url("/release/final_1")}], 380, "dfdc1st")
    entry = entry.model_copy(update={"model_kwargs": {**entry.model_kwargs, "encoder": reference["encoder"]}})
    fetch_config, fetch_paths = _fetch(tmp_path, entry)
    zoo_fetch.run(fetch_config, fetch_paths)
    config = zoo_convert.Config(
        package="dfdc1st-small",
        entry_name="entry",
        entry=entry,
        files=tuple(entry.files),
        opset=params.export.opset,
        tolerance=params.export.tolerance,
        settings=zoo_convert.package_settings(entry, 1),
        pipeline_settings=params.zoo.dfdc1st.model_dump(mode="json"),
    )
    package = tmp_path / "models" / "zoo" / "dfdc1st-small"
    zoo_convert.run(config, zoo_convert.Paths(fetch_paths.out, fetch_paths.record, package, tmp_path / "c.json"))

    videos = sorted(PARITY_VIDEOS.glob("*.mp4"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = subprocess.run(
        [
            *(sys.executable, "-m", "deepfake.cli", "predict", "--models", str(package)),
            *("--json", "p.json", "--csv", "p.csv", *map(str, videos)),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr
    records = {Path(r["path"]).name: r for r in json.loads((work / "p.json").read_text())["videos"]}
    gaps = {}
    for video in videos:
        record = records[video.name]
        assert record["status"] == "ok" and record["pipeline"] == "dfdc1st", record
        assert record["model"] == {
            "name": "dfdc1st-small",
            "version": package_version(package / "onnx"),
            "demonstration": False,
        }
        gaps[video.name] = abs(record["probability"] - reference["videos"][video.name]["probability"])
    assert max(gaps.values()) <= 1e-4, gaps

    # bench-predict times the package's own pipeline, not the project's (the timing itself is not rerun here)
    from deepfake.apps import bench

    timed: list = []

    def time_stream(name: str, stream: object, listed: list[Path]) -> dict:
        timed.append((name, stream, listed))
        return {"pipeline": "dfdc1st"}

    original, bench._time_package_stream = bench._time_package_stream, time_stream
    try:
        assert bench.run_predict_bench(params, videos[:1], package, ["onnx"])["onnx"] == {"pipeline": "dfdc1st"}
    finally:
        bench._time_package_stream = original
    assert [(name, listed) for name, _, listed in timed] == [("onnx", videos[:1])] and callable(timed[0][1])


def test_a_package_stream_is_timed_after_a_warm_up_video(capsys: pytest.CaptureFixture[str]) -> None:
    from deepfake.apps.bench import _time_package_stream

    seen: list[list[str]] = []

    def stream(videos: list[Path], progress: object) -> Iterator[dict]:
        seen.append([v.name for v in videos])
        for video in videos:
            yield {"path": str(video), "status": "ok", "pipeline": "dfdc1st"}

    videos = [Path("a.mp4"), Path("b.mp4")]
    timed = _time_package_stream("onnx", stream, videos)
    assert seen == [["a.mp4"], ["a.mp4", "b.mp4"]]  # the warm-up video, then the timed run
    assert timed["pipeline"] == "dfdc1st" and timed["statuses"] == ["ok"] and timed["s_per_video"] > 0
    assert "pipeline dfdc1st" in capsys.readouterr().out


# ---- a package in the evaluation and the matrix -----------------------------------------------------------


def test_a_zoo_package_is_evaluated_like_the_trained_models_and_joins_the_matrix(
    trained: dict, tmp_path: Path, server: _Server
) -> None:
    from deepfake.stages import evaluate, matrix

    package = _converted(tmp_path, server, "dfdc1st", 1)
    params = trained["params"]
    import pandas as pd

    folds = pd.read_csv(trained["folds"], keep_default_na=False)
    holdout = set(folds.loc[folds["fold"] == params.train.holdout_fold, "part"].astype(str))
    testset = next(name for name, sets in params.evaluate.testsets.items() if holdout & set(sets))
    base = evaluate.Config.from_params(params, testset)
    config = evaluate.for_package(base, ModelStore(package))
    assert [m.name for m in config.members] == ["classifier"] and config.image_size == 64
    assert (config.package, config.holdout_methods, config.notes) == ("pkg", (), ())
    assert config.train_datasets == ("nothing: random weights",)  # the card's, not train.datasets
    other_margin = evaluate.for_package(replace(base, crop_margin=0.2), ModelStore(package))
    assert "margin 0.3333" in other_margin.notes[0] and "approximate" in other_margin.notes[0]

    def paths(models: Path, folder: Path) -> evaluate.Paths:
        metrics = folder / f"{testset}.json"
        return evaluate.Paths(trained["folds"], trained["roots"], models, metrics, folder / "plots", tmp_path / "ct")

    zoo_report = evaluate.run(config, paths(package, tmp_path / "zoo" / "pkg"))
    assert zoo_report["package"] == "pkg" and set(zoo_report["models"]) == {"classifier"}
    ours = evaluate.run(base, paths(trained["store"].root, tmp_path / "ours"))
    sets = tuple(params.evaluate.testsets[testset])
    out = tmp_path / "matrix"
    result = matrix.run(
        matrix.Config(testsets=((testset, sets),), packages=("pkg",)),
        matrix.Paths(tmp_path / "ours", out / "m.json", out / "m.md", out / "m.png", tmp_path / "zoo"),
    )
    assert result["rows"] == [*ours["rows"], "pkg/classifier"]
    cell = result["matrix"]["pkg/classifier"][testset]["video_auc"]
    assert cell == zoo_report["models"]["classifier"]["video"]["auc"]
    assert "pkg/classifier" in (out / "m.md").read_text()

    # zoo_quantize and zoo_triton: the stages the trained models go through, on the package's folder
    from deepfake.stages import quantize, triton

    quantized = quantize.run(
        quantize.Config.from_params(params),
        quantize.Paths(trained["folds"], trained["roots"], package, tmp_path / "q.json"),
    )
    assert (package / "int8" / "classifier.onnx").is_file(), quantized
    triton.run(triton.Config.from_params(params), triton.Paths(package, tmp_path / "t.json"))
    assert (package / "triton" / "classifier" / "config.pbtxt").is_file()
