"""The hub's own settings: the ``[hub]`` table of ``hub.toml`` and ``CLOUD_HUB_*`` variables (pydantic-settings).

``hub.toml`` is ``--config``, else ``$CLOUD_HUB_CONFIG``, else ``<data-dir>/hub.toml`` when it exists.
Its ``[hub]`` table (and the same names as ``CLOUD_HUB_<NAME>`` variables, which win over the file)::

    [hub]
    host = "0.0.0.0"                        # CLOUD_HUB_HOST        listen address
    port = 8700                             # CLOUD_HUB_PORT        listen port (0: any free one)
    public_url = "https://hub.example.com"  # CLOUD_HUB_PUBLIC_URL  the address stores enroll against
    verify = "last"                         # CLOUD_HUB_VERIFY      signatures checked per burst: last | all
    log_level = "info"                      # CLOUD_HUB_LOG_LEVEL   debug | info | warning | error
    log_format = "text"                     # CLOUD_HUB_LOG_FORMAT  text | json
    trusted_proxies = ["127.0.0.1"]         # CLOUD_HUB_TRUSTED_PROXIES  reverse proxies whose
                                            #   X-Forwarded-For is believed (comma-separated in the variable)

``[[sinks]]`` and ``[delivery]`` in the same file are the forwarding settings (docs/sinks.md); the
database is ``[storage] database`` (or ``--database``, ``$STORESYNC_HUB_DATABASE``; see
:func:`cloud_hub.config.resolve_database`). Flags on the command line win over both. Unknown keys are
refused naming the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storesync_runtime import settings as common
from storesync_runtime.logfmt import LogFormat

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
CONFIG_ENV = "CLOUD_HUB_CONFIG"
CONFIG_FILE = "hub.toml"
# CLOUD_HUB_* variables that are not [hub] settings (data folder, secrets, the store-add hint).
OTHER_ENV = (
    "CLOUD_HUB_DATA",
    "CLOUD_HUB_CONFIG",
    "CLOUD_HUB_URL",
    "CLOUD_HUB_KEY",
    "CLOUD_HUB_KEY_FILE",
    "CLOUD_HUB_ADMIN_TOKEN",
    "CLOUD_HUB_ADMIN_TOKEN_FILE",
    "CLOUD_HUB_ADMIN_TOKEN_SHA256",
)


class HubSettings(BaseSettings):
    """Validated ``[hub]`` settings (see the module docstring for the file and variable names)."""

    model_config = SettingsConfigDict(env_prefix="CLOUD_HUB_", extra="forbid")

    host: str = Field(DEFAULT_HOST, min_length=1, description="listen address")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="listen port")
    public_url: str | None = Field(None, description="the URL stores enroll against")
    verify: Literal["last", "all"] = "last"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "text"
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        from .ratelimit import parse_networks

        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            return items
        texts = tuple(str(v).strip() for v in items if str(v).strip())
        parse_networks(texts)  # ValueError names the entry
        return texts

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")


def config_path(explicit: str | os.PathLike[str] | None, data_dir: Path) -> Path | None:
    """``--config``, else ``$CLOUD_HUB_CONFIG``, else ``DATA/hub.toml`` when it exists, else None."""
    return common.config_path(explicit, CONFIG_ENV, data_dir / CONFIG_FILE)


def load(file: Path | None, **flags: object) -> HubSettings:
    """The hub's settings from flags, ``CLOUD_HUB_*`` and the file's ``[hub]`` table.

    Raises:
        SettingsError: naming the unknown or invalid key and where it came from.
    """
    return common.load(HubSettings, file=file, table="hub", flags=flags)


def unknown_env() -> list[str]:
    """``CLOUD_HUB_*`` variables that name no setting (for ``cloud-hub config check``)."""
    return common.unknown_env("CLOUD_HUB_", HubSettings, OTHER_ENV)


def redact_url(url: str | None) -> str | None:
    """A storage URL without its password."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
