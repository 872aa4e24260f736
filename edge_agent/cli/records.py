"""``edge-agent status``, ``verify``, ``export``, ``backup``, ``restore``, ``config check``: outbox and settings.

``status`` and ``verify`` exit 1 when the thing checked is not fine; ``export`` writes records that
``storesync verify-export`` checks offline; ``backup`` is safe while the agent runs, ``restore`` wants it
stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from storesync_runtime import cli as common_cli

from .._exceptions import ConfigError
from ..config import data_lock, resolve_data_dir
from ..status import compute_status, format_status
from ..store import Outbox
from . import _common


def add_status(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent status``."""
    _common.command(sub, common, "status", cmd_status, "show sync status (exit 1 unless in sync)")


def add_verify(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent verify``."""
    _common.command(sub, common, "verify", cmd_verify, "check the outbox chain and signatures (exit 1 on a bad one)")


def add_export(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent export``."""
    p = _common.command(
        sub, common, "export", cmd_export, "export signed records for auditors (storesync verify-export)", json=False
    )
    p.add_argument("--out", required=True, help="the new export file")
    p.add_argument("--store", help="refuse unless this agent is this store")
    p.add_argument("--from", dest="date_from", type=common_cli.iso_date, help="first sale date, YYYY-MM-DD (inclusive)")
    p.add_argument("--to", dest="date_to", type=common_cli.iso_date, help="last sale date, YYYY-MM-DD (inclusive)")
    p.add_argument("--epoch", type=int, help="only this epoch (default: all still in the outbox)")
    p.add_argument("--format", choices=("sqlite", "csv", "jsonl"), help="default: from --out's suffix, else jsonl")
    p.add_argument("--json", action="store_true", help=_common.JSON_HELP)


def add_backup(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent backup`` and ``edge-agent restore``."""
    p = _common.command(
        sub, common, "backup", cmd_backup, "copy outbox, keys and config to a new folder, while running"
    )
    p.add_argument("dest", metavar="DEST", help="a new or empty folder for the backup")

    p = _common.command(sub, common, "restore", cmd_restore, "put a backup back into the data folder (agent stopped)")
    p.add_argument("backup", metavar="BACKUP", help="a folder made by 'edge-agent backup'")


def add_config(sub: Any, common: argparse.ArgumentParser) -> None:
    """``edge-agent config check``."""
    p = sub.add_parser("config", help="configuration commands")
    csub = p.add_subparsers(dest="config_command", required=True, parser_class=common_cli.Parser)
    p = csub.add_parser("check", parents=[common], help="validate agent.toml and EDGE_AGENT_* and print the settings")
    p.add_argument("--json", action="store_true", help=_common.JSON_HELP)
    p.set_defaults(func=cmd_config_check)


def cmd_status(args: argparse.Namespace) -> int:
    cfg = _common.config(args)
    with Outbox(cfg.db_path, create=False) as outbox:
        status = compute_status(outbox.snapshot())
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    in_sync = status["enrolled"] and not status["blocked"] and status["pending"] == 0
    return 0 if in_sync else 1


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = _common.config(args)
    with Outbox(cfg.db_path, create=False) as outbox:
        report = outbox.verify()
    if args.json:
        _common.print_json(
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


def cmd_export(args: argparse.Namespace) -> int:
    """``edge-agent export --out FILE``: this store's records for auditors (``storesync verify-export``)."""
    from ..export import export

    cfg = _common.config(args)
    if not cfg.db_path.is_file():
        raise ConfigError(f"no outbox at {cfg.db_path}; check --data-dir")
    out = Path(args.out)
    fmt = common_cli.export_format(args.format, out)
    n = export(
        cfg.db_path, out, fmt, store_id=args.store, date_from=args.date_from, date_to=args.date_to, epoch=args.epoch
    )
    if args.json:
        _common.print_json({"records": n, "file": str(out), "format": fmt})
    else:
        print(f"exported {n} records to {out} ({fmt}); check with: storesync verify-export {out} --public-key KEY")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """``edge-agent backup DEST``: safe while the agent runs (SQLite online backup API)."""
    from ..backup import backup

    manifest = backup(_common.config(args), Path(args.dest))
    if args.json:
        _common.print_json(manifest)
    else:
        print(
            f"backed up {manifest['data_dir']} to {args.dest}: store {manifest['store_id']} epoch {manifest['epoch']}, "
            f"last seq {manifest['last_seq']}, acked through {manifest['acked_through']}, "
            f"{len(manifest['files'])} files"
        )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """``edge-agent restore BACKUP``: the agent must be stopped; then sync and enroll again (the runbook)."""
    from ..backup import restore

    cfg = _common.config(args)
    cfg.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with data_lock(cfg, "edge-agent restore"):
        result = restore(cfg, Path(args.backup))
    if args.json:
        _common.print_json(result)
        return 0
    print(f"restored {cfg.data_dir} from {args.backup} (backup of {result['created_at']})")
    if result["moved_aside"]:
        print(f"kept the replaced files as: {', '.join(result['moved_aside'])}")
    print("next, before the agent captures again (docs/operations.md, Restoring):")
    print(f"  edge-agent sync --data-dir {cfg.data_dir}            # sends what the hub lacks")
    print(f"  cloud-hub store add {result['store_id']} --tz ZONE      # on the hub: a new token")
    print(f"  edge-agent enroll --data-dir {cfg.data_dir} --hub URL --token TOKEN --force   # a new epoch")
    return 0


def check_config(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """What ``config check`` reports for the data folder: the settings in effect, and the problems found."""
    from storesync_runtime.settings import SettingsError

    from .. import settings

    path = settings.config_path(folder)
    problems: list[str] = []
    doc: dict[str, Any] = {"config_file": str(path) if path else None, "data_dir": str(folder)}
    try:
        doc["settings"] = settings.load_settings(path).model_dump(mode="json")
    except SettingsError as exc:
        problems.append(str(exc))
    if not (folder / "agent.key").exists():
        problems.append(f"{folder} has no agent.key; run: edge-agent init --data-dir {folder}")
    return doc, problems


def cmd_config_check(args: argparse.Namespace) -> int:
    """``edge-agent config check``: 0 when agent.toml and EDGE_AGENT_* are valid, 1 (naming the problem) when not."""
    from .. import settings

    doc, problems = check_config(resolve_data_dir(args.data_dir))
    warnings = [f"unknown environment variable {name}" for name in settings.unknown_env()]
    lines = [(f"{key:<19}", value) for key, value in (doc.get("settings") or {}).items()]
    return common_cli.print_config_check(doc, lines, problems, warnings, json_mode=args.json)
