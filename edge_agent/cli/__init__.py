"""The ``edge-agent`` command.

Subcommands: ``init``, ``enroll``, ``run``, ``status``, ``verify``, ``capture``, ``import``, ``imports``,
``sync``. Each takes ``--data-dir`` (else ``$EDGE_AGENT_DATA``, else ``./edge-agent-data``). Exit
codes are those of :mod:`storesync_runtime.cli`: 0 success, 1 the thing checked is not fine (status not in
sync or blocked, verify failed, a capture refused, records still pending), 2 usage or configuration
error, 3 the hub unreachable or refusing, 4 the data folder in use by another process.

This module only wires argparse to the commands, which live by concept: :mod:`.enroll` (init, enroll,
register), :mod:`.capture` (run, capture, sync), :mod:`.records` (status, verify, export, backup, restore,
config check), :mod:`edge_agent.drops.cli` (import, imports); :mod:`._common` holds what they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from storesync_runtime import cli as common_cli
from sync_protocol._exceptions import StoreSyncError

from .. import __version__
from .._exceptions import AgentError, HubCallError, HubRejected
from ..drops.cli import add_drop_commands
from . import _common, capture, enroll, records


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

    enroll.add_init(sub, common)
    enroll.add_enroll(sub, common)
    capture.add_run(sub, common)
    enroll.add_register(sub, common)
    records.add_status(sub, common)
    records.add_verify(sub, common)
    capture.add_capture(sub, common)
    add_drop_commands(sub, common)
    records.add_export(sub, common)
    records.add_backup(sub, common)
    records.add_config(sub, common)
    capture.add_sync(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-agent`` console script."""
    args = build_parser().parse_args(argv)

    def rejected(exc: HubRejected) -> tuple[int, str]:
        hint = ""
        if exc.status == 404:
            hint = f"; is {_common.hub_url(args)} the hub's address?"
        return common_cli.EXIT_HUB, f"hub at {_common.hub_url(args)} refused (HTTP {exc.status}) {exc}{hint}"

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
