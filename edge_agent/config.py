"""Agent configuration: where the data lives and how the agent talks to the hub.

The data folder comes from ``--data-dir``, else the ``EDGE_AGENT_DATA`` environment variable, else
``./edge-agent-data``. It holds ``agent.key`` (Ed25519, mode 0600) and ``outbox.db`` (SQLite, WAL).
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from storesync_runtime.proclock import ProcessLock
from sync_protocol import keys
from sync_protocol._exceptions import KeyFileError

from ._exceptions import ConfigError

ENV_DATA_DIR = "EDGE_AGENT_DATA"
DEFAULT_DATA_DIR = "./edge-agent-data"
KEY_FILE = "agent.key"
DB_FILE = "outbox.db"
LOCK_FILE = "sync.lock"
ENV_NUMBERS = (
    "burst_records",
    "connect_timeout",
    "read_timeout",
    "backoff_base",
    "backoff_cap",
    "blocked_retry",
    "heartbeat_interval",
    "probe_interval",
    "probe_timeout",
    "retention_days",
    "retention_interval",
    "drop_settle",
)
ENV_DROP_DIR = "EDGE_AGENT_DROP_DIR"
ENV_RETENTION_AT = "EDGE_AGENT_RETENTION_AT"
ENV_HUB_CA = "EDGE_AGENT_HUB_CA"
ENV_INSECURE_HTTP = "EDGE_AGENT_INSECURE_HTTP"
HUB_CA_FILE = "hub-ca.pem"
ENV_HUB_URLS = "EDGE_AGENT_HUB_URLS"


def parse_hub_urls(values: str | Sequence[str] | None, *, field: str = "--hub") -> tuple[str, ...]:
    """Hub base URLs from repeated ``--hub`` values or one text with several separated by spaces or commas.

    Several URLs name replicas of one hub (docs/replicas.md); the agent fails over between them in order.
    They are kept as one space-separated text wherever a single URL used to be (URLs hold no spaces).

    Raises:
        ConfigError: naming ``field`` when a value is not an ``http://`` or ``https://`` URL with a host.
    """
    if values is None:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        for raw in item.replace(",", " ").split():
            parts = urlsplit(raw)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"{field}: {raw!r} is not an http:// or https:// URL with a host")
            url = raw.rstrip("/")
            if url not in out:
                out.append(url)
    return tuple(out)


def resolve_data_dir(arg: str | os.PathLike[str] | None) -> Path:
    """The data folder: the argument, else ``$EDGE_AGENT_DATA``, else ``./edge-agent-data``."""
    raw = arg if arg not in (None, "") else os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True)
class AgentConfig:
    """Settings of one agent.

    Attributes:
        data_dir: Folder with the key and the outbox.
        host: Address the capture API binds to (loopback by default).
        port: Port of the capture API.
        sync_interval: Seconds between scheduled sync passes.
        burst_records: Records per burst at most (shrunk on 413 and timeouts).
        connect_timeout: Seconds to connect to the hub.
        read_timeout: Seconds to wait for the hub's answer.
        backoff_base: First retry delay in seconds after a network error or 5xx.
        backoff_cap: Longest retry delay in seconds.
        blocked_retry: Seconds between retries while the hub refuses our records.
        heartbeat_interval: Seconds between heartbeats written to the outbox.
        hub_url: Overrides the hub URL(s) stored at enrollment, when set (several: space-separated, in order).
        probe_interval: Seconds between reachability probes (``GET /healthz``) while backing off.
        probe_timeout: Seconds a reachability probe may take.
        retention_days: Acked records older than this, covered by a hub receipt, are pruned.
        retention_interval: Seconds between runs of the retention job when ``retention_at`` is not set.
        retention_at: Local time of day (``HH:MM``) for the nightly retention run (env
            ``EDGE_AGENT_RETENTION_AT``); None runs it every ``retention_interval`` seconds.
        drop_dir: Folder watched for franchise file drops (``$EDGE_AGENT_DROP_DIR``); None: no watcher.
        drop_settle: Seconds a dropped file must stay unchanged before it is imported.
        allowed_hosts: Further names the capture API's ``Host`` header may carry (``--allow-host``).
        allowed_origins: Web origins allowed to call the capture API (``--allow-origin``); none by default.
        hub_ca: CA bundle (or the hub's / an intercepting proxy's own certificate) to verify the hub with
            (``--hub-ca``, ``$EDGE_AGENT_HUB_CA``); else ``hub-ca.pem`` in the data folder, else the system CAs.
        insecure_http: Allow plain ``http://`` to a hub that is not on loopback (``--insecure-http``).
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8787
    sync_interval: float = 5.0
    burst_records: int = 2000
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    blocked_retry: float = 300.0
    heartbeat_interval: float = 5.0
    hub_url: str | None = None
    probe_interval: float = 1.0
    probe_timeout: float = 1.0
    retention_days: float = 30.0
    retention_interval: float = 3600.0
    retention_at: str | None = None
    drop_dir: Path | None = None
    drop_settle: float = 2.0
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    hub_ca: Path | None = None
    insecure_http: bool = False

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str] | None = None, **overrides: object) -> AgentConfig:
        """Build a configuration: defaults, then ``agent.toml``, then ``EDGE_AGENT_<FIELD>`` variables, then
        non-None overrides (command-line flags); validated by :class:`edge_agent.settings.AgentSettings`.

        ``agent.toml`` is ``$EDGE_AGENT_CONFIG``, else ``<data-dir>/agent.toml`` when it exists. Variables:
        e.g. ``EDGE_AGENT_RETENTION_DAYS=90``, ``EDGE_AGENT_BACKOFF_CAP=10``, ``EDGE_AGENT_HUB_URLS`` (hub URLs,
        spaces or commas between), ``EDGE_AGENT_DROP_DIR``.

        Raises:
            ConfigError: naming an unknown key, or an invalid value and where it came from.
        """
        from storesync_runtime.settings import SettingsError

        from .settings import AgentSettings, config_path, load_settings

        folder = resolve_data_dir(data_dir)
        flags = {k: v for k, v in overrides.items() if v is not None}
        if "hub_url" in flags:
            flags["hub_urls"] = flags.pop("hub_url")
        direct = {k: flags.pop(k) for k in list(flags) if k not in AgentSettings.model_fields}  # not file settings
        try:
            s = load_settings(config_path(folder), **flags)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
        values = {**s.model_dump(exclude={"hub_urls", "log_level", "log_format"}), **direct}
        hub = " ".join(parse_hub_urls(s.hub_urls, field=ENV_HUB_URLS)) if s.hub_urls else None
        for name in ("drop_dir", "hub_ca"):
            if values.get(name) is not None:
                values[name] = Path(values[name]).expanduser().resolve()
        return cls(data_dir=folder, hub_url=hub, **values)

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def lock_path(self) -> Path:
        return self.data_dir / LOCK_FILE

    def load_key(self) -> keys.Ed25519PrivateKey:
        """Load the agent's signing key, refusing a key file that group or others can read.

        Raises:
            ConfigError: when the key is missing, malformed or too open.
        """
        try:
            return keys.load_private_key(self.key_path)
        except KeyFileError as exc:
            raise ConfigError(str(exc)) from None


AGENT_LOCK_FILE = "agent.lock"


def data_lock(cfg: AgentConfig, command: str) -> ProcessLock:
    """The data folder's process lock, held by ``run`` and ``import`` (and ``restore``) for their whole life.

    Raises:
        LockHeld: another ``run`` or ``import`` holds it (named in the message).
        ConfigError: the data folder does not exist.
    """
    if not cfg.data_dir.is_dir():
        raise ConfigError(f"{cfg.data_dir} is not an agent data folder; run 'edge-agent init --data-dir DIR' first")
    return ProcessLock(cfg.data_dir / AGENT_LOCK_FILE, command)


def hub_tls(cfg: AgentConfig) -> ssl.SSLContext | bool:
    """How to verify the hub's certificate: a context trusting ``hub_ca`` (or the data folder's
    ``hub-ca.pem``), else True (the system's CA bundle). Verification is never switched off.

    Raises:
        ConfigError: the CA file does not load.
    """
    path = cfg.hub_ca or (cfg.data_dir / HUB_CA_FILE)
    if cfg.hub_ca is None and not path.exists():
        return True
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"hub CA file {path} cannot be loaded: {exc}") from None


def check_hub_transport(url: str, insecure_http: bool) -> None:
    """Refuse plain ``http://`` to a hub that is not on loopback unless ``insecure_http``.

    Raises:
        ConfigError: naming the URL and the way out.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or insecure_http:
        return
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ConfigError(
        f"{url}: plain http:// to a hub beyond this machine would send sales unencrypted; "
        "use https:// (see docs/security.md) or pass --insecure-http"
    )
