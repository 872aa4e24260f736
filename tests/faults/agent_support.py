"""Helpers for fault tests that need an agent without a hub: a data folder with a written identity."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import AgentConfig
from edge_agent.outbox import Identity, Outbox
from sync_protocol import keys


def offline_agent_dir(data_dir: Path, hub_url: str = "http://127.0.0.1:9") -> keys.Ed25519PrivateKey:
    """What ``edge-agent init`` + ``enroll`` leave behind, written directly; returns the hub's key."""
    cfg = AgentConfig.load(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = keys.generate()
    keys.save_private_key(key, cfg.key_path)
    hub_key = keys.generate()
    with Outbox(cfg.db_path) as outbox:
        outbox.set_identity(
            Identity(
                store_id="S1",
                epoch=1,
                key_id=keys.key_id(key),
                public_key=keys.public_hex(key),
                hub_url=hub_url,
                hub_public_key=keys.public_hex(hub_key),
                hub_key_id=keys.key_id(hub_key),
                tz="Europe/Berlin",
            )
        )
    return hub_key
