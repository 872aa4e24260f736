"""Hub configuration and the data folder (``hub.db``, ``hub.key``, ``admin.token``) and the storage URL.

The data folder is ``--data-dir``, else ``$CLOUD_HUB_DATA``, else ``./cloud-hub-data``. The database is
``--database URL``, else ``$STORESYNC_HUB_DATABASE``, else ``[storage] database`` in ``hub.toml``, else
``sqlite:///DATA/hub.db``. On first use
the folder is created with mode 0700, the hub's Ed25519 signing key with mode 0600, and a random admin
token with mode 0600. Replicas share both through files or env variables instead (:mod:`cloud_hub.credentials`).
Neither secret is ever logged.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sync_protocol import keys

from . import credentials
from ._exceptions import ConfigError
from .credentials import AdminToken
from .storage import Storage, open_storage, sqlite_url

DATA_ENV = "CLOUD_HUB_DATA"
DATABASE_ENV = "STORESYNC_HUB_DATABASE"
TOKEN_ENV = credentials.TOKEN_ENV
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
        key_file: Receipt key file shared by replicas (else ``$CLOUD_HUB_KEY_FILE``, ``$CLOUD_HUB_KEY``, ``hub.key``).
        admin_token_file: Admin token file shared by replicas (else the env, else ``admin.token``).
        database: Storage URL (``sqlite:///PATH``); ``None`` is ``hub.db`` in the data folder.
        trusted_proxies: Reverse proxies (addresses or networks) whose ``X-Forwarded-For`` names the client.
    """

    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR))
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    verify: Verify = "last"
    limits: Limits = field(default_factory=Limits)
    busy_timeout_ms: int = 5_000
    key_file: Path | None = None
    admin_token_file: Path | None = None
    database: str | None = None
    trusted_proxies: tuple[str, ...] = ()

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


def read_toml(path: Path) -> dict[str, Any]:
    """A ``hub.toml`` as a dict.

    Raises:
        ConfigError: unreadable file or bad TOML.
    """
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None


def database_from_toml(path: Path) -> str | None:
    """``database`` of the ``[storage]`` table of a ``hub.toml``, if it has one.

    Raises:
        ConfigError: unreadable file, bad TOML, or a ``[storage]`` table that is not just ``database = "URL"``.
    """
    doc = read_toml(path)
    table = doc.get("storage")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [storage] must be a table")
    unknown = set(table) - {"database"}
    if unknown:
        raise ConfigError(f"{path}: [storage]: unknown field {sorted(unknown)[0]!r} (expected database)")
    value = table.get("database")
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(f"{path}: [storage] database must be a storage URL string")
    return value.strip() if value else None


def resolve_database(arg: str | None, toml: Path | None = None) -> str | None:
    """The storage URL: the argument, else ``$STORESYNC_HUB_DATABASE``, else ``[storage] database`` of
    ``hub.toml``; ``None`` means the SQLite file in the data folder.

    Raises:
        ConfigError: the ``hub.toml`` cannot be read or its ``[storage]`` table is wrong.
    """
    if arg:
        return arg
    env = os.environ.get(DATABASE_ENV, "").strip()
    if env:
        return env
    return database_from_toml(toml) if toml is not None else None


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
    """The hub's receipt-signing key (see :mod:`cloud_hub.credentials` for where it comes from).

    Raises:
        ConfigError: when the key cannot be read, is too open, or is not an Ed25519 key.
    """
    ensure_data_dir(config)
    return credentials.load_hub_key(config.key_path, config.key_file)


def load_or_create_admin_token(config: HubConfig) -> AdminToken:
    """The admin token check (see :mod:`cloud_hub.credentials` for where it comes from).

    Raises:
        ConfigError: when the token cannot be read or created.
    """
    ensure_data_dir(config)
    return credentials.load_admin_token(config.token_path, config.admin_token_file)


@dataclass
class Hub:
    """An opened data folder: database, receipt key and admin token."""

    config: HubConfig
    storage: Storage
    hub_key: keys.Ed25519PrivateKey
    admin_token: AdminToken

    def close(self) -> None:
        self.storage.close()


HUB_MARKER = ".storesync-hub"


def is_hub_folder(path: Path) -> bool:
    """True when ``path`` is a hub data folder: ``cloud-hub init`` made it (or an older hub used it)."""
    return path.is_dir() and any((path / name).exists() for name in (HUB_MARKER, "hub.key", "hub.db"))


def require_hub_folder(config: HubConfig) -> None:
    """Refuse a folder that is not a hub, so a mistyped ``--data-dir`` never creates a new, empty hub.

    Raises:
        ConfigError: naming the folder and what to do.
    """
    if not is_hub_folder(config.data_dir):
        raise ConfigError(
            f"{config.data_dir} is not a hub data folder (no {HUB_MARKER}, hub.key or hub.db); check --data-dir "
            f"or $CLOUD_HUB_DATA, or create a hub there with: cloud-hub init --data-dir {config.data_dir}"
        )


def init_hub(config: HubConfig) -> Hub:
    """Create a hub in an empty or missing folder: marker, receipt key, admin token, migrated database.

    Raises:
        ConfigError: the folder is a hub already, or cannot be written.
    """
    if is_hub_folder(config.data_dir):
        raise ConfigError(f"{config.data_dir} is a hub data folder already; nothing was changed")
    ensure_data_dir(config)
    try:
        (config.data_dir / HUB_MARKER).write_text("StoreSync hub data folder (made by cloud-hub init)\n")
    except OSError as exc:
        raise ConfigError(f"cannot write to {config.data_dir}: {exc.strerror}") from None
    return open_hub(config)


def open_hub(config: HubConfig) -> Hub:
    """Open the data folder made by ``cloud-hub init``: ``hub.key``, ``admin.token`` and the database at
    ``config.storage_url`` (a missing key or token file is created).

    Raises:
        ConfigError: the folder is not a hub, or a file cannot be created or used.
        InputError: the storage URL names no supported engine.
        StorageError: the database cannot be opened or migrated.
    """
    require_hub_folder(config)
    hub_key = load_or_create_hub_key(config)
    token = load_or_create_admin_token(config)
    storage = open_storage(config.storage_url, busy_timeout_ms=config.busy_timeout_ms)
    return Hub(config, storage, hub_key, token)
