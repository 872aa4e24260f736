"""``edge-agent run``: wire the writer, the scheduler and the API together and serve until a signal.

Shutdown on SIGTERM/SIGINT is orderly: the server stops taking requests and finishes those in
flight, the scheduler finishes a running pass, the writer commits everything queued, then the
connections close.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from storesync_runtime import sdnotify, serving
from sync_protocol import keys

from ._exceptions import AgentError, ConfigError
from .api import StatusReader, create_app
from .capture import CaptureWriter
from .config import AgentConfig
from .guard import Guard, is_loopback
from .housekeeping import Housekeeping
from .registers import RegisterTokens
from .scheduler import AgentScheduler
from .store import Outbox, PruneResult, prune
from .sync import Syncer

log = logging.getLogger(__name__)


def run_retention(config: AgentConfig) -> PruneResult | None:
    """The scheduled retention job: open a connection, prune, close. Errors are logged, never raised."""
    try:
        with Outbox(config.db_path, create=False) as outbox:
            return prune(outbox, retention_days=config.retention_days)
    except AgentError as exc:
        log.error("retention run failed: %s", exc)
        return None


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


_HTTP = "httptools" if _has("httptools") else "h11"
_LOOP = "uvloop" if _has("uvloop") else "asyncio"


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the bound address and handling signals without re-raising them."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[str], None]) -> None:
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            host, port = self.config.host, self.config.port
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    break
            self._announce(f"edge-agent listening on http://{host}:{port}")
            sdnotify.notify("READY=1", f"STATUS=capturing on http://{host}:{port}")

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # a service thread (Windows): AgentService.stop() sets should_exit instead
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: Any) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def _open_status_outbox(config: AgentConfig, key: keys.Ed25519PrivateKey) -> Outbox:
    """The status reader's connection, after checking that ``key`` is the enrolled one.

    Raises:
        ConfigError: no outbox, or the key is not the enrolled one.
    """
    if not config.db_path.exists():
        raise ConfigError(f"no outbox at {config.db_path}; run 'edge-agent init' first")
    status_outbox = Outbox(config.db_path, key=None)
    ident = status_outbox.identity()
    if ident is not None and ident.key_id != keys.key_id(key):
        status_outbox.close()
        raise ConfigError(
            f"{config.key_path} (key {keys.key_id(key)}) is not the key enrolled as {ident.key_id}; "
            "restore the enrolled key or enroll again"
        )
    if config.hub_url:
        status_outbox.set_hub_url(config.hub_url.rstrip("/"))
    return status_outbox


def _server(config: AgentConfig, app: Any, say: Callable[[str], None]) -> _Server:
    """The uvicorn server of the capture API."""
    return _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            log_config=None,  # our handler and format (storesync_runtime.logfmt), not uvicorn's
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,  # the client is the TCP peer (guard.py): no X-Forwarded-For
            # The capture path is mostly HTTP and event-loop overhead per request: httptools and uvloop
            # (uvicorn's "standard" extras) take ~30% more POS requests/s than h11 on asyncio
            # (docs/performance.md). Without them (not installable) uvicorn's pure-Python pair runs.
            http=_HTTP,
            loop=_LOOP,
            timeout_keep_alive=serving.KEEP_ALIVE_S,  # the POS closes an idle connection first
        ),
        say,
    )


def run_agent(
    config: AgentConfig,
    announce: Callable[[str], None] | None = None,
    on_server: Callable[[uvicorn.Server], None] | None = None,
) -> None:
    """Serve the capture API and run the background sync until SIGTERM or SIGINT.

    Raises:
        ConfigError: key file missing or too open, no outbox, key not the enrolled one, port busy.
    """
    say = announce or (lambda text: print(text, flush=True))
    tokens = RegisterTokens(config.data_dir)
    if not is_loopback(config.host) and tokens.count() == 0:
        raise ConfigError(
            f"refusing to serve on {config.host}: beyond loopback the capture API needs register tokens; "
            "add one per register with 'edge-agent register add R1' (docs/security.md)"
        )
    key = config.load_key()
    status_outbox = _open_status_outbox(config, key)
    syncer = Syncer(config, Outbox(config.db_path, key=key, durable=False), key)
    heartbeat_outbox = Outbox(config.db_path, durable=False)
    scheduler = AgentScheduler(
        syncer,
        heartbeat_outbox,
        sync_interval=config.sync_interval,
        heartbeat_interval=config.heartbeat_interval,
        probe_interval=config.probe_interval,
    )
    housekeeping = Housekeeping(
        lambda: run_retention(config), at=config.retention_at, interval=config.retention_interval
    )
    writer = CaptureWriter(lambda: Outbox(config.db_path, key=key), on_commit=scheduler.nudge)
    writer.start()
    watcher = None
    if config.drop_dir is not None:
        from .drops.watcher import DropWatcher

        watcher = DropWatcher(
            lambda: Outbox(config.db_path, key=key),
            config.drop_dir,
            settle=config.drop_settle,
            on_chunk=scheduler.nudge,
            key_file=config.key_path,
        )
    app = Guard(
        create_app(writer, StatusReader(status_outbox), scheduler, watcher.folders if watcher else None),
        bind_host=config.host,
        tokens=tokens,
        allowed_hosts=config.allowed_hosts,
        allowed_origins=config.allowed_origins,
    )
    server = _server(config, app, say)
    if on_server is not None:
        on_server(server)  # AgentService keeps it to stop the agent from another thread
    scheduler.start()
    housekeeping.start()
    if watcher is not None:
        watcher.start()
    # systemd's watchdog is pinged only while the outbox writer thread is alive and the server serves.
    watchdog = sdnotify.Watchdog(lambda: writer.alive() and server.started and not server.should_exit).start()
    serving.freeze_startup()  # start-up objects out of the collector: shorter GC pauses at capture
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        raise ConfigError(f"cannot serve on {config.host}:{config.port} (see the error above)") from exc
    finally:
        sdnotify.notify("STOPPING=1")
        watchdog.stop()
        if watcher is not None:
            watcher.stop()
        housekeeping.shutdown()
        scheduler.shutdown()
        writer.stop()
        heartbeat_outbox.close()
        status_outbox.close()
        log.info("edge-agent stopped")
    sys.stdout.flush()
