"""The agent's status: a pure function of outbox state, and a plain-text rendering for staff.

``GET /v1/status`` and ``edge-agent status --json`` return exactly :func:`compute_status`'s dict.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .store import Identity

AGENT_ALIVE_S = 15.0
STATUS_KEYS = (
    "store_id",
    "epoch",
    "key_id",
    "hub_url",
    "tz",
    "enrolled",
    "last_seq",
    "acked_through",
    "pending",
    "oldest_pending_captured_at",
    "oldest_pending_age_s",
    "last_sync_at",
    "last_sync_result",
    "last_success_at",
    "last_error",
    "blocked",
    "next_attempt_at",
    "heartbeat_at",
    "agent_running",
    "receipt",
    "clock",
    "imports",
    "catch_up",
)


def parse_time(text: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string (naive values are taken as UTC), or None."""
    if isinstance(text, datetime):
        return text
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _age(text: Any, now: datetime) -> float | None:
    when = parse_time(text)
    return None if when is None else round(max(0.0, (now - when).total_seconds()), 3)


def compute_status(snapshot: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The status dict from :meth:`edge_agent.store.Outbox.snapshot`.

    Args:
        snapshot: ``identity`` (Identity or None), ``last_seq``, ``oldest_pending_captured_at``, ``sync``,
            optionally ``bursts`` (the newest bursts, for ``catch_up``: see :func:`catch_up`).
        now: The current time (aware); defaults to now.

    Returns:
        A JSON-ready dict with the keys in :data:`STATUS_KEYS`.
    """
    now = now or datetime.now(UTC)
    ident: Identity | None = snapshot.get("identity")
    sync: dict[str, Any] = snapshot.get("sync") or {}
    last_seq = int(snapshot.get("last_seq") or 0)
    acked = int(sync.get("acked_through") or 0)
    oldest = snapshot.get("oldest_pending_captured_at")
    receipt = sync.get("receipt")
    heartbeat_age = _age(sync.get("heartbeat_at"), now)
    result = sync.get("last_sync_result") or "never"
    if result not in ("ok", "offline", "blocked", "never"):
        result = "offline"
    pending = max(0, last_seq - acked)
    return {
        "store_id": ident.store_id if ident else None,
        "epoch": ident.epoch if ident else None,
        "key_id": ident.key_id if ident else None,
        "hub_url": ident.hub_url if ident else None,
        "tz": ident.tz if ident else None,
        "enrolled": ident is not None,
        "last_seq": last_seq,
        "acked_through": acked,
        "pending": pending,
        "oldest_pending_captured_at": oldest,
        "oldest_pending_age_s": _age(oldest, now),
        "last_sync_at": sync.get("last_sync_at"),
        "last_sync_result": result,
        "last_success_at": sync.get("last_success_at"),
        "last_error": sync.get("last_error"),
        "blocked": sync.get("blocked") or None,
        "next_attempt_at": sync.get("next_attempt_at"),
        "heartbeat_at": sync.get("heartbeat_at"),
        "agent_running": heartbeat_age is not None and heartbeat_age < AGENT_ALIVE_S,
        "receipt": (
            {
                "acked_through": receipt.get("acked_through"),
                "chain": receipt.get("chain"),
                "hub_key_id": receipt.get("hub_key_id"),
            }
            if isinstance(receipt, dict)
            else None
        ),
        "clock": sync.get("clock") or None,
        "imports": snapshot.get("imports") or {"running": None, "last": None},
        "catch_up": catch_up(snapshot.get("bursts") or [], pending, now) if ident is not None else None,
    }


CATCH_UP_WINDOW_S = 60.0


def catch_up(bursts: list[dict[str, Any]], pending: int, now: datetime | None = None) -> dict[str, Any] | None:
    """Catch-up progress from the burst log: records/s acknowledged over the last minute, and the ETA.

    Args:
        bursts: Recent bursts (``at``, ``count``, ``result``), any order.
        pending: Records still waiting.
        now: The current time (aware); defaults to now.

    Returns:
        ``{"rate_per_s", "eta_s", "window_s"}``, or None when nothing is pending or nothing moved lately.
        The rate counts records of bursts answered ``ok`` in the last :data:`CATCH_UP_WINDOW_S` seconds over
        the time since the first of them (at least 1 s); probes (no records) are left out.
    """
    if pending <= 0:
        return None
    now = now or datetime.now(UTC)
    recent = []
    for b in bursts:
        at = parse_time(b.get("at"))
        count = int(b.get("count") or 0)  # probes (count 0) moved nothing: they would stretch the window
        if (
            at is not None
            and b.get("result") == "ok"
            and count
            and 0 <= (now - at).total_seconds() <= CATCH_UP_WINDOW_S
        ):
            recent.append((at, count))
    if not recent:
        return None
    span = max(1.0, (now - min(at for at, _ in recent)).total_seconds())
    rate = sum(n for _, n in recent) / span
    if rate <= 0:
        return None
    # three significant digits: a slow store's 0.64/s stays 0.64 (its ETA agrees with the rate shown)
    return {"rate_per_s": float(f"{rate:.3g}"), "eta_s": round(pending / rate, 1), "window_s": round(span, 1)}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def format_status(status: dict[str, Any]) -> str:
    """Plain text for ``edge-agent status``: what staff need to know, most important first."""
    if not status["enrolled"]:
        head = "NOT ENROLLED - run: edge-agent enroll --hub URL --token TOKEN"
    elif status["blocked"]:
        b = status["blocked"]
        where = f" at seq {b['seq']}" if b.get("seq") is not None else ""
        head = f"BLOCKED ({b.get('code')}){where}: {b.get('message')}"
    elif status["pending"] == 0:
        head = "IN SYNC"
    elif status["last_sync_result"] == "offline":
        head = f"OFFLINE - {status['pending']} records waiting (captures continue)"
    else:
        head = f"SYNCING - {status['pending']} records waiting"
    lines = [head]
    if status["enrolled"]:
        lines.append(
            f"store        {status['store_id']} (epoch {status['epoch']}, key {status['key_id']}, tz {status['tz']})"
        )
        lines.append(f"hub          {status['hub_url']}")
    lines.append(
        f"records      last seq {status['last_seq']}, acked through {status['acked_through']}, "
        f"pending {status['pending']}"
    )
    if status["pending"]:
        lines.append(
            f"oldest       {status['oldest_pending_captured_at']} ({_duration(status['oldest_pending_age_s'])} ago)"
        )
    progress = status.get("catch_up")
    if progress:
        lines.append(
            f"catch-up     {progress['rate_per_s']:,.0f} records/s, done in about {_duration(progress['eta_s'])}"
        )
    lines.append(f"last sync    {status['last_sync_at'] or 'never'} ({status['last_sync_result']})")
    lines.append(f"last success {status['last_success_at'] or 'never'}")
    if status["last_error"] and not status["blocked"]:
        lines.append(f"last error   {status['last_error']}")
    if status["next_attempt_at"]:
        lines.append(f"next try     {status['next_attempt_at']}")
    lines.append(f"agent        {'running' if status['agent_running'] else 'not running'}")
    clock = status.get("clock")
    if clock:
        lines.append(f"clock        hub - agent = {clock['theta_ms']} ms (± {float(clock['delta_ms']) / 2:.1f} ms)")
    lines.extend(_import_lines(status.get("imports") or {}))
    return "\n".join(lines)


def _import_lines(imports: dict[str, Any]) -> list[str]:
    out = []
    run = imports.get("running")
    if run:
        pct = f"{run['progress'] * 100:.0f}%, " if run.get("progress") is not None else ""
        out.append(f"file import  {run['name']}: {pct}{run['rows']} rows, {run['accepted']} accepted")
    last = imports.get("last")
    if last:
        out.append(
            f"last import  {last['name']}: {last['result']}, {last['accepted']} accepted, "
            f"{last['duplicates']} duplicates, {last['rejected']} rejected"
        )
    return out
