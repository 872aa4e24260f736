"""The TUI's clock and refresh timer: what time it is, and how often each screen reads again.

Screens take a :data:`Clock` (tests pass a frozen one) and a refresh period; :func:`every` starts
the timer, and a period of 0 means no timer (tests refresh by hand).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from textual.message_pump import MessagePump

Clock = Callable[[], datetime]
REFRESH_S = 2.0  # the store screen: local SQLite reads are cheap
FLEET_REFRESH_S = REFRESH_S * 5  # the fleet screen: three HTTP calls to the hub


def system_clock() -> datetime:
    """The real time (aware, UTC)."""
    return datetime.now(UTC)


def every(node: MessagePump, seconds: float, refresh: Callable[[], object]) -> None:
    """Call ``refresh`` on ``node``'s timer every ``seconds`` (never when ``seconds`` is 0)."""
    if seconds:
        node.set_interval(seconds, refresh)
