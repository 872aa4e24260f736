"""A webhook receiver that behaves like a careful integration endpoint.

Contract it enforces on ``POST`` to any path:

- ``Idempotency-Key`` is required (400 otherwise). A key already accepted answers 200
  ``{"duplicate": true}`` and is not delivered again: the receiver holds each event once.
- With ``--secret``, ``X-StoreSync-Signature: sha256=<hex HMAC-SHA256 of the body>`` must match
  (401 otherwise).
- Structured mode (``application/cloudevents+json``): the body is the event. Binary mode: ``ce-*``
  headers carry the attributes (``ce-id``, ``ce-source``, ``ce-type``, ``ce-specversion``
  required, 400 otherwise) and the body is the data.
- ``--rate N`` limits accepted requests to N per second (429 with ``Retry-After``).
- ``--fail-first N`` / ``--fail-status S`` / ``--bad-ids ID,...`` inject failures (also settable at
  run time through ``POST /_standin/faults``); ids in ``--bad-ids`` are answered 400.

``GET /_standin/events`` lists the delivered events (one per key, in arrival order).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import Faults, Recorder, TokenBucket, control_routes, parser, serve, with_faults

_REQUIRED_CE = ("id", "source", "type", "specversion")


def _failure(status: int, retry_after: int | None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None and status in (429, 503) else {}
    return JSONResponse({"error": "injected", "status": status}, status_code=status, headers=headers)


def create_app(
    recorder: Recorder,
    secret: str | None = None,
    rate: float | None = None,
    faults: Faults | None = None,
    bad_ids: frozenset[str] = frozenset(),
) -> Starlette:
    """The receiver app."""
    faults = faults or Faults()
    bucket = TokenBucket(max(rate, 1.0), rate) if rate else None
    delivered: dict[str, dict[str, Any]] = {}

    async def receive(request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.url.path,
            "idempotency_key": headers.get("idempotency-key"),
            "signature": headers.get("x-storesync-signature"),
            "content_type": headers.get("content-type"),
            "ce": {k[3:]: unquote(v) for k, v in headers.items() if k.startswith("ce-")},
            "body": body.decode("utf-8", errors="replace"),
        }

        async def handle() -> Response:
            key = headers.get("idempotency-key")
            if not key:
                return JSONResponse({"error": "missing Idempotency-Key"}, status_code=400)
            if secret is not None:
                want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(want, headers.get("x-storesync-signature", "")):
                    return JSONResponse({"error": "bad signature"}, status_code=401)
            if key in bad_ids:
                return JSONResponse({"error": "rejected", "id": key}, status_code=400)
            if key in delivered:
                return JSONResponse({"ok": True, "duplicate": True})
            if bucket is not None and not bucket.take(1):
                wait = max(1, int(bucket.wait_for(1) + 0.999))
                return JSONResponse({"error": "rate limited"}, status_code=429, headers={"Retry-After": str(wait)})
            try:
                event = _event(headers, body)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if event.get("id") != key:
                return JSONResponse({"error": "Idempotency-Key is not the event id"}, status_code=400)
            delivered[key] = event
            return JSONResponse({"ok": True, "duplicate": False})

        response = await with_faults(faults, _failure, handle)
        entry["status"] = response.status_code
        recorder.record(entry)
        return response

    async def events(_: Request) -> Response:
        return JSONResponse({"events": list(delivered.values())})

    routes = control_routes(recorder, faults) + [
        Route("/_standin/events", events),
        Route("/{path:path}", receive, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def _event(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    ctype = headers.get("content-type", "")
    if ctype.startswith("application/cloudevents+json"):
        try:
            event = json.loads(body)
        except ValueError:
            raise ValueError("structured body is not JSON") from None
        if not isinstance(event, dict) or any(k not in event for k in _REQUIRED_CE):
            raise ValueError(f"structured event needs {', '.join(_REQUIRED_CE)}")
        return event
    attrs = {k[3:]: unquote(v) for k, v in headers.items() if k.startswith("ce-")}
    missing = [k for k in _REQUIRED_CE if k not in attrs]
    if missing:
        raise ValueError(f"binary mode needs ce-{', ce-'.join(missing)}")
    try:
        data = json.loads(body) if body else None
    except ValueError:
        raise ValueError("binary body is not JSON") from None
    return {**attrs, "datacontenttype": ctype, "data": data}


def main(argv: list[str] | None = None) -> None:
    p = parser("StoreSync webhook receiver stand-in")
    p.add_argument("--secret", default=None)
    p.add_argument("--rate", type=float, default=None, help="accepted requests per second")
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--bad-ids", default="", help="comma-separated event ids answered with 400")
    args = p.parse_args(argv)
    faults = Faults(fail_first=args.fail_first, fail_status=args.fail_status)
    bad = frozenset(x for x in args.bad_ids.split(",") if x)
    app = create_app(Recorder(args.record), args.secret, args.rate, faults, bad)
    serve(app, args.host, args.port)


if __name__ == "__main__":
    main()
