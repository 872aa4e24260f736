"""The hub's API description: ``/openapi.json`` with its security schemes, and ``/docs``, a self-contained page.

FastAPI's Swagger UI loads its script and styles from a CDN (cdn.jsdelivr.net), which a hub on a closed
network cannot reach, so the hub serves its own ``/docs``: one HTML page rendered from the OpenAPI
document on the server, no script, no external asset. For an interactive client, point any OpenAPI tool
(Swagger UI, Postman, schemathesis) at ``/openapi.json``.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from .api_models import STORE_SIGNATURE_SCHEME

DESCRIPTION = (
    "The StoreSync cloud hub: stores' agents enroll and send signed bursts of records; head office reads "
    "stores, ledgers, deliveries and derive errors with the admin token. Every error is a JSON `ErrorBody` "
    '(`{"error": code, "message": text}`) naming the field and the reason. Contract: docs/protocol.md.'
)
METHODS = ("get", "post", "put", "patch", "delete")


def install(app: FastAPI) -> None:
    """Add the store-signature scheme to ``app.openapi()`` and serve ``GET /docs``."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = plain()
            schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["storeSignature"] = STORE_SIGNATURE_SCHEME
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse(render(app.openapi()))


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _security(op: dict[str, Any], doc: dict[str, Any]) -> str:
    reqs = op.get("security", doc.get("security")) or []
    names = [name for req in reqs for name in req]
    if not names:
        return "none"
    optional = any(not req for req in reqs)
    return ", ".join(names) + (" (optional)" if optional else "")


def render(doc: dict[str, Any]) -> str:
    """The API reference as one HTML page (every text escaped)."""
    info = doc.get("info", {})
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(info.get('title', 'API'))}</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
        "code,pre{background:#f4f4f4}section{border-top:1px solid #ccc;padding:.5em 0}"
        ".m{font-weight:bold;text-transform:uppercase}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}</style></head><body>",
        f"<h1>{_e(info.get('title', 'API'))} <small>{_e(info.get('version', ''))}</small></h1>",
        f"<p>{_e(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI "
        f"{_e(doc.get('openapi', ''))}).</p><h2>Security schemes</h2><ul>",
    ]
    for name, scheme in doc.get("components", {}).get("securitySchemes", {}).items():
        kind = scheme.get("scheme") or f"{scheme.get('in', '')} {scheme.get('name', '')}".strip()
        out.append(
            f"<li><b>{_e(name)}</b> ({_e(scheme.get('type'))} {_e(kind)}): {_e(scheme.get('description', ''))}</li>"
        )
    out.append("</ul><h2>Operations</h2>")
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            out.append(f"<section id='{_e(op.get('operationId', method + path))}'>")
            out.append(
                f"<h3><span class='m'>{_e(method)}</span> <code>{_e(path)}</code> — {_e(op.get('summary', ''))}</h3>"
            )
            out.append(f"<p>{_e(op.get('description', ''))}</p><p>Security: {_e(_security(op, doc))}</p>")
            params = op.get("parameters", [])
            if params:
                out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>")
                for p in params:
                    out.append(
                        f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p.get('in'))}</td>"
                        f"<td>{'yes' if p.get('required') else 'no'}</td><td>{_e(p.get('description', ''))}</td></tr>"
                    )
                out.append("</table>")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                text = json.dumps(body, indent=1)[:4000]
                out.append(f"<details><summary>request body (JSON Schema)</summary><pre>{_e(text)}</pre></details>")
            answers = ", ".join(
                f"{_e(code)} {_e(r.get('description', ''))}" for code, r in op.get("responses", {}).items()
            )
            out.append(f"<p>Answers: {answers}</p></section>")
    out.append("</body></html>")
    return "".join(out)
