"""The ``cloud-hub`` command: ``init``, ``serve``, ``deliver``, ``deliveries``, ``migrate``, ``storage copy``,
``store add``, ``stores``, ``config check``, ``backup``, ``restore``, ``ledger export``.

Only ``init`` creates a hub; every other command refuses a folder that is not one. Errors are one line
``cloud-hub: error: ...`` naming the field, with the exit codes of :mod:`storesync_runtime.cli` (2 for bad
input or configuration, 4 when another ``serve`` holds a SQLite hub's data folder).

This module only wires argparse to the commands, which live by concept: :mod:`.serve` (serve, deliver,
deliveries), :mod:`.stores` (store add, stores), :mod:`.archive` (backup, restore, ledger export, storage
copy), :mod:`.configure` (init, migrate, config check); :mod:`._common` holds the shared options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from storesync_runtime import cli as common_cli
from sync_protocol._exceptions import StoreSyncError

from .. import __version__
from .._exceptions import ConfigError, HubError, InputError
from . import _common, archive, configure, serve, stores

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": configure.cmd_init,
    "serve": serve.cmd_serve,
    "deliver": serve.cmd_deliver,
    "deliveries": serve.cmd_deliveries,
    "migrate": configure.cmd_migrate,
    "storage": archive.cmd_storage_copy,
    "store": stores.cmd_store_add,
    "stores": stores.cmd_stores,
    "config": configure.cmd_config_check,
    "backup": archive.cmd_backup,
    "ledger": archive.cmd_ledger_export,
    "restore": archive.cmd_restore,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cloud-hub``."""
    parser = _common.Parser(
        prog="cloud-hub",
        description="StoreSync cloud hub",
        epilog="Exit codes: 0 ok, 1 not fine, 2 usage or configuration error, 4 data folder in use, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"cloud-hub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_common.Parser)
    configure.add_init(sub)
    serve.add_serve(sub)
    serve.add_deliver(sub)
    configure.add_migrate(sub)
    archive.add_storage(sub)
    stores.add_store(sub)
    configure.add_config(sub)
    archive.add_backup(sub)
    archive.add_ledger(sub)
    stores.add_stores(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloud-hub`` console script."""
    args = build_parser().parse_args(argv)
    handlers: list[tuple[Any, Any]] = [
        ((InputError, ConfigError), lambda exc: (common_cli.EXIT_USAGE, exc.message)),
        (HubError, lambda exc: (common_cli.EXIT_PROBLEM, exc.message)),
        (StoreSyncError, lambda exc: (common_cli.EXIT_USAGE, str(exc))),
    ]
    return common_cli.run(
        "cloud-hub",
        lambda: COMMANDS[args.command](args),
        handlers=handlers,
        json_mode=bool(getattr(args, "json", False)),
    )


if __name__ == "__main__":
    sys.exit(main())
