"""The agent's loopback API as the TUI uses it: sync now, and retry of a drop file when offered.

Calls block; the app runs them in thread workers. Every failure comes back as an
:class:`ActionResult` with a sentence for staff, never as an exception.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import httpx

ENV_AGENT_URL = "EDGE_AGENT_URL"
DEFAULT_AGENT_URL = "http://127.0.0.1:8787"
TIMEOUT = httpx.Timeout(5.0, connect=2.0)


@dataclass(frozen=True)
class ActionResult:
    """What an action did.

    Attributes:
        ok: It worked.
        message: One sentence for staff.
        agent_down: The agent did not answer at all.
        status: HTTP status, when there was an answer.
    """

    ok: bool
    message: str
    agent_down: bool = False
    status: int | None = None


def resolve_agent_url(arg: str | None) -> str:
    """``--agent-url``, else ``$EDGE_AGENT_URL``, else ``http://127.0.0.1:8787`` (the agent's default)."""
    return (arg or os.environ.get(ENV_AGENT_URL) or DEFAULT_AGENT_URL).rstrip("/")


class AgentClient:
    """Talks to ``edge-agent run`` on loopback.

    Args:
        url: Base URL of the agent API.
        transport: An httpx transport (tests).
    """

    def __init__(self, url: str, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._transport = transport

    def _post(self, path: str, body: Any = None) -> httpx.Response:
        """POST a JSON body (``{}`` when none: the agent takes only application/json)."""
        with httpx.Client(base_url=self.url, timeout=TIMEOUT, transport=self._transport) as client:
            return client.post(path, json={} if body is None else body)

    def sync_now(self) -> ActionResult:
        """``POST /v1/sync``: ask the agent to sync at once, skipping any backoff."""
        try:
            r = self._post("/v1/sync")
        except httpx.HTTPError:
            return ActionResult(False, f"The agent is not running (no answer at {self.url}); nothing was sent.", True)
        if r.status_code in (200, 202):
            return ActionResult(True, "Sync started: the agent is sending now.", status=r.status_code)
        return ActionResult(
            False, f"The agent refused to sync now ({r.status_code}: {_message(r)}).", status=r.status_code
        )

    def retry_drop(self, file: str, sha256: str | None) -> ActionResult | None:
        """``POST /v1/imports/{sha256}/retry``; None when the agent cannot do it (down, no drop folder, unknown)."""
        if not sha256:
            return None
        try:
            r = self._post(f"/v1/imports/{sha256}/retry")
        except httpx.HTTPError:
            return None
        if r.status_code in (404, 405, 503):
            return None
        if r.is_success:
            return ActionResult(True, f"{file} will be imported again.", status=r.status_code)
        return ActionResult(False, f"The agent could not retry {file} ({_message(r)}).", status=r.status_code)


def _message(r: httpx.Response) -> str:
    try:
        doc = r.json()
    except ValueError:
        return r.text[:120] or r.reason_phrase
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("error") or doc)
    return str(doc)
