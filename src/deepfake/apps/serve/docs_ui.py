"""The OpenAPI UI at ``/docs``, served offline from the ``fastapi-offline`` package's copy of Swagger UI 5 (no CDN).

FastAPI's own ``/docs`` points at jsDelivr; the service is created with ``docs_url=None`` and calls
``mount_docs`` instead: Swagger UI's files are served from the installed package at ``/static/swagger/``
and ``/docs`` is FastAPI's Swagger page pointed at them and at the app's own ``/openapi.json`` (3.1,
which Swagger UI 5 reads as it is).

That page starts Swagger UI with one inline ``<script>``, which the service's strict Content-Security-Policy
(``script-src 'self'``) would block; ``/docs`` therefore carries its own policy that allows exactly that
script by its SHA-256 hash (not ``'unsafe-inline'``: no other inline script can run on it). Swagger UI's
React components set inline styles, so ``style-src`` there also has ``'unsafe-inline'``; styles cannot run code.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

ASSETS_URL = "/static/swagger"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def swagger_dist() -> Path:
    """The folder of Swagger UI's built files inside the installed ``fastapi-offline`` package."""
    import fastapi_offline

    folder = Path(fastapi_offline.__file__).parent / "static"
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"fastapi-offline is installed without its files: no swagger-ui-bundle.js in {folder}")
    return folder


def docs_policy(html: str) -> str:
    """The Content-Security-Policy for ``html``: the strict one, plus the hashes of its inline scripts."""
    digests = (
        base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() for script in _INLINE_SCRIPT.findall(html)
    )
    hashes = " ".join(f"'sha256-{digest}'" for digest in digests)
    return (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        f"script-src 'self' {hashes}; connect-src 'self'; frame-ancestors 'none'"
    )


def mount_docs(app: fastapi.FastAPI, title: str | None = None) -> None:
    """Serve Swagger UI at ``/docs`` from the installed package's files, mounted at ``/static/swagger``.

    The mount is put first among the app's routes, so a ``/static`` mount added before or after this call
    does not hide it.
    """
    dist = swagger_dist()
    body = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=title or f"{app.title} - API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        # no badge fetched from validator.swagger.io: the page reaches nothing but this server
        swagger_ui_parameters={"validatorUrl": None},
    ).body
    page = bytes(body).decode()  # Response.body is typed bytes | memoryview
    headers = {"Content-Security-Policy": docs_policy(page), "Cache-Control": "no-cache"}
    app.router.routes.insert(0, Mount(ASSETS_URL, app=StaticFiles(directory=dist), name="swagger"))

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)
