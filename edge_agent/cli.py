"""The ``edge-agent`` command.

Subcommands: ``init``, ``enroll``, ``run``, ``status``, ``verify``, ``capture``, ``import``, ``imports``,
``sync``. Each takes ``--data-dir`` (else ``$EDGE_AGENT_DATA``, else ``./edge-agent-data``). Exit
codes: 0 success, 1 the command ran but found a problem (verify failed, a capture refused, records
still pending), 2 an error (printed as one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sync_protocol import keys
from sync_protocol._exceptions import StoreSyncError, TransactionInvalid
from sync_protocol.canonical import DuplicateKey, loads_strict
from sync_protocol.transaction import Transaction, parse_transaction
from sync_protocol.wire import EnrollRequest, EnrollResponse

from . import __version__
from ._exceptions import CaptureConflict, ConfigError, EnrollRefused, HubRejected, HubUnavailable
from .config import HUB_CA_FILE, AgentConfig, check_hub_transport, hub_tls, parse_hub_urls, resolve_data_dir
from .drops.cli import abs_path, add_drop_commands
from .status import compute_status, format_status
from .store import CaptureResult, Identity, Outbox
from .sync import Syncer
from .transport import HubClient

CAPTURE_CHUNK = 500


def _config(args: argparse.Namespace, **overrides: Any) -> AgentConfig:
    return AgentConfig.load(args.data_dir, **overrides)


def cmd_init(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if cfg.key_path.exists():
        raise ConfigError(f"{cfg.key_path} already exists; refusing to overwrite the agent key")
    cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = keys.generate()
    keys.save_private_key(key, cfg.key_path)
    Outbox(cfg.db_path).close()
    kid = keys.key_id(key)
    if args.json:
        print(json.dumps({"key_id": kid, "public_key": keys.public_hex(key), "data_dir": str(cfg.data_dir)}))
    else:
        print(f"initialised {cfg.data_dir}: key_id {kid}")
    return 0


def cmd_enroll(args: argparse.Namespace) -> int:
    cfg = _config(args, hub_ca=args.hub_ca, insecure_http=args.insecure_http or None)
    key = cfg.load_key()
    urls = parse_hub_urls(args.hub)
    for url in urls:
        check_hub_transport(url, cfg.insecure_http)
    verify = hub_tls(cfg)
    hub_url = " ".join(urls)
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
            key, staged = keys.generate(), cfg.key_path.with_name(cfg.key_path.name + ".new")
            staged.unlink(missing_ok=True)
            keys.save_private_key(key, staged)
        try:
            request = EnrollRequest(
                token=args.token,
                public_key=keys.public_hex(key),
                hostname=socket.gethostname()[:255],
                agent_version=__version__,
            )
            answer = _enroll_any(urls, request, verify)
            if answer.key_id != keys.key_id(key):
                raise ConfigError(f"hub bound key {answer.key_id}, but our key is {keys.key_id(key)}")
            keys.public_from_hex(answer.hub_public_key)
        except BaseException:
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
    if args.json:
        print(json.dumps({**answer.model_dump(), "hub_url": hub_url, "carried_forward": carried}))
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
    from .runtime import run_agent

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
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    run_agent(cfg)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _config(args)
    with Outbox(cfg.db_path, create=False) as outbox:
        status = compute_status(outbox.snapshot())
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = _config(args)
    with Outbox(cfg.db_path, create=False) as outbox:
        report = outbox.verify()
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
    refused = 0
    with Outbox(cfg.db_path, key=key, create=False) as outbox:
        outbox.require_identity()
        valid: list[tuple[int, Transaction]] = []
        for i, (label, item) in enumerate(items):
            if isinstance(item, ValueError):
                lines[i] = f"{label}: refused: {item}"
                refused += 1
                continue
            try:
                valid.append((i, parse_transaction(item)))
            except TransactionInvalid as exc:
                reasons = "; ".join(f"{e.field}: {e.reason}" for e in exc.errors)
                lines[i] = f"{label}: refused: {reasons}"
                refused += 1
        for start in range(0, len(valid), CAPTURE_CHUNK):
            chunk = valid[start : start + CAPTURE_CHUNK]
            results = outbox.capture_batch([(txn, "cli") for _, txn in chunk])
            for (i, _), result in zip(chunk, results, strict=True):
                label = items[i][0]
                if isinstance(result, CaptureResult):
                    lines[i] = f"{label}: {'duplicate of' if result.duplicate else 'stored as'} seq {result.seq}"
                else:
                    kind = "conflict" if isinstance(result, CaptureConflict) else result.code
                    lines[i] = f"{label}: refused ({kind}): {result}"
                    refused += 1
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
    if result.result == "ok":
        print(f"synced: acked_through {result.acked_through}, pending {result.pending}")
    else:
        print(f"{result.result}: {result.message} (acked_through {result.acked_through}, pending {result.pending})")
    return 0 if result.pending == 0 and result.result in ("ok", "waiting") else 1


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line and exit code 2, like every other error."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edge-agent", description="StoreSync edge agent")
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--data-dir", help="data folder (default: $EDGE_AGENT_DATA or ./edge-agent-data)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", parents=[common], help="create the agent key and the outbox")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("enroll", parents=[common], help="enroll with the hub using a one-time token")
    p.add_argument(
        "--hub",
        required=True,
        action="append",
        help="hub base URL, e.g. https://hub.example.com; repeat for replicas (failover in this order)",
    )
    p.add_argument("--token", required=True)
    p.add_argument("--hub-ca", type=abs_path, default=None, help="CA file (or the hub's own certificate) to trust")
    p.add_argument("--insecure-http", action="store_true", help="allow plain http:// to a hub beyond loopback")
    p.add_argument("--force", action="store_true", help="enroll even though records are not synced")
    p.add_argument("--json", action="store_true")
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
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("register", parents=[common], help="register tokens for a capture API beyond loopback")
    p.add_argument("action", choices=("add", "list", "remove"))
    p.add_argument("register_id", nargs="?", metavar="REGISTER", help="register id, e.g. R2 (add, remove)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("status", parents=[common], help="show sync status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("verify", parents=[common], help="check the outbox chain and signatures")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("capture", parents=[common], help="store transactions from a file or stdin")
    p.add_argument("file", metavar="FILE", help="JSON object, JSON array or JSON Lines; - for stdin")
    p.set_defaults(func=cmd_capture)

    add_drop_commands(sub, common)

    p = sub.add_parser("sync", parents=[common], help="run a sync pass now")
    p.add_argument("--until-synced", action="store_true", help="keep trying until nothing is pending")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds (default 60)")
    p.add_argument("--hub", action="append", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sync)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
    except HubRejected as exc:
        print(f"edge-agent: error: hub refused (HTTP {exc.status}) {exc}", file=sys.stderr)
        code = 2
    except StoreSyncError as exc:
        print(f"edge-agent: error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
