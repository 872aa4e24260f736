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


def _answers(*codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        schema: dict[str, Any] = {"type": "object"} if code < 300 else _ERROR
        out[str(code)] = {"description": str(code), "content": {"application/json": {"schema": schema}}}
    return out


def agent_openapi() -> dict[str, Any]:
    """The document (a fresh dict each call)."""
    txn = inline_schema(Transaction)
    capture_body = {"oneOf": [txn, {"type": "array", "items": txn, "maxItems": 5000}]}
    guarded = (400, 401, 403, 413, 415, 421)
    return {
        "openapi": "3.1.0",
        "info": {"title": "StoreSync edge agent capture API", "version": "1"},
        "paths": {
            "/v1/transactions": {
                "post": {
                    "operationId": "capture",
                    "summary": "Store one transaction or an array of them (answers after the commit)",
                    "requestBody": json_body(capture_body),
                    "responses": _answers(200, 201, 409, 422, *guarded, 503, 507),
                }
            },
            "/v1/status": {"get": {"operationId": "status", "responses": _answers(200, *guarded, 503)}},
            "/v1/sync": {
                "post": {
                    "operationId": "sync_now",
                    "requestBody": json_body({"type": "object"}, required=False),
                    "responses": _answers(202, *guarded, 503),
                }
            },
            "/v1/imports": {"get": {"operationId": "imports", "responses": _answers(200, *guarded)}},
            "/v1/imports/{sha}/retry": {
                "post": {
                    "operationId": "retry_import",
                    "parameters": [{"name": "sha", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "requestBody": json_body({"type": "object"}, required=False),
                    "responses": _answers(202, 404, *guarded, 503),
                }
            },
            "/healthz": {"get": {"operationId": "healthz", "responses": _answers(200, 421)}},
        },
    }
