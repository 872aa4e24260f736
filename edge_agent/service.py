"""Start and stop of a running agent, shared by ``edge-agent run`` (systemd) and the Windows service.

:class:`AgentService` holds the data folder's lock, refuses a restored outbox that was not enrolled
again, and runs :func:`edge_agent.runtime.run_agent` until :meth:`AgentService.stop` (or SIGTERM /
SIGINT, when it runs on the main thread). The Windows service class
(``installers/windows/storesync_agent_service.py``) is a thin shell over it: ``SvcDoRun`` calls
:meth:`run`, ``SvcStop`` calls :meth:`stop`; systemd's path is ``edge-agent run`` calling the same
:meth:`run`. Stopping is orderly either way: the server stops taking requests, the scheduler finishes
its pass, the writer commits everything queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from storesync_runtime.proclock import ProcessLock

from .backup import refuse_if_restored
from .config import AgentConfig, data_lock


class AgentService:
    """One agent process's service life cycle.

    Args:
        config: The agent's settings.
        announce: Receives the "listening on" line (default: print).
        command: How the lock names this process to a second one.
    """

    def __init__(
        self, config: AgentConfig, announce: Callable[[str], None] | None = None, command: str = "edge-agent run"
    ) -> None:
        self.config = config
        self.announce = announce
        self.command = command
        self.started = threading.Event()
        self.stopped = threading.Event()
        self._server: Any = None
        self._stop_requested = False

    def run(self) -> None:
        """Serve until :meth:`stop` or a signal; blocks.

        Raises:
            ConfigError: restored outbox not enrolled again, key or outbox problems, port busy.
            LockHeld: another ``edge-agent run`` or ``import`` holds the data folder.
        """
        from .runtime import run_agent

        refuse_if_restored(self.config)
        lock: ProcessLock = data_lock(self.config, self.command)
        try:
            run_agent(self.config, self.announce, on_server=self._bind)
        finally:
            lock.release()
            self.stopped.set()

    def _bind(self, server: Any) -> None:
        self._server = server
        if self._stop_requested:
            server.should_exit = True
        self.started.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the agent to stop (from any thread); with ``timeout``, wait for it. True once stopped."""
        self._stop_requested = True
        if self._server is not None:
            self._server.should_exit = True
        if timeout is not None:
            return self.stopped.wait(timeout)
        return self.stopped.is_set()
