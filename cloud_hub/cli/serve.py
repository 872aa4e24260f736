"""``cloud-hub serve``, ``deliver`` and ``deliveries``: the HTTP server, the delivery workers, delivery operations.

``serve`` holds a SQLite hub's folder lock (exit 4 when another ``serve`` has it) unless
``--shared-data-dir``; both long-running commands stop cleanly on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import socket
import sys
import time
from typing import Any

from storesync_runtime import sdnotify, serving
from storesync_runtime.proclock import ProcessLock

from .. import deliveries
from .._exceptions import ConfigError
from ..config import DEFAULT_HOST, DEFAULT_PORT, HubConfig, open_hub, require_hub_folder
from ..settings import HubSettings
from . import _common

HOST_ENV = "CLOUD_HUB_HOST"
PORT_ENV = "CLOUD_HUB_PORT"
LOCK_FILE = "hub.lock"


def add_serve(sub: Any) -> None:
    """``cloud-hub serve``."""
    serve = sub.add_parser("serve", help="run the hub HTTP server")
    _common.data_dir_arg(serve)
    serve.add_argument("--host", default=None, help=f"listen address ([hub] host, ${HOST_ENV}; {DEFAULT_HOST})")
    serve.add_argument(
        "--port", type=int, default=None, help=f"listen port (default: [hub] port, ${PORT_ENV}, {DEFAULT_PORT}; 0: any)"
    )
    serve.add_argument("--verify", choices=("last", "all"), default=None, help="signatures checked per burst (last)")
    _common.worker_args(serve)
    serve.add_argument("--no-workers", action="store_true", help="no delivery workers (run `cloud-hub deliver`)")
    serve.add_argument(
        "--shared-data-dir",
        action="store_true",
        help="let other serve processes use this SQLite data folder at the same time (replicas on one host)",
    )
    serve.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate chain ($CLOUD_HUB_TLS_CERT)")
    serve.add_argument("--tls-key", help="the certificate's PEM private key ($CLOUD_HUB_TLS_KEY)")
    serve.add_argument(
        "--tls-reload-interval", type=float, default=30.0, help="seconds between checks for a renewed certificate"
    )
    _common.secret_args(serve)


def add_deliver(sub: Any) -> None:
    """``cloud-hub deliver`` and ``cloud-hub deliveries list|replay|skip``."""
    deliver = sub.add_parser("deliver", help="run only the delivery workers (no HTTP), for scale-out")
    _common.data_dir_arg(deliver)
    _common.worker_args(deliver)
    _common.secret_args(deliver)
    deliveries.add_cli(sub, _common.data_dir_arg)


def cmd_serve(args: argparse.Namespace) -> int:
    """``cloud-hub serve``: run uvicorn until SIGTERM or Ctrl-C, holding a SQLite hub's folder lock."""
    settings = _common.setup_logging(args)
    config = _common.config(args, host=args.host, port=args.port, verify=args.verify)
    require_hub_folder(config)
    exclusive = _is_sqlite(config) and not args.shared_data_dir
    lock = ProcessLock(config.data_dir / LOCK_FILE, "cloud-hub serve") if exclusive else None
    try:
        return _serve(args, config, settings)
    finally:
        if lock is not None:
            lock.release()


def _is_sqlite(config: HubConfig) -> bool:
    return config.storage_url.startswith("sqlite:")


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a busy port is one clear line, not an asyncio trace.

    Raises:
        ConfigError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP.
    # Without it, a response written as headers then body waited out the client's delayed ACK (Nagle):
    # ~40 ms on every burst answer.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = (
            "another hub or program listens there; stop it or pick another --port"
            if exc.errno == errno.EADDRINUSE
            else "check --host"
        )
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _serve(args: argparse.Namespace, config: HubConfig, settings: HubSettings) -> int:
    import uvicorn

    from ..app import create_app
    from ..tls import from_args

    tls = from_args(args.tls_cert, args.tls_key)
    listener = _listen(config.host, config.port)
    try:
        forwarding = _common.forwarding(args, config.data_dir)
        app = create_app(config, forwarding=forwarding, workers=not args.no_workers)
    except BaseException:
        listener.close()
        raise
    server = uvicorn.Server(
        # h11 kept on the hub (auto would pick httptools, installed for the agent): its HTTP cost is small
        # next to ingest (docs/performance.md) and its framing behaviour is what the fault suites pin.
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=settings.log_level,
            access_log=False,
            log_config=None,
            http="h11",
            timeout_keep_alive=serving.KEEP_ALIVE_S,  # the client closes an idle connection first
            proxy_headers=False,  # X-Forwarded-For only from trusted_proxies (cloud_hub/ratelimit.py)
            ssl_context_factory=(lambda *_: tls.context) if tls is not None else None,
        )
    )
    scheme = "https" if tls is not None else "http"

    async def reload_certs() -> None:
        while tls is not None:
            await asyncio.sleep(max(0.1, args.tls_reload_interval))
            tls.maybe_reload()

    async def run() -> None:
        serving.freeze_startup()  # start-up objects out of the collector: shorter GC pauses per burst
        task = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = listener.getsockname()[1]
            print(f"cloud-hub listening on {scheme}://{config.host}:{port}", flush=True)
            sdnotify.notify("READY=1", f"STATUS=serving on {scheme}://{config.host}:{port}")
        reloader = asyncio.create_task(reload_certs())
        tick = [time.monotonic()]  # the event loop's last heartbeat: the watchdog pings only while it is recent
        watchdog = sdnotify.Watchdog(lambda: time.monotonic() - tick[0] < 10).start()
        try:
            while not task.done():
                tick[0] = time.monotonic()
                await asyncio.wait([task], timeout=1)
            await task
        finally:
            reloader.cancel()
            if server.started:
                sdnotify.notify("STOPPING=1")
            watchdog.stop()

    # uvicorn re-raises a captured SIGTERM after its graceful shutdown; a no-op handler makes that exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    if not server.started:
        print("cloud-hub: error: server did not start (see the log above)", file=sys.stderr)
        return 2
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    """``cloud-hub deliver``: delivery workers only, until SIGTERM or Ctrl-C."""
    from ..delivery import DeliveryEngine
    from ..forwarding import Forwarder

    _common.setup_logging(args)
    config = _common.config(args)
    forwarding = _common.forwarding(args, config.data_dir)
    hub = open_hub(config)
    engine = DeliveryEngine(hub.storage, forwarding, Forwarder.from_config(forwarding))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(engine.run())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, engine.stop)
        print(f"cloud-hub delivering for sinks: {', '.join(s.name for s in forwarding.sinks)}", flush=True)
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(run())
    finally:
        hub.close()
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    """``cloud-hub deliveries list|replay|skip``: works on the database directly."""
    hub = open_hub(_common.config(args))
    try:
        return deliveries.run_cli(args, hub.storage)
    finally:
        hub.close()
