"""deepfake serve as an attacker meets it: keys that fail closed, analyses that belong to their key, bounded
metrics, bodies and waits, Host and Origin checks, a quota no parallel uploads can pass, no server detail in
errors or records (docs/service.md, "Threat model")."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepfake.apps.serve.app import create_app, host_allowed, origin_allowed
from deepfake.apps.serve.settings import ApiKeys, hash_key, is_loopback
from deepfake.apps.serve.store import JobStore
from deepfake.apps.serve.uploads import UploadError, bounded
from deepfake.apps.serve.workers import scrub_paths
from deepfake.core.errors import ParamsError
from tests.conftest import LOCAL, serve_config
from tests.test_serve_api import upload

ROOT = Path(__file__).resolve().parents[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---- keys fail closed ---------------------------------------------------------------------------------


def test_a_keys_file_without_a_key_refuses_to_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# alice {hash_key('revoked')}\n\n")  # the last key revoked by commenting it out
    with pytest.raises(ParamsError, match="holds no API key") as refused:
        create_app(serve_config(tmp_path, api_keys_file=keys), start_workers=False)
    assert "\n" not in str(refused.value)
    with pytest.raises(ParamsError, match="DEEPFAKE_API_KEY_HASHES holds no API key"):
        ApiKeys.load(None, environ={"DEEPFAKE_API_KEY_HASHES": "# revoked"})
    assert not ApiKeys.load(None, environ={"DEEPFAKE_API_KEY_HASHES": " , "}).enabled  # set but blank: not configured


def test_keys_off_listens_on_loopback_only_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not loopback and no API key") as refused:
        create_app(serve_config(tmp_path, host="0.0.0.0"), start_workers=False)
    assert "allow_anonymous_remote" in str(refused.value)
    create_app(serve_config(tmp_path, host="0.0.0.0", allow_anonymous_remote=True), start_workers=False)
    keys = tmp_path / "keys.txt"
    keys.write_text(f"alice {hash_key('a')}\n")
    create_app(serve_config(tmp_path, host="0.0.0.0", api_keys_file=keys), start_workers=False)
    assert [is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost")] == [True] * 5
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.org")] == [False] * 4


def test_a_revoked_key_stops_working_without_a_restart(api, clip: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"alice {hash_key('key-a')}\nbob {hash_key('key-b')}\n")
    client = api(api_keys_file=keys)
    assert client.get("/v1/analyses", headers=bearer("key-b")).status_code == 200
    keys.write_text(f"alice {hash_key('key-a')}\n# bob revoked\n")
    assert client.get("/v1/analyses", headers=bearer("key-b")).status_code == 401
    assert client.get("/v1/analyses", headers=bearer("key-a")).status_code == 200
    # the last key revoked while running: every request refused, never keys off
    keys.write_text("# nobody\n")
    assert client.get("/v1/analyses", headers=bearer("key-a")).status_code == 401
    assert client.get("/v1/analyses").status_code == 401 and upload(client, clip).status_code == 401
    keys.write_text("not a hash line\n")  # a broken edit: still closed
    assert client.get("/v1/analyses", headers=bearer("key-a")).status_code == 401
    keys.write_text(f"alice {hash_key('key-a')}\n")
    assert client.get("/v1/analyses", headers=bearer("key-a")).status_code == 200


# ---- each key's analyses are its own --------------------------------------------------------------------


def test_another_key_cannot_see_read_download_or_delete_an_analysis(api, clip: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"alice {hash_key('key-a')}\nbob {hash_key('key-b')}\n")
    client = api(api_keys_file=keys)
    created = upload(client, clip, headers=bearer("key-a"))
    assert created.status_code == 202
    url = created.json()["url"]
    store = JobStore(tmp_path / "serve")
    job_id = created.json()["id"]
    store.claim(worker=1)
    store.finish(job_id, {"probability": 0.5, "status": "ok"}, explanation=True, overlay=False)
    (store.result_dir(job_id) / "montage.png").parent.mkdir(parents=True, exist_ok=True)
    (store.result_dir(job_id) / "montage.png").write_bytes(b"\x89PNG")

    assert [a["id"] for a in client.get("/v1/analyses", headers=bearer("key-a")).json()["analyses"]] == [job_id]
    assert client.get(f"{url}/explanation", headers=bearer("key-a")).status_code == 200
    assert client.get("/v1/analyses", headers=bearer("key-b")).json()["analyses"] == []
    for answer in (
        client.get(url, headers=bearer("key-b")),
        client.get(f"{url}/explanation", headers=bearer("key-b")),
        client.get(f"{url}/overlay", headers=bearer("key-b")),
        client.delete(url, headers=bearer("key-b")),
    ):
        assert answer.status_code == 404, answer.text
    # the same answer as for an id that never existed: nothing to probe
    missing = client.get(f"/v1/analyses/{'0' * 32}", headers=bearer("key-b"))
    assert missing.status_code == 404
    assert client.get(url, headers=bearer("key-a")).status_code == 200  # still there
    assert client.delete(url, headers=bearer("key-a")).status_code == 204


def test_a_label_shared_by_two_keys_does_not_share_analyses(api, clip: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"newsroom {hash_key('key-a')}\nnewsroom {hash_key('key-b')}\n")
    client = api(api_keys_file=keys)
    url = upload(client, clip, headers=bearer("key-a")).json()["url"]
    assert client.get(url, headers=bearer("key-b")).status_code == 404


# ---- bounded metrics, Host, Origin, errors --------------------------------------------------------------


def test_made_up_methods_and_paths_do_not_grow_the_metrics(api) -> None:
    client = api()
    before = len(client.get("/metrics").text)
    for n in range(200):
        client.request(f"X{n:03d}", "/healthz")
        client.get(f"/no/such/path/{n}")
    metrics = client.get("/metrics").text
    assert "X0" not in metrics and "/no/such" not in metrics
    assert 'method="other"' in metrics and 'route="other"' in metrics
    assert len(metrics) < before + 4096, len(metrics) - before


def test_an_unknown_host_is_refused_with_the_security_headers(api) -> None:
    client = api()
    refused = client.get("/v1/analyses", headers={"Host": "rebind.evil.example"})
    assert refused.status_code == 400 and "allowed_hosts" in refused.text
    assert (
        refused.headers["x-content-type-options"] == "nosniff"
        and "frame-ancestors" in refused.headers["content-security-policy"]
    )
    assert client.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200
    assert host_allowed("[::1]:8000", ("[::1]",)) and host_allowed("LOCALHOST", ("localhost",))
    assert not host_allowed("127.0.0.1.evil.example", ("127.0.0.1",)) and not host_allowed("[::1", ("[::1]",))
    assert api(allowed_hosts=("*",)).get("/healthz", headers={"Host": "any.example"}).status_code == 200
    named = api(allowed_hosts=("verdicts.example.org",))
    assert named.get("/healthz", headers={"Host": "verdicts.example.org"}).status_code == 200


def test_a_cross_site_post_is_refused(api, clip: Path) -> None:
    client = api()
    refused = upload(client, clip, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403 and "cross-origin" in refused.text
    assert client.get("/v1/analyses").json()["analyses"] == []
    assert upload(client, clip, headers={"Origin": "null"}).status_code == 403
    assert upload(client, clip, headers={"Origin": LOCAL}).status_code == 202  # the service's own page
    assert upload(client, clip).status_code == 202  # not a browser: no Origin
    partner = api(cors_origins=("https://partner.example",))
    assert upload(partner, clip, headers={"Origin": "https://partner.example"}).status_code == 202
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", ())
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000", ())


def test_a_server_error_has_the_security_headers_and_no_detail(
    api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = api(raise_server_exceptions=False)  # see the 500 a client would

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"cannot open {tmp_path}/secret/path")

    monkeypatch.setattr(JobStore, "recent", broken)  # every thread's connection
    failed = client.get("/v1/analyses")
    assert failed.status_code == 500 and str(tmp_path) not in failed.text
    assert failed.headers["x-frame-options"] == "DENY" and "content-security-policy" in failed.headers


# ---- bodies, waits and the quota ----------------------------------------------------------------------------


def test_the_whole_multipart_body_is_bounded_not_just_the_video(api, clip: Path, tmp_path: Path) -> None:
    """A form whose other field is endless, sent chunked (no Content-Length to refuse it up front)."""
    client = api(max_upload_bytes=clip.stat().st_size * 2)
    boundary = "hardening-boundary"

    def body() -> Iterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="padding"\r\n\r\n'.encode()
        for _ in range(64):  # 4 MB of padding at most: far past the limit (the upload and 64 KB of form)
            yield b"x" * (64 << 10)
        yield f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="c.mp4"\r\n\r\n'.encode()
        yield clip.read_bytes()
        yield f"\r\n--{boundary}--\r\n".encode()

    refused = client.post(
        "/v1/analyses", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert refused.status_code == 413, refused.text
    assert list((tmp_path / "serve" / "uploads").iterdir()) == []


def test_a_stalled_body_ends_with_408_and_an_endless_one_with_413() -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield b"abc"
        await asyncio.sleep(30)
        yield b"never"

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):  # bounded: the limit stops it long before
            yield b"x" * 1024

    async def drain(chunks: AsyncIterator[bytes]) -> int:
        return sum([len(c) async for c in chunks])

    with pytest.raises(UploadError) as stalled_error:
        asyncio.run(drain(bounded(stalled(), 1 << 20, read_timeout_s=0.2)))
    assert stalled_error.value.status == 408 and "read_timeout_s" in stalled_error.value.reason
    with pytest.raises(UploadError) as endless_error:
        asyncio.run(drain(bounded(endless(), 64 * 1024, read_timeout_s=5)))
    assert endless_error.value.status == 413


def test_parallel_uploads_cannot_pass_the_disk_quota(api, clip: Path, tmp_path: Path) -> None:
    size = clip.stat().st_size
    client = api(disk_quota_bytes=int(size * 3.5), queue_size=50, rate_limit_per_minute=0)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: upload(client, clip).status_code, range(12)))
    assert set(codes) <= {202, 507} and codes.count(202) <= 3, codes
    stored = sum(p.stat().st_size for p in (tmp_path / "serve" / "uploads").iterdir())
    assert stored <= size * 3.5
    assert client.app.state.service.reserved_bytes == 0  # every reservation released


def test_files_a_killed_server_left_are_swept_at_start(api, clip: Path, tmp_path: Path) -> None:
    uploads = tmp_path / "serve" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "deadbeef.part").write_bytes(b"half an upload")
    (uploads / "cafe.video").write_bytes(b"a video no job owns")
    store = JobStore(tmp_path / "serve")
    store.add("kept", "k.mp4", 4, None, queue_size=4)
    store.upload_path("kept").write_bytes(b"kept")
    (store.results / "gone").mkdir()
    api()
    assert sorted(p.name for p in uploads.iterdir()) == ["kept.video"]
    assert not (store.results / "gone").exists()


# ---- readiness, models that cannot load, records -------------------------------------------------------------


def test_readiness_probes_do_not_write_or_flap(api, tmp_path: Path) -> None:
    client = api()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.get("/readyz").json(), range(40)))
    assert {a["store_writable"] for a in answers} == {True}
    store = JobStore(tmp_path / "serve")
    tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"analyses"}  # no probe table written
    assert [p.name for p in store.uploads.iterdir()] == []


def test_models_that_cannot_load_make_readiness_fail_and_uploads_503(api, clip: Path) -> None:
    client = api()
    service = client.app.state.service
    service.pool = SimpleNamespace(
        load_error="OSError: /srv/models/onnx/x.onnx: truncated", ready_count=lambda: 0, close=lambda: None
    )
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "no worker can load the models" in ready.json()["problems"][0]
    assert "/srv/models" not in ready.text
    refused = upload(client, clip)
    assert refused.status_code == 503 and client.get("/v1/analyses").json()["analyses"] == []


def test_records_and_errors_carry_no_server_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepfake.apps.serve import workers

    store = JobStore(tmp_path / "serve")
    upload_path = str(store.upload_path("j"))
    record = {"status": f"unreadable: cannot decode {upload_path}", "faces": [{"note": f"in {store.root}/x"}]}
    scrubbed = scrub_paths(record, {upload_path: "the upload", str(store.root): "the store"})
    assert str(tmp_path) not in str(scrubbed) and scrubbed["status"] == "unreadable: cannot decode the upload"

    def explode(*args: object) -> None:
        raise OSError(f"[Errno 5] Input/output error: '{upload_path}'")

    monkeypatch.setattr(workers, "prepare_video", explode)
    runner = object.__new__(workers.JobRunner)
    runner.predict = runner.explainers = runner.config = None
    runner.backend = SimpleNamespace(face_input=None)
    store.add("j", "clip.mp4", 4, None, queue_size=4)
    job = store.claim(worker=1)
    runner.run(job, store)
    failed = store.get("j")
    assert failed.status == "failed" and str(tmp_path) not in failed.error and "OSError" in failed.error


def test_a_broken_model_package_at_start_up_is_one_line_after_the_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import yaml

    from deepfake.cli import main as cli_main
    from tests.conftest import tiny_params

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params(tmp_path / "raw")))
    models = tmp_path / "no-such-package"

    def serve(*extra: str) -> tuple[int, list[str]]:
        caplog.clear()
        args = ["--params", str(params), "serve", "--models", str(models), "--data", str(tmp_path / "d"), *extra]
        status = cli_main(args)  # fails before any worker or server starts
        return status, [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]

    status, errors = serve()
    assert status == 2 and len(errors) == 1, errors
    assert errors[0].startswith("error: InputError") and str(models) in errors[0] and "\n" not in errors[0]
    keys = tmp_path / "keys.txt"
    keys.write_text("# every key revoked\n")
    status, errors = serve("--api-keys-file", str(keys))  # the keys are checked first
    assert status == 2 and len(errors) == 1 and "holds no API key" in errors[0]


# ---- memory: a worker's limit, and a job that passes it --------------------------------------------------


def test_the_memory_limit_turns_an_allocation_into_a_memory_error() -> None:
    # RLIMIT_DATA counts what a decoder or a model's activations take (large buffers are private anonymous
    # mappings): past it, allocation fails in the worker instead of the OOM killer picking a process
    script = (
        "import numpy as np\n"
        "from deepfake.apps.serve.workers import limit_memory\n"
        "small = np.ones(1 << 20)\n"
        "in_use = int(open('/proc/self/status').read().split('VmData:')[1].split()[0]) << 10\n"
        "limit_memory(in_use + (512 << 20))\n"
        "try:\n"
        "    np.ones(1 << 28)\n"  # 2 GiB of float64
        "except MemoryError:\n"
        "    print('refused')\n"
        "print(np.ones(1 << 20).sum() == small.sum())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["refused", "True"]


@pytest.mark.parametrize(
    "error",
    [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")],
    ids=["python", "torch"],
)
def test_a_job_past_the_memory_limit_fails_with_the_reason_and_the_worker_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    from deepfake.apps.serve import workers

    calls = []

    def prepare(*args: object) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise error
        raise ValueError("the second job's own bug")

    monkeypatch.setattr(workers, "prepare_video", prepare)
    runner = object.__new__(workers.JobRunner)
    runner.predict = runner.explainers = None
    runner.config = serve_config(tmp_path, worker_memory_bytes=512 << 20)
    runner.backend = SimpleNamespace(face_input=None)
    store = JobStore(tmp_path / "serve")
    for job_id in ("a", "b"):
        store.add(job_id, "clip.mp4", 4, None, queue_size=4)
        runner.run(store.claim(worker=1), store)
    first, second = store.get("a"), store.get("b")
    assert first.status == "failed" and first.error == (
        "error: the video needs more memory than a worker may use (serve.worker_memory_mb=512)"
    )
    assert second.status == "failed" and "ValueError" in second.error  # the next job ran, on the same worker
