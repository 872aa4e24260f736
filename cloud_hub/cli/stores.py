"""``cloud-hub store add`` and ``cloud-hub stores``: register stores, issue enrollment tokens, list progress.

Both work on the database directly (no running hub needed).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from storesync_runtime import cli as common_cli

from .. import admin, registry
from ..config import open_hub
from . import _common

HUB_URL_ENV = "CLOUD_HUB_URL"
PUBLIC_URL_ENV = "CLOUD_HUB_PUBLIC_URL"
AGENT_DATA_HINT = "/var/lib/storesync-agent"


def add_store(sub: Any) -> None:
    """``cloud-hub store add``."""
    store = sub.add_parser("store", help="manage stores")
    store_sub = store.add_subparsers(dest="store_command", required=True, parser_class=_common.Parser)
    add = store_sub.add_parser("add", help="register a store and print a one-time enrollment token")
    add.add_argument("store_id", help="the store's id (letters, digits, '-', '_')")
    add.add_argument("--tz", required=True, help="IANA time zone, e.g. Europe/Berlin")
    add.add_argument(
        "--hub-url", help=f"the hub's public URL for the printed command (default: ${PUBLIC_URL_ENV}, ${HUB_URL_ENV})"
    )
    add.add_argument(
        "--agent-data-dir",
        default=AGENT_DATA_HINT,
        help=f"agent data folder in the printed command ({AGENT_DATA_HINT})",
    )
    add.add_argument("--json", action="store_true", help="print the token as one JSON object")
    _common.data_dir_arg(add)
    _common.config_arg(add)


def add_stores(sub: Any) -> None:
    """``cloud-hub stores``."""
    stores = sub.add_parser("stores", help="list stores and their sync progress")
    stores.add_argument("--json", action="store_true", help="print the stores as one JSON object")
    _common.data_dir_arg(stores)
    _common.config_arg(stores)


def cmd_store_add(args: argparse.Namespace) -> int:
    """``cloud-hub store add STORE_ID --tz ZONE``: works on the database directly."""
    registry.check_store_id(args.store_id)
    registry.check_tz(args.tz)
    hub = open_hub(_common.config(args))
    try:
        issued = registry.add_store(hub.storage, args.store_id, args.tz)
    finally:
        hub.close()
    if args.json:
        doc = {"store_id": issued.store_id, "tz": issued.tz, "token": issued.token, "expires_at": issued.expires_at}
        print(json.dumps(doc))
        return 0
    public = _common.settings(args)[2].public_url
    url = (args.hub_url or public or os.environ.get(HUB_URL_ENV) or "").rstrip("/")
    if issued.new_store:
        print(f"Store {issued.store_id} registered (tz {issued.tz}).")
    else:
        print(
            f"Store {issued.store_id} already exists (tz {issued.tz}): new enrollment token; "
            "enrolling with it starts a new epoch and revokes the current key."
        )
    print(f"Enrollment token (single use, expires {issued.expires_at}):")
    print(issued.token)
    print("On the store machine run:")
    hub_url = url or "https://HUB-ADDRESS"
    print(f"  edge-agent enroll --data-dir {args.agent_data_dir} --hub {hub_url} --token {issued.token}")
    if not url:
        print(
            f"(replace https://HUB-ADDRESS with the address stores reach this hub at; set ${PUBLIC_URL_ENV} "
            "or pass --hub-url to have it printed here)"
        )
    return 0


def cmd_stores(args: argparse.Namespace) -> int:
    """``cloud-hub stores``: table (or JSON) of every store."""
    hub = open_hub(_common.config(args))
    try:
        summaries = registry.list_stores(hub.storage)
    finally:
        hub.close()
    if args.json:
        print(json.dumps({"stores": [admin.summary_dict(s) for s in summaries]}))
        return 0
    if not summaries:
        print("No stores yet. Add one with: cloud-hub store add STORE_ID --tz ZONE")
        return 0
    head = ("STORE", "TZ", "EPOCH", "ACKED_THROUGH", "LAST_SEEN", "DUPLICATES", "CONFLICTS", "AGENT")
    rows = [
        (
            s.store_id,
            s.tz,
            "-" if s.epoch is None else str(s.epoch),
            str(s.acked_through),
            s.last_seen_at or "never",
            str(s.duplicates),
            str(s.conflicts),
            admin.health_text(s),
        )
        for s in summaries
    ]
    common_cli.print_table(head, rows)
    return 0
