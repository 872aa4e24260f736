"""The agent's settings: ``agent.toml`` and ``EDGE_AGENT_*`` variables, validated with pydantic-settings.

``agent.toml`` is ``$EDGE_AGENT_CONFIG``, else ``<data-dir>/agent.toml`` when it exists; its keys are the
field names below, each also settable as ``EDGE_AGENT_<NAME>`` (which wins over the file); command-line
flags win over both. Unknown keys in the file are refused naming the key::

    host = "127.0.0.1"        # capture API bind address
    port = 8787
    hub_urls = "https://hub.example.com"   # overrides the enrolled URL(s); several: spaces or commas between
    sync_interval = 5.0
    drop_dir = "/srv/drops"   # watched drop folder (EDGE_AGENT_DROP_DIR)
    retention_days = 30
    log_level = "info"        # debug | info | warning | error
    log_format = "text"       # text | json
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from storesync_runtime import settings as common
from storesync_runtime.logfmt import LogFormat

CONFIG_ENV = "EDGE_AGENT_CONFIG"
CONFIG_FILE = "agent.toml"
# EDGE_AGENT_* variables that are not settings (data folder, config file, the TUI's agent URL).
OTHER_ENV = ("EDGE_AGENT_DATA", "EDGE_AGENT_CONFIG", "EDGE_AGENT_URL")


class AgentSettings(BaseSettings):
    """Validated agent settings; :class:`edge_agent.config.AgentConfig` documents each one."""

    model_config = SettingsConfigDict(env_prefix="EDGE_AGENT_", extra="forbid")

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8787, ge=0, le=65535)
    hub_urls: str | None = None
    sync_interval: float = Field(5.0, gt=0)
    burst_records: int = Field(2000, ge=1, le=10_000)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    backoff_base: float = Field(1.0, gt=0)
    backoff_cap: float = Field(60.0, gt=0)
    blocked_retry: float = Field(300.0, gt=0)
    heartbeat_interval: float = Field(5.0, gt=0)
    probe_interval: float = Field(1.0, gt=0)
    probe_timeout: float = Field(1.0, gt=0)
    retention_days: float = Field(30.0, ge=0)
    retention_interval: float = Field(3600.0, gt=0)
    drop_dir: Path | None = None
    drop_settle: float = Field(2.0, ge=0)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    retention_at: str | None = Field(None, pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    hub_ca: Path | None = None
    insecure_http: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: LogFormat = "text"


def config_path(data_dir: Path) -> Path | None:
    """``$EDGE_AGENT_CONFIG``, else ``DATA/agent.toml`` when it exists, else None."""
    return common.config_path(None, CONFIG_ENV, data_dir / CONFIG_FILE)


def load_settings(file: Path | None, **flags: object) -> AgentSettings:
    """Settings from flags, ``EDGE_AGENT_*`` and ``agent.toml``.

    Raises:
        SettingsError: naming the unknown or invalid key and where it came from.
    """
    return common.load(AgentSettings, file=file, table=None, flags=flags)


def unknown_env() -> list[str]:
    """``EDGE_AGENT_*`` variables that name no setting (for ``edge-agent config check``)."""
    return common.unknown_env("EDGE_AGENT_", AgentSettings, OTHER_ENV)
