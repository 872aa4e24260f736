"""The hub's admin API as the fleet view uses it (docs/protocol.md §8).

Stores come from ``GET /v1/admin/stores``. Forwarding is read where the hub offers it:

- ``GET /v1/admin/sinks`` → ``{"sinks": [{"name", "kind", "pending", "dead", ...}]}``
- ``GET /v1/admin/deliveries?state=dead&limit=N`` →
  ``{"deliveries": [{"id", "sink", "event_id", "store_id", "attempts", "last_error", "updated_at"}]}``
- ``POST /v1/admin/deliveries/replay`` with ``{"event_id", "sink"}`` → ``{"replayed": n}``

A hub that answers 404 for these has no forwarding admin endpoints: the view says "not available on
this hub". The admin token is sent as a Bearer header and never shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ._exceptions import HubUnreachable

ENV_HUB_URL = "STORESYNC_HUB_URL"
ENV_TOKEN = "CLOUD_HUB_ADMIN_TOKEN"
ENV_TOKEN_FILE = "CLOUD_HUB_ADMIN_TOKEN_FILE"
TIMEOUT = httpx.Timeout(10.0, connect=3.0)
DEAD_LIMIT = 50


@dataclass(frozen=True)
class FleetData:
    """One read of the fleet.

    Attributes:
        stores: ``GET /v1/admin/stores`` entries.
        sinks: Sink entries, or None when the hub has no such endpoint.
        dead: Dead-lettered deliveries, or None when the hub has no such endpoint.
        error: Why the hub could not be read, if it could not.
    """

    stores: list[dict[str, Any]] = field(default_factory=list)
    sinks: list[dict[str, Any]] | None = None
    dead: list[dict[str, Any]] | None = None
    error: str | None = None


def read_token(token: str | None, token_file: str | None) -> str | None:
    """The admin token: given, else from ``--admin-token-file`` / ``$CLOUD_HUB_ADMIN_TOKEN(_FILE)``."""
    if token:
        return token.strip()
    path = token_file or os.environ.get(ENV_TOKEN_FILE)
    if path:
        return Path(path).expanduser().read_text().strip()
    env = os.environ.get(ENV_TOKEN)
    return env.strip() if env else None


class HubClient:
    """Blocking admin API client (the app calls it from thread workers).

    Args:
        url: Base URL of the hub.
        token: The admin token.
        transport: An httpx transport (tests).
    """

    def __init__(self, url: str, token: str | None, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._transport = transport

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self._headers, timeout=TIMEOUT, transport=self._transport)

    def _get(self, client: httpx.Client, path: str, optional: bool = False) -> Any:
        try:
            r = client.get(path)
        except httpx.HTTPError as exc:
            raise HubUnreachable(f"hub not reachable at {self.url} ({type(exc).__name__})") from None
        if optional and r.status_code in (404, 405):
            return None
        if r.status_code in (401, 403):
            raise HubUnreachable("the hub refused the admin token")
        if not r.is_success:
            raise HubUnreachable(f"hub answered {r.status_code} for {path}")
        return r.json()

    def fleet(self) -> FleetData:
        """Stores, and sinks and dead letters when the hub has them; errors come back in ``error``."""
        try:
            with self._client() as c:
                stores = list(self._get(c, "/v1/admin/stores").get("stores", []))
                sinks_doc = self._get(c, "/v1/admin/sinks", optional=True)
                dead_doc = self._get(c, f"/v1/admin/deliveries?state=dead&limit={DEAD_LIMIT}", optional=True)
        except HubUnreachable as exc:
            return FleetData(error=str(exc))
        except ValueError:
            return FleetData(error="the hub answered something that is not JSON")
        sinks = None if sinks_doc is None else list(sinks_doc.get("sinks", []))
        dead = None if dead_doc is None else list(dead_doc.get("deliveries", []))
        return FleetData(stores, sinks, dead)

    def replay(self, event_id: str, sink: str) -> tuple[bool, str]:
        """Replay one dead-lettered event of one sink; ``(ok, message for the operator)``."""
        try:
            with self._client() as c:
                r = c.post("/v1/admin/deliveries/replay", json={"event_id": event_id, "sink": sink})
        except httpx.HTTPError as exc:
            return False, f"hub not reachable ({type(exc).__name__})"
        if r.status_code in (404, 405) and not _has_error_body(r):
            return False, "replay is not available on this hub"
        if r.is_success:
            return True, f"{event_id} queued again for {sink}"
        return False, f"hub refused the replay ({r.status_code})"


def _has_error_body(r: httpx.Response) -> bool:
    try:
        doc = r.json()
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("error") not in (None, "not_found")
