"""``edge-agent backup`` and ``edge-agent restore``: the data folder copied while the agent runs, and put back.

A backup is a folder (mode 0700): ``outbox.db`` (online copy, :mod:`edge_agent.store.backup`), the
keys (``agent.key`` and the archived ``agent.key.epochN``, mode 0600), ``agent.toml`` when present, and
``manifest.json`` (time, store, epoch, last seq and acked-through at the time, SHA-256 of every file).

A restored outbox is older than the store's history at the hub: sales captured after the backup are
at the hub (if they were synced) but not in the outbox, so capturing into the same epoch again would
reuse their seqs (a 409 conflict). ``restore`` therefore leaves a ``RESTORED`` marker: ``edge-agent
run`` refuses to start until the agent is enrolled again (a new epoch and key), and ``edge-agent
sync`` may first send the old epoch's records the hub lacks. docs/operations.md "Restoring" is the
runbook.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storesync_runtime.manifest import copy_files, new_folder, put_back, write_manifest
from storesync_runtime.manifest import read_manifest as _read_manifest

from ._exceptions import ConfigError
from .config import AgentConfig
from .status import compute_status
from .store import Outbox
from .store.backup import backup_database

MARKER = "RESTORED"


def _key_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("agent.key*") if p.is_file() and not p.name.endswith(".new"))


def backup(cfg: AgentConfig, dest: Path) -> dict[str, Any]:
    """Copy outbox, keys and config into the new folder ``dest``; safe while ``edge-agent run`` runs.

    Raises:
        ConfigError: ``dest`` is not new or empty, or the data folder has no outbox.
        StorageError: the database copy failed.
    """
    if not cfg.db_path.is_file():
        raise ConfigError(f"no outbox at {cfg.db_path}; check --data-dir")
    new_folder(dest, error=ConfigError)
    with Outbox(cfg.db_path, create=False) as outbox:
        status = compute_status(outbox.snapshot())
    backup_database(cfg.db_path, dest / "outbox.db")
    names = [*_key_files(cfg.data_dir), "agent.toml"]
    files = ["outbox.db", *copy_files(cfg.data_dir, dest, names, private=lambda name: name.startswith("agent.key"))]
    manifest = {
        "kind": "storesync-agent-backup",
        "version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "data_dir": str(cfg.data_dir),
        "store_id": status["store_id"],
        "epoch": status["epoch"],
        "last_seq": status["last_seq"],
        "acked_through": status["acked_through"],
    }
    manifest = write_manifest(dest, manifest, files)
    return manifest


def restore(cfg: AgentConfig, source: Path) -> dict[str, Any]:
    """Put a backup into the data folder (the agent must be stopped; the caller holds its lock).

    The files it replaces are kept as ``*.before-restore-<time>``. Leaves the ``RESTORED`` marker.

    Raises:
        ConfigError: damaged backup.
    """
    manifest = read_manifest(source)
    folder = cfg.data_dir
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp, moved = put_back(source, folder, manifest, also_aside=("outbox.db-wal", "outbox.db-shm"))
    marker = {"backup": str(source), "backup_created_at": manifest["created_at"], "restored_at": stamp}
    (folder / MARKER).write_text(json.dumps(marker) + "\n")
    return {**manifest, "moved_aside": moved}


def restored_marker(cfg: AgentConfig) -> dict[str, Any] | None:
    """The ``RESTORED`` marker's content, or None when the outbox was not restored (or was re-enrolled since)."""
    path = cfg.data_dir / MARKER
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    return doc if isinstance(doc, dict) else {}


def refuse_if_restored(cfg: AgentConfig) -> None:
    """``edge-agent run`` on a restored outbox that was not enrolled again.

    Raises:
        ConfigError: with the runbook's steps.
    """
    marker = restored_marker(cfg)
    if marker is not None:
        raise ConfigError(
            f"{cfg.data_dir} was restored from a backup of {marker.get('backup_created_at', '?')}; before capturing "
            "again: 'edge-agent sync' (sends what the hub lacks), then a new token ('cloud-hub store add') and "
            "'edge-agent enroll --force' (a new epoch); see docs/operations.md, Restoring"
        )


def clear_marker(cfg: AgentConfig) -> None:
    """After a successful enrollment: the restored outbox now writes a new epoch."""
    (cfg.data_dir / MARKER).unlink(missing_ok=True)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, every file checked against its SHA-256.

    Raises:
        ConfigError: no manifest, not an agent backup, or a file missing or changed.
    """
    return _read_manifest(folder, kind="storesync-agent-backup", what="an agent backup", error=ConfigError)
