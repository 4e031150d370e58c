"""``deepfake serve`` as a person uses it: its page in a real browser, and its offline API docs.

The browser is Debian's Chromium (``apt-get install chromium``) driven by Playwright, which cannot download
browsers of its own here. The page is checked under the service's real Content-Security-Policy: the waits
below poll with ``page.evaluate`` (a DevTools call) rather than ``wait_for_function``, whose string predicates
the policy's ``script-src 'self'`` (rightly) refuses to ``eval``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from fastapi import FastAPI, File, UploadFile
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient

from deepfake.apps.serve.docs_ui import ASSETS_URL, mount_docs
from deepfake.modeling.card import read_card
from deepfake.modeling.store import ModelStore
from tests.conftest import free_port

CHROMIUM = Path(os.environ.get("DEEPFAKE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
READY_S = 180  # server start: imports, models loaded
VERDICT_S = 120  # one small video through decode, detection, the ensemble and the explanation
MEDIA_S = 30


# ---- /docs, offline ---------------------------------------------------------------------------------------


def _docs_app(static: Path) -> FastAPI:
    app = FastAPI(title="docs test", docs_url=None, redoc_url=None)

    @app.post("/v1/upload")
    def upload(video: Annotated[UploadFile | None, File()] = None) -> dict[str, str | None]:
        return {"name": video.filename if video else None}

    app.mount("/static", StaticFiles(directory=static), name="static")  # before mount_docs: must not hide it
    mount_docs(app)
    return app


def test_docs_ui_is_served_from_the_package_with_no_outside_url(tmp_path: Path) -> None:
    client = TestClient(_docs_app(tmp_path))
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assets = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert {f"{ASSETS_URL}/swagger-ui-bundle.js", f"{ASSETS_URL}/swagger-ui.css"} <= set(assets)
    urls = [*assets, *re.findall(r"url: '([^']*)'", html)]
    assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "http://" not in html and "https://" not in html
    for url in assets:
        served = client.get(url)
        assert served.status_code == 200, url
        assert len(served.content) > 500, url
    assert "javascript" in client.get(f"{ASSETS_URL}/swagger-ui-bundle.js").headers["content-type"]

    # the one inline script runs by its hash; nothing else inline may
    policy = page.headers["content-security-policy"]
    (script,) = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert f"'sha256-{digest}'" in script_src and "unsafe" not in script_src
    assert "frame-ancestors 'none'" in policy

    # Swagger UI 5 reads the app's own OpenAPI 3.1 document, with the upload as a file field
    assert "url: '/openapi.json'" in html
    spec = client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and "/v1/upload" in spec["paths"] and "/docs" not in spec["paths"]


# ---- the page, in Chromium, against the real server ----------------------------------------------------------


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextlib.contextmanager
def _server(models_root: dict, tmp_path: Path) -> Iterator[str]:
    """``deepfake serve`` in a subprocess on a free port; its base URL once /readyz says 200."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(models_root["raw"]))
    port = free_port()
    log = tmp_path / "serve.log"
    command = [
        sys.executable,
        "-m",
        "deepfake.cli",
        "--params",
        str(params),
        "serve",
        "--models",
        str(models_root["root"]),
        "--data",
        str(tmp_path / "data"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"deepfake serve exited with {process.returncode} before it was ready:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass  # not listening yet, or not ready (503)
            if time.monotonic() > deadline:
                pytest.fail(f"deepfake serve was not ready within {READY_S} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait(page: Any, expression: str, timeout_s: float, what: str, details: str = "", must: bool = True) -> bool:
    """Poll a JavaScript expression until it is truthy (bounded); fail saying what did not happen (or, with
    ``must=False``, return False)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            if not must:
                return False
            status = page.evaluate("document.querySelector('#status')?.textContent")
            reason = page.evaluate("document.querySelector('#reason')?.textContent")
            pytest.fail(f"{what}: not within {timeout_s:.0f} s (status {status!r}, reason {reason!r}){details}")
        time.sleep(0.2)
    return True


@pytest.mark.slow
def test_the_page_scores_a_video_in_chromium(models_root: dict, hostile_part: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("meeting notes, not a video\n")
    problems: list[str] = []

    with _server(models_root, tmp_path) as base, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
            page.on(  # anything the policy blocked: the page must need no inline script, style or eval
                "console",
                lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
            )
            page.goto(f"{base}/")
            assert "Deepfake" in page.title()

            def log() -> str:
                return f"\nserver log:\n{_tail(tmp_path / 'serve.log')}"

            # a video with a face: a verdict, the plot, the montage and a playable overlay
            page.set_input_files("#file", str(hostile_part / "reala.mp4"))
            _wait(
                page,
                "/\\d/.test(document.querySelector('#probability').textContent)"
                " || !document.querySelector('#reason').hidden"
                " || document.querySelector('#status').classList.contains('error')",
                VERDICT_S,
                "a verdict for reala.mp4",
                log(),
            )
            probability = page.text_content("#probability") or ""
            assert re.fullmatch(r"\d{1,3}\.\d %", probability), (
                f"no probability: {probability!r}, reason {page.text_content('#reason')!r}, "
                f"status {page.text_content('#status')!r}{log()}"
            )
            assert 0 <= float(probability.split()[0]) <= 100
            # the three-way call from the package's operating points, beside its calibrated probability, and the
            # file's content credentials (this clip carries none)
            assert page.text_content("#label") in ("LIKELY FAKE", "UNCERTAIN", "LIKELY REAL")
            facts = page.text_content("#facts") or ""
            assert "Operating point" in facts and "false-positive rate" in facts, facts
            assert "Content credentials (C2PA)" in facts and "no content credentials" in facts, facts
            assert page.is_hidden("#reason")
            # the verdict names its model (the export stage's card: export.name and the package's version); the
            # fixture exports without the sample root, so whether it saw only the sample is unknown: a badge shows
            card = read_card(ModelStore(models_root["root"]).folder("onnx"))
            assert page.text_content("#model") == f"Model: {card.name} · version {card.version}"
            badge = page.text_content("#model-badge") or ""
            assert card.demonstration is None and page.is_visible("#model-badge")
            assert badge == "model of unknown provenance — not for real decisions"

            line = page.locator("#plot svg path.line")
            assert line.count() == 1 and (line.get_attribute("d") or "").startswith("M")
            assert page.locator("#plot svg circle").count() >= 1

            _wait(page, "document.querySelector('#montage').naturalWidth > 0", MEDIA_S, "the montage image", log())
            _wait(
                page,
                "(v => v.readyState >= 2 && v.videoWidth > 0 || v.error)(document.querySelector('#overlay'))",
                MEDIA_S,
                "the overlay video decoded",
                log(),
            )
            error = page.evaluate("document.querySelector('#overlay').error?.code ?? null")
            assert error is None, f"Chromium could not play the overlay MP4 (MediaError code {error})"
            # a decoded picture, not just a header: the frame drawn to a canvas is not black
            page.evaluate(_SEEK)
            brightness = page.evaluate(_MEAN_BRIGHTNESS)
            assert brightness > 10, f"the overlay's frame is black (mean {brightness:.1f})"
            assert page.locator("#recent li").count() >= 1
            _screenshot(page, tmp_path / "serve-page.png")

            # a text file named .mp4: the explicit reason, no probability
            page.set_input_files("#file", str(not_video))
            _wait(page, "!document.querySelector('#reason').hidden", VERDICT_S, "a reason for notes.mp4", log())
            reason = page.text_content("#reason") or ""
            assert "unreadable" in reason.lower(), reason
            assert not re.search(r"\d", page.text_content("#probability") or "")
            page.screenshot(path=str(tmp_path / "serve-page-unreadable.png"), full_page=True)

            # the recent list reopens the analysis (the text file may have been refused at upload: no entry)
            page.locator("#recent li", has_text="reala.mp4").first.locator("button.open").click()
            _wait(page, "/\\d/.test(document.querySelector('#probability').textContent)", 30, "the reopened verdict")
            assert page.text_content("#probability") == probability
            page.locator("#recent li", has_text="reala.mp4").first.locator("button.delete").click()
            _wait(
                page,
                "document.querySelector('#result').hidden && ![...document.querySelectorAll('#recent li')]"
                ".some(li => li.textContent.includes('reala.mp4'))",
                10,
                "the deleted analysis gone from the page",
            )
        finally:
            browser.close()
    assert not problems, problems


_OVERLAY = "document.querySelector('#overlay')"
# a seek puts a decoded frame up (bounded: 5 s)
_SEEK = f"""(v => Promise.race([
  new Promise(done => {{ v.addEventListener("seeked", done, {{ once: true }}); v.currentTime = 0.05; }}),
  new Promise(done => setTimeout(done, 5000)),
]))({_OVERLAY})"""
_MEAN_BRIGHTNESS = f"""(v => {{
  const canvas = document.createElement("canvas");
  canvas.width = v.videoWidth;
  canvas.height = v.videoHeight;
  const g = canvas.getContext("2d");
  g.drawImage(v, 0, 0);
  const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < px.length; i += 4) sum += px[i] + px[i + 1] + px[i + 2];
  return sum / (px.length / 4) / 3;
}})({_OVERLAY})"""


def _screenshot(page: Any, path: Path) -> None:
    """The whole page, kept in ``path`` and, when ``DEEPFAKE_SCREENSHOT`` names a file, there too (the README's
    picture: ``DEEPFAKE_SCREENSHOT=docs/images/serve-page.jpg pytest tests/test_serve_browser.py``; the
    format follows the name's suffix). Only the README's picture waits for a settled player: the one in ``path``
    is for looking into a failure."""
    page.screenshot(path=str(path), full_page=True, animations="disabled")  # no half-drawn spinner
    extra = os.environ.get("DEEPFAKE_SCREENSHOT")
    if extra:
        # a settled frame for the picture, not a check
        _wait(page, "document.querySelector('#overlay').readyState === 4", 5, "the overlay settled", must=False)
        page.wait_for_timeout(2000)  # the player's loading spinner fades out after a seek
        Path(extra).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=extra, full_page=True, animations="disabled", **_quality(extra))


def _quality(path: str) -> dict[str, int]:
    return {"quality": 82} if path.lower().endswith((".jpg", ".jpeg")) else {}
