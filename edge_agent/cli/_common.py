"""What the ``edge-agent`` commands share: the data folder's config, JSON output, ``--hub`` overrides."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config import AgentConfig, parse_hub_urls

JSON_HELP = "print one JSON object on stdout (errors too)"


def print_json(doc: Any) -> None:
    """``doc`` as one JSON line on stdout."""
    print(json.dumps(doc))


def config(args: argparse.Namespace, **overrides: Any) -> AgentConfig:
    """The agent's config for ``--data-dir`` (``overrides``: flags given on the command line)."""
    return AgentConfig.load(args.data_dir, **overrides)


def hub_override(args: argparse.Namespace) -> str | None:
    """``--hub`` (repeatable) as the space-separated URL list the config keeps, or None."""
    return " ".join(parse_hub_urls(args.hub)) if args.hub else None


def hub_url(args: argparse.Namespace) -> str:
    """The hub as the user named it, for error messages."""
    hub = getattr(args, "hub", None)
    if isinstance(hub, list):
        hub = " ".join(hub)
    return str(hub or "the hub")


def command(
    sub: Any, common: argparse.ArgumentParser, name: str, func: Any, help: str, *, json: bool = True
) -> argparse.ArgumentParser:
    """A subcommand taking ``--data-dir`` (and ``--json`` unless ``json=False``), run by ``func``."""
    p: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help)
    if json:
        p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=func)
    return p
