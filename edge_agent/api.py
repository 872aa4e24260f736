"""The agent's loopback HTTP API (docs/protocol.md §2): a thin Starlette app.

Handlers parse JSON, validate with :func:`sync_protocol.parse_transaction`, hand valid transactions
to the group-commit writer and answer only after the commit. Bodies and card data are never logged;
422 answers name fields and reasons, never values.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sync_protocol._exceptions import TransactionInvalid
from sync_protocol.canonical import DuplicateKey, loads_strict
from sync_protocol.transaction import Transaction, parse_transaction

from ._exceptions import AgentError, CaptureConflict, NotEnrolled, StorageError
from .capture import CaptureWriter, Result
from .drops.importer import DropFolders
from .drops.importer import retry as retry_import
from .guard import register_of
from .metrics import CONTENT_TYPE, AgentMetrics
from .openapi import agent_openapi
from .scheduler import AgentScheduler
from .status import compute_status
from .store import CaptureResult, Outbox
from .store import imports as ledger
from .store.schema import LATEST_SCHEMA

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ITEMS = 5000


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _json(status: int, body: Any) -> Response:
    return Response(_dumps(body), status_code=status, media_type="application/json")


def answer(result: Result) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for one capture result."""
    if isinstance(result, CaptureResult):
        return (200 if result.duplicate else 201), {"seq": result.seq, "duplicate": result.duplicate}
    if isinstance(result, CaptureConflict):
        return 409, {"error": "conflict", "message": str(result), "seq": result.seq}
    if isinstance(result, NotEnrolled):
        return 503, {"error": "not_enrolled", "message": str(result)}
    if isinstance(result, StorageError):
        return result.http_status, {"error": "storage", "message": str(result)}
    return 500, {"error": result.code, "message": str(result)}


def invalid(exc: TransactionInvalid) -> tuple[int, dict[str, Any]]:
    """The 422 answer naming every bad field."""
    return 422, {"error": "invalid_transaction", "errors": [e.as_dict() for e in exc.errors]}


def _other_register(register: str) -> tuple[int, dict[str, Any]]:
    return 403, {"error": "forbidden", "message": f"the token is register {register}'s; it posts only its own sales"}


class StatusReader:
    """A connection for status reads, used from the thread pool one call at a time."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return compute_status(self._outbox.snapshot())

    def run(self, fn: Callable[[Outbox], Any]) -> Any:
        """Call ``fn`` with the connection, one caller at a time (the imports routes)."""
        with self._lock:
            return fn(self._outbox)


def readiness(writer: CaptureWriter, outbox: Outbox) -> tuple[int, dict[str, Any]]:
    """``GET /readyz``: 200 when a sale posted now would be stored, else 503 naming every reason.

    Ready means: the outbox writer runs and its last commit did not fail, the outbox file and its folder
    are writable, the file's schema is the one this agent writes, and the agent is enrolled.
    """
    reasons: list[str] = []
    if not writer.alive():
        reasons.append("the outbox writer is not running")
    if writer.last_error:
        reasons.append(f"the last capture could not be stored: {writer.last_error}")
    for path in (outbox.path, outbox.path.parent):
        if not os.access(path, os.W_OK):
            reasons.append(f"{path} is not writable")
    version = outbox.schema_version()
    if version != LATEST_SCHEMA:
        reasons.append(f"the outbox has schema version {version}; this agent writes {LATEST_SCHEMA}")
    ident = outbox.identity()
    if ident is None:
        reasons.append("not enrolled: run edge-agent enroll --hub URL --token TOKEN")
    body: dict[str, Any] = {
        "outbox": {"path": str(outbox.path), "schema_version": version, "latest_schema": LATEST_SCHEMA},
        "enrolled": ident is not None,
        "store_id": ident.store_id if ident else None,
        "epoch": ident.epoch if ident else None,
    }
    if reasons:
        return 503, {"error": "not_ready", "message": "; ".join(reasons), "reasons": reasons, **body}
    return 200, {"status": "ready", **body}


class CaptureHandler:
    """The capture logic of ``POST /v1/transactions``, independent of the web framework."""

    def __init__(self, writer: CaptureWriter) -> None:
        self.writer = writer

    async def handle(self, raw: bytes, register: str | None = None) -> tuple[int, Any]:
        """Status and JSON body for a request body (one object or an array).

        ``register`` is the register a token authenticated (non-loopback binds): only its own sales
        are taken, any other register's is refused with 403.
        """
        if len(raw) > MAX_BODY_BYTES:
            return 413, {"error": "too_large", "message": f"request body over {MAX_BODY_BYTES} bytes"}
        try:
            doc = loads_strict(raw)
        except DuplicateKey as exc:
            # Readers disagree on which of two values wins: refuse, naming the key (nothing is stored).
            return 422, {"error": "invalid_transaction", "errors": [{"field": exc.key, "reason": str(exc)}]}
        except (ValueError, RecursionError):
            return 400, {"error": "bad_request", "message": "body is not valid JSON (UTF-8)"}
        if isinstance(doc, list):
            return await self._many(doc, register)
        try:
            txn = parse_transaction(doc)
        except TransactionInvalid as exc:
            return invalid(exc)
        if register is not None and txn.register_id != register:
            return _other_register(register)
        return answer(await self.writer.submit(txn))

    async def _many(self, items: list[Any], register: str | None) -> tuple[int, Any]:
        if len(items) > MAX_ITEMS:
            return 413, {"error": "too_large", "message": f"at most {MAX_ITEMS} transactions per request"}
        answers: list[tuple[int, dict[str, Any]] | None] = [None] * len(items)
        valid: list[tuple[int, Transaction]] = []
        for i, item in enumerate(items):
            try:
                txn = parse_transaction(item)
            except TransactionInvalid as exc:
                answers[i] = invalid(exc)
                continue
            if register is not None and txn.register_id != register:
                answers[i] = _other_register(register)
            else:
                valid.append((i, txn))
        results = await self.writer.submit_many([txn for _, txn in valid]) if valid else []
        for (i, _), result in zip(valid, results, strict=True):
            answers[i] = answer(result)
        return 200, {"results": [{"status": status, **body} for status, body in (a for a in answers if a)]}


def _fast_path(capture: CaptureHandler, app: ASGIApp, metrics: AgentMetrics) -> ASGIApp:
    """Serve ``POST /v1/transactions`` straight from ASGI messages; everything else goes to ``app``.

    The capture path is the hot one (thousands per second); skipping routing and request/response
    objects keeps its overhead low. Its latency (request received to committed answer) goes into
    ``storesync_capture_seconds``: one clock read and one histogram observe, no lock of ours.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/transactions" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= MAX_BODY_BYTES:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size > MAX_BODY_BYTES:
            status, body = 413, {"error": "too_large", "message": f"request body over {MAX_BODY_BYTES} bytes"}
        else:
            status, body = await capture.handle(b"".join(chunks), register_of(scope))
            metrics.captured(status, body, time.perf_counter() - started)
        payload = _dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return asgi


def create_app(
    writer: CaptureWriter, reader: StatusReader, scheduler: AgentScheduler | None, drops: DropFolders | None = None
) -> ASGIApp:
    """Build the app around a started writer, a status reader, (optionally) the scheduler and drop folder."""
    capture = CaptureHandler(writer)
    metrics = AgentMetrics(reader.status)

    async def transactions(request: Request) -> Response:  # same answers as the fast path
        started = time.perf_counter()
        status, body = await capture.handle(await request.body(), register_of(request.scope))
        metrics.captured(status, body, time.perf_counter() - started)
        return _json(status, body)

    async def status(_: Request) -> Response:
        try:
            return _json(200, await run_in_threadpool(reader.status))
        except AgentError as exc:
            return _json(503, {"error": exc.code, "message": str(exc)})

    async def sync_now(_: Request) -> Response:
        if scheduler is None:
            return _json(503, {"error": "no_scheduler", "message": "sync is not running in this process"})
        scheduler.nudge(force=True)
        return _json(202, {"queued": True})

    async def imports(_: Request) -> Response:
        def listing(ob: Outbox) -> dict[str, Any]:
            folder = str(drops.root) if drops else None
            return {"drop_dir": folder, **ledger.status_block(ob), "imports": ledger.recent(ob)}

        return _json(200, await run_in_threadpool(reader.run, listing))

    async def imports_retry(request: Request) -> Response:
        if drops is None:
            return _json(503, {"error": "no_drop_dir", "message": "the agent runs without --drop-dir"})
        sha = str(request.path_params["sha"])
        try:
            path = await run_in_threadpool(reader.run, lambda ob: retry_import(ob, drops, sha))
        except LookupError as exc:
            return _json(404, {"error": "not_found", "message": str(exc)})
        return _json(202, {"file": path.name})

    async def healthz(_: Request) -> Response:
        return _json(200, {"ok": True})

    async def readyz(_: Request) -> Response:
        try:
            status, body = await run_in_threadpool(reader.run, lambda ob: readiness(writer, ob))
        except AgentError as exc:  # the outbox cannot even be read
            status, body = 503, {"error": "not_ready", "message": str(exc), "reasons": [str(exc)]}
        response = _json(status, body)
        if status == 503:
            response.headers["Retry-After"] = "5"
        return response

    async def metrics_endpoint(_: Request) -> Response:
        try:
            text = await run_in_threadpool(metrics.render)
        except AgentError as exc:
            return _json(503, {"error": exc.code, "message": str(exc)})
        return Response(text, media_type=CONTENT_TYPE)

    async def openapi(_: Request) -> Response:
        return _json(200, agent_openapi())

    app = Starlette(
        routes=[
            Route("/v1/transactions", transactions, methods=["POST"]),
            Route("/v1/status", status, methods=["GET"]),
            Route("/v1/sync", sync_now, methods=["POST"]),
            Route("/v1/imports", imports, methods=["GET"]),
            Route("/v1/imports/{sha}/retry", imports_retry, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
        ]
    )
    return _fast_path(capture, app, metrics)
