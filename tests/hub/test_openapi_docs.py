"""The hub's OpenAPI is usable by people and tools (issue 13): read from a real hub process.

Every operation and parameter is described, admin operations declare the admin bearer scheme and bursts the
store-signature scheme, ``/docs`` answers with a page that needs nothing from the internet, and real answers
of every admin operation validate against the documented models with unknown fields forbidden.
"""

from __future__ import annotations

import re

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from cloud_hub import api_models as m
from cloud_hub import books
from cloud_hub.storage import DeriveError, TimeFallback
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub
from sync_protocol.wire import ErrorBody

ANSWERS: dict[tuple[str, str], type[BaseModel]] = {
    ("get", "/healthz"): m.Health,
    ("get", "/readyz"): m.Ready,
    ("get", "/v1/admin/stores"): m.Stores,
    ("get", "/v1/admin/stores/S1"): m.StoreDetail,
    ("get", "/v1/admin/stores/S1/ledger"): m.LedgerPage,
    ("get", "/v1/admin/sinks"): m.Sinks,
    ("get", "/v1/admin/deliveries"): m.Deliveries,
    ("get", "/v1/admin/derive-errors"): m.DeriveErrors,
    ("get", "/v1/admin/time-fallbacks"): m.Fallbacks,
}


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, item in doc["paths"].items() for method, op in item.items()]


def test_every_operation_is_described_and_secured(hub: Hub) -> None:
    doc = httpx.get(hub.url + "/openapi.json", timeout=10).json()
    ops = operations(doc)
    assert len(ops) >= 15
    for method, path, op in ops:
        where = f"{method.upper()} {path}"
        assert op.get("summary") and len(op.get("description", "")) > 20, where
        for param in op.get("parameters", []):
            assert param.get("description"), f"{where}: parameter {param['name']}"
            assert param["name"].lower() != "authorization", f"{where}: the token is a security scheme, not a header"
        assert all(r.get("description") for r in op["responses"].values()), where
        ok = next(code for code in op["responses"] if code.startswith("2"))
        assert op["responses"][ok].get("content"), f"{where}: answer {ok} has no documented body"
        if path.startswith("/v1/admin/"):
            assert op.get("security") == [{"adminToken": []}], where
            assert "401" in op["responses"], where
    schemes = doc["components"]["securitySchemes"]
    assert schemes["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["adminToken"]["description"],
    }
    assert schemes["storeSignature"]["type"] == "apiKey" and schemes["storeSignature"]["in"] == "header"
    assert all(
        h in schemes["storeSignature"]["description"] for h in ("Signature-Input", "Signature", "Content-Digest")
    )
    paths = doc["paths"]
    assert paths["/v1/bursts"]["post"]["security"] == [{"storeSignature": []}]
    assert paths["/metrics"]["get"]["security"] == [{"adminToken": []}, {}]  # optional: more series with it
    assert "requestBody" in paths["/v1/admin/deliveries/replay"]["post"]

    page = httpx.get(hub.url + "/docs", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text), "the page loads something remote"
    assert "<script" not in page.text
    for _method, path, op in ops:
        assert f"<code>{path}</code>" in page.text and op["summary"].replace("'", "&#x27;") in page.text


def test_real_answers_match_the_documented_models(hub: Hub, agent: Agent) -> None:
    pos = Pos("R1", seed=21)
    for _ in range(3):
        assert agent.post(pos.sale()).status_code == 201
    agent.wait_synced(30)
    admin = {"Authorization": f"Bearer {hub.admin_token}"}
    with httpx.Client(base_url=hub.url, headers=admin, timeout=10) as client:
        for (method, path), model in ANSWERS.items():
            answer = client.request(method, path)
            assert answer.status_code == 200, (path, answer.text)
            model.model_validate(answer.json())  # extra="forbid": a field the model lacks fails here
        event = client.get("/v1/admin/deliveries").json()["deliveries"][0]["event_id"]
        m.Replayed.model_validate(client.post("/v1/admin/deliveries/replay", json={"event_id": event}).json())
        missing = client.post("/v1/admin/deliveries/skip", json={"event_id": "nope", "sink": "events"})
        assert missing.status_code == 404
        ErrorBody.model_validate(missing.json())
        refused = httpx.get(hub.url + "/v1/admin/stores", timeout=10)
        assert refused.status_code == 401 and ErrorBody.model_validate(refused.json()).error == "unauthenticated"


def test_answers_of_stored_records_match_the_models_built_from_the_records() -> None:
    """Derive errors and time fallbacks are empty lists in the hub above: their views are checked here, on records."""
    fallback = TimeFallback(
        1, "S1", 1, 7, "R1", "T7", "2031-01-01T00:00:00", "2026-12-02T05:00:00.000Z", "capture-fallback", "future", "x"
    )
    error = DeriveError(2, "S1", 1, 8, "invalid_transaction: no lines", "2026-12-02T05:00:00.000Z")
    m.Fallbacks.model_validate({"fallbacks": [books.fallback_dict(fallback)]})
    m.DeriveErrors.model_validate({"derive_errors": [books.derive_error_dict(error)]})
    with pytest.raises(ValidationError, match="extra"):
        m.FallbackItem.model_validate({**books.fallback_dict(fallback), "card": "x"})
