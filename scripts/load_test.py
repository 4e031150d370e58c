"""Load test of `deepfake serve`: N concurrent clients upload a mix of good and bad videos, then poll
their analyses until each is done or failed; every accepted analysis must be accounted for.

Each client (an asyncio task sharing one ``httpx.AsyncClient``) takes uploads from a fixed schedule:
good videos (the given files) interleaved with bad ones (``--bad-share`` of them: an empty file, a
text file named .mp4, the first half of a good video, a video without a face; written to a temporary
folder unless ``--bad`` names them). A 429 is retried after its Retry-After (capped by
``--retry-cap``; at most ``--max-retries`` times per upload); a client polls its own accepted analyses
every ``--poll`` seconds while it uploads and after. Everything stops at ``--timeout``.

Printed (and returned by ``run_load_test`` as a dict; ``--json`` writes it): accepted uploads/s,
completed analyses/s, p50/p95 upload latency (every POST) and end-to-end latency (start of the
accepted POST to the poll that saw the analysis finished), response counts (202/413/422/429/5xx),
transport errors, analyses by final status, the peak RSS of the server's process tree (``--server-pid``:
the server and its worker processes, sampled from psutil or /proc), and the ACCOUNTING: every 202 id
is found again with a final status (done, or failed with a non-empty error) - none lost (404) and
none stuck (queued or running at the end) - and the server lists no analysis created during the run
that no client got a 202 for (an upload answered with an error but queued all the same).

    python scripts/load_test.py --url http://127.0.0.1:8000 --clients 8 --uploads 40 \\
        --videos data/raw/dfdc_train_part_0 --server-pid "$(pgrep -f 'deepfake.cli.*serve' | head -1)"

Only for servers you run yourself (127.0.0.1); the exit status is 0 when the accounting holds and no
5xx or transport error was seen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

FINAL = ("done", "failed")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MAX_ERRORS_KEPT = 50  # transport errors listed in the report (all are counted)
LIST_LIMIT = 100  # the most GET /v1/analyses returns


# ---- the upload mix ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Video:
    path: Path
    kind: str  # "good", or what is wrong with it: empty, notvideo, truncated, noface, ...
    data: bytes

    @property
    def name(self) -> str:
        return self.path.name


def expand_videos(items: list[str | Path]) -> list[Path]:
    """Files as given; folders as the video files directly in them (sorted)."""
    found: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return found


def make_bad_videos(folder: Path, good: Path) -> list[Path]:
    """One of each kind of bad upload, written to ``folder``: empty, text, truncated, and (with OpenCV) no face."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notvideo.mp4").write_text("this is not a video\n")
    whole = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    made = [folder / "empty.mp4", folder / "notvideo.mp4", folder / "truncated.mp4"]
    try:
        import cv2
        import numpy as np
    except ImportError:  # no OpenCV here: the other three kinds only
        return made
    writer = cv2.VideoWriter(str(folder / "noface.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15, (320, 180))
    for i in range(32):
        writer.write(np.full((180, 320, 3), 80 + 2 * i, np.uint8))
    writer.release()
    return [*made, folder / "noface.mp4"]


def bad_kind(path: Path) -> str:
    stem = path.stem.lower()
    for kind in ("empty", "zero", "notvideo", "truncated", "noface"):
        if kind in stem:
            return "empty" if kind == "zero" else kind
    return stem


def schedule(good: list[Video], bad: list[Video], uploads: int, bad_share: float) -> list[Video]:
    """``uploads`` videos: bad ones spread evenly at ``bad_share``, each list taken in turn."""
    if not good and not bad:
        raise ValueError("no videos to upload")
    plan: list[Video] = []
    g = b = 0
    for i in range(uploads):
        want_bad = bool(bad) and (not good or int((i + 1) * bad_share) > int(i * bad_share))
        if want_bad:
            plan.append(bad[b % len(bad)])
            b += 1
        else:
            plan.append(good[g % len(good)])
            g += 1
    return plan


# ---- memory of the server's process tree ------------------------------------------------------------


def _proc_children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # the process ended while we looked
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (psutil when installed, else /proc); [] when it is gone."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
            return [p.pid for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            return []
    if not alive(pid):
        return []
    tree, frontier = [pid], [pid]
    while frontier:
        kids = [c for p in frontier for c in _proc_children(p)]
        tree += kids
        frontier = kids
    return tree


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return not Path("/proc").is_dir()


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil, or the process is gone: nothing to add
        return 0


class MemorySampler:
    """Samples the RSS of a process tree every ``every_s`` seconds in a thread; keeps the peaks."""

    def __init__(self, pid: int | None, every_s: float = 0.25) -> None:
        self.pid = pid
        self.every_s = every_s
        self.peak_tree = 0
        self.peak_server = 0
        self.peak_worker = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        if self.pid is not None:
            self.sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sample(self) -> None:
        assert self.pid is not None
        tree = process_tree(self.pid)
        sizes = {p: rss_bytes(p) for p in tree}
        self.samples += 1
        self.peak_tree = max(self.peak_tree, sum(sizes.values()))
        self.peak_server = max(self.peak_server, sizes.get(self.pid, 0))
        self.peak_worker = max(self.peak_worker, max((s for p, s in sizes.items() if p != self.pid), default=0))
        self.peak_processes = max(self.peak_processes, len(tree))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def report(self) -> dict[str, Any]:
        if self.pid is None:
            return {"server_pid": None}
        mib = 1 << 20
        return {
            "server_pid": self.pid,
            "peak_tree_mib": round(self.peak_tree / mib, 1),
            "peak_server_mib": round(self.peak_server / mib, 1),
            "peak_child_mib": round(self.peak_worker / mib, 1),
            "peak_processes": self.peak_processes,
            "samples": self.samples,
        }


# ---- the clients ------------------------------------------------------------------------------------


@dataclass
class Upload:
    index: int
    client: int
    name: str
    kind: str
    http_status: int | None = None  # of the last POST
    detail: str | None = None  # the refusal's reason, or the transport error
    posts: int = 0
    retry_after: list[int | None] = field(default_factory=list)  # one per 429 (None: header missing)
    waited_s: float = 0.0  # slept on 429s
    post_s: list[float] = field(default_factory=list)  # latency of every POST
    id: str | None = None
    accepted_at: float | None = None  # monotonic start of the accepted POST
    final_at: float | None = None  # monotonic time the poll saw the analysis finished
    status: str | None = None  # the analysis's last seen status
    error: str | None = None
    attempts: int | None = None
    record_status: str | None = None
    probability: float | None = None
    gave_up: bool = False  # still refused with 429 after the retries, or the deadline came first

    @property
    def e2e_s(self) -> float | None:
        if self.accepted_at is None or self.final_at is None:
            return None
        return self.final_at - self.accepted_at


def _observe(upload: Upload, view: dict[str, Any], now: float) -> None:
    upload.status = view.get("status")
    upload.error = view.get("error")
    upload.attempts = view.get("attempts")
    record = view.get("record") or {}
    upload.record_status = record.get("status")
    upload.probability = record.get("probability", view.get("probability"))
    if upload.status in FINAL and upload.final_at is None:
        upload.final_at = now


@dataclass
class _Run:
    http: httpx.AsyncClient
    deadline: float
    poll_s: float
    max_retries: int
    retry_cap_s: float
    rng: random.Random
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    poll_statuses: Counter = field(default_factory=Counter)

    def error(self, what: str, err: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(f"{what}: {type(err).__name__}: {err}")

    def left(self) -> float:
        return self.deadline - time.monotonic()


async def _post(run: _Run, video: Video, upload: Upload) -> None:
    """POST until accepted, refused for good, or out of 429 retries / time."""
    for _ in range(run.max_retries + 1):
        if run.left() <= 0:
            upload.gave_up = upload.id is None
            return
        start = time.monotonic()
        try:
            response = await run.http.post(
                "/v1/analyses", files={"video": (video.name, video.data, "video/mp4")}, timeout=max(1.0, run.left())
            )
        except httpx.HTTPError as err:
            upload.post_s.append(time.monotonic() - start)
            upload.posts += 1
            upload.detail = f"{type(err).__name__}: {err}"
            run.error(f"POST {video.name}", err)
            return
        upload.post_s.append(time.monotonic() - start)
        upload.posts += 1
        upload.http_status = response.status_code
        if response.status_code == 202:
            body = response.json()
            upload.id, upload.status, upload.accepted_at = body["id"], body.get("status"), start
            upload.detail = None
            return
        try:
            upload.detail = str(response.json().get("detail"))
        except ValueError:
            upload.detail = response.text[:200]
        if response.status_code != 429:
            return
        header = response.headers.get("retry-after")
        wait = int(header) if header and header.strip().isdigit() else None
        upload.retry_after.append(wait)
        pause = min(float(wait if wait is not None else 1), run.retry_cap_s) * (1 + 0.1 * run.rng.random())
        pause = max(0.0, min(pause, run.left()))
        upload.waited_s += pause
        await asyncio.sleep(pause)
    upload.gave_up = True


async def _poll_once(run: _Run, upload: Upload) -> None:
    try:
        response = await run.http.get(f"/v1/analyses/{upload.id}", timeout=max(1.0, min(30.0, run.left())))
    except httpx.HTTPError as err:
        run.error(f"GET {upload.id}", err)
        return
    run.poll_statuses[str(response.status_code)] += 1
    if response.status_code == 200:
        _observe(upload, response.json(), time.monotonic())
    elif response.status_code == 404:
        upload.status = "lost"


async def _client(run: _Run, number: int, plan: list[tuple[Video, Upload]]) -> None:
    """Upload this client's share in turn while polling the accepted analyses; then poll until all are final."""
    uploading = True

    async def uploader() -> None:
        nonlocal uploading
        try:
            for video, upload in plan:
                await _post(run, video, upload)
        finally:
            uploading = False

    async def poller() -> None:
        while run.left() > 0:
            pending = [u for _, u in plan if u.id is not None and u.status not in (*FINAL, "lost")]
            if not pending and not uploading:
                return
            for upload in pending:
                await _poll_once(run, upload)
            await asyncio.sleep(min(run.poll_s, max(0.0, run.left())))

    await asyncio.gather(uploader(), poller())


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


async def _server_side(http: httpx.AsyncClient, since: float, known: set[str]) -> dict[str, Any]:
    """Analyses the server created since ``since`` (epoch s) that no 202 told a client about: an upload
    answered with an error (or never answered) that the server queued all the same. Reads the newest
    LIST_LIMIT analyses; ``complete`` is False when the run may have created more than that."""
    from datetime import datetime

    try:
        response = await http.get("/v1/analyses", params={"limit": LIST_LIMIT}, timeout=30.0)
        views = response.json()["analyses"] if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError):
        views = None
    if views is None:
        return {"checked": False, "unknown_to_client": [], "complete": False}
    recent = [v for v in views if v.get("created") and datetime.fromisoformat(v["created"]).timestamp() >= since - 1]
    unknown = [f"{v['id']} ({v['filename']}: {v['status']})" for v in recent if v["id"] not in known]
    return {"checked": True, "unknown_to_client": unknown, "complete": len(recent) < LIST_LIMIT}


async def _account(http: httpx.AsyncClient, uploads: list[Upload], since: float) -> dict[str, Any]:
    """A fresh GET of every accepted id: each must be final (done, or failed with a reason); and no
    analysis on the server that the clients were not given an id for."""
    lost, stuck, no_reason, no_record = [], [], [], []
    for upload in uploads:
        if upload.id is None:
            continue
        try:
            response = await http.get(f"/v1/analyses/{upload.id}", timeout=30.0)
        except httpx.HTTPError as err:
            stuck.append(f"{upload.id} (GET failed: {type(err).__name__}: {err})")
            continue
        if response.status_code == 404:
            upload.status = "lost"
            lost.append(upload.id)
            continue
        if response.status_code != 200:
            stuck.append(f"{upload.id} (GET answered {response.status_code})")
            continue
        view = response.json()
        _observe(upload, view, time.monotonic())
        if upload.status not in FINAL:
            stuck.append(upload.id)
        elif upload.status == "failed" and not (upload.error or "").strip():
            no_reason.append(upload.id)
        elif upload.status == "done" and not view.get("record"):
            no_record.append(upload.id)
    ids = [u.id for u in uploads if u.id is not None]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    server = await _server_side(http, since, set(ids))
    return {
        "accepted": len(ids),
        "final": sum(1 for u in uploads if u.id is not None and u.status in FINAL),
        "lost": lost,
        "stuck": stuck,
        "failed_without_reason": no_reason,
        "done_without_record": no_record,
        "duplicate_ids": duplicates,
        "unknown_to_client": server["unknown_to_client"],
        "server_list_checked": server["checked"],
        "server_list_complete": server["complete"],
        "ok": not (lost or stuck or no_reason or no_record or duplicates or server["unknown_to_client"]),
    }


async def run_load_test_async(
    url: str,
    good: list[str | Path],
    bad: list[str | Path] | None = None,
    *,
    clients: int = 8,
    uploads: int = 40,
    bad_share: float = 0.25,
    timeout: float = 600.0,
    server_pid: int | None = None,
    poll_s: float = 1.0,
    max_retries: int = 20,
    retry_cap_s: float = 30.0,
    api_key: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The load test (see the module docstring); ``bad`` None writes the bad uploads to a temporary folder."""
    good_paths = expand_videos(list(good))
    with tempfile.TemporaryDirectory(prefix="load-test-") as scratch:
        if bad is None:
            bad_paths = make_bad_videos(Path(scratch), good_paths[0]) if good_paths and bad_share > 0 else []
        else:
            bad_paths = expand_videos(list(bad)) if bad else []
        good_videos = [Video(p, "good", p.read_bytes()) for p in good_paths]
        bad_videos = [Video(p, bad_kind(p), p.read_bytes()) for p in bad_paths]
    plan = schedule(good_videos, bad_videos, uploads, bad_share)
    records = [Upload(i, i % clients, v.name, v.kind) for i, v in enumerate(plan)]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=2 * clients + 4, max_keepalive_connections=2 * clients + 4)
    started, started_epoch = time.monotonic(), time.time()
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, limits=limits) as http:
        run = _Run(http, started + timeout, poll_s, max_retries, retry_cap_s, random.Random(seed))
        with MemorySampler(server_pid) as memory:
            shares = [[(plan[i], records[i]) for i in range(c, uploads, clients)] for c in range(clients)]
            await asyncio.gather(*(_client(run, c, share) for c, share in enumerate(shares)))
            finished = time.monotonic()
            accounting = await _account(http, records, started_epoch)
    return _report(
        records,
        run,
        memory.report(),
        accounting,
        started,
        finished,
        {
            "url": url,
            "clients": clients,
            "uploads": uploads,
            "bad_share": bad_share,
            "good_videos": [str(p) for p in good_paths],
            "bad_kinds": sorted({v.kind for v in bad_videos}),
            "timeout_s": timeout,
            "poll_s": poll_s,
            "max_retries": max_retries,
            "retry_cap_s": retry_cap_s,
        },
    )


def run_load_test(url: str, good: list[str | Path], bad: list[str | Path] | None = None, **options: Any) -> dict:
    """``run_load_test_async`` in a fresh event loop (for scripts and tests without one)."""
    return asyncio.run(run_load_test_async(url, good, bad, **options))


def _report(
    records: list[Upload],
    run: _Run,
    memory: dict[str, Any],
    accounting: dict[str, Any],
    started: float,
    finished: float,
    config: dict[str, Any],
) -> dict[str, Any]:
    codes = Counter(str(u.http_status) for u in records if u.http_status is not None)
    posts = sum(u.posts for u in records)
    n429 = sum(len(u.retry_after) for u in records)
    # every POST's status: the 429s that were retried are not the upload's last status
    all_codes = Counter(codes)
    all_codes["429"] += n429 - sum(1 for u in records if u.http_status == 429)
    all_codes = Counter({k: v for k, v in all_codes.items() if v})
    accepted = [u for u in records if u.id is not None]
    done = [u for u in accepted if u.status == "done"]
    final = [u for u in accepted if u.status in FINAL]
    last_accept = max((u.accepted_at + u.post_s[-1] for u in accepted), default=started)
    last_final = max((u.final_at for u in final if u.final_at is not None), default=started)
    upload_lat = [s for u in records for s in u.post_s]
    e2e = [u.e2e_s for u in final if u.e2e_s is not None]
    waits = [w for u in records for w in u.retry_after if w is not None]
    by_kind: dict[str, Counter] = {}
    for u in records:
        outcome = by_kind.setdefault(u.kind, Counter())
        outcome[f"http_{u.http_status}" if u.http_status else "no_response"] += 1
        if u.id is not None:
            outcome[str(u.status)] += 1
            if u.record_status is not None:
                outcome[f"record_{u.record_status.split(':', 1)[0]}"] += 1
    return {
        "config": config,
        "wall_s": round(finished - started, 2),
        "upload_phase_s": round(last_accept - started, 2),
        "posts": posts,
        "http": dict(sorted(all_codes.items())),
        "uploads_by_last_status": dict(sorted(codes.items())),
        "accepted": len(accepted),
        "rejected_413": codes.get("413", 0),
        "rejected_422": codes.get("422", 0),
        "responses_429": n429,
        "retry_after": {
            "missing": sum(1 for u in records for w in u.retry_after if w is None),
            "min_s": min(waits, default=None),
            "max_s": max(waits, default=None),
            "slept_s": round(sum(u.waited_s for u in records), 1),
        },
        "gave_up": sum(1 for u in records if u.gave_up),
        "responses_5xx": sum(n for k, n in all_codes.items() if k.startswith("5")),
        "errors": run.error_count,
        "error_samples": run.errors,
        "poll_requests": dict(run.poll_statuses),
        "throughput": {
            "accepted_per_s": round(len(accepted) / max(1e-9, last_accept - started), 3),
            "completed_per_s": round(len(done) / max(1e-9, last_final - started), 3),
            "final_per_s": round(len(final) / max(1e-9, last_final - started), 3),
        },
        "latency_ms": {
            "upload_p50": _ms(_percentile(upload_lat, 0.5)),
            "upload_p95": _ms(_percentile(upload_lat, 0.95)),
            "e2e_p50": _ms(_percentile(e2e, 0.5)),
            "e2e_p95": _ms(_percentile(e2e, 0.95)),
            "e2e_max": _ms(max(e2e, default=None)),
        },
        "jobs": dict(Counter(str(u.status) for u in accepted)),
        "record_status": dict(Counter((u.record_status or "none").split(":", 1)[0] for u in done)),
        "attempts": {str(k): v for k, v in sorted(Counter(u.attempts for u in accepted).items(), key=str)},
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "memory": memory,
        "accounting": accounting,
        "uploads": [{**asdict(u), "e2e_s": u.e2e_s} for u in records],
    }


# ---- the command line -------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    """The report as a readable table."""
    cfg, lat, thr, acc, mem = (
        report["config"],
        report["latency_ms"],
        report["throughput"],
        report["accounting"],
        report["memory"],
    )

    def s(ms: float | None) -> str:
        return "-" if ms is None else f"{ms / 1000:.2f} s"

    rows = [
        ("clients / uploads", f"{cfg['clients']} / {cfg['uploads']} ({cfg['bad_share']:.0%} bad)"),
        ("wall time", f"{report['wall_s']:.1f} s (uploads accepted within {report['upload_phase_s']:.1f} s)"),
        ("POST responses", ", ".join(f"{k}: {v}" for k, v in report["http"].items()) or "-"),
        ("accepted uploads/s", f"{thr['accepted_per_s']:.3f}"),
        ("completed analyses/s", f"{thr['completed_per_s']:.3f} (done; any final: {thr['final_per_s']:.3f})"),
        ("upload latency p50 / p95", f"{s(lat['upload_p50'])} / {s(lat['upload_p95'])}"),
        ("end-to-end p50 / p95 / max", f"{s(lat['e2e_p50'])} / {s(lat['e2e_p95'])} / {s(lat['e2e_max'])}"),
        (
            "429s",
            f"{report['responses_429']} (Retry-After {report['retry_after']['min_s']}-"
            f"{report['retry_after']['max_s']} s, missing {report['retry_after']['missing']}; "
            f"slept {report['retry_after']['slept_s']} s; gave up {report['gave_up']})",
        ),
        ("5xx / transport errors", f"{report['responses_5xx']} / {report['errors']}"),
        ("analyses by status", ", ".join(f"{k}: {v}" for k, v in sorted(report["jobs"].items())) or "-"),
        ("done: record status", ", ".join(f"{k}: {v}" for k, v in sorted(report["record_status"].items())) or "-"),
        ("attempts", ", ".join(f"{k}: {v}" for k, v in report["attempts"].items()) or "-"),
    ]
    if mem.get("server_pid") is not None:
        rows.append(
            (
                "peak RSS",
                f"{mem['peak_tree_mib']:.0f} MiB server tree ({mem['peak_processes']} processes; "
                f"server {mem['peak_server_mib']:.0f}, largest child {mem['peak_child_mib']:.0f} MiB)",
            )
        )
    verdict = "OK" if acc["ok"] else "BROKEN"
    rows.append(
        (
            "accounting",
            f"{verdict}: {acc['final']} of {acc['accepted']} accepted are final; lost {len(acc['lost'])}, "
            f"stuck {len(acc['stuck'])}, failed without reason {len(acc['failed_without_reason'])}; "
            f"queued by the server without a 202: {len(acc['unknown_to_client'])}"
            + ("" if acc["server_list_complete"] else " (server list not checked or incomplete)"),
        )
    )
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("by kind:")
    for kind, outcome in report["by_kind"].items():
        lines.append(f"  {kind.ljust(width - 2)}  " + ", ".join(f"{k}: {v}" for k, v in sorted(outcome.items())))
    for sample in report["error_samples"][:5]:
        lines.append(f"error: {sample}")
    for name in ("lost", "stuck", "failed_without_reason", "done_without_record", "duplicate_ids", "unknown_to_client"):
        if acc[name]:
            lines.append(f"{name}: {', '.join(map(str, acc[name][:10]))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    parser.add_argument("--videos", nargs="+", required=True, help="good videos: files or folders of them")
    parser.add_argument("--bad", nargs="*", help="bad uploads to use (default: written to a temporary folder)")
    parser.add_argument("--bad-share", type=float, default=0.25, help="share of uploads that are bad (0.25)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--uploads", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=600.0, help="stop everything after this many seconds")
    parser.add_argument("--server-pid", type=int, help="sample the RSS of this process and its children")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls of an analysis")
    parser.add_argument("--max-retries", type=int, default=20, help="429 retries per upload")
    parser.add_argument("--retry-cap", type=float, default=30.0, help="longest wait on one Retry-After (s)")
    parser.add_argument("--api-key", default=os.environ.get("DEEPFAKE_API_KEY"), help="(env DEEPFAKE_API_KEY)")
    parser.add_argument("--seed", type=int, default=0, help="jitter of the 429 waits")
    parser.add_argument("--json", type=Path, help="write the whole report here")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.uploads < 1 or not 0 <= args.bad_share <= 1 or args.timeout <= 0:
        parser.error("--clients and --uploads must be >= 1, --bad-share in [0, 1], --timeout > 0")
    report = run_load_test(
        args.url,
        args.videos,
        args.bad,
        clients=args.clients,
        uploads=args.uploads,
        bad_share=args.bad_share,
        timeout=args.timeout,
        server_pid=args.server_pid,
        poll_s=args.poll,
        max_retries=args.max_retries,
        retry_cap_s=args.retry_cap,
        api_key=args.api_key,
        seed=args.seed,
    )
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    healthy = report["accounting"]["ok"] and not report["responses_5xx"] and not report["errors"]
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
