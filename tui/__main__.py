"""``store-tui`` (and ``python -m tui``): parse the command line and run :class:`tui.app.StoreTuiApp`."""

from __future__ import annotations

import argparse

from edge_agent.config import resolve_data_dir

from . import drops_data
from .app import StoreTuiApp
from .fleet_screen import FleetScreen
from .hub_client import HubClient, read_token
from .store_screen import StoreScreen


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="store-tui", description="StoreSync status for store staff and head office.")
    p.add_argument("--data-dir", help="agent data folder (default $EDGE_AGENT_DATA or ./edge-agent-data)")
    p.add_argument("--agent-url", help="agent API (default $EDGE_AGENT_URL or http://127.0.0.1:8787)")
    p.add_argument("--drop-dir", help="franchise drop folder (default $EDGE_AGENT_DROP_DIR or DATA/drops)")
    p.add_argument("--hub", help="hub URL: show the fleet view for head office (with --data-dir: both views)")
    p.add_argument("--admin-token-file", help="hub admin token file (or $CLOUD_HUB_ADMIN_TOKEN[_FILE])")
    return p


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``store-tui``: the store screen, or with ``--hub`` the fleet screen (both with ``--data-dir``)."""
    args = build_parser().parse_args(argv)
    store = fleet = None
    if args.hub:
        try:
            token = read_token(None, args.admin_token_file)
        except OSError as exc:
            raise SystemExit(f"store-tui: cannot read the admin token: {exc}") from None
        fleet = FleetScreen(HubClient(args.hub, token), hub_url=args.hub, token=token)
    if not args.hub or args.data_dir:
        data_dir = resolve_data_dir(args.data_dir)
        drop_dir = drops_data.resolve_drop_dir(args.drop_dir, data_dir)
        store = StoreScreen(data_dir, agent_url=args.agent_url, drop_dir=drop_dir)
    StoreTuiApp(store=store, fleet=fleet).run()


if __name__ == "__main__":
    main()
