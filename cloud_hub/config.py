"""Hub configuration and the data folder (``hub.db``, ``hub.key``, ``admin.token``) and the storage URL.

The data folder is ``--data-dir``, else ``$CLOUD_HUB_DATA``, else ``./cloud-hub-data``. On first use
the folder is created with mode 0700, the hub's Ed25519 signing key with mode 0600, and a random admin
token with mode 0600 (``$CLOUD_HUB_ADMIN_TOKEN`` overrides the file). Neither secret is ever logged.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sync_protocol import keys
from sync_protocol._exceptions import KeyFileError

from ._exceptions import ConfigError
from .storage import Storage, open_storage, sqlite_url

DATA_ENV = "CLOUD_HUB_DATA"
TOKEN_ENV = "CLOUD_HUB_ADMIN_TOKEN"
DEFAULT_DATA_DIR = "cloud-hub-data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
MiB = 1024 * 1024

Verify = Literal["last", "all"]


@dataclass(frozen=True)
class Limits:
    """Size limits of one burst.

    Attributes:
        max_records: Records per burst.
        max_wire_bytes: Request body as sent (compressed, when compressed).
        max_decompressed_bytes: Request body after gzip decompression.
    """

    max_records: int = 10_000
    max_wire_bytes: int = 16 * MiB
    max_decompressed_bytes: int = 64 * MiB


@dataclass(frozen=True)
class HubConfig:
    """Everything the hub needs to run.

    Attributes:
        data_dir: Folder holding ``hub.db``, ``hub.key`` and ``admin.token``.
        host: Listen address.
        port: Listen port (0 picks a free one).
        verify: ``"last"`` checks the last signature of each burst, ``"all"`` every signature.
        limits: Burst size limits.
        busy_timeout_ms: How long a request waits for the database write lock before a 503.
        database: Storage URL (``sqlite:///PATH``); ``None`` is ``hub.db`` in the data folder.
    """

    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    verify: Verify = "last"
    limits: Limits = field(default_factory=Limits)
    busy_timeout_ms: int = 5_000
    database: str | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / "hub.db"

    @property
    def storage_url(self) -> str:
        """The database to open: ``database``, else ``sqlite:///DATA_DIR/hub.db``."""
        return self.database or sqlite_url(self.db_path)

    @property
    def key_path(self) -> Path:
        return self.data_dir / "hub.key"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "admin.token"


def resolve_data_dir(arg: str | os.PathLike[str] | None) -> Path:
    """The data folder: the argument, else ``$CLOUD_HUB_DATA``, else ``./cloud-hub-data``."""
    if arg:
        return Path(arg)
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(DEFAULT_DATA_DIR)


def ensure_data_dir(config: HubConfig) -> None:
    """Create the data folder (mode 0700) when it does not exist yet.

    Raises:
        ConfigError: when the path exists and is not a folder, or cannot be created.
    """
    path = config.data_dir
    if path.exists() and not path.is_dir():
        raise ConfigError(f"data dir {path} exists and is not a folder")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data dir {path}: {exc.strerror}") from None


def load_or_create_hub_key(config: HubConfig) -> keys.Ed25519PrivateKey:
    """The hub's receipt-signing key, created (mode 0600) on first use.

    Raises:
        ConfigError: when the key file is unreadable, too open, or not an Ed25519 key.
    """
    ensure_data_dir(config)
    path = config.key_path
    try:
        if not path.exists():
            try:
                keys.save_private_key(keys.generate(), path)
            except KeyFileError:
                pass  # another process created it first; load theirs
        return keys.load_private_key(path)
    except KeyFileError as exc:
        raise ConfigError(str(exc)) from None


def load_or_create_admin_token(config: HubConfig) -> str:
    """The admin bearer token: ``$CLOUD_HUB_ADMIN_TOKEN``, else ``admin.token`` (created on first use).

    Raises:
        ConfigError: when the token file cannot be read or created.
    """
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env.strip()
    ensure_data_dir(config)
    path = config.token_path
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from None
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"{path} is empty; delete it to have a new token made")
    return token


@dataclass
class Hub:
    """An opened data folder: database, receipt key and admin token."""

    config: HubConfig
    storage: Storage
    hub_key: keys.Ed25519PrivateKey
    admin_token: str

    def close(self) -> None:
        self.storage.close()


def open_hub(config: HubConfig) -> Hub:
    """Open (creating on first use) the data folder, ``hub.key``, ``admin.token`` and the database at
    ``config.storage_url``.

    Raises:
        ConfigError: a file cannot be created or used.
        InputError: the storage URL names no supported engine.
        StorageError: the database cannot be opened or migrated.
    """
    ensure_data_dir(config)
    hub_key = load_or_create_hub_key(config)
    token = load_or_create_admin_token(config)
    storage = open_storage(config.storage_url, busy_timeout_ms=config.busy_timeout_ms)
    return Hub(config, storage, hub_key, token)
