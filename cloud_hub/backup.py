"""``cloud-hub backup`` and ``cloud-hub restore``: a hub's data folder copied while it serves, and put back.

A backup is a folder (mode 0700)::

    hub.db | hub.pgdump     the database (SQLite online backup API / pg_dump), see Storage.backup
    hub.key, admin.token    the receipt key and admin token, mode 0600 (when they live in the data folder)
    hub.toml                the configuration, when there is one in the data folder
    manifest.json           when, what, SHA-256 of every file, each store's epochs and acked_through

``restore`` (SQLite hubs, the hub stopped: it takes the data folder's lock) checks every SHA-256, moves
the current files aside as ``*.before-restore-<time>`` (the database with its ``-wal``/``-shm``), and
copies the backup in. A hub restored from an older backup has fewer records than the stores have sent:
each agent is told the hub's head on its next burst and sends the missing records again (the rewind,
docs/operations.md "Restoring").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storesync_runtime.manifest import copy_files, new_folder, put_back, write_manifest
from storesync_runtime.manifest import read_manifest as _read_manifest
from storesync_runtime.proclock import ProcessLock

from . import registry
from ._exceptions import ConfigError
from .config import HUB_MARKER, HubConfig, is_hub_folder, open_hub, require_hub_folder

SECRETS = ("hub.key", "admin.token")
PLAIN = ("hub.toml", HUB_MARKER)
LOCK_FILE = "hub.lock"


@dataclass(frozen=True)
class BackupResult:
    """What ``backup`` wrote."""

    folder: Path
    manifest: dict[str, Any]


def backup(config: HubConfig, dest: Path) -> BackupResult:
    """Copy the hub (database, key, token, config) into the new folder ``dest`` while it may be serving.

    Raises:
        ConfigError: ``dest`` is not new or empty, or the data folder is not a hub.
        StorageError: the database copy failed.
    """
    require_hub_folder(config)
    new_folder(dest, error=ConfigError)
    hub = open_hub(config)
    try:
        db_name = "hub.db" if hub.storage.engine == "sqlite" else "hub.pgdump"
        how = hub.storage.backup(dest / db_name)
        stores = [
            {"store_id": s.store_id, "epoch": s.epoch, "acked_through": s.acked_through}
            for s in registry.list_stores(hub.storage)
        ]
        engine = hub.storage.engine
    finally:
        hub.close()
    files = [db_name, *copy_files(config.data_dir, dest, (*SECRETS, *PLAIN), private=lambda name: name in SECRETS)]
    manifest = {
        "kind": "storesync-hub-backup",
        "version": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "engine": engine,
        "database": how,
        "data_dir": str(config.data_dir),
        "stores": stores,
    }
    manifest = write_manifest(dest, manifest, files)
    return BackupResult(dest, manifest)


def restore(config: HubConfig, source: Path) -> dict[str, Any]:
    """Put a SQLite hub backup into ``config.data_dir`` (the hub must be stopped).

    Returns:
        The manifest, plus ``moved_aside``: the files that were replaced.

    Raises:
        ConfigError: damaged backup, a PostgreSQL backup (use pg_restore), or a data folder holding
            something that is not a hub.
        LockHeld: the hub is running on this data folder.
    """
    manifest = read_manifest(source)
    if manifest.get("engine") != "sqlite":
        raise ConfigError("this is a PostgreSQL hub backup: restore hub.pgdump with pg_restore (docs/operations.md)")
    folder = config.data_dir
    if folder.exists() and any(folder.iterdir()) and not is_hub_folder(folder):
        raise ConfigError(f"{folder} holds files but is not a hub data folder; restore into an empty folder")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with ProcessLock(folder / LOCK_FILE, "cloud-hub restore"):
        _, moved = put_back(
            source,
            folder,
            manifest,
            also_aside=("hub.db-wal", "hub.db-shm"),
            private=lambda name: name in SECRETS or name == "hub.db",
        )
    return {**manifest, "moved_aside": moved}


def read_manifest(folder: Path) -> dict[str, Any]:
    """The backup's manifest, every file checked against its SHA-256.

    Raises:
        ConfigError: no manifest, not a hub backup, or a file missing or changed.
    """
    return _read_manifest(folder, kind="storesync-hub-backup", what="a hub backup", error=ConfigError)
