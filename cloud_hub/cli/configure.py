"""``cloud-hub init``, ``migrate`` and ``config check``: make a hub, bring its schema up, check its settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from storesync_runtime import cli as common_cli
from sync_protocol._exceptions import StoreSyncError

from .. import settings as hub_settings
from .._exceptions import HubError
from ..config import ensure_data_dir, init_hub, is_hub_folder, require_hub_folder, resolve_data_dir, resolve_database
from ..forwarding import load_config
from ..storage import open_storage
from . import _common


def add_init(sub: Any) -> None:
    """``cloud-hub init``."""
    init = sub.add_parser("init", help="create a hub data folder: receipt key, admin token, database")
    _common.data_dir_arg(init)
    _common.config_arg(init)
    init.add_argument("--json", action="store_true", help="print the result as one JSON object")


def add_migrate(sub: Any) -> None:
    """``cloud-hub migrate``."""
    migrate = sub.add_parser("migrate", help="apply pending schema migrations (serve and deliver do it at start)")
    _common.data_dir_arg(migrate)
    migrate.add_argument("--config", help="hub.toml whose [storage] database names the database")


def add_config(sub: Any) -> None:
    """``cloud-hub config check``."""
    check = sub.add_parser("config", help="configuration commands")
    check_sub = check.add_subparsers(dest="config_command", required=True, parser_class=_common.Parser)
    chk = check_sub.add_parser("check", help="validate hub.toml and CLOUD_HUB_* and print the settings in effect")
    _common.data_dir_arg(chk)
    _common.config_arg(chk)
    chk.add_argument("--json", action="store_true", help="print the result as one JSON object")


def cmd_init(args: argparse.Namespace) -> int:
    """``cloud-hub init``: the only command that creates a hub."""
    from sync_protocol import keys

    config = _common.config(args)
    hub = init_hub(config)
    try:
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


def cmd_migrate(args: argparse.Namespace) -> int:
    """``cloud-hub migrate``: open the database (which applies what is pending) and say where it stands."""
    config = _common.config(args)
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


def check_config(data_dir: Path, path: Path | None, database: str | None) -> tuple[dict[str, Any], list[str]]:
    """What ``config check`` reports: the settings, database and sinks in effect, and the problems found.

    Args:
        data_dir: The hub data folder.
        path: hub.toml, or None for defaults and environment.
        database: ``--database``, if given.
    """
    problems: list[str] = []
    doc: dict[str, Any] = {"config_file": str(path) if path else None, "data_dir": str(data_dir)}
    try:
        s = hub_settings.load(path)
        doc["hub"] = s.model_dump()
        doc["database"] = hub_settings.redact_url(resolve_database(database, path)) or "sqlite:///DATA/hub.db"
    except StoreSyncError as exc:
        problems.append(str(exc))
    try:
        forwarding = load_config(path, data_dir)
        doc["sinks"] = [{"name": sk.name, "kind": sk.kind} for sk in forwarding.sinks]
    except HubError as exc:
        problems.append(exc.message)
    if not is_hub_folder(data_dir):
        problems.append(f"{data_dir} is not a hub data folder; create it with: cloud-hub init --data-dir {data_dir}")
    return doc, problems


def cmd_config_check(args: argparse.Namespace) -> int:
    """``cloud-hub config check``: 0 when hub.toml and CLOUD_HUB_* are valid, 1 (naming the problem) when not."""
    data_dir = resolve_data_dir(args.data_dir)
    doc, problems = check_config(data_dir, hub_settings.config_path(args.config, data_dir), args.database)
    warnings = [f"unknown environment variable {name}" for name in hub_settings.unknown_env()]
    lines = [(f"hub.{key:<11}", value) for key, value in (doc.get("hub") or {}).items()]
    lines += [("sink        ", f"{sink['name']} ({sink['kind']})") for sink in doc.get("sinks", [])]
    return common_cli.print_config_check(doc, lines, problems, warnings, json_mode=args.json)
