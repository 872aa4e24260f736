"""systemd readiness and watchdog (``sd_notify``) over ``$NOTIFY_SOCKET``, without a library.

``Type=notify`` units start ``edge-agent run`` and ``cloud-hub serve``; each sends ``READY=1`` once it
listens, ``WATCHDOG=1`` every half ``WatchdogSec`` while its health check passes, and ``STOPPING=1`` on
shutdown. Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the same code runs under
a terminal, the tests, and the Windows service.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(*lines: str) -> bool:
    """Send ``KEY=VALUE`` lines to systemd; False when not run by systemd (or the send failed)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not hasattr(socket, "AF_UNIX"):
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:  # type: ignore[attr-defined,unused-ignore]
            sock.connect(address)
            sock.sendall("\n".join(lines).encode("utf-8"))
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def watchdog_seconds() -> float | None:
    """``WatchdogSec`` of this service in seconds, or None when the watchdog is off (or meant for another pid)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec) / 1_000_000
    except ValueError:
        return None
    return value if value > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` every half watchdog period while ``healthy()`` is true.

    When ``healthy()`` turns false (a stuck writer, a dead loop) the pings stop and systemd restarts
    the service after ``WatchdogSec``.
    """

    def __init__(self, healthy: Callable[[], bool]) -> None:
        self.healthy = healthy
        self.period = watchdog_seconds()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watchdog:
        if self.period is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        assert self.period is not None
        while not self._stop.wait(self.period / 2):
            try:
                ok = self.healthy()
            except Exception:  # noqa: BLE001 - an unhealthy check is just "not healthy"
                ok = False
            if ok:
                notify("WATCHDOG=1")
            else:
                log.warning("health check failed: not pinging the systemd watchdog")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
