"""JSON Schemas of the wire models for OpenAPI documents (the hub's and the agent's ``/openapi.json``).

Pydantic puts nested models under ``$defs`` with ``#/$defs/...`` references, which an OpenAPI
document would resolve against its own root. :func:`inline_schema` substitutes them, so each schema
stands alone (none of the wire models is recursive).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _inline(node: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    if depth > 32:  # pragma: no cover - the wire models are not recursive
        raise ValueError("schema nests too deep to inline")
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _inline(defs[ref[len("#/$defs/") :]], defs, depth + 1)
            rest = {k: _inline(v, defs, depth + 1) for k, v in node.items() if k != "$ref"}
            return {**target, **rest}
        return {k: _inline(v, defs, depth + 1) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs, depth + 1) for v in node]
    return node


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of ``model`` with every ``$ref`` replaced by the schema it names."""
    raw = model.model_json_schema()
    return dict(_inline(raw, raw.get("$defs", {})))


def json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """An OpenAPI ``requestBody`` taking ``application/json`` of ``schema``."""
    return {"required": required, "content": {"application/json": {"schema": schema}}}
