"""The ``cloud-hub`` command: ``serve``, ``deliver``, ``deliveries``, ``store add``, ``stores``.

Bad input prints one line ``cloud-hub: error: ...`` naming the field and exits with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import admin, deliveries, registry
from ._exceptions import ConfigError, HubError, InputError
from .config import DEFAULT_HOST, DEFAULT_PORT, HubConfig, open_hub, resolve_data_dir
from .forwarding import load_config

HUB_URL_ENV = "CLOUD_HUB_URL"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every other bad input
        self.exit(2, f"cloud-hub: error: {message}\n")


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="hub data folder (default: $CLOUD_HUB_DATA or ./cloud-hub-data)")


def _secret_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hub-key-file", help="receipt key (PEM, mode 0600) shared by replicas (default: $CLOUD_HUB_KEY_FILE)"
    )
    p.add_argument(
        "--admin-token-file", help="admin token file shared by replicas (default: $CLOUD_HUB_ADMIN_TOKEN_FILE)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cloud-hub``."""
    parser = _Parser(prog="cloud-hub", description="StoreSync cloud hub")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the hub HTTP server")
    _data_dir_arg(serve)
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    serve.add_argument("--verify", choices=("last", "all"), default="last", help="signatures checked per burst")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    serve.add_argument("--config", help="hub.toml with [[sinks]] and [delivery] (default: one jsonl sink)")
    serve.add_argument("--no-workers", action="store_true", help="no delivery workers (run `cloud-hub deliver`)")
    _secret_args(serve)

    deliver = sub.add_parser("deliver", help="run only the delivery workers (no HTTP), for scale-out")
    _data_dir_arg(deliver)
    deliver.add_argument("--config", help="hub.toml with [[sinks]] and [delivery]")
    deliver.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    _secret_args(deliver)
    deliveries.add_cli(sub, _data_dir_arg)

    store = sub.add_parser("store", help="manage stores")
    store_sub = store.add_subparsers(dest="store_command", required=True, parser_class=_Parser)
    add = store_sub.add_parser("add", help="register a store and print a one-time enrollment token")
    add.add_argument("store_id")
    add.add_argument("--tz", required=True, help="IANA time zone, e.g. Europe/Berlin")
    add.add_argument("--hub-url", help=f"hub URL for the printed hint (default: ${HUB_URL_ENV})")
    add.add_argument("--json", action="store_true")
    _data_dir_arg(add)

    stores = sub.add_parser("stores", help="list stores and their sync progress")
    stores.add_argument("--json", action="store_true")
    _data_dir_arg(stores)
    return parser


def _config(args: argparse.Namespace, **kw: Any) -> HubConfig:
    for name in ("hub_key_file", "admin_token_file"):
        if getattr(args, name, None):
            kw["key_file" if name == "hub_key_file" else name] = Path(getattr(args, name))
    return HubConfig(data_dir=resolve_data_dir(args.data_dir), **kw)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Sink clients log every request URL at INFO; a URL may carry a receiver's token in its query.
    for noisy in ("httpx", "httpcore", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def cmd_store_add(args: argparse.Namespace) -> int:
    """``cloud-hub store add STORE_ID --tz ZONE``: works on the database directly."""
    registry.check_store_id(args.store_id)
    registry.check_tz(args.tz)
    hub = open_hub(_config(args))
    try:
        issued = registry.add_store(hub.storage, args.store_id, args.tz)
    finally:
        hub.close()
    if args.json:
        doc = {"store_id": issued.store_id, "tz": issued.tz, "token": issued.token, "expires_at": issued.expires_at}
        print(json.dumps(doc))
        return 0
    url = args.hub_url or os.environ.get(HUB_URL_ENV) or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    if issued.new_store:
        print(f"Store {issued.store_id} registered (tz {issued.tz}).")
    else:
        print(
            f"Store {issued.store_id} already exists (tz {issued.tz}): new enrollment token; "
            "enrolling with it starts a new epoch and revokes the current key."
        )
    print(f"Enrollment token (single use, expires {issued.expires_at}):")
    print(issued.token)
    print("On the store machine run:")
    print(f"  edge-agent enroll --hub {url} --token {issued.token}")
    return 0


def cmd_stores(args: argparse.Namespace) -> int:
    """``cloud-hub stores``: table (or JSON) of every store."""
    hub = open_hub(_config(args))
    try:
        summaries = registry.list_stores(hub.storage)
    finally:
        hub.close()
    if args.json:
        print(json.dumps({"stores": [admin.summary_dict(s) for s in summaries]}))
        return 0
    if not summaries:
        print("No stores yet. Add one with: cloud-hub store add STORE_ID --tz ZONE")
        return 0
    head = ("STORE", "TZ", "EPOCH", "ACKED_THROUGH", "LAST_SEEN", "DUPLICATES", "CONFLICTS")
    rows = [
        (
            s.store_id,
            s.tz,
            "-" if s.epoch is None else str(s.epoch),
            str(s.acked_through),
            s.last_seen_at or "never",
            str(s.duplicates),
            str(s.conflicts),
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for r in (head, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``cloud-hub serve``: run uvicorn until SIGTERM or Ctrl-C."""
    import uvicorn

    from .app import create_app

    if not 0 <= args.port <= 65535:
        raise InputError(f"port {args.port} is out of range 0-65535", field="port")
    _setup_logging(args.log_level)
    config = _config(args, host=args.host, port=args.port, verify=args.verify)
    forwarding = load_config(Path(args.config) if args.config else None, config.data_dir)
    app = create_app(config, forwarding=forwarding, workers=not args.no_workers)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level=args.log_level, access_log=False)
    )

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            port = config.port
            for srv in server.servers:
                for sock in srv.sockets:
                    port = sock.getsockname()[1]
            print(f"cloud-hub listening on http://{config.host}:{port}", flush=True)
        await task

    # uvicorn re-raises a captured SIGTERM after its graceful shutdown; a no-op handler makes that exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    if not server.started:
        print("cloud-hub: error: server did not start (see the log above)", file=sys.stderr)
        return 1
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    """``cloud-hub deliver``: delivery workers only, until SIGTERM or Ctrl-C."""
    from .delivery import DeliveryEngine
    from .forwarding import Forwarder

    _setup_logging(args.log_level)
    config = _config(args)
    forwarding = load_config(Path(args.config) if args.config else None, config.data_dir)
    hub = open_hub(config)
    engine = DeliveryEngine(
        hub.storage, forwarding, Forwarder(forwarding.sinks, inline_max=forwarding.delivery.inline_max)
    )

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
    hub = open_hub(_config(args))
    try:
        return deliveries.run_cli(args, hub.storage)
    finally:
        hub.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloud-hub`` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "deliver":
            return cmd_deliver(args)
        if args.command == "deliveries":
            return cmd_deliveries(args)
        if args.command == "store":
            return cmd_store_add(args)
        return cmd_stores(args)
    except (InputError, ConfigError) as exc:
        print(f"cloud-hub: error: {exc.message}", file=sys.stderr)
        return 2
    except HubError as exc:
        print(f"cloud-hub: error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
