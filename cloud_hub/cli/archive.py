"""``cloud-hub backup``, ``restore``, ``ledger export`` and ``storage copy``: the hub's data, copied out and back.

``backup`` is safe while the hub serves; ``restore`` wants it stopped. ``ledger export`` writes a
store's signed records that ``storesync verify-export`` checks offline; ``storage copy`` moves the
whole hub into an empty database and verifies it there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from storesync_runtime import cli as common_cli

from .._exceptions import InputError
from ..config import HubConfig, open_hub, resolve_data_dir
from ..storage import open_storage, sqlite_path
from . import _common


def add_storage(sub: Any) -> None:
    """``cloud-hub storage copy``."""
    storage = sub.add_parser("storage", help="move the hub's data between databases")
    storage_sub = storage.add_subparsers(dest="storage_command", required=True, parser_class=_common.Parser)
    copy = storage_sub.add_parser("copy", help="copy everything into an empty database and verify it there")
    copy.add_argument(
        "--from", dest="source", required=True, metavar="URL", help="e.g. sqlite:///cloud-hub-data/hub.db"
    )
    copy.add_argument("--to", dest="target", required=True, metavar="URL", help="e.g. postgresql://host/db")
    copy.add_argument("--hub-key-file", help="receipt key, to check each stream's receipt too (default: DATA/hub.key)")
    copy.add_argument("--data-dir", help="hub data folder whose hub.key is used when it exists")


def add_backup(sub: Any) -> None:
    """``cloud-hub backup`` and ``cloud-hub restore``."""
    bk = sub.add_parser("backup", help="copy the hub (database, key, token, config) to a new folder, while serving")
    bk.add_argument("dest", metavar="DEST", help="a new or empty folder for the backup")
    _common.data_dir_arg(bk)
    _common.config_arg(bk)
    bk.add_argument("--json", action="store_true", help="print the manifest as one JSON object")
    rs = sub.add_parser("restore", help="put a SQLite hub backup back into the data folder (hub stopped)")
    rs.add_argument("backup", metavar="BACKUP", help="a folder made by 'cloud-hub backup'")
    _common.data_dir_arg(rs)
    rs.add_argument("--json", action="store_true", help="print the result as one JSON object")


def add_ledger(sub: Any) -> None:
    """``cloud-hub ledger export``."""
    led = sub.add_parser("ledger", help="the signed ledger")
    led_sub = led.add_subparsers(dest="ledger_command", required=True, parser_class=_common.Parser)
    ex = led_sub.add_parser("export", help="export a store's signed records for auditors (storesync verify-export)")
    ex.add_argument("--store", required=True, help="the store id")
    ex.add_argument(
        "--from", dest="date_from", type=common_cli.iso_date, help="first sale date, YYYY-MM-DD (inclusive)"
    )
    ex.add_argument("--to", dest="date_to", type=common_cli.iso_date, help="last sale date, YYYY-MM-DD (inclusive)")
    ex.add_argument("--epoch", type=int, help="only this epoch (default: all)")
    ex.add_argument("--format", choices=("sqlite", "csv", "jsonl"), help="default: from --out's suffix, else jsonl")
    ex.add_argument("--out", required=True, help="the new export file")
    ex.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _common.data_dir_arg(ex)
    _common.config_arg(ex)


def cmd_storage_copy(args: argparse.Namespace) -> int:
    """``cloud-hub storage copy --from URL --to URL``: see :mod:`cloud_hub.storage.copy`."""
    from ..credentials import load_hub_key
    from ..storage.copy import copy_storage

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


def cmd_ledger_export(args: argparse.Namespace) -> int:
    """``cloud-hub ledger export --store S --out FILE``: verifiable offline with the store's public key."""
    from ..ledger_export import export

    out = Path(args.out)
    fmt = common_cli.export_format(args.format, out)
    hub = open_hub(_common.config(args))
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
    from ..backup import backup

    result = backup(_common.config(args), Path(args.dest))
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
    from ..backup import restore

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
