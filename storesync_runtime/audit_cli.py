"""The ``storesync`` command: ``storesync verify-export FILE --public-key KEY``, for auditors, offline.

Exit codes: 0 every record checks out, 1 a record does not (each problem named), 2 usage error or an
unreadable file. ``--public-key`` takes the store's Ed25519 public key as 64 hex digits, or a file
holding it; repeat it for a store that re-enrolled (one key per epoch).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sync_protocol import audit, keys
from sync_protocol._exceptions import StoreSyncError

from . import cli as common_cli


def _key(text: str) -> str:
    path = Path(text)
    value = path.read_text().strip() if len(text) != 64 and path.is_file() else text.strip()
    keys.public_from_hex(value)  # KeyFileError names what is wrong
    return value.lower()


def build_parser() -> argparse.ArgumentParser:
    parser = common_cli.Parser(prog="storesync", description="StoreSync tools for auditors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=common_cli.Parser)
    p = sub.add_parser("verify-export", help="check every chain link and signature of an audit export, offline")
    p.add_argument("file", metavar="FILE", help="export from 'cloud-hub ledger export' or 'edge-agent export'")
    p.add_argument(
        "--public-key",
        action="append",
        required=True,
        metavar="KEY",
        help="store public key (hex, or a file); repeat",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def cmd_verify_export(args: argparse.Namespace) -> int:
    trusted = [_key(k) for k in args.public_key]
    path = Path(args.file)
    if not path.is_file():
        raise audit.ExportError(f"{path} is not a file")
    report = audit.verify(audit.read(path), trusted)
    if args.json:
        doc: dict[str, Any] = {
            "ok": report.ok,
            "records": report.count,
            "streams": report.streams,
            "problems": report.problems,
        }
        print(json.dumps(doc))
    else:
        for name, s in sorted(report.streams.items()):
            print(f"{name}: {s['records']} records, seq {s['first_seq']}..{s['last_seq']}")
            if s["gaps"]:  # a date range skips records; a full export has none
                print(f"  not in this export: seq {', '.join(s['gaps'])}")
        for problem in report.problems:
            print(f"FAILED {problem}")
        if report.ok:
            print(f"export OK: {report.count} records, every chain link and signature checks out")
        elif report.count == 0:
            print("FAILED: the export holds no records")
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``storesync`` console script."""
    args = build_parser().parse_args(argv)
    handlers: list[tuple[Any, Any]] = [(StoreSyncError, lambda exc: (common_cli.EXIT_USAGE, str(exc)))]
    return common_cli.run("storesync", lambda: cmd_verify_export(args), handlers=handlers, json_mode=args.json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
