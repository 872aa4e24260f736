"""Helpers for the TUI tests: settled pilots and a hub stand-in transport."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from textual.pilot import Pilot
from tui_states import NOW

from cloud_hub.admin import summary_dict
from cloud_hub.storage import StoreSummary
from tui.app import StoreTuiApp
from tui.hub_client import HubClient

DEAD_PORT_URL = "http://127.0.0.1:9"  # nothing listens there: the agent is "down" for actions


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until every worker is done and the screen has caught up."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def presses(*keys: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """A run_before that settles, presses keys, and settles again."""

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        if keys:
            await pilot.press(*keys)
        await settle(pilot)

    return run


def fleet_payloads() -> dict[str, Any]:
    """What a hub with forwarding answers: stores from the hub's own serializer, sinks and dead letters."""
    stores = [
        StoreSummary("S042", "Europe/Berlin", 1, 1834, "2026-11-22T16:29:41+00:00", 3, 0),
        StoreSummary("S043", "Europe/Berlin", 2, 977, "2026-11-22T14:02:10+00:00", 0, 1),
        StoreSummary("S107", "Europe/Lisbon", 1, 12408, "2026-11-22T16:29:58+00:00", 0, 0),
    ]
    # The per-store extras of cloud_hub.books.store_extras: backlog as the agent reported it, sync lag,
    # open derive errors (failed mappings) and time fallbacks.
    extras = {
        "S042": {
            "backlog": 0,
            "oldest_pending_age_s": None,
            "sync_lag_s": 0.0,
            "derive_errors": 0,
            "time_fallbacks": 0,
        },
        "S043": {
            "backlog": 312,
            "oldest_pending_age_s": 8400.0,
            "sync_lag_s": 17_400.0,
            "derive_errors": 2,
            "time_fallbacks": 1,
        },
        "S107": {
            "backlog": None,
            "oldest_pending_age_s": None,
            "sync_lag_s": None,
            "derive_errors": 0,
            "time_fallbacks": 0,
        },
    }
    return {
        "/v1/admin/stores": {"stores": [{**summary_dict(s), **extras[s.store_id]} for s in stores]},
        "/v1/admin/sinks": {
            "sinks": [
                {"name": "erp", "kind": "erpnext", "pending": 12, "dead": 1, "oldest_pending_age_s": 1260.0},
                {"name": "archive", "kind": "jsonl", "pending": 0, "dead": 0, "oldest_pending_age_s": 0.0},
            ]
        },
        "/v1/admin/deliveries": {
            "deliveries": [
                {"id": "481", "sink": "erp", "event_id": "S043:2:977", "store_id": "S043", "attempts": 10,
                 "last_error": "422 Unprocessable: item TEE-BLK-M unknown", "updated_at": "2026-11-22T15:10:00Z"},
            ]
        },
    }  # fmt: skip


class HubStandIn:
    """An httpx transport answering like a hub with forwarding endpoints; records replays."""

    def __init__(self, token: str = "sat_secret_admin_token_123") -> None:
        self.token = token
        self.payloads = fleet_payloads()
        self.replayed: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return httpx.Response(401, json={"error": "unauthenticated", "message": "bad token"})
        path = request.url.path
        if request.method == "POST" and path == "/v1/admin/deliveries/replay":
            body = json.loads(request.content)
            self.replayed.append(f"{body['sink']}/{body['event_id']}")
            return httpx.Response(200, json={"replayed": 1})
        if path in self.payloads:
            return httpx.Response(200, content=json.dumps(self.payloads[path]))
        return httpx.Response(404, json={"error": "not_found", "message": "no route"})

    def app(self) -> StoreTuiApp:
        client = HubClient("https://hub.example.com", self.token, transport=httpx.MockTransport(self))
        return StoreTuiApp.for_fleet(
            client, hub_url="https://hub.example.com", token=self.token, clock=lambda: NOW, refresh_s=0
        )
