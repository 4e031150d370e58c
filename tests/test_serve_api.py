"""deepfake serve: every endpoint and every limit through the real app (FastAPI's TestClient), the job
store's accounting across restarts, API keys, and the real worker pool scoring a video as predict does."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from deepfake.apps.serve.app import RateLimiter, create_app
from deepfake.apps.serve.settings import ApiKeys, ServeConfig, hash_key
from deepfake.apps.serve.store import JobStore
from deepfake.apps.serve.uploads import display_name
from deepfake.apps.serve.workers import WorkerPool
from deepfake.core.errors import ParamsError
from tests.conftest import LOCAL, SMALL_MODELS, face_frames, serve_config, tiny_params, write_raw_h264

POLL_S = 0.2
ROOT = Path(__file__).resolve().parents[1]


def upload(client: TestClient, path: Path, name: str | None = None, **kwargs: object):
    with path.open("rb") as handle:
        return client.post("/v1/analyses", files={"video": (name or path.name, handle, "video/mp4")}, **kwargs)


# ---- endpoints ---------------------------------------------------------------------------------------


def test_an_upload_is_queued_listed_read_and_deleted(api, clip: Path, tmp_path: Path) -> None:
    client = api()
    response = upload(client, clip)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and response.headers["location"] == body["url"] == f"/v1/analyses/{body['id']}"
    job = client.get(body["url"]).json()
    assert job["status"] == "queued" and job["filename"] == "clip.mp4" and job["record"] is None
    assert job["explanation"] is None and job["overlay"] is None
    assert [a["id"] for a in client.get("/v1/analyses").json()["analyses"]] == [body["id"]]
    stored = tmp_path / "serve" / "uploads" / f"{body['id']}.video"
    assert stored.read_bytes() == clip.read_bytes()
    assert client.get(f"{body['url']}/explanation").status_code == 404
    assert client.delete(body["url"]).status_code == 204
    assert client.get(body["url"]).status_code == 404 and not stored.exists()
    assert client.delete(body["url"]).status_code == 404


def test_health_readiness_metrics_and_the_page(api, clip: Path) -> None:
    client = api()
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "no worker has its models loaded" in ready.json()["problems"]
    upload(client, clip)
    metrics = client.get("/metrics").text
    assert 'deepfake_jobs{status="queued"} 1.0' in metrics and "deepfake_queue_depth 1.0" in metrics
    assert 'deepfake_http_requests_total{method="POST",route="/v1/analyses",status="202"} 1.0' in metrics
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    assert client.get("/openapi.json").json()["paths"]["/v1/analyses"]["post"]


def test_the_model_is_named_by_readiness_every_analysis_and_the_page(api, tmp_path: Path) -> None:
    """/readyz names the package's model; an analysis carries its record's model object; the page has the
    place for the model and the demonstration badge, filled by app.js with textContent under the same CSP."""
    from deepfake.modeling.card import write_card
    from tests.test_card import a_card, make_package

    card = write_card(make_package(tmp_path / "models"), a_card(name="demo", demonstration=True))
    client = api()
    assert client.get("/readyz").json()["model"] == {"name": "demo", "version": card.version, "demonstration": True}
    store = JobStore(tmp_path / "serve")
    store.add("a", "a.mp4", 5, None, queue_size=4)
    store.claim(worker=1)
    store.finish("a", {"probability": 0.9, "status": "ok", "model": card.reference()}, explanation=False, overlay=False)
    job = client.get("/v1/analyses/a").json()
    assert job["model"] == job["record"]["model"] == card.reference()
    assert client.get("/v1/analyses").json()["analyses"][0]["model"] == card.reference()
    page = client.get("/")
    assert 'id="model-badge"' in page.text and 'id="model"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"] and "<script>" not in page.text
    script = client.get("/static/app.js").text
    assert "demonstration model — not for real decisions" in script and "innerHTML" not in script


def test_a_raw_body_upload_and_a_hostile_name(api, clip: Path, tmp_path: Path) -> None:
    client = api()
    raw = client.post(
        "/v1/analyses?filename=../../etc/passwd", content=clip.read_bytes(), headers={"content-type": "video/mp4"}
    )
    assert raw.status_code == 202
    job = client.get(raw.json()["url"]).json()
    assert job["filename"] == "passwd"  # display text only
    assert sorted(p.name for p in (tmp_path / "serve" / "uploads").iterdir()) == [f"{job['id']}.video"]
    assert display_name("C:\\x\\clip\x00\x1b.mp4") == "clip.mp4" and display_name("") == "upload"


# ---- bad input: the same explicit status as the CLI, and the service keeps serving ------------------------


def test_bad_videos_are_refused_with_the_reason(api, clip: Path, tmp_path: Path) -> None:
    client = api()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    for path, expected in ((empty, "empty"), (text, "unreadable"), (truncated, "unreadable")):
        response = upload(client, path)
        assert response.status_code == 422, (path.name, response.text)
        detail = response.json()["detail"]
        assert detail.startswith("unreadable") and expected in detail and str(tmp_path) not in detail
    assert client.post("/v1/analyses", files={"other": ("a.mp4", b"x")}).status_code == 400
    garbled = client.post(
        "/v1/analyses",
        content=b"--x\r\nno headers\r\n\r\n--y--",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert garbled.status_code == 400, garbled.text
    assert upload(client, clip).status_code == 202  # still serving
    assert list((tmp_path / "serve" / "uploads").glob("*.part")) == []
    metrics = client.get("/metrics").text
    assert 'deepfake_uploads_rejected_total{reason="not_video"} 3.0' in metrics


def test_frame_size_duration_and_frame_count_limits(api, clip: Path) -> None:
    assert "max_pixels" in upload(api(max_pixels=100 * 100), clip).json()["detail"]
    assert "too long" in upload(api(max_duration_s=0.1), clip).json()["detail"]
    assert "claims 8 frames" in upload(api(max_frames=4), clip).json()["detail"]


def test_lying_headers_are_refused_before_any_decoding_work(api, tmp_path: Path) -> None:
    from tests.test_hostile_inputs import write_endless, write_giant

    client = api()
    giant = upload(client, write_giant(tmp_path / "giant.mp4"))
    assert giant.status_code == 422 and giant.json()["detail"].startswith("unreadable"), giant.text
    endless = upload(client, write_endless(tmp_path / "endless.mp4", face_frames("grace_hopper.jpg", frames=4)))
    assert endless.status_code == 422 and endless.json()["detail"].startswith("too long")  # 2**31 - 1 frames at 15 fps


def test_the_size_limit_stops_the_stream(api, clip: Path, tmp_path: Path) -> None:
    client = api(max_upload_bytes=1000)
    assert upload(client, clip).status_code == 413  # Content-Length says so: refused before reading
    chunked = client.post(
        "/v1/analyses",
        content=iter([clip.read_bytes()[:600], clip.read_bytes()[600:]]),  # no Content-Length
        headers={"content-type": "video/mp4"},
    )
    assert chunked.status_code == 413 and "max_upload_mb" in chunked.json()["detail"]
    assert list((tmp_path / "serve" / "uploads").iterdir()) == []


def test_a_full_queue_a_used_quota_and_the_rate_limit_answer_with_limits(api, clip: Path) -> None:
    client = api(queue_size=2)
    assert [upload(client, clip).status_code for _ in range(2)] == [202, 202]
    full = upload(client, clip)
    assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1 and "queue is full" in full.text
    assert client.get("/readyz").json()["queue"] == "2/2"
    assert upload(api(disk_quota_bytes=clip.stat().st_size // 2), clip).status_code == 507
    limited = api(rate_limit_per_minute=2)
    assert [upload(limited, clip).status_code for _ in range(3)] == [202, 202, 429]
    assert 1 <= int(upload(limited, clip).headers["retry-after"]) <= 60


def test_concurrent_uploads_are_all_queued_once(api, clip: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    client = api(queue_size=12, rate_limit_per_minute=0)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: upload(client, clip).status_code, range(16)))
    assert sorted(codes) == [202] * 12 + [429] * 4, codes  # exactly the queue's size, no 500
    assert client.get("/readyz").json()["queue"] == "12/12"


def test_the_rate_limiter_window_slides() -> None:
    limiter = RateLimiter(2)
    assert [limiter.retry_after("a", now=t) for t in (0.0, 1.0, 2.0)] == [0, 0, 58]
    assert limiter.retry_after("b", now=2.0) == 0  # per identity
    assert limiter.retry_after("a", now=60.5) == 0  # the first event left the window
    assert RateLimiter(0).retry_after("a") == 0


# ---- API keys, CORS -----------------------------------------------------------------------------------


def test_api_keys_are_hashed_and_required(api, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# newsroom keys\nalice {hash_key('secret-a')}\n")
    monkeypatch.setenv("DEEPFAKE_API_KEY_HASHES", hash_key("secret-b"))  # the variable docs/service.md names
    client = api(api_keys_file=keys)
    assert upload(client, clip).status_code == 401
    assert upload(client, clip, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert upload(client, clip, headers={"Authorization": "Bearer secret-a"}).status_code == 202
    assert upload(client, clip, headers={"X-API-Key": "secret-b"}).status_code == 202
    assert client.get("/v1/analyses").status_code == 401 and client.get("/metrics").status_code == 401
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
    assert "secret-a" not in keys.read_text()


def test_a_bad_key_file_line_is_a_params_error(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("alice secret-in-plain-text\n")
    with pytest.raises(ParamsError, match=r"keys.txt:1: expected '\[label\] <sha256"):
        ApiKeys.load(keys, environ={})
    assert not ApiKeys.load(None, environ={}).enabled


def test_cors_is_off_unless_configured(api) -> None:
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in api().options("/v1/analyses", headers=preflight).headers
    allowed = api(cors_origins=("https://example.org",)).options("/v1/analyses", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://example.org"


# ---- the job store: nothing lost or stuck across restarts ------------------------------------------------


def test_a_restart_requeues_an_interrupted_job_then_fails_it_with_the_reason(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    assert store.add("a", "a.mp4", 10, None, queue_size=1) and not store.add("b", "b.mp4", 10, None, queue_size=1)
    assert store.claim(worker=123).attempts == 1
    assert store.recover(max_attempts=2) == {"queued": 1, "failed": 0}
    job = store.get("a")
    assert job.status == "queued" and "interrupted by a server restart" in job.error
    assert store.claim(worker=124).attempts == 2 and store.claim(worker=125) is None
    assert store.recover(max_attempts=2) == {"queued": 0, "failed": 1}
    job = store.get("a")
    assert job.status == "failed" and job.error == "interrupted by a server restart (after 2 attempts)"
    assert store.counts() == {"queued": 0, "running": 0, "done": 0, "failed": 1}


def test_a_finished_job_keeps_its_record_and_old_ones_expire(tmp_path: Path) -> None:
    config = serve_config(tmp_path, retention_s=3600.0)
    store = JobStore(config.data)
    store.upload_path("a").write_bytes(b"video")
    store.add("a", "a.mp4", 5, None, queue_size=4)
    store.claim(worker=1)
    (store.result_dir("a")).mkdir()
    (store.result_dir("a") / "montage.png").write_bytes(b"png")
    store.finish("a", {"probability": 0.9, "status": "ok"}, explanation=True, overlay=False)
    reopened = JobStore(config.data).get("a")
    assert reopened.status == "done" and reopened.record == {"probability": 0.9, "status": "ok"}
    assert not store.upload_path("a").exists() and reopened.result_bytes == 3 and reopened.upload_bytes == 0
    pool = WorkerPool(config, metrics=None)
    assert pool.expire(now=time.time()) == 0
    assert pool.expire(now=time.time() + 3601) == 1 and store.get("a") is None
    assert not store.result_dir("a").exists()


def test_one_shutdown_grace_for_uvicorn_and_the_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve.shutdown_grace_s is uvicorn's graceful-shutdown timeout and the workers' grace after SIGTERM."""
    import uvicorn

    from deepfake.apps.serve import app as app_module
    from deepfake.apps.serve.workers import _Worker
    from deepfake.cli import main as cli_main

    raw = tiny_params(tmp_path / "raw", serve__shutdown_grace_s=3)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    seen: dict = {}

    def fake_app(config: ServeConfig) -> SimpleNamespace:
        seen["config"] = config
        return SimpleNamespace(state=SimpleNamespace(service=SimpleNamespace(start=lambda: seen.update(started=True))))

    monkeypatch.setattr(app_module, "create_app", fake_app)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    assert cli_main(["--params", str(params_file), "serve", "--models", str(tmp_path), "--data", str(tmp_path)]) == 0
    assert seen["timeout_graceful_shutdown"] == seen["config"].shutdown_grace_s == 3
    assert seen["started"]  # the workers load the models before uvicorn runs: a failure is one line
    # X-Forwarded-For is not believed from anyone by default (uvicorn's own default trusts 127.0.0.1)
    assert seen["proxy_headers"] is False and seen["forwarded_allow_ips"] is None
    assert seen["limit_concurrency"] == seen["config"].max_connections

    class Stubborn:
        """A worker that ignores SIGTERM: the pool waits the grace, then kills it."""

        alive, waited = True, []

        def is_alive(self) -> bool:
            return self.alive

        def terminate(self) -> None:
            pass

        def join(self, timeout: float) -> None:
            self.waited.append(timeout)

        def kill(self) -> None:
            self.alive = False

    pool = WorkerPool(serve_config(tmp_path, shutdown_grace_s=3), metrics=None)
    worker = Stubborn()
    pool.workers[1] = _Worker(worker)
    pool.close()
    assert 2.5 < worker.waited[0] <= 3 and not worker.alive


def test_two_workers_never_claim_the_same_job(tmp_path: Path) -> None:
    first, second = JobStore(tmp_path), JobStore(tmp_path)
    for name in "abcdef":
        first.add(name, name, 1, None, queue_size=10)
    claimed = []
    while (job := (first if len(claimed) % 2 else second).claim(worker=len(claimed))) is not None:
        claimed.append(job.id)
    assert sorted(claimed) == list("abcdef")


# ---- the real worker pool: scored as deepfake predict scores, explained, bounded -----------------------------


def wait_final(client: TestClient, url: str, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(url).json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(POLL_S)
    raise AssertionError(f"{url} did not finish within {timeout_s} s: {job}")


def metrics_with(client: TestClient, *lines: str, timeout_s: float = 10) -> str:
    """/metrics once it holds every one of ``lines``, or as it is at the deadline. A finished analysis reaches the
    metrics on the supervisor's next pass (every ``SUPERVISE_S``), not when its record is written: the client
    may see an analysis done before the metrics count it."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = client.get("/metrics").text
        if all(line in text for line in lines) or time.monotonic() > deadline:
            return text
        time.sleep(POLL_S)


@pytest.fixture(scope="module")
def live(models_root: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("live")
    config = ServeConfig.from_params(models_root["params"], models=models_root["root"], data=tmp / "serve", workers=1)
    with TestClient(create_app(config), base_url=LOCAL) as client:
        yield client


def test_a_served_verdict_equals_deepfake_predict(
    live: TestClient, models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    from deepfake.apps import predict as infer
    from deepfake.backends.base import create_backend

    assert live.get("/readyz").json()["ready"] is True
    job = wait_final(live, upload(live, hostile_part / "reala.mp4").json()["url"])
    assert job["status"] == "done" and job["attempts"] == 1, job
    record = job["record"]
    backend = create_backend("onnx", models_root["store"], models_root["params"])
    # predict with a worker process, as the service runs it: one torch thread, a detector of its own
    config = replace(infer.PredictConfig.from_params(models_root["params"]), workers=1)
    outputs = infer.Outputs(tmp_path / "p.csv", tmp_path / "p.json", tmp_path / "p.jsonl")
    decision = infer.load_decision(models_root["root"])  # the package's operating points, as the service's
    infer.predict_videos([hostile_part / "reala.mp4"], backend, config, outputs, decision=decision)
    [expected] = json.loads((tmp_path / "p.json").read_text())["videos"]
    assert record["status"] == "ok" and record["probability"] == pytest.approx(expected["probability"], abs=1e-6)
    assert record["verdict"] == expected["verdict"] and record["path"] == "reala.mp4"
    assert job["probability"] == record["probability"]
    # the three-way verdict from the package's operating points travels with the analysis (the page colours scores
    # by its thresholds), and the file's content credentials beside it, never in it
    assert job["verdict"] == record["verdict"]
    assert record["verdict"]["call"] in ("likely_fake", "uncertain", "likely_real")
    assert set(record["verdict"]["thresholds"]) == {"likely_fake", "likely_real"}
    assert job["credentials"] == record["credentials"] == expected["credentials"]
    assert record["credentials"]["state"] == "none" and record["credentials"]["summary"] == "no content credentials"
    # every verdict names its model: the package's card (this one has none: unknown provenance)
    from deepfake.modeling.card import package_card

    model = package_card(models_root["root"]).reference()
    assert job["model"] == record["model"] == live.get("/readyz").json()["model"] == model
    montage = live.get(job["explanation"])
    assert montage.status_code == 200 and montage.content.startswith(b"\x89PNG")
    overlay = live.get(job["overlay"])
    assert overlay.headers["content-type"] == "video/mp4"
    with av.open(__import__("io").BytesIO(overlay.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"  # what a browser's <video> plays
        assert next(container.decode(stream)).width > 0
    done, ready = 'deepfake_job_duration_seconds_count{status="done"}', "deepfake_workers_ready 1.0"
    metrics = metrics_with(live, done, ready)
    assert done in metrics and ready in metrics


def test_a_video_without_a_face_is_done_with_the_reason(live: TestClient, hostile_part: Path) -> None:
    job = wait_final(live, upload(live, hostile_part / "noface.mp4").json()["url"])
    assert job["status"] == "done" and job["probability"] is None
    assert job["record"]["status"].startswith("no_face") and job["explanation"] is None
    assert "no_face" in live.get(f"{job['url']}/explanation").json()["detail"]
    assert live.delete(job["url"]).status_code == 204


def test_frames_that_grow_after_the_header_end_their_own_job_with_the_reason(
    live: TestClient, models_root: dict, tmp_path: Path
) -> None:
    # the amplification upload: small frames first, then frames past video.max_pixels. The decoder refuses them
    # before allocating: found by the upload's own check (it decodes up to 64 frames of a stream without a
    # duration) the upload is refused; found later by the worker, the analysis is done with the reason
    limit = models_root["params"].video.max_pixels
    big = (4160, 2176, 1)
    assert limit < big[0] * big[1]
    refused = upload(live, write_raw_h264(tmp_path / "early.h264", [(64, 64, 4), big]))
    assert refused.status_code == 422 and f"4160x2176, over max_pixels={limit}" in refused.json()["detail"]
    job = wait_final(live, upload(live, write_raw_h264(tmp_path / "late.h264", [(64, 64, 70), big])).json()["url"])
    assert job["status"] == "done" and job["probability"] is None and job["attempts"] == 1, job
    assert job["record"]["status"].startswith("unreadable: the upload: frame")
    assert f"4160x2176, over max_pixels={limit}" in job["record"]["status"]


def test_a_worker_killed_under_a_job_fails_that_job_once_and_the_next_job_runs(
    live: TestClient, models_root: dict, hostile_part: Path
) -> None:
    pool = live.app.state.service.pool
    [pid] = [pid for pid, worker in pool.workers.items() if worker.ready]
    limits = Path(f"/proc/{pid}/limits").read_text()  # the worker runs under serve.worker_memory_mb
    wanted = models_root["params"].serve.worker_memory_mb << 20
    assert any(line.startswith("Max data size") and f"{wanted}" in line.split() for line in limits.splitlines())
    url = upload(live, hostile_part / "reala.mp4").json()["url"]
    deadline = time.monotonic() + 60
    while live.get(url).json()["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would, mid-job
    job = wait_final(live, url)
    assert job["status"] == "failed" and job["attempts"] == 1, job  # never queued again: it could kill the next
    assert job["error"].startswith("error: the worker died while analysing it (SIGKILL")
    after = wait_final(live, upload(live, hostile_part / "noface.mp4").json()["url"])
    assert after["status"] == "done" and after["record"]["status"].startswith("no_face")
    died = 'deepfake_job_failures_total{kind="worker_died"} 1.0'
    assert died in metrics_with(live, died)


@pytest.mark.slow
def test_a_job_past_its_timeout_fails_and_its_worker_is_replaced(
    models_root: dict, hostile_part: Path, tmp_path: Path
) -> None:
    config = ServeConfig.from_params(
        models_root["params"], models=models_root["root"], data=tmp_path / "serve", job_timeout_s=0.3
    )
    with TestClient(create_app(config), base_url=LOCAL) as client:
        job = wait_final(client, upload(client, hostile_part / "reala.mp4").json()["url"])
        assert job["status"] == "failed" and job["error"].startswith("timed out after")
        deadline = time.monotonic() + 120
        while client.get("/readyz").json()["workers_ready"] < 1 and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert client.get("/readyz").json()["workers_ready"] == 1
        timeout = 'deepfake_job_failures_total{kind="timeout"} 1.0'
        assert timeout in metrics_with(client, timeout)


# ---- a model package carries its own settings -------------------------------------------------------------


def test_predict_runs_from_any_folder_on_the_package_settings(
    models_root: dict, hostile_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepfake.cli import main as cli_main

    settings = models_root["store"].settings()
    assert settings["predict"]["frames"] == models_root["params"].predict.frames
    assert settings["bboxes"]["thresholds"] == list(models_root["params"].bboxes.thresholds)
    assert settings["predict_detector"]["min_face_share"] == models_root["params"].predict_detector.min_face_share
    video = str(hostile_part / "reala.mp4")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(models_root["raw"]))
    out = ["--models", str(models_root["root"]), "-q"]
    first_run = ["predict", video, *out, "--json", str(tmp_path / "a.json"), "--csv", str(tmp_path / "a.csv")]
    assert cli_main(["--params", str(params_file), *first_run]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no params.yaml here: the package's settings over the packaged defaults
    assert cli_main(["predict", video, *out, "--json", str(tmp_path / "b.json"), "--csv", "b.csv"]) == 0
    first, second = (json.loads((tmp_path / f"{n}.json").read_text())["videos"][0] for n in "ab")
    assert second["probability"] == pytest.approx(first["probability"], abs=1e-6)
    machine = {"threads"}  # decoder threads follow predict.workers, a machine knob the package does not carry
    assert {k: v for k, v in second["sampling"].items() if k not in machine} == {
        k: v for k, v in first["sampling"].items() if k not in machine
    }
    assert [f["faces"] for f in second["frames"]] == [f["faces"] for f in first["frames"]]


def test_a_package_runs_on_every_backend_it_holds_from_an_empty_folder(
    models_root: dict, hostile_part: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline's package (settings recorded) and a one-member package made outside the export stage (no
    settings: scripts/make_bench_inputs.py's kind), each from a folder with no params.yaml and only --models:
    every backend the package has files for scores the video, and they agree."""
    import importlib.util

    from deepfake.cli import main as cli_main

    spec = importlib.util.spec_from_file_location("make_bench_inputs", ROOT / "scripts" / "make_bench_inputs.py")
    bench_inputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_inputs)
    outside = tmp_path / "outside"
    bench_inputs.make_models(outside, SMALL_MODELS["classifier"]["encoder"], 64, 1 / 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    video = str(hostile_part / "reala.mp4")
    for package, backends in ((models_root["root"], ("torch", "onnx", "onnx-int8")), (outside, ("torch", "onnx"))):
        scores = {}
        for backend in backends:
            out = tmp_path / f"{package.name}-{backend}.json"
            args = ["predict", video, "--models", str(package), "--backend", backend, "-q", "--json", str(out)]
            assert cli_main([*args, "--csv", str(out.with_suffix(".csv"))]) == 0, (package, backend)
            [record] = json.loads(out.read_text())["videos"]
            assert record["status"] == "ok", record
            scores[backend] = record["probability"]
        assert scores["torch"] == pytest.approx(scores["onnx"], abs=1e-4), scores
    assert list(empty.iterdir()) == []  # nothing written where it ran


def test_settings_merge_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepfake.core.params import load_params_for_models

    monkeypatch.chdir(tmp_path)
    recorded = {"predict": {"frames": 7}, "crops": {"margin": 0.25}, "models": ["classifier"]}
    params, source = load_params_for_models(None, lambda: recorded)
    assert params.predict.frames == 7 and params.crops.margin == 0.25 and params.models == ["classifier"]
    assert params.predict.batch_size > 0 and "model package" in source  # the rest from the packaged defaults
    with pytest.raises(ParamsError, match="unknown settings"):
        load_params_for_models(None, lambda: {"train": {"epochs": 1}, "wat": {}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(tmp_path, predict__frames=5)))
    params, source = load_params_for_models(None, lambda: recorded)
    assert params.predict.frames == 5 and source == "params.yaml"  # a params.yaml present overrides


def test_the_overlay_is_h264(tmp_path: Path) -> None:
    from deepfake.apps.explain import write_mp4

    rows = [np.full((256, 514, 3), i * 20, np.uint8) for i in range(5)]
    write_mp4(tmp_path / "o.mp4", rows, fps=4.0)
    with av.open(str(tmp_path / "o.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(stream)) == 5


def test_serve_key_prints_a_key_and_the_line_that_accepts_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from deepfake.cli import main as cli_main

    assert cli_main(["serve-key", "--label", "newsroom"]) == 0
    key_line, hash_line = capsys.readouterr().out.splitlines()
    key = key_line.rsplit(" ", 1)[1]
    stored = hash_line.split(": ", 1)[1]
    assert stored.startswith("newsroom ") and key not in stored
    (tmp_path / "keys").write_text(stored + "\n")
    keys = ApiKeys.load(tmp_path / "keys", environ={})
    assert keys.check(key).label == "newsroom" and keys.check(key + "x") is None


def test_the_cli_offers_exactly_the_serve_backends_params_accept() -> None:
    import typing

    from deepfake.cli import SERVE_BACKENDS
    from deepfake.core.params import ServeParams

    assert typing.get_args(ServeParams.model_fields["backend"].annotation) == SERVE_BACKENDS


@pytest.mark.parametrize("through_spawner", [False, True])
def test_workers_outlive_the_thread_that_started_them(through_spawner: bool, tmp_path: Path) -> None:
    """Linux fires the parent-death signal when the *thread* that started a child ends: a worker started
    from the app's start-up thread died when the thread pool retired it. The spawner thread outlives them."""
    import multiprocessing
    import os
    import threading

    from deepfake.apps.serve.workers import _Spawner
    from tests.parent_death import sleep_with_parent_death_signal

    armed = tmp_path / "armed"
    spawner = _Spawner()
    child = multiprocessing.get_context("spawn").Process(
        target=sleep_with_parent_death_signal, args=(os.getpid(), str(armed))
    )

    def start_then_end() -> None:  # the thread lives until the child has set its signal, then ends
        spawner.call(child.start) if through_spawner else child.start()
        deadline = time.monotonic() + 60
        while not armed.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    thread = threading.Thread(target=start_then_end)
    thread.start()
    thread.join()
    assert armed.exists()
    time.sleep(1.0)  # the kernel's signal, when sent, has landed
    try:
        assert child.is_alive() is through_spawner, child.exitcode
    finally:
        child.kill()
        child.join(timeout=10)
        spawner.close()
