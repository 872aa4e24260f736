"""``edge-agent run``, ``capture`` and ``sync``: the service, records from a file, a sync pass now.

File drops (``import``, ``imports``) are :mod:`edge_agent.drops.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from storesync_runtime import cli as common_cli
from sync_protocol._exceptions import TransactionInvalid
from sync_protocol.canonical import DuplicateKey, loads_strict
from sync_protocol.transaction import Transaction, parse_transaction

from .._exceptions import CaptureConflict, ConfigError
from ..drops.cli import abs_path
from ..store import CaptureResult, Outbox
from ..sync import Syncer
from . import _common

CAPTURE_CHUNK = 500


def add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent run``."""
    p = _common.command(sub, common, "run", cmd_run, "serve the capture API and sync in the background", json=False)
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
    common_cli.log_args(p, "log_level")


def add_capture(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent capture``."""
    p = _common.command(sub, common, "capture", cmd_capture, "store transactions from a file or stdin")
    p.add_argument("file", metavar="FILE", help="JSON object, JSON array or JSON Lines; - for stdin")


def add_sync(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent sync``."""
    p = _common.command(sub, common, "sync", cmd_sync, "run a sync pass now", json=False)
    p.add_argument("--until-synced", action="store_true", help="keep trying until nothing is pending")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds (default 60)")
    p.add_argument("--hub", action="append", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help=_common.JSON_HELP)


def cmd_run(args: argparse.Namespace) -> int:
    from storesync_runtime import logfmt
    from storesync_runtime.settings import SettingsError

    from ..service import AgentService
    from ..settings import config_path, load_settings

    cfg = _common.config(
        args,
        host=args.host,
        port=args.port,
        hub_url=_common.hub_override(args),
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
    cfg = _common.config(args)
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
        _common.print_json({"ok": refused == 0, "items": len(items), "refused": refused, "results": docs})
    else:
        print("\n".join(lines))
    return 1 if refused else 0


def cmd_sync(args: argparse.Namespace) -> int:
    cfg = _common.config(args, hub_url=_common.hub_override(args))
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
        _common.print_json(
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
