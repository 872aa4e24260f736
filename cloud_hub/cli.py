"""The ``cloud-hub`` command: ``init``, ``serve``, ``deliver``, ``deliveries``, ``migrate``, ``storage copy``,
``store add``, ``stores``, ``config check``, ``backup``, ``restore``, ``ledger export``.

Only ``init`` creates a hub; every other command refuses a folder that is not one. Errors are one line
``cloud-hub: error: ...`` naming the field, with the exit codes of :mod:`storesync_runtime.cli` (2 for bad
input or configuration, 4 when another ``serve`` holds a SQLite hub's data folder).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from storesync_runtime import cli as common_cli
from storesync_runtime import logfmt, sdnotify
from storesync_runtime.proclock import ProcessLock
from sync_protocol._exceptions import StoreSyncError

from . import __version__, admin, deliveries, registry
from . import settings as hub_settings
from ._exceptions import ConfigError, HubError, InputError
from .config import (
    DATABASE_ENV,
    DEFAULT_HOST,
    DEFAULT_PORT,
    HubConfig,
    ensure_data_dir,
    init_hub,
    is_hub_folder,
    open_hub,
    require_hub_folder,
    resolve_data_dir,
    resolve_database,
)
from .forwarding import load_config
from .settings import HubSettings
from .storage import open_storage, sqlite_path

HUB_URL_ENV = "CLOUD_HUB_URL"
PUBLIC_URL_ENV = "CLOUD_HUB_PUBLIC_URL"
HOST_ENV = "CLOUD_HUB_HOST"
PORT_ENV = "CLOUD_HUB_PORT"
AGENT_DATA_HINT = "/var/lib/storesync-agent"
LOCK_FILE = "hub.lock"
_Parser = common_cli.Parser


def _data_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="hub data folder (default: $CLOUD_HUB_DATA or ./cloud-hub-data)")
    p.add_argument(
        "--database",
        metavar="URL",
        help=f"storage URL, sqlite:///PATH or postgresql://... (default: ${DATABASE_ENV},"
        " else [storage] database in --config, else sqlite:///DATA/hub.db)",
    )


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="hub.toml (default: $CLOUD_HUB_CONFIG or DATA/hub.toml when it exists)")


def _secret_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hub-key-file", help="receipt key (PEM, mode 0600) shared by replicas (default: $CLOUD_HUB_KEY_FILE)"
    )
    p.add_argument(
        "--admin-token-file", help="admin token file shared by replicas (default: $CLOUD_HUB_ADMIN_TOKEN_FILE)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cloud-hub``."""
    parser = _Parser(
        prog="cloud-hub",
        description="StoreSync cloud hub",
        epilog="Exit codes: 0 ok, 1 not fine, 2 usage or configuration error, 4 data folder in use, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"cloud-hub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    init = sub.add_parser("init", help="create a hub data folder: receipt key, admin token, database")
    _data_dir_arg(init)
    _config_arg(init)
    init.add_argument("--json", action="store_true", help="print the result as one JSON object")

    serve = sub.add_parser("serve", help="run the hub HTTP server")
    _data_dir_arg(serve)
    serve.add_argument("--host", default=None, help=f"listen address ([hub] host, ${HOST_ENV}; {DEFAULT_HOST})")
    serve.add_argument(
        "--port", type=int, default=None, help=f"listen port (default: [hub] port, ${PORT_ENV}, {DEFAULT_PORT}; 0: any)"
    )
    serve.add_argument("--verify", choices=("last", "all"), default=None, help="signatures checked per burst (last)")
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="default: [hub] log_level or info",
    )
    serve.add_argument("--log-format", choices=("text", "json"), default=None, help="text (default) or json lines")
    serve.add_argument(
        "--config", help="hub.toml with [hub], [[sinks]], [delivery] (default: $CLOUD_HUB_CONFIG or DATA/hub.toml)"
    )
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
    _secret_args(serve)

    deliver = sub.add_parser("deliver", help="run only the delivery workers (no HTTP), for scale-out")
    _data_dir_arg(deliver)
    deliver.add_argument(
        "--config", help="hub.toml with [hub], [[sinks]], [delivery] (default: $CLOUD_HUB_CONFIG or DATA/hub.toml)"
    )
    deliver.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=None,
        help="default: [hub] log_level or info",
    )
    deliver.add_argument("--log-format", choices=("text", "json"), default=None, help="text (default) or json lines")
    _secret_args(deliver)
    deliveries.add_cli(sub, _data_dir_arg)

    migrate = sub.add_parser("migrate", help="apply pending schema migrations (serve and deliver do it at start)")
    _data_dir_arg(migrate)
    migrate.add_argument("--config", help="hub.toml whose [storage] database names the database")

    storage = sub.add_parser("storage", help="move the hub's data between databases")
    storage_sub = storage.add_subparsers(dest="storage_command", required=True, parser_class=_Parser)
    copy = storage_sub.add_parser("copy", help="copy everything into an empty database and verify it there")
    copy.add_argument(
        "--from", dest="source", required=True, metavar="URL", help="e.g. sqlite:///cloud-hub-data/hub.db"
    )
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="e.g. postgresql://host/db")
    copy.add_argument("--hub-key-file", help="receipt key, to check each stream's receipt too (default: DATA/hub.key)")
    copy.add_argument("--data-dir", help="hub data folder whose hub.key is used when it exists")

    store = sub.add_parser("store", help="manage stores")
    store_sub = store.add_subparsers(dest="store_command", required=True, parser_class=_Parser)
    add = store_sub.add_parser("add", help="register a store and print a one-time enrollment token")
    add.add_argument("store_id", help="the store's id (letters, digits, '-', '_')")
    add.add_argument("--tz", required=True, help="IANA time zone, e.g. Europe/Berlin")
    add.add_argument(
        "--hub-url", help=f"the hub's public URL for the printed command (default: ${PUBLIC_URL_ENV}, ${HUB_URL_ENV})"
    )
    add.add_argument(
        "--agent-data-dir",
        default=AGENT_DATA_HINT,
        help=f"agent data folder in the printed command ({AGENT_DATA_HINT})",
    )
    add.add_argument("--json", action="store_true", help="print the token as one JSON object")
    _data_dir_arg(add)
    _config_arg(add)

    check = sub.add_parser("config", help="configuration commands")
    check_sub = check.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    chk = check_sub.add_parser("check", help="validate hub.toml and CLOUD_HUB_* and print the settings in effect")
    _data_dir_arg(chk)
    _config_arg(chk)
    chk.add_argument("--json", action="store_true", help="print the result as one JSON object")

    bk = sub.add_parser("backup", help="copy the hub (database, key, token, config) to a new folder, while serving")
    bk.add_argument("dest", metavar="DEST", help="a new or empty folder for the backup")
    _data_dir_arg(bk)
    _config_arg(bk)
    bk.add_argument("--json", action="store_true", help="print the manifest as one JSON object")
    rs = sub.add_parser("restore", help="put a SQLite hub backup back into the data folder (hub stopped)")
    rs.add_argument("backup", metavar="BACKUP", help="a folder made by 'cloud-hub backup'")
    _data_dir_arg(rs)
    rs.add_argument("--json", action="store_true", help="print the result as one JSON object")

    led = sub.add_parser("ledger", help="the signed ledger")
    led_sub = led.add_subparsers(dest="ledger_command", required=True, parser_class=_Parser)
    ex = led_sub.add_parser("export", help="export a store's signed records for auditors (storesync verify-export)")
    ex.add_argument("--store", required=True, help="the store id")
    ex.add_argument("--from", dest="date_from", type=_date, help="first sale date, YYYY-MM-DD (inclusive)")
    ex.add_argument("--to", dest="date_to", type=_date, help="last sale date, YYYY-MM-DD (inclusive)")
    ex.add_argument("--epoch", type=int, help="only this epoch (default: all)")
    ex.add_argument("--format", choices=("sqlite", "csv", "jsonl"), help="default: from --out's suffix, else jsonl")
    ex.add_argument("--out", required=True, help="the new export file")
    ex.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _data_dir_arg(ex)
    _config_arg(ex)

    stores = sub.add_parser("stores", help="list stores and their sync progress")
    stores.add_argument("--json", action="store_true", help="print the stores as one JSON object")
    _data_dir_arg(stores)
    _config_arg(stores)
    return parser


def _settings(args: argparse.Namespace, **flags: Any) -> tuple[Path, Path | None, HubSettings]:
    """Data folder, config file and the validated ``[hub]`` settings (flags > env > file > defaults)."""
    data_dir = resolve_data_dir(args.data_dir)
    path = hub_settings.config_path(getattr(args, "config", None), data_dir)
    return data_dir, path, hub_settings.load(path, **flags)


def _config(args: argparse.Namespace, **flags: Any) -> HubConfig:
    data_dir, _, s = _settings(args, **flags)
    kw: dict[str, Any] = {"host": s.host, "port": s.port, "verify": s.verify, "trusted_proxies": s.trusted_proxies}
    for name in ("hub_key_file", "admin_token_file"):
        if getattr(args, name, None):
            kw["key_file" if name == "hub_key_file" else name] = Path(getattr(args, name))
    toml = hub_settings.config_path(getattr(args, "config", None), data_dir)
    database = resolve_database(getattr(args, "database", None), toml)
    return HubConfig(data_dir=data_dir, database=database, **kw)


def _forwarding(args: argparse.Namespace, data_dir: Path) -> Any:
    return load_config(hub_settings.config_path(getattr(args, "config", None), data_dir), data_dir)


def _setup_logging(args: argparse.Namespace) -> HubSettings:
    _, _, s = _settings(args, log_level=args.log_level, log_format=args.log_format)
    logfmt.setup("cloud-hub", s.log_level, s.log_format)
    return s


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
    public = _settings(args)[2].public_url
    url = (args.hub_url or public or os.environ.get(HUB_URL_ENV) or "").rstrip("/")
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
    hub_url = url or "https://HUB-ADDRESS"
    print(f"  edge-agent enroll --data-dir {args.agent_data_dir} --hub {hub_url} --token {issued.token}")
    if not url:
        print(
            f"(replace https://HUB-ADDRESS with the address stores reach this hub at; set ${PUBLIC_URL_ENV} "
            "or pass --hub-url to have it printed here)"
        )
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """``cloud-hub init``: the only command that creates a hub."""
    config = _config(args)
    hub = init_hub(config)
    try:
        from sync_protocol import keys

        kid = keys.key_id(hub.hub_key)
    finally:
        hub.close()
    if args.json:
        print(json.dumps({"data_dir": str(config.data_dir), "hub_key_id": kid, "database": config.storage_url}))
        return 0
    print(f"initialised hub {config.data_dir}: receipt key {kid}, database {config.storage_url}")
    print(f"admin token: {config.token_path} (mode 0600; never printed)")
    print(f"next: cloud-hub store add STORE_ID --tz ZONE --data-dir {config.data_dir}")
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
    """``cloud-hub serve``: run uvicorn until SIGTERM or Ctrl-C, holding a SQLite hub's folder lock."""
    settings = _setup_logging(args)
    config = _config(args, host=args.host, port=args.port, verify=args.verify)
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
    sock = socket.socket(family, socket.SOCK_STREAM)
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

    from .app import create_app
    from .tls import from_args

    tls = from_args(args.tls_cert, args.tls_key)
    listener = _listen(config.host, config.port)
    try:
        forwarding = _forwarding(args, config.data_dir)
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
    from .delivery import DeliveryEngine
    from .forwarding import Forwarder

    _setup_logging(args)
    config = _config(args)
    forwarding = _forwarding(args, config.data_dir)
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


def cmd_migrate(args: argparse.Namespace) -> int:
    """``cloud-hub migrate``: open the database (which applies what is pending) and say where it stands."""
    config = _config(args)
    if config.database is None:
        require_hub_folder(config)  # a SQLite hub lives in its data folder: never create one by migrating
        ensure_data_dir(config)
    storage = open_storage(config.storage_url, busy_timeout_ms=config.busy_timeout_ms)
    try:
        version = storage.schema_version()
        applied = ", ".join(str(v) for v in storage.applied) or "none (up to date)"
        print(f"{storage.engine}: schema version {version} of {storage.latest_schema}; applied now: {applied}")
    finally:
        storage.close()
    return 0


def cmd_storage_copy(args: argparse.Namespace) -> int:
    """``cloud-hub storage copy --from URL --to URL``: see :mod:`cloud_hub.storage.copy`."""
    from .credentials import load_hub_key
    from .storage.copy import copy_storage

    path = sqlite_path(args.source) if args.source.startswith("sqlite:") else args.source
    if "://" not in path and path != ":memory:" and not Path(path).is_file():
        raise InputError(f"--from: no SQLite database at {path}", field="from")
    key_file = Path(args.hub_key_file) if args.hub_key_file else None
    if key_file is None and args.data_dir and (Path(args.data_dir) / "hub.key").is_file():
        key_file = Path(args.data_dir) / "hub.key"
    hub_key = load_hub_key(key_file, key_file) if key_file is not None else None
    source = open_storage(args.source)
    try:
        target = open_storage(args.target)
        try:
            report = copy_storage(source, target, hub_key=hub_key, progress=print)
        finally:
            target.close()
    finally:
        source.close()
    receipts = f", {report.receipts_verified} receipts" if hub_key is not None else " (no hub key: receipts not issued)"
    print(
        f"copied and verified: {report.streams} streams, {report.records_verified} records"
        f" (chains and signatures){receipts}; {target.engine} now holds the hub's data"
    )
    return 0


def cmd_deliveries(args: argparse.Namespace) -> int:
    """``cloud-hub deliveries list|replay|skip``: works on the database directly."""
    hub = open_hub(_config(args))
    try:
        return deliveries.run_cli(args, hub.storage)
    finally:
        hub.close()


def _date(text: str) -> str:
    from datetime import date

    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def export_format(fmt: str | None, out: Path) -> str:
    """``--format``, else from the file suffix (.db/.sqlite, .csv), else jsonl."""
    if fmt:
        return fmt
    return {".db": "sqlite", ".sqlite": "sqlite", ".csv": "csv"}.get(out.suffix.lower(), "jsonl")


def cmd_ledger_export(args: argparse.Namespace) -> int:
    """``cloud-hub ledger export --store S --out FILE``: verifiable offline with the store's public key."""
    from .ledger_export import export

    out = Path(args.out)
    fmt = export_format(args.format, out)
    hub = open_hub(_config(args))
    try:
        n = export(hub.storage, args.store, out, fmt, date_from=args.date_from, date_to=args.date_to, epoch=args.epoch)
    finally:
        hub.close()
    if args.json:
        print(json.dumps({"store_id": args.store, "records": n, "file": str(out), "format": fmt}))
    else:
        print(f"exported {n} records of {args.store} to {out} ({fmt}); check with: storesync verify-export {out} "
              "--public-key KEY")  # fmt: skip
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """``cloud-hub backup DEST``: safe while the hub serves (SQLite online backup API, or pg_dump)."""
    from .backup import backup

    result = backup(_config(args), Path(args.dest))
    if args.json:
        print(json.dumps(result.manifest))
        return 0
    m = result.manifest
    print(f"backed up {m['data_dir']} to {result.folder}: {m['database']}, {len(m['files'])} files")
    for s in m["stores"]:
        print(f"  {s['store_id']}: epoch {s['epoch']}, acked through {s['acked_through']}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """``cloud-hub restore BACKUP``: the hub must be stopped; the replaced files are kept aside."""
    from .backup import restore

    config = HubConfig(data_dir=resolve_data_dir(args.data_dir))
    result = restore(config, Path(args.backup))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"restored {config.data_dir} from {args.backup} (backup of {result['created_at']})")
    if result["moved_aside"]:
        print(f"kept the replaced files as: {', '.join(result['moved_aside'])}")
    print("start the hub: stores send again whatever the backup lacks (docs/operations.md, Restoring)")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    """``cloud-hub config check``: 0 when hub.toml and CLOUD_HUB_* are valid, 1 (naming the problem) when not."""
    data_dir = resolve_data_dir(args.data_dir)
    path = hub_settings.config_path(args.config, data_dir)
    problems: list[str] = []
    doc: dict[str, Any] = {"config_file": str(path) if path else None, "data_dir": str(data_dir)}
    try:
        s = hub_settings.load(path)
        doc["hub"] = s.model_dump()
        doc["database"] = hub_settings.redact_url(resolve_database(args.database, path)) or "sqlite:///DATA/hub.db"
    except StoreSyncError as exc:
        problems.append(str(exc))
    try:
        forwarding = load_config(path, data_dir)
        doc["sinks"] = [{"name": sk.name, "kind": sk.kind} for sk in forwarding.sinks]
    except HubError as exc:
        problems.append(exc.message)
    if not is_hub_folder(data_dir):
        problems.append(f"{data_dir} is not a hub data folder; create it with: cloud-hub init --data-dir {data_dir}")
    warnings = [f"unknown environment variable {name}" for name in hub_settings.unknown_env()]
    doc.update(ok=not problems, problems=problems, warnings=warnings)
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"config file  {doc['config_file'] or '(none: defaults and environment)'}")
        for key, value in (doc.get("hub") or {}).items():
            print(f"hub.{key:<11} {value}")
        for sink in doc.get("sinks", []):
            print(f"sink         {sink['name']} ({sink['kind']})")
        for w in warnings:
            print(f"warning: {w}")
        for p in problems:
            print(f"problem: {p}")
        print("config OK" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloud-hub`` console script."""
    args = build_parser().parse_args(argv)
    commands = {
        "init": cmd_init,
        "serve": cmd_serve,
        "deliver": cmd_deliver,
        "deliveries": cmd_deliveries,
        "migrate": cmd_migrate,
        "storage": cmd_storage_copy,
        "store": cmd_store_add,
        "stores": cmd_stores,
        "config": cmd_config_check,
        "backup": cmd_backup,
        "ledger": cmd_ledger_export,
        "restore": cmd_restore,
    }
    handlers: list[tuple[Any, Any]] = [
        ((InputError, ConfigError), lambda exc: (common_cli.EXIT_USAGE, exc.message)),
        (HubError, lambda exc: (common_cli.EXIT_PROBLEM, exc.message)),
        (StoreSyncError, lambda exc: (common_cli.EXIT_USAGE, str(exc))),
    ]
    return common_cli.run(
        "cloud-hub",
        lambda: commands[args.command](args),
        handlers=handlers,
        json_mode=bool(getattr(args, "json", False)),
    )


if __name__ == "__main__":
    sys.exit(main())
