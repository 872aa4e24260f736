"""``edge-agent import FILE`` and ``edge-agent imports``: file drops from the command line.

``import`` takes the file like the watcher does, synchronously: it first finishes any import of the
same drop folder a crash left running, then imports FILE (read in place) and moves it to the drop
folder's ``processed/`` or ``rejected/`` with its ``.result.json``. The drop folder is ``--drop-dir``,
else ``$EDGE_AGENT_DROP_DIR``, else ``<data-dir>/drops``. Progress lines go to stderr; the summary to
stdout (one JSON object with ``--json``). Exit code 0 when every transaction was stored (or was
already there), 1 when some or all were refused or the file is a duplicate.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from storesync_runtime.cli import EXIT_INTERRUPTED
from sync_protocol.clock import now_iso

from .._exceptions import ConfigError
from ..config import AgentConfig, data_lock
from ..store import Outbox
from ..store import imports as ledger
from .importer import WORKERS, DropFolders, Importer, ImportInterrupted
from .report import STATUS_OK


def abs_path(text: str) -> Path:
    """An argparse type: the path, made absolute."""
    return Path(text).expanduser().absolute()


def drop_folder(cfg: AgentConfig, arg: Path | None) -> Path:
    """``--drop-dir``, else the configured one, else ``<data-dir>/drops``."""
    return arg or cfg.drop_dir or cfg.data_dir / "drops"


INTERRUPTED = "interrupted"


def cmd_import(args: argparse.Namespace) -> int:
    cfg = AgentConfig.load(args.data_dir)
    if not args.file.is_file():
        raise ConfigError(f"{args.file} is not a file")
    key = cfg.load_key()
    started = time.perf_counter()
    with data_lock(cfg, "edge-agent import"), Outbox(cfg.db_path, key=key, create=False) as outbox:
        outbox.require_identity()
        importer = Importer(
            outbox,
            DropFolders(drop_folder(cfg, args.drop_dir)),
            workers=args.workers,
            key_file=cfg.key_path,
            progress_every=args.progress,
            say=lambda text: print(text, file=sys.stderr, flush=True),
        )

        def stop(signum: int, frame: Any) -> None:
            if importer.stop_requested:  # a second Ctrl-C: stop now (the chunk in flight is rolled back)
                raise KeyboardInterrupt
            importer.stop_requested = True
            print("stopping after the current chunk (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

        previous = signal.signal(signal.SIGINT, stop)
        try:
            mine = [r for r in ledger.running(outbox) if r["path"] == str(args.file)]
            if mine:  # this very file was interrupted: resume it first, then the others
                summary = importer.import_file(args.file)
                importer.resume_all()
            else:
                importer.resume_all()
                summary = importer.import_file(args.file)
        except (ImportInterrupted, KeyboardInterrupt):
            signal.signal(signal.SIGINT, previous)
            rows = ledger.running(outbox)
            for row in rows:
                ledger.update(outbox, row["id"], now_iso(local=True), reason=INTERRUPTED)
            pct = ", ".join(f"{r['name']} at {100 * r['checkpoint_offset'] // max(1, r['size'])}%" for r in rows)
            print(
                f"edge-agent: import interrupted ({pct or 'nothing stored yet'}); run the same command again to "
                "resume where it stopped (no row is lost or stored twice)",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        finally:
            signal.signal(signal.SIGINT, previous)
        stats = dict(importer.stats)
    elapsed = time.perf_counter() - started
    if args.json:
        out: dict[str, Any] = {
            **summary.to_dict(),
            "seconds": round(elapsed, 3),
            "rows_per_s": round(summary.rows / elapsed, 1) if elapsed > 0 else None,
            "reader_cpu_s": round(float(stats["reader_cpu_s"]), 3),
            "reader_max_rss_kb": int(stats["reader_max_rss_kb"]),
        }
        print(json.dumps(out))
    else:
        print(
            f"{summary.file}: {summary.status}{' (' + summary.reason + ')' if summary.reason else ''}; "
            f"{summary.rows} rows, {summary.transactions} transactions: {summary.accepted} accepted, "
            f"{summary.duplicates} duplicates, {summary.rejected} rejected ({elapsed:.1f} s)"
        )
    return 0 if summary.status == STATUS_OK else 1


def cmd_imports(args: argparse.Namespace) -> int:
    cfg = AgentConfig.load(args.data_dir)
    with Outbox(cfg.db_path, create=False) as outbox:
        rows = ledger.recent(outbox, args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no imports yet")
    for r in rows:
        running = r["status"] == ledger.RUNNING
        state = (INTERRUPTED if r["reason"] == INTERRUPTED else r["status"]) if running else r["result"]
        progress = f" {100 * r['checkpoint_offset'] // max(1, r['size'])}%" if running else ""
        reason = r["reason"] if r["reason"] and r["reason"] != INTERRUPTED else None
        if running and r["reason"] == INTERRUPTED:
            reason = "resumes with the next 'edge-agent import' or agent start"
        print(
            f"{r['started_at']}  {r['name']}  {state}{progress}  rows {r['rows']}  accepted {r['accepted']}  "
            f"duplicates {r['duplicates']}  rejected {r['rejected']}" + (f"  ({reason})" if reason else "")
        )
    return 0


def add_drop_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``import`` and ``imports`` to the ``edge-agent`` subcommands."""
    p = sub.add_parser("import", parents=[common], help="import a drop file (JSONL, canonical CSV, Shopify export)")
    p.add_argument("file", metavar="FILE", type=abs_path, help="the drop file (read in place, then moved)")
    p.add_argument("--drop-dir", type=abs_path, default=None, help="drop folder (default: <data-dir>/drops)")
    p.add_argument("--workers", type=int, default=WORKERS, help=f"reader processes (default {WORKERS})")
    p.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines (default 5)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("imports", parents=[common], help="list recent file imports")
    p.add_argument("--limit", type=int, default=20, help="imports to list, newest first (default 20)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=cmd_imports)
