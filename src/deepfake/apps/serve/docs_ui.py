"""The OpenAPI UI at ``/docs``, served offline from the ``swagger-ui-bundle`` package (no CDN).

FastAPI's own ``/docs`` points at jsDelivr; the service is created with ``docs_url=None`` and calls
``mount_docs`` instead: Swagger UI's files are served from the installed package at ``/static/swagger/``
and ``/docs`` is FastAPI's Swagger page pointed at them.

The packaged Swagger UI is 4.15.5, which reads OpenAPI 3.0 only and refuses FastAPI's 3.1 document ("Unable
to render this definition"). ``/docs`` therefore loads ``/docs/openapi.json``: the app's own ``/openapi.json``
(unchanged, still 3.1, for clients) rewritten into its 3.0 equivalent by ``openapi_30`` (nullable instead of
``anyOf [.., null]``, ``format: binary`` for uploads so "Try it out" shows a file picker, ...).

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
from typing import Any

import fastapi
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

ASSETS_URL = "/static/swagger"
SPEC_30_URL = "/docs/openapi.json"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def swagger_dist() -> Path:
    """The folder of Swagger UI's built files inside the installed ``swagger-ui-bundle`` package."""
    import swagger_ui_bundle

    folder = Path(str(swagger_ui_bundle.swagger_ui_path))
    if not (folder / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"swagger-ui-bundle is installed without its files: no swagger-ui-bundle.js in {folder}")
    return folder


# keys whose value is a map from names (properties, paths, status codes, ...) to objects, not an object itself
_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "schemas", "paths", "responses", "content",
     "headers", "examples", "callbacks", "securitySchemes", "links", "encoding", "mapping", "requestBodies",
     "parameters", "variables", "scopes"}
)  # fmt: skip
_NULL = {"type": "null"}


def openapi_30(spec: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.1 document (as FastAPI writes it) rewritten as OpenAPI 3.0.3, for Swagger UI 4."""
    out = _to_30(spec, is_map=False)
    out["openapi"] = "3.0.3"
    for key in ("webhooks", "jsonSchemaDialect"):
        out.pop(key, None)
    out.get("info", {}).get("license", {}).pop("identifier", None)
    return out


def _to_30(node: Any, is_map: bool) -> Any:
    if isinstance(node, list):
        return [_to_30(item, False) for item in node]
    if not isinstance(node, dict):
        return node
    if is_map:  # names -> objects: convert the objects, never the names
        return {key: _to_30(value, False) for key, value in node.items()}
    out = {key: _to_30(value, key in _MAPS and isinstance(value, dict)) for key, value in node.items()}
    kinds = out.get("type")
    if isinstance(kinds, list):  # type: [string, "null"]
        rest = [kind for kind in kinds if kind != "null"]
        if len(rest) < len(kinds):
            out["nullable"] = True
        if len(rest) == 1:
            out["type"] = rest[0]
        else:
            del out["type"]
            if rest:
                out["anyOf"] = [{"type": kind} for kind in rest]
    for key in ("anyOf", "oneOf"):
        options = out.get(key)
        if isinstance(options, list) and _NULL in options:  # Optional[X]: anyOf [X, {type: null}]
            rest = [option for option in options if option != _NULL]
            out["nullable"] = True
            if len(rest) == 1:
                del out[key]
                only = rest[0]
                if "$ref" in only:  # 3.0 ignores the siblings of a $ref
                    out["allOf"] = [only]
                else:
                    for name, value in only.items():
                        out.setdefault(name, value)
            elif rest:
                out[key] = rest
            else:
                del out[key]
    if out.get("type") == "string" and "contentMediaType" in out:  # an upload
        out.pop("contentMediaType")
        out.setdefault("format", "binary")
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if isinstance(out.get("examples"), list):
        examples = out.pop("examples")
        if examples:
            out.setdefault("example", examples[0])
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(bound)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[inclusive] = value
            out[bound] = True
    return out


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
    page = get_swagger_ui_html(
        openapi_url=SPEC_30_URL,
        title=title or f"{app.title} - API",
        swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        # no badge fetched from validator.swagger.io: the page reaches nothing but this server
        swagger_ui_parameters={"validatorUrl": None},
    ).body.decode()
    headers = {"Content-Security-Policy": docs_policy(page), "Cache-Control": "no-cache"}
    app.router.routes.insert(0, Mount(ASSETS_URL, app=StaticFiles(directory=dist), name="swagger"))

    spec: list[dict[str, Any]] = []  # built on first use, once every route is in

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    @app.get(SPEC_30_URL, include_in_schema=False)
    def docs_spec() -> JSONResponse:
        if not spec:
            spec.append(openapi_30(app.openapi()))
        return JSONResponse(spec[0])
