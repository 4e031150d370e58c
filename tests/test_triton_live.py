"""The triton backend against a real Triton server (pytriton's tritonserver, tests/triton_live.py).

One server per module serves the exported ensemble over HTTP and gRPC; ``deepfake predict --backend
triton`` and direct batches must score as the onnx backend does, within 1e-5.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from deepfake.backends.base import create_backend
from deepfake.backends.onnx_backend import OnnxBackend
from deepfake.backends.triton_backend import TritonBackend, max_batch_size
from deepfake.cli import main as cli_main
from deepfake.core.errors import ToolchainError
from deepfake.modeling.store import INPUT_NAME, LOGIT, MASK, ModelStore
from deepfake.stages import triton
from tests.triton_live import TritonUrls, build_repository, running_triton, triton_unavailable_reason

TOLERANCE = 1e-5
VIDEOS = ("reala.mp4", "fakea.mp4")  # both have a face in every frame
UNTIMED = {"ms", "seconds", "videos_per_s", "backend"}  # differ between runs by nature


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonUrls]:
    """The models_root ensemble on tritonserver, with params' triton section (as models/triton has)."""
    reason = triton_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)  # before models_root: a machine that cannot run Triton trains nothing for it
    models_root = request.getfixturevalue("models_root")
    config = triton.Config.from_params(models_root["params"])
    with running_triton(models_root["root"], tmp_path_factory.mktemp("triton_live"), config) as urls:
        yield urls


@pytest.fixture(scope="module")
def onnx_backend(models_root: dict) -> OnnxBackend:
    return OnnxBackend(models_root["store"], models_root["params"].predict.inference_threads)


def predict(models_root: dict, videos: Path, folder: Path, *backend: str) -> tuple[dict, dict[str, str]]:
    """``deepfake predict`` on ``videos``: the JSON document and the CSV's label per file."""
    folder.mkdir()
    params_file = folder / "params.yaml"
    params_file.write_text(yaml.safe_dump(models_root["raw"]))
    out_csv, out_json = folder / "p.csv", folder / "p.json"
    args = ["--params", str(params_file), "predict", str(videos), "--models", str(models_root["root"]), *backend]
    assert cli_main([*args, "--csv", str(out_csv), "--json", str(out_json), "-q"]) == 0
    with out_csv.open(newline="") as f:
        labels = {row["filename"]: row["label"] for row in csv.DictReader(f)}
    return json.loads(out_json.read_text()), labels


def assert_close(got: Any, want: Any, where: str = "") -> None:
    """Equal structure and text; numbers within TOLERANCE (timings left out)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            if key not in UNTIMED:
                assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float) or isinstance(got, float):
        assert math.isclose(got, want, rel_tol=0, abs_tol=TOLERANCE + 1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, where


def test_predict_over_http_and_grpc_scores_as_the_onnx_backend(
    live: TritonUrls, models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in VIDEOS:
        shutil.copy(hostile_part / name, videos / name)
    want, want_labels = predict(models_root, videos, tmp_path / "onnx", "--backend", "onnx")
    assert want["summary"]["scored"] == len(VIDEOS)
    faces = [f for v in want["videos"] for frame in v["frames"] for f in frame["faces"]]
    assert faces and all(set(f["scores"]) == {"classifier", "uynet"} for f in faces)
    for url in (live.http, live.grpc):
        got, labels = predict(
            models_root, videos, tmp_path / url.replace(":", "_").replace("/", ""), "--url", url, "--backend", "triton"
        )
        assert got["summary"]["backend"] == "triton"
        assert_close(got, want, url)  # every probability, track and per-face member score
        assert set(labels) == set(want_labels) == set(VIDEOS)
        for name in VIDEOS:
            assert abs(float(labels[name]) - float(want_labels[name])) <= TOLERANCE + 1e-12


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_batches_of_every_size_score_as_the_onnx_backend(
    live: TritonUrls, models_root: dict, onnx_backend: OnnxBackend, protocol: str
) -> None:
    params = models_root["params"]
    backend = create_backend("triton", models_root["store"], params, getattr(live, protocol))
    assert backend.members == onnx_backend.members == ["classifier", "uynet"]
    largest, preferred = params.triton.max_batch_size, params.triton.preferred_batch_sizes
    assert backend.max_batch == dict.fromkeys(backend.members, largest)  # the server's, as configured
    size = onnx_backend.face_input.image_size
    rng = np.random.default_rng(3)
    # 1; past each preferred size; past max_batch_size, which the backend splits into chunks
    for n in sorted({1, *(p + 1 for p in preferred), largest + 3}):
        images = rng.standard_normal((n, 3, size, size)).astype(np.float32)
        got, want = backend.logits(images), onnx_backend.logits(images)
        assert set(got) == set(want)
        for member in want:
            assert got[member].shape == want[member].shape == (n,)
            np.testing.assert_allclose(got[member], want[member], rtol=0, atol=TOLERANCE, err_msg=f"{member} n={n}")


def test_concurrent_requests_batched_together_return_each_its_own_outputs(
    live: TritonUrls, onnx_backend: OnnxBackend
) -> None:
    """The dynamic batcher hands the model several requests at once; the mask output is served too."""
    import tritonclient.http as client

    size = onnx_backend.face_input.image_size
    rng = np.random.default_rng(4)
    batches = [rng.standard_normal((n, 3, size, size)).astype(np.float32) for n in (1, 2, 3, 5, 2, 1, 4, 3)]
    with client.InferenceServerClient(url=live.http, concurrency=len(batches)) as triton_client:
        pending = []
        for images in batches:
            request = client.InferInput(INPUT_NAME, list(images.shape), "FP32")
            request.set_data_from_numpy(images)
            outputs = [client.InferRequestedOutput(LOGIT), client.InferRequestedOutput(MASK)]
            pending.append(triton_client.async_infer("uynet", [request], outputs=outputs))
        results = [p.get_result() for p in pending]
    session = onnx_backend.sessions["uynet"]
    for images, result in zip(batches, results, strict=True):
        logit, mask = session.run([LOGIT, MASK], {INPUT_NAME: images})
        np.testing.assert_allclose(result.as_numpy(LOGIT), logit, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(result.as_numpy(MASK), mask, rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def onnx_predict_record(models_root: dict, hostile_part: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The onnx backend's predict document for reala.mp4, as the service would run it (both protocols compare
    with this one run)."""
    raw = copy.deepcopy(models_root["raw"])
    raw["predict"]["workers"] = 1  # a worker process, as the service runs it: one torch thread, its own detector
    expected, _ = predict(
        {**models_root, "raw": raw}, hostile_part / "reala.mp4", tmp_path_factory.mktemp("onnx") / "p"
    )
    return expected


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_the_service_on_triton_scores_as_on_onnx(
    protocol: str, live: TritonUrls, models_root: dict, hostile_part: Path, tmp_path: Path, onnx_predict_record: dict
) -> None:
    """``deepfake serve --backend triton``: the served record equals the onnx backend's predict record."""
    import time

    from fastapi.testclient import TestClient

    from deepfake.apps.serve.app import create_app
    from deepfake.apps.serve.settings import ServeConfig

    expected = onnx_predict_record
    config = ServeConfig.from_params(
        models_root["params"],
        models=models_root["root"],
        data=tmp_path / "serve",
        backend="triton",
        triton_url=getattr(live, protocol),
        explain=False,
    )
    with (
        TestClient(create_app(config), base_url="http://127.0.0.1") as client,
        (hostile_part / "reala.mp4").open("rb") as video,
    ):
        url = client.post("/v1/analyses", files={"video": ("reala.mp4", video, "video/mp4")}).json()["url"]
        deadline = time.monotonic() + 120
        while (job := client.get(url).json())["status"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
    assert job["status"] == "done", job
    want = {k: v for k, v in expected["videos"][0].items() if k not in ("path", "sampling")}
    got = {k: v for k, v in job["record"].items() if k not in ("path", "sampling")}
    assert_close(got, want, "record")


def test_a_model_the_server_lacks_fails_naming_it(live: TritonUrls, models_root: dict, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    store.folder("onnx").mkdir(parents=True)
    manifest = json.loads((models_root["store"].folder("onnx") / "manifest.json").read_text())
    ghost = copy.deepcopy(manifest["members"][0])
    ghost.update(name="ghost", file="ghost.onnx")
    manifest["members"].append(ghost)
    (store.folder("onnx") / "manifest.json").write_text(json.dumps(manifest))
    for url in (live.http, live.grpc):
        with pytest.raises(ToolchainError, match=r"no ready model 'ghost'"):
            create_backend("triton", store, models_root["params"], url)
        backend = create_backend("triton", models_root["store"], models_root["params"], url)
        backend.members = ["ghost"]  # the server lost it after the backend was made
        backend.max_batch["ghost"] = 0
        size = backend.face_input.image_size
        with pytest.raises(ToolchainError, match=r"failed on model 'ghost'.*ghost"):
            backend.logits(np.zeros((1, 3, size, size), np.float32))


# No server: the served repository's configs, the chunking and the config reading


def test_the_served_configs_are_the_stages_with_the_python_backend(models_root: dict, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_root["store"].folder("onnx"), models / "onnx")
    config = triton.Config(max_batch_size=12, preferred_batch_sizes=(3, 6), max_queue_delay_us=250)
    staged = triton.build_repository(ModelStore(models), config)  # the stage's models/triton
    assert build_repository(models, tmp_path / "from_config", config) == staged == ["classifier", "uynet"]
    assert build_repository(models, tmp_path / "from_stage") == staged  # no config: the stage's files
    for repo in (tmp_path / "from_config", tmp_path / "from_stage"):
        for name in staged:
            served = triton.parse_config(repo / name / triton.CONFIG_FILE)
            want = triton.parse_config(models / "triton" / name / triton.CONFIG_FILE)
            assert (served.backend, served.platform, want.platform) == ("python", "", "onnxruntime_onnx")
            want.ClearField("platform")
            want.backend = "python"
            assert served == want  # names, inputs, outputs, dims, max_batch_size, dynamic batching
            assert (repo / name / "1" / "model.onnx").read_bytes() == (models / "onnx" / f"{name}.onnx").read_bytes()
            assert "TritonPythonModel" in (repo / name / "1" / "model.py").read_text()


class _FakeInput:
    def __init__(self, name: str, shape: list[int], datatype: str) -> None:
        self.shape = shape

    def set_data_from_numpy(self, array: np.ndarray) -> None:
        assert list(array.shape) == self.shape
        self.array = array


class _FakeClient:
    def __init__(self, limit: int) -> None:
        self.limit, self.sizes = limit, []

    def infer(self, model: str, inputs: list[_FakeInput], outputs: list[str]) -> SimpleNamespace:
        images = inputs[0].array
        if len(images) > self.limit:
            raise _FakeError(f"inference request batch-size must be <= {self.limit} for '{model}'")
        self.sizes.append(len(images))
        logits = images.reshape(len(images), -1)[:, :1].copy()
        return SimpleNamespace(as_numpy=lambda name: logits)


class _FakeError(Exception):
    pass


def _fake_backend(limit: int, known: int) -> tuple[TritonBackend, _FakeClient]:
    backend = TritonBackend.__new__(TritonBackend)
    client = _FakeClient(limit)
    backend.module = SimpleNamespace(
        InferInput=_FakeInput, InferRequestedOutput=lambda name: name, InferenceServerException=_FakeError
    )
    backend.client, backend.url, backend.members = client, "fake:1", ["m"]
    backend.max_batch = {"m": known}
    return backend, client


def test_a_batch_past_max_batch_size_goes_in_chunks_in_order() -> None:
    backend, client = _fake_backend(limit=4, known=4)
    images = np.arange(11 * 3 * 2 * 2, dtype=np.float32).reshape(11, 3, 2, 2)
    out = backend.logits(images)
    assert client.sizes == [4, 4, 3]
    np.testing.assert_array_equal(out["m"], images[:, 0, 0, 0])
    assert backend.logits(images[:0])["m"].shape == (0,)
    unlimited, client = _fake_backend(limit=100, known=0)  # no max_batch_size known: one request
    unlimited.logits(images)
    assert client.sizes == [11]
    refused, _ = _fake_backend(limit=4, known=0)
    with pytest.raises(ToolchainError, match=r"fake:1 failed on model 'm'.*batch-size must be <= 4"):
        refused.logits(images)


def test_max_batch_size_is_read_from_http_and_grpc_configs() -> None:
    http = SimpleNamespace(get_model_config=lambda name: {"name": name, "max_batch_size": 64})
    grpc = SimpleNamespace(get_model_config=lambda name, as_json: {"config": {"name": name, "max_batch_size": 16}})
    bare = SimpleNamespace(get_model_config=lambda name, as_json: {"config": {"name": name}})  # protobuf JSON omits 0
    assert max_batch_size(http, "m", grpc=False) == 64
    assert max_batch_size(grpc, "m", grpc=True) == 16
    assert max_batch_size(bare, "m", grpc=True) == 0
