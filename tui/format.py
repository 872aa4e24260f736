"""Pure formatting for the store TUI: status line, ages, counts, plain-language problems.

Nothing here does I/O or reads the clock: every function that needs "now" takes it as an argument, so
the screens (and their snapshot tests) are deterministic for a frozen clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent.status import parse_time

AGENT_ALIVE_S = 15.0


@dataclass(frozen=True)
class StatusLine:
    """The big line at the top: what it says and how alarming it is.

    Attributes:
        text: What staff read first.
        level: ``ok``, ``busy``, ``warn`` or ``error`` (a CSS class of the banner).
        detail: One line under it saying what happens next.
    """

    text: str
    level: str
    detail: str = ""


@dataclass(frozen=True)
class Problem:
    """Something a person must look at.

    Attributes:
        kind: ``agent``, ``conflict``, ``refused``, ``gap``, ``key``, ``receipt``, ``drop``, ``chain`` or ``damaged``.
        title: Short headline.
        explanation: What happened, without jargon.
        next_step: What to do about it.
        ref: What it refers to (a seq, a file name), for actions.
    """

    kind: str
    title: str
    explanation: str
    next_step: str
    ref: str = ""


def zone(name: str | None) -> ZoneInfo | None:
    """The store's time zone, or None when unknown (times are then shown as stored)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def count(n: int | None) -> str:
    """``1,234`` (``-`` for None)."""
    return "-" if n is None else f"{n:,}"


def plural(n: int, word: str) -> str:
    """``1 record`` / ``3 records``."""
    return f"{count(n)} {word}{'' if n == 1 else 's'}"


def duration(seconds: float | None) -> str:
    """A short human duration: ``just now``, ``40 s``, ``3 min``, ``2 h 05 min``, ``3 days``."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 5:
        return "just now"
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    if s < 48 * 3600:
        return f"{s // 3600} h {(s % 3600) // 60:02d} min"
    return f"{s // 86400} days"


def age(then: datetime | None, now: datetime) -> str:
    """``3 min ago`` style age of a moment (``never`` for None)."""
    if then is None:
        return "never"
    text = duration((now - then).total_seconds())
    return text if text == "just now" else f"{text} ago"


def clock(then: datetime | None, now: datetime, tz: ZoneInfo | None = None) -> str:
    """``14:05`` today, ``Sat 14:05`` this week, ``22 Nov 14:05`` before (in the store's zone)."""
    if then is None:
        return "never"
    local = then.astimezone(tz) if tz else then
    today = now.astimezone(tz) if tz else now
    if local.date() == today.date():
        return local.strftime("%H:%M")
    if timedelta(0) <= today - local < timedelta(days=6):
        return local.strftime("%a %H:%M")
    return local.strftime("%d %b %H:%M")


def when(then: datetime | None, now: datetime, tz: ZoneInfo | None = None) -> str:
    """``14:05 (3 min ago)``."""
    if then is None:
        return "never"
    return f"{clock(then, now, tz)} ({age(then, now)})"


_BLOCKS: dict[str, tuple[str, str, str, str]] = {
    # code: (kind, title, explanation, next step)
    "outbox_damaged": (
        "damaged",
        "The store's outbox is damaged",
        "Sale #{seq} is missing from the outbox on this computer (deleted or lost), so sending stopped there. "
        "Nothing was deleted by the agent and sales are still being recorded ({message}).",
        "Do not delete anything. Call head office support: they compare with edge-agent verify and the hub.",
    ),
    "conflict": (
        "conflict",
        "Head office holds a different version of a sale",
        "Sale #{seq} reached head office before, but the copy here is different now. Sending stopped at that "
        "sale so nothing is overwritten. Sales are still being recorded.",
        "Call head office support and quote the store and sale number; do not re-install or restore the till.",
    ),
    "record_refused": (
        "refused",
        "Head office refused a sale",
        "Head office checked sale #{seq} and refused it ({message}). The sales before it were accepted; "
        "the rest wait here safely.",
        "Call head office support with the sale number. Run 'verify chain' (v) and tell them the result.",
    ),
    "gap_unrecoverable": (
        "gap",
        "Sales missing at head office cannot be resent",
        "Head office lost sales from #{seq} on, and this computer no longer holds them.",
        "Call head office support: they must restore the missing sales from a backup.",
    ),
    "gap": (
        "gap",
        "Head office is missing earlier sales",
        "Head office asked for sales from #{seq} again.",
        "Nothing to do if this clears after the next sync; otherwise call head office support.",
    ),
    "key_revoked": (
        "key",
        "This computer's key was replaced",
        "Head office no longer accepts sales signed by this computer: the store was enrolled again elsewhere.",
        "Call head office support before ringing up more sales on this computer.",
    ),
    "unauthenticated": (
        "key",
        "Head office does not recognise this store computer",
        "The hub does not know this computer's key ({message}).",
        "Call head office support: the store may need to be enrolled again.",
    ),
    "forbidden": (
        "key",
        "This computer is not allowed to send for this store",
        "The hub refused the key for this store ({message}).",
        "Call head office support.",
    ),
    "bad_receipt": (
        "receipt",
        "Head office's receipt did not check out",
        "The hub's confirmation did not match the sales here ({message}), so nothing is counted as sent.",
        "Call head office support; sales keep being recorded safely.",
    ),
}


def explain_block(blocked: dict[str, Any] | None) -> Problem | None:
    """The plain-language problem behind the agent's ``blocked`` state."""
    if not blocked:
        return None
    code = str(blocked.get("code") or "")
    seq = blocked.get("seq")
    message = str(blocked.get("message") or code or "unknown reason")
    kind, title, explanation, step = _BLOCKS.get(
        code,
        (
            "refused",
            "Head office refuses to take sales",
            "The hub answered: {message}.",
            "Call head office support and read them this message.",
        ),
    )
    fill = {"seq": seq if seq is not None else "?", "message": message}
    return Problem(kind, title, explanation.format(**fill), step.format(**fill), str(seq) if seq is not None else "")


def block_reason(blocked: dict[str, Any]) -> str:
    """Short reason for the status line."""
    problem = explain_block(blocked)
    return problem.title if problem else "unknown"


def status_line(status: dict[str, Any] | None, now: datetime, tz: ZoneInfo | None = None) -> StatusLine:
    """The headline from the agent status dict (``edge_agent.status.compute_status``).

    Args:
        status: The status dict, or None when there is no outbox to read.
        now: The current time (aware).
        tz: The store's zone for clock times.
    """
    if status is None:
        return StatusLine("No agent data found", "error", "Check the data folder (--data-dir) or start the agent.")
    pending = int(status.get("pending") or 0)
    waiting = plural(pending, "sale") + " waiting"
    if not status.get("enrolled"):
        return StatusLine("Not set up", "error", "This computer is not enrolled with head office yet.")
    heartbeat = parse_time(status.get("heartbeat_at"))
    running = heartbeat is not None and (now - heartbeat).total_seconds() < AGENT_ALIVE_S
    if not running:
        seen = (
            "never seen running"
            if heartbeat is None
            else f"last seen {age(heartbeat, now)}, at {clock(heartbeat, now, tz)}"
        )
        return StatusLine(
            f"Agent not running · {waiting}" if pending else "Agent not running",
            "error",
            f"The sync service is stopped ({seen}). Sales from the tills are NOT being recorded here.",
        )
    if status.get("blocked"):
        return StatusLine(
            f"Blocked: {block_reason(status['blocked'])}",
            "error",
            f"{waiting}; sales keep being recorded. See 'Needs a person' below.",
        )
    if pending == 0:
        return StatusLine(
            "All synced", "ok", f"Every sale has reached head office (last sync {clock_or_never(status, now, tz)})."
        )
    if status.get("last_sync_result") == "offline":
        since = parse_time(status.get("last_success_at")) or parse_time(status.get("oldest_pending_captured_at"))
        nxt = parse_time(status.get("next_attempt_at"))
        retry = f" Next try {clock(nxt, now, tz)}." if nxt else ""
        return StatusLine(
            f"Offline since {clock(since, now, tz)}, {waiting}",
            "warn",
            f"Head office cannot be reached. Sales are kept safely here and sent when it is back.{retry}",
        )
    progress = catch_up_text(status)
    if progress:
        return StatusLine(progress, "busy", f"Sending {waiting} to head office.")
    return StatusLine(f"Syncing {count(pending)}", "busy", f"Sending {waiting} to head office.")


def catch_up_text(status: dict[str, Any]) -> str | None:
    """``Catching up: 12,000 records, ~2 min (120/s)`` while a backlog drains, else None.

    Uses the status dict's ``catch_up`` (:func:`edge_agent.status.catch_up`: rate and ETA from the
    bursts acknowledged in the last minute).
    """
    progress = status.get("catch_up")
    pending = int(status.get("pending") or 0)
    if not progress or pending <= 0 or progress.get("eta_s") is None:
        return None
    eta = duration(float(progress["eta_s"]))
    eta = "under 5 s" if eta == "just now" else f"~{eta}"
    return f"Catching up: {plural(pending, 'record')}, {eta} ({float(progress['rate_per_s']):,.0f}/s)"


def sales_today(counts: dict[str, int]) -> tuple[str, str]:
    """Sales whose business day is today, and apart from them the returns and voids:
    ``("12", "2 ret · 1 void")``."""
    sub = " · ".join(
        f"{count(counts[kind])} {word}" for kind, word in (("return", "ret"), ("void", "void")) if counts.get(kind)
    )
    return count(counts.get("sale", 0)), sub


def clock_or_never(status: dict[str, Any], now: datetime, tz: ZoneInfo | None) -> str:
    return clock(parse_time(status.get("last_success_at")), now, tz)


def hub_text(status: dict[str, Any], now: datetime, tz: ZoneInfo | None = None) -> str:
    """Hub reachability as the agent last saw it."""
    result = status.get("last_sync_result")
    last = parse_time(status.get("last_sync_at"))
    if result == "ok":
        return f"reachable {clock(last, now, tz)}"
    if result == "offline":
        since = parse_time(status.get("last_success_at"))
        if since is None:
            return "unreachable; no sync has succeeded yet"
        return f"unreachable since {clock(since, now, tz)}"
    if result == "blocked":
        return "reachable, refusing sales"
    return "not contacted yet"


_BURST_RESULTS = {
    "ok": "sent",
    "offline": "hub unreachable",
    "conflict": "conflict",
    "record_refused": "refused",
    "gap": "hub asked to resend",
    "busy": "hub busy",
    "too_large": "too large, split",
}


def burst_result(result: str, http_status: int | None) -> str:
    """``sent`` / ``hub unreachable`` / … for the bursts panel."""
    text = _BURST_RESULTS.get(result, result.replace("_", " "))
    return f"{text} ({http_status})" if http_status and result not in ("ok", "offline") else text


def burst_records(count_: int, first: int | None, last: int | None) -> str:
    """``120 (#5-#124)`` or ``check`` for an empty probe."""
    if not count_:
        return "check"
    if first is not None and last is not None:
        return f"{count(count_)} (#{first}-#{last})"
    return count(count_)


def progress_text(done: int, total: int | None, state: str = "running") -> str:
    """``1,200 / 5,000 (24%)``, ``1,200 so far``, ``done`` or ``refused whole``."""
    if state not in ("running", "waiting"):
        return "refused whole" if state == "rejected" and not total else "done"
    if not total:
        return f"{count(done)} so far"
    pct = min(100, int(done * 100 / total))
    return f"{count(done)} / {count(total)} ({pct}%)"


def mask_token(token: str | None) -> str:
    """Only whether a token is set: no character of the secret is ever shown (docs/security.md)."""
    return "set" if token else "(none)"


def lag_text(seconds: float | None) -> str:
    """Fleet lag: ``-`` unknown, else a duration."""
    return "-" if seconds is None else duration(seconds)


def drop_problem(file: str, status: str, rejected: int, reason: str | None) -> Problem:
    """A rejected or partly rejected drop file."""
    if status == "rejected" and reason:
        explanation = f"The whole file was refused: {reason}."
    elif status == "rejected":
        explanation = f"None of its {plural(rejected, 'transaction')} could be read."
    else:
        explanation = f"{plural(rejected, 'transaction')} in it could not be read; the others were imported."
    return Problem(
        "drop",
        f"Drop file {file} needs fixing",
        explanation,
        "Open the error report (e), fix the rows in the file, then retry it (r).",
        file,
    )


def chain_problem(bad_seq: int | None, reason: str | None) -> Problem:
    """A failed local chain verification."""
    return Problem(
        "chain",
        "The sales record on this computer fails its check",
        f"Sale #{bad_seq if bad_seq is not None else '?'} does not check out ({reason or 'unknown reason'}). "
        "Someone or something changed the stored sales.",
        "Do not delete anything. Call head office support and read them this message.",
        str(bad_seq or ""),
    )
