"""The capture API's OpenAPI 3.1 document, served at ``GET /openapi.json`` (docs/protocol.md §2).

Written by hand around the transaction schema of :mod:`sync_protocol.transaction`, so clients and the
fuzz tests (``tests/security/test_fuzz_api.py``, ``make fuzz``) see what the agent really takes.
"""

from __future__ import annotations

from typing import Any

from sync_protocol.schema_doc import inline_schema, json_body
from sync_protocol.transaction import Transaction

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    "required": ["error"],
}


_TEXT = {"type": "string"}
_NUM = {"type": ["number", "null"]}
_READY = {
    "type": "object",
    "properties": {
        "status": {"const": "ready"},
        "error": {"const": "not_ready"},
        "message": _TEXT,
        "reasons": {"type": "array", "items": _TEXT, "description": "every reason the agent is not ready"},
        "enrolled": {"type": "boolean"},
        "store_id": {"type": ["string", "null"]},
        "epoch": {"type": ["integer", "null"]},
        "outbox": {
            "type": "object",
            "properties": {"path": _TEXT, "schema_version": {"type": "integer"}, "latest_schema": {"type": "integer"}},
        },
    },
    "required": ["enrolled", "outbox"],
}
_STATUS = {
    "type": "object",
    "description": "edge_agent.status.compute_status: the same fields as `edge-agent status --json`",
    "properties": {
        "store_id": {"type": ["string", "null"]},
        "enrolled": {"type": "boolean"},
        "last_seq": {"type": "integer"},
        "acked_through": {"type": "integer"},
        "pending": {"type": "integer", "description": "records waiting for the hub"},
        "oldest_pending_age_s": _NUM,
        "last_sync_result": {"enum": ["ok", "offline", "blocked", "never"]},
        "catch_up": {
            "type": ["object", "null"],
            "description": "while a backlog drains: records/s acknowledged over the last minute and the ETA",
            "properties": {
                "rate_per_s": {"type": "number"},
                "eta_s": {"type": "number"},
                "window_s": {"type": "number"},
            },
        },
    },
    "required": ["enrolled", "last_seq", "acked_through", "pending", "catch_up"],
}
_GUARD = {
    400: "Bad request (not JSON, or a bad field named in the answer)",
    401: "Beyond loopback: no or a wrong register token (`Authorization: Bearer`)",
    403: "A foreign Origin (web pages may not call the agent), or another register's token",
    413: "Body too large",
    415: "POST without Content-Type: application/json",
    421: "The Host header does not name the agent's address",
}
_WHAT = {
    200: "OK",
    201: "Stored (durable) with its seq",
    202: "Accepted",
    404: "Not found",
    409: "Another transaction with the same register_id and txn_id but different content is stored",
    422: "Invalid transaction: every bad field named with its reason",
    503: "Not enrolled, or the outbox cannot be written right now (retry; nothing was stored)",
    507: "The disk holding the outbox is full (nothing was stored)",
}


_GUARDED = (400, 401, 403, 413, 415, 421)


def _answers(*codes: int, ok: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        schema: dict[str, Any] = (ok or {"type": "object"}) if code < 300 else _ERROR
        text = _GUARD.get(code) or _WHAT.get(code) or str(code)
        out[str(code)] = {"description": text, "content": {"application/json": {"schema": schema}}}
    return out


def _op(op_id: str, summary: str, description: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "description": description, "responses": responses, **extra}


def agent_openapi() -> dict[str, Any]:
    """The document (a fresh dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "StoreSync edge agent capture API",
            "version": "1",
            "description": "The store's agent on loopback (DESIGN §10): POS registers post sales; monitors read "
            "status, readiness and metrics. Only `application/json` requests whose Host names the agent and "
            "that carry no foreign Origin are answered; beyond loopback every route but /healthz needs a "
            "register token.",
        },
        "components": {
            "securitySchemes": {
                "registerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the agent listens beyond loopback: a register's token from "
                    "`edge-agent register add REGISTER` (loopback clients need none).",
                }
            }
        },
        "security": [{}, {"registerToken": []}],
        "paths": {**_work_paths(), **_monitor_paths()},
    }


def _work_paths() -> dict[str, Any]:
    """What registers and staff do: capture, status, sync now, the drop imports."""
    txn = inline_schema(Transaction)
    capture_body = {"oneOf": [txn, {"type": "array", "items": txn, "maxItems": 5000}]}
    guarded = _GUARDED
    return {
        "/v1/transactions": {
            "post": _op(
                "capture",
                "Store one transaction or an array of them (answers after the commit)",
                "Validates, numbers, chains and signs each transaction into the outbox and answers only "
                "once it is on disk: 201 `{seq, duplicate: false}`, 200 `{seq, duplicate: true}` for a "
                "retry of a stored one (same register_id and txn_id). An array is answered 200 with one "
                "result per item.",
                _answers(200, 201, 409, 422, *guarded, 503, 507),
                requestBody=json_body(capture_body),
            )
        },
        "/v1/status": {
            "get": _op(
                "status",
                "The agent's sync status",
                "Pending records, oldest waiting, last sync and its result, blocked reason, receipt, clock, "
                "drop imports, and `catch_up` (rate and ETA while a backlog drains).",
                _answers(200, *guarded, 503, ok=_STATUS),
            )
        },
        "/v1/sync": {
            "post": _op(
                "sync_now",
                "Sync now",
                "Starts a sync pass at once (also retries a blocked outbox). Answers 202 before it runs.",
                _answers(202, *guarded, 503),
                requestBody=json_body({"type": "object"}, required=False),
            )
        },
        "/v1/imports": {
            "get": _op(
                "imports",
                "Drop-folder imports",
                "The drop folder, the running import with its progress and the recent imports.",
                _answers(200, *guarded),
            )
        },
        "/v1/imports/{sha}/retry": {
            "post": _op(
                "retry_import",
                "Import a rejected drop file again",
                "Moves the rejected file back into the drop folder with a retry ticket.",
                _answers(202, 404, *guarded, 503),
                parameters=[
                    {
                        "name": "sha",
                        "in": "path",
                        "required": True,
                        "description": "SHA-256 (hex) of the rejected file, from GET /v1/imports",
                        "schema": {"type": "string"},
                    }
                ],
                requestBody=json_body({"type": "object"}, required=False),
            )
        },
    }


def _monitor_paths() -> dict[str, Any]:
    """What monitors read: liveness, readiness, metrics."""
    guarded = _GUARDED
    not_ready = _answers(503)
    not_ready["503"]["description"] = "Not ready: `reasons` names each (not enrolled, outbox not writable, ...)"
    not_ready["503"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return {
        "/healthz": {
            "get": _op(
                "healthz",
                "Liveness",
                '`{"ok": true}` while the process serves; needs no token (only the Host check).',
                _answers(200, 421),
                security=[{}],
            )
        },
        "/readyz": {
            "get": _op(
                "readyz",
                "Readiness: would a sale posted now be stored?",
                "200 when the outbox writer runs, the outbox and its folder are writable, the schema is "
                "the one this agent writes and the agent is enrolled; else 503 naming every reason.",
                {**_answers(200, *guarded, ok=_READY), **not_ready},
            )
        },
        "/metrics": {
            "get": _op(
                "metrics",
                "Prometheus metrics (text format)",
                "`storesync_capture_seconds` (histogram: request received to committed answer), "
                "`storesync_capture_records_total`, `storesync_pending_records`, "
                "`storesync_oldest_pending_record_age_seconds`, `storesync_last_ack_age_seconds`, "
                "`storesync_sync_blocked`, `storesync_outbox_last_seq`, `storesync_build_info`.",
                {
                    "200": {
                        "description": "Prometheus text exposition format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **{k: v for k, v in _answers(*guarded, 503).items()},
                },
            )
        },
    }
