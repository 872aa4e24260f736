"""What the ``cloud-hub`` commands share: the data-folder, config and secret options, and the settings.

Settings resolve flags > ``CLOUD_HUB_*`` > hub.toml > defaults (:mod:`cloud_hub.settings`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from storesync_runtime import cli as common_cli
from storesync_runtime import logfmt

from .. import settings as hub_settings
from ..config import DATABASE_ENV, HubConfig, resolve_data_dir, resolve_database
from ..forwarding import ForwardingConfig, load_config
from ..settings import HubSettings

Parser = common_cli.Parser


def data_dir_arg(p: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``--database``."""
    p.add_argument("--data-dir", help="hub data folder (default: $CLOUD_HUB_DATA or ./cloud-hub-data)")
    p.add_argument(
        "--database",
        metavar="URL",
        help=f"storage URL, sqlite:///PATH or postgresql://... (default: ${DATABASE_ENV},"
        " else [storage] database in --config, else sqlite:///DATA/hub.db)",
    )


def config_arg(p: argparse.ArgumentParser) -> None:
    """``--config`` (hub.toml)."""
    p.add_argument("--config", help="hub.toml (default: $CLOUD_HUB_CONFIG or DATA/hub.toml when it exists)")


def secret_args(p: argparse.ArgumentParser) -> None:
    """``--hub-key-file`` and ``--admin-token-file`` (secrets shared by replicas)."""
    p.add_argument(
        "--hub-key-file", help="receipt key (PEM, mode 0600) shared by replicas (default: $CLOUD_HUB_KEY_FILE)"
    )
    p.add_argument(
        "--admin-token-file", help="admin token file shared by replicas (default: $CLOUD_HUB_ADMIN_TOKEN_FILE)"
    )


def worker_args(p: argparse.ArgumentParser) -> None:
    """What ``serve`` and ``deliver`` share besides the folder: hub.toml with sinks, and logging."""
    p.add_argument(
        "--config", help="hub.toml with [hub], [[sinks]], [delivery] (default: $CLOUD_HUB_CONFIG or DATA/hub.toml)"
    )
    common_cli.log_args(p, "[hub] log_level")


def settings(args: argparse.Namespace, **flags: Any) -> tuple[Path, Path | None, HubSettings]:
    """Data folder, config file and the validated ``[hub]`` settings (flags > env > file > defaults)."""
    data_dir = resolve_data_dir(args.data_dir)
    path = hub_settings.config_path(getattr(args, "config", None), data_dir)
    return data_dir, path, hub_settings.load(path, **flags)


def config(args: argparse.Namespace, **flags: Any) -> HubConfig:
    """The :class:`HubConfig` of the parsed options (``flags`` override the settings)."""
    data_dir, toml, s = settings(args, **flags)
    kw: dict[str, Any] = {"host": s.host, "port": s.port, "verify": s.verify, "trusted_proxies": s.trusted_proxies}
    for name in ("hub_key_file", "admin_token_file"):
        if getattr(args, name, None):
            kw["key_file" if name == "hub_key_file" else name] = Path(getattr(args, name))
    database = resolve_database(getattr(args, "database", None), toml)
    return HubConfig(data_dir=data_dir, database=database, **kw)


def forwarding(args: argparse.Namespace, data_dir: Path) -> ForwardingConfig:
    """Sinks and delivery settings from hub.toml (``--config``), default one jsonl sink."""
    return load_config(hub_settings.config_path(getattr(args, "config", None), data_dir), data_dir)


def setup_logging(args: argparse.Namespace) -> HubSettings:
    """Log as ``--log-level``/``--log-format`` (else the settings) say; the settings in effect."""
    _, _, s = settings(args, log_level=args.log_level, log_format=args.log_format)
    logfmt.setup("cloud-hub", s.log_level, s.log_format)
    return s
