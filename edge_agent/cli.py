"""The ``edge-agent`` command.

Subcommands: ``init``, ``enroll``, ``run``, ``status``, ``verify``, ``capture``, ``import``, ``imports``,
``sync``. Each takes ``--data-dir`` (else ``$EDGE_AGENT_DATA``, else ``./edge-agent-data``). Exit
codes are those of :mod:`storesync_runtime.cli`: 0 success, 1 the thing checked is not fine (status not in
sync or blocked, verify failed, a capture refused, records still pending), 2 usage or configuration
error, 3 the hub unreachable or refusing, 4 the data folder in use by another process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from storesync_runtime import cli as common_cli
from sync_protocol import keys
from sync_protocol._exceptions import StoreSyncError, TransactionInvalid
from sync_protocol.canonical import DuplicateKey, loads_strict
from sync_protocol.transaction import Transaction, parse_transaction
from sync_protocol.wire import EnrollRequest, EnrollResponse

from . import __version__
from ._exceptions import (
    AgentError,
    CaptureConflict,
    ConfigError,
    EnrollRefused,
    HubCallError,
    HubRejected,
    HubUnavailable,
)
from .config import (
    HUB_CA_FILE,
    AgentConfig,
    check_hub_transport,
    data_lock,
    hub_tls,
    parse_hub_urls,
    resolve_data_dir,
)
from .drops.cli import abs_path, add_drop_commands
from .status import compute_status, format_status
from .store import CaptureResult, Identity, Outbox
from .sync import Syncer
from .transport import HubClient

CAPTURE_CHUNK = 500


def _print_json(doc: Any) -> None:
    print(json.dumps(doc))


def _config(args: argparse.Namespace, **overrides: Any) -> AgentConfig:
    return AgentConfig.load(args.data_dir, **overrides)


def cmd_init(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if cfg.key_path.exists():
        raise ConfigError(f"{cfg.key_path} already exists; refusing to overwrite the agent key")
    try:
        cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = keys.generate()
        keys.save_private_key(key, cfg.key_path)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the agent data folder {cfg.data_dir}: {exc.strerror}; "
            "pick a folder this user can write (--data-dir) or run as the service user"
        ) from None
    Outbox(cfg.db_path).close()
    kid = keys.key_id(key)
    if args.json:
        _print_json({"key_id": kid, "public_key": keys.public_hex(key), "data_dir": str(cfg.data_dir)})
    else:
        print(f"initialised {cfg.data_dir}: key_id {kid}")
    return 0


def _staged_key(cfg: AgentConfig) -> tuple[keys.Ed25519PrivateKey, Path]:
    """The key staged for a new epoch: the one a lost enrollment answer left behind, else a new one.

    Reusing the staged key makes a retried enrollment idempotent: the hub answers a retry with the same
    token and key with the enrollment it already made.
    """
    staged = cfg.key_path.with_name(cfg.key_path.name + ".new")
    if staged.exists():
        try:
            return keys.load_private_key(staged), staged
        except StoreSyncError:
            staged.unlink(missing_ok=True)
    key = keys.generate()
    keys.save_private_key(key, staged)
    return key, staged


def cmd_enroll(args: argparse.Namespace) -> int:
    cfg = _config(args, hub_ca=args.hub_ca, insecure_http=args.insecure_http or None)
    key = cfg.load_key()
    urls = parse_hub_urls(args.hub)
    for url in urls:
        check_hub_transport(url, cfg.insecure_http)
    verify = hub_tls(cfg)
    hub_url = " ".join(urls)
    try:
        request = EnrollRequest(
            token=args.token.strip(),
            public_key=keys.public_hex(key),
            hostname=socket.gethostname()[:255],
            agent_version=__version__,
        )
    except ValidationError as exc:
        raise ConfigError(
            f"--token: {common_cli.validation_message(exc)}; copy the whole token printed by 'cloud-hub store add'"
        ) from None
    staged: Path | None = None
    with Outbox(cfg.db_path, create=False) as outbox:
        current = outbox.identity()
        if current is not None:
            head, _ = outbox.head(current.epoch)
            pending = head - outbox.acked_through()
            if pending > 0 and not args.force:
                raise EnrollRefused(
                    f"{pending} records of {current.store_id} epoch {current.epoch} are not synced yet; "
                    "sync them first or pass --force (they are then carried into the new epoch and sent)"
                )
            # A new epoch needs a new key: the hub binds each key to one enrollment.
            key, staged = _staged_key(cfg)
            request = request.model_copy(update={"public_key": keys.public_hex(key)})
        try:
            answer = _enroll_any(urls, request, verify)
            if answer.key_id != keys.key_id(key):
                raise ConfigError(f"hub bound key {answer.key_id}, but our key is {keys.key_id(key)}")
            keys.public_from_hex(answer.hub_public_key)
        except HubRejected:
            # A definite refusal: the staged key was not bound. Anything else (no answer) keeps it for the retry.
            if staged is not None:
                staged.unlink(missing_ok=True)
            raise
        if staged is not None and current is not None:
            archive = cfg.key_path.with_name(f"{cfg.key_path.name}.epoch{current.epoch}")
            if not archive.exists():
                os.link(cfg.key_path, archive)
            os.replace(staged, cfg.key_path)
        if cfg.hub_ca is not None:  # kept with the identity: run and sync verify the hub the same way
            shutil.copyfile(cfg.hub_ca, cfg.data_dir / HUB_CA_FILE)
        carried = outbox.set_identity(
            Identity(
                store_id=answer.store_id,
                epoch=answer.epoch,
                key_id=answer.key_id,
                public_key=keys.public_hex(key),
                hub_url=hub_url,
                hub_public_key=answer.hub_public_key,
                hub_key_id=answer.hub_key_id,
                tz=answer.tz,
            ),
            key=key if staged is not None else None,
        )
    from .backup import clear_marker

    clear_marker(cfg)  # a restored outbox writes a new epoch from now on
    if args.json:
        _print_json({**answer.model_dump(), "hub_url": hub_url, "carried_forward": carried})
    else:
        print(
            f"enrolled store {answer.store_id} epoch {answer.epoch} (key {answer.key_id}, tz {answer.tz}) at {hub_url}"
        )
        if carried:
            print(f"{carried} records the hub had not acknowledged were carried into epoch {answer.epoch}")
    return 0


def _enroll_any(urls: Sequence[str], request: EnrollRequest, verify: ssl.SSLContext | bool) -> EnrollResponse:
    """Enroll at the first of the hub URLs that answers (a refusal is final: the token is spent or wrong)."""
    for i, url in enumerate(urls):
        try:
            with HubClient(url, verify=verify) as client:
                return client.enroll(request)
        except HubUnavailable as exc:
            if i == len(urls) - 1:
                raise
            print(f"edge-agent: {url} unavailable ({exc}); trying {urls[i + 1]}", file=sys.stderr)
    raise ConfigError("no hub URL given")  # pragma: no cover - argparse requires --hub


def _hub_override(args: argparse.Namespace) -> str | None:
    return " ".join(parse_hub_urls(args.hub)) if args.hub else None


def cmd_register(args: argparse.Namespace) -> int:
    """``edge-agent register add|list|remove [REGISTER]``: a token is printed once, stored hashed."""
    from . import registers

    data_dir = resolve_data_dir(args.data_dir)
    if args.action == "list":
        for rid, added in registers.listing(data_dir):
            print(f"{rid}\tadded {added}")
        return 0
    if not args.register_id:
        raise ConfigError(f"register {args.action}: name the register, e.g. 'edge-agent register {args.action} R2'")
    if args.action == "add":
        token = registers.add(data_dir, args.register_id)
        print(token)
        print(
            f"register {args.register_id}: send 'Authorization: Bearer <this token>'; it is shown only now",
            file=sys.stderr,
        )
        return 0
    if not registers.remove(data_dir, args.register_id):
        raise ConfigError(f"register {args.register_id} has no token")
    print(f"register {args.register_id}: token removed")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from storesync_runtime import logfmt
    from storesync_runtime.settings import SettingsError

    from .service import AgentService
    from .settings import config_path, load_settings

    cfg = _config(
        args,
        host=args.host,
        port=args.port,
        hub_url=_hub_override(args),
        sync_interval=args.sync_interval,
        drop_dir=args.drop_dir,
        allowed_hosts=tuple(args.allow_host) if args.allow_host else None,
        allowed_origins=tuple(args.allow_origin) if args.allow_origin else None,
        hub_ca=args.hub_ca,
        insecure_http=args.insecure_http or None,
    )
    try:
        s = load_settings(
            config_path(cfg.data_dir), log_level="debug" if args.verbose else args.log_level, log_format=args.log_format
        )
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    logfmt.setup("edge-agent", s.log_level, s.log_format)
    AgentService(cfg).run()  # the same start/stop code as the Windows service
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    with Outbox(cfg.db_path, create=False) as outbox:
        status = compute_status(outbox.snapshot())
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    in_sync = status["enrolled"] and not status["blocked"] and status["pending"] == 0
    return 0 if in_sync else 1


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = _config(args)
    with Outbox(cfg.db_path, create=False) as outbox:
        report = outbox.verify()
    if args.json:
        _print_json(
            {
                "ok": report.ok,
                "count": report.count,
                "first_seq": report.first_seq,
                "last_seq": report.last_seq,
                "bad_seq": None if report.ok else report.bad_seq,
                "reason": None if report.ok else report.reason,
            }
        )
        return 0 if report.ok else 1
    if report.ok:
        span = f", seq {report.first_seq}..{report.last_seq}" if report.first_seq is not None else ""
        print(f"chain OK: {report.count} records{span}")
        return 0
    print(f"seq {report.bad_seq}: {report.reason}")
    return 1


def _read_items(source: str) -> list[tuple[str, Any]]:
    """``(label, decoded item or ValueError)`` for a JSON object, a JSON array or JSON Lines."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    try:
        doc = loads_strict(text)
    except DuplicateKey as exc:
        return [("item 1", ValueError(str(exc)))]
    except ValueError:
        doc = None
    else:
        if isinstance(doc, list):
            return [(f"item {i}", item) for i, item in enumerate(doc, 1)]
        return [("item 1", doc)]
    items: list[tuple[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append((f"line {n}", loads_strict(line)))
        except DuplicateKey as exc:
            items.append((f"line {n}", ValueError(str(exc))))
        except json.JSONDecodeError as exc:
            items.append((f"line {n}", ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})")))
        except ValueError:
            items.append((f"line {n}", ValueError("not valid JSON (UTF-8)")))
    return items


def cmd_capture(args: argparse.Namespace) -> int:
    cfg = _config(args)
    key = cfg.load_key()
    try:
        items = _read_items(args.file)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
    lines: list[str] = [""] * len(items)
    docs: list[dict[str, Any]] = [{} for _ in items]
    refused = 0
    with Outbox(cfg.db_path, key=key, create=False) as outbox:
        outbox.require_identity()
        valid: list[tuple[int, Transaction]] = []
        for i, (label, item) in enumerate(items):
            if isinstance(item, ValueError):
                lines[i] = f"{label}: refused: {item}"
                docs[i] = {"item": label, "result": "refused", "errors": [{"field": None, "reason": str(item)}]}
                refused += 1
                continue
            try:
                valid.append((i, parse_transaction(item)))
            except TransactionInvalid as exc:
                reasons = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
                lines[i] = f"{label}: refused: {reasons}"
                errors = [{"field": e.field, "reason": e.reason} for e in exc.errors]
                docs[i] = {"item": label, "result": "refused", "errors": errors}
                refused += 1
        for start in range(0, len(valid), CAPTURE_CHUNK):
            chunk = valid[start : start + CAPTURE_CHUNK]
            results = outbox.capture_batch([(txn, "cli") for _, txn in chunk])
            for (i, _), result in zip(chunk, results, strict=True):
                label = items[i][0]
                if isinstance(result, CaptureResult):
                    lines[i] = f"{label}: {'duplicate of' if result.duplicate else 'stored as'} seq {result.seq}"
                    docs[i] = {
                        "item": label,
                        "result": "duplicate" if result.duplicate else "stored",
                        "seq": result.seq,
                    }
                else:
                    kind = "conflict" if isinstance(result, CaptureConflict) else result.code
                    lines[i] = f"{label}: refused ({kind}): {result}"
                    docs[i] = {"item": label, "result": "refused", "code": kind, "message": str(result)}
                    refused += 1
    if args.json:
        _print_json({"ok": refused == 0, "items": len(items), "refused": refused, "results": docs})
    else:
        print("\n".join(lines))
    return 1 if refused else 0


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = _config(args, hub_url=_hub_override(args))
    key = cfg.load_key()
    deadline = time.monotonic() + args.timeout
    with Outbox(cfg.db_path, key=key, create=False) as outbox:
        outbox.require_identity()
        syncer = Syncer(cfg, outbox, key)
        try:
            result = syncer.run_pass(force=True)
            while args.until_synced and result.pending > 0 and result.result not in ("blocked", "not_enrolled"):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(max(0.05, min(left, result.retry_in if result.retry_in is not None else 0.2)))
                result = syncer.run_pass(force=False)
        finally:
            syncer.close()
    ok = result.pending == 0 and result.result in ("ok", "waiting")
    if args.json:
        _print_json(
            {
                "ok": ok,
                "result": result.result,
                "sent": result.sent,
                "acked_through": result.acked_through,
                "pending": result.pending,
                "message": result.message,
            }
        )
    elif result.result == "ok":
        print(f"synced: acked_through {result.acked_through}, pending {result.pending}")
    else:
        print(f"{result.result}: {result.message} (acked_through {result.acked_through}, pending {result.pending})")
    return 0 if ok else 1


JSON_HELP = "print one JSON object on stdout (errors too)"


def _date(text: str) -> str:
    from datetime import date

    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def cmd_export(args: argparse.Namespace) -> int:
    """``edge-agent export --out FILE``: this store's records for auditors (``storesync verify-export``)."""
    from .export import export

    cfg = _config(args)
    if not cfg.db_path.is_file():
        raise ConfigError(f"no outbox at {cfg.db_path}; check --data-dir")
    out = Path(args.out)
    fmt = args.format or {".db": "sqlite", ".sqlite": "sqlite", ".csv": "csv"}.get(out.suffix.lower(), "jsonl")
    n = export(
        cfg.db_path, out, fmt, store_id=args.store, date_from=args.date_from, date_to=args.date_to, epoch=args.epoch
    )
    if args.json:
        _print_json({"records": n, "file": str(out), "format": fmt})
    else:
        print(f"exported {n} records to {out} ({fmt}); check with: storesync verify-export {out} --public-key KEY")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """``edge-agent backup DEST``: safe while the agent runs (SQLite online backup API)."""
    from .backup import backup

    manifest = backup(_config(args), Path(args.dest))
    if args.json:
        _print_json(manifest)
    else:
        print(
            f"backed up {manifest['data_dir']} to {args.dest}: store {manifest['store_id']} epoch {manifest['epoch']}, "
            f"last seq {manifest['last_seq']}, acked through {manifest['acked_through']}, "
            f"{len(manifest['files'])} files"
        )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """``edge-agent restore BACKUP``: the agent must be stopped; then sync and enroll again (the runbook)."""
    from .backup import restore

    cfg = _config(args)
    cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with data_lock(cfg, "edge-agent restore"):
        result = restore(cfg, Path(args.backup))
    if args.json:
        _print_json(result)
        return 0
    print(f"restored {cfg.data_dir} from {args.backup} (backup of {result['created_at']})")
    if result["moved_aside"]:
        print(f"kept the replaced files as: {', '.join(result['moved_aside'])}")
    print("next, before the agent captures again (docs/operations.md, Restoring):")
    print(f"  edge-agent sync --data-dir {cfg.data_dir}            # sends what the hub lacks")
    print(f"  cloud-hub store add {result['store_id']} --tz ZONE      # on the hub: a new token")
    print(f"  edge-agent enroll --data-dir {cfg.data_dir} --hub URL --token TOKEN --force   # a new epoch")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    """``edge-agent config check``: 0 when agent.toml and EDGE_AGENT_* are valid, 1 (naming the problem) when not."""
    from storesync_runtime.settings import SettingsError

    from . import settings
    from .config import resolve_data_dir

    folder = resolve_data_dir(args.data_dir)
    path = settings.config_path(folder)
    problems: list[str] = []
    doc: dict[str, Any] = {"config_file": str(path) if path else None, "data_dir": str(folder)}
    try:
        doc["settings"] = settings.load_settings(path).model_dump(mode="json")
    except SettingsError as exc:
        problems.append(str(exc))
    if not (folder / "agent.key").exists():
        problems.append(f"{folder} has no agent.key; run: edge-agent init --data-dir {folder}")
    warnings = [f"unknown environment variable {name}" for name in settings.unknown_env()]
    doc.update(ok=not problems, problems=problems, warnings=warnings)
    if args.json:
        _print_json(doc)
    else:
        print(f"config file  {doc['config_file'] or '(none: defaults and environment)'}")
        for key, value in (doc.get("settings") or {}).items():
            print(f"{key:<19} {value}")
        for w in warnings:
            print(f"warning: {w}")
        for p in problems:
            print(f"problem: {p}")
        print("config OK" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


def build_parser() -> argparse.ArgumentParser:
    parser = common_cli.Parser(
        prog="edge-agent",
        description="StoreSync edge agent",
        epilog="Exit codes: 0 ok, 1 not fine (not in sync, verify failed, records refused), 2 usage or "
        "configuration error, 3 hub unreachable or refusing, 4 data folder in use, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    common = common_cli.Parser(add_help=False)
    common.add_argument("--data-dir", help="data folder (default: $EDGE_AGENT_DATA or ./edge-agent-data)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=common_cli.Parser)

    p = sub.add_parser("init", parents=[common], help="create the agent key and the outbox")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("enroll", parents=[common], help="enroll with the hub using a one-time token")
    p.add_argument(
        "--hub",
        required=True,
        action="append",
        help="hub base URL, e.g. https://hub.example.com; repeat for replicas (failover in this order)",
    )
    p.add_argument("--token", required=True, help="one-time enrollment token from 'cloud-hub store add'")
    p.add_argument("--hub-ca", type=abs_path, default=None, help="CA file (or the hub's own certificate) to trust")
    p.add_argument("--insecure-http", action="store_true", help="allow plain http:// to a hub beyond loopback")
    p.add_argument("--force", action="store_true", help="enroll even though records are not synced")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("run", parents=[common], help="serve the capture API and sync in the background")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8787; 0 picks a free one)")
    p.add_argument("--hub", action="append", default=None, help="use this hub URL from now on (repeatable)")
    p.add_argument("--sync-interval", type=float, default=None, help="seconds between sync passes (default 5)")
    p.add_argument("--drop-dir", type=abs_path, default=None, help="watch this folder for file drops")
    p.add_argument("--hub-ca", type=abs_path, default=None, help="CA file (or the hub's own certificate) to trust")
    p.add_argument("--insecure-http", action="store_true", help="allow plain http:// to a hub beyond loopback")
    p.add_argument("--allow-host", action="append", default=None, help="a further name Host may carry (repeatable)")
    p.add_argument(
        "--allow-origin", action="append", default=None, help="a web origin allowed to call the API (repeatable)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug lines too (same as --log-level debug)")
    p.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=None, help="default: log_level or info"
    )
    p.add_argument("--log-format", choices=("text", "json"), default=None, help="text (default) or json lines")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("register", parents=[common], help="register tokens for a capture API beyond loopback")
    p.add_argument("action", choices=("add", "list", "remove"), help="add prints a new token; list; remove")
    p.add_argument("register_id", nargs="?", metavar="REGISTER", help="register id, e.g. R2 (add, remove)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("status", parents=[common], help="show sync status (exit 1 unless in sync)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("verify", parents=[common], help="check the outbox chain and signatures (exit 1 on a bad one)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("capture", parents=[common], help="store transactions from a file or stdin")
    p.add_argument("file", metavar="FILE", help="JSON object, JSON array or JSON Lines; - for stdin")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_capture)

    add_drop_commands(sub, common)

    p = sub.add_parser("export", parents=[common], help="export signed records for auditors (storesync verify-export)")
    p.add_argument("--out", required=True, help="the new export file")
    p.add_argument("--store", help="refuse unless this agent is this store")
    p.add_argument("--from", dest="date_from", type=_date, help="first sale date, YYYY-MM-DD (inclusive)")
    p.add_argument("--to", dest="date_to", type=_date, help="last sale date, YYYY-MM-DD (inclusive)")
    p.add_argument("--epoch", type=int, help="only this epoch (default: all still in the outbox)")
    p.add_argument("--format", choices=("sqlite", "csv", "jsonl"), help="default: from --out's suffix, else jsonl")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("backup", parents=[common], help="copy outbox, keys and config to a new folder, while running")
    p.add_argument("dest", metavar="DEST", help="a new or empty folder for the backup")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", parents=[common], help="put a backup back into the data folder (agent stopped)")
    p.add_argument("backup", metavar="BACKUP", help="a folder made by 'edge-agent backup'")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("config", help="configuration commands")
    csub = p.add_subparsers(dest="config_command", required=True, parser_class=common_cli.Parser)
    p = csub.add_parser("check", parents=[common], help="validate agent.toml and EDGE_AGENT_* and print the settings")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_config_check)

    p = sub.add_parser("sync", parents=[common], help="run a sync pass now")
    p.add_argument("--until-synced", action="store_true", help="keep trying until nothing is pending")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds (default 60)")
    p.add_argument("--hub", action="append", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_sync)
    return parser


def _hub_url(args: argparse.Namespace) -> str:
    hub = getattr(args, "hub", None)
    if isinstance(hub, list):
        hub = " ".join(hub)
    return str(hub or "the hub")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    args = build_parser().parse_args(argv)

    def rejected(exc: HubRejected) -> tuple[int, str]:
        hint = ""
        if exc.status == 404:
            hint = f"; is {_hub_url(args)} the hub's address?"
        return common_cli.EXIT_HUB, f"hub at {_hub_url(args)} refused (HTTP {exc.status}) {exc}{hint}"

    handlers: list[tuple[Any, Any]] = [
        (HubRejected, rejected),
        (HubCallError, lambda exc: (common_cli.EXIT_HUB, str(exc))),
        ((AgentError, StoreSyncError), lambda exc: (common_cli.EXIT_USAGE, str(exc))),
    ]
    return common_cli.run(
        "edge-agent", lambda: args.func(args), handlers=handlers, json_mode=bool(getattr(args, "json", False))
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
