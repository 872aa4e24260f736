"""Several ``cloud-hub serve`` replicas on one database, and agents that list every replica's URL.

```
PosDriver ─▶ edge-agent --hub A --hub B ─┬─▶ cloud-hub serve (A) ─┐
                                         └─▶ cloud-hub serve (B) ─┴─▶ one database (SQLite file or PostgreSQL schema)
```

The replicas share the receipt key and the admin token through ``--hub-key-file`` and
``--admin-token-file`` (docs/replicas.md), a ``hub.toml`` and the jsonl sink file. With
``database=None`` they share one data folder (one SQLite file, on one machine); with a
``postgresql://`` URL each has its own data folder and the URL names the shared database.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from sync_protocol import keys

from .processes import Agent, Hub, agent_cli, hub_cli
from .rig import AGENT_ENV

# Short lease and poll: deliveries a killed replica had claimed are taken over within seconds.
DEFAULT_TOML = """
[delivery]
lease_s = {lease_s}
poll_s = 0.2

[[sinks]]
name = "events"
kind = "jsonl"
role = "archive"
path = "{sink_file}"
"""


class Replica(Hub):
    """A hub replica whose admin token lives in the shared secrets folder."""

    token_file: Path | None = None

    @property
    def admin_token(self) -> str:
        return (self.token_file or self.data_dir / "admin.token").read_text().strip()


class ReplicaSet:
    """``n`` replicas of one hub; start them with :meth:`start`, stop with :meth:`close`.

    Args:
        workdir: Empty folder for the shared secrets, config, sink file and each replica's data.
        n: How many replicas.
        database: Storage URL every replica uses; None: one shared data folder (SQLite).
        lease_s: Delivery lease (``[delivery] lease_s``).
        extra_toml: More ``hub.toml`` text (e.g. another ``[[sinks]]``).
    """

    def __init__(
        self, workdir: Path, n: int = 2, *, database: str | None = None, lease_s: float = 3, extra_toml: str = ""
    ) -> None:
        self.workdir = workdir
        self.database = database
        shared = workdir / "shared"
        shared.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key_file = shared / "hub.key"
        keys.save_private_key(keys.generate(), self.key_file)
        self.token_file = shared / "admin.token"
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
        self.sink_file = shared / "events.jsonl"
        self.config = shared / "hub.toml"
        self.config.write_text(DEFAULT_TOML.format(lease_s=lease_s, sink_file=self.sink_file) + extra_toml)
        self.hubs: list[Replica] = []
        for i in range(n):
            data = workdir / ("hub" if database is None else f"hub{i}")
            argv = ["--config", str(self.config), "--hub-key-file", str(self.key_file)]
            argv += ["--admin-token-file", str(self.token_file)]
            if database is not None:
                argv += ["--database", database]
            else:
                argv.append("--shared-data-dir")  # replicas share one SQLite folder (serve holds it alone otherwise)
            base = Hub.create(data, None, *argv)
            hub = Replica(f"hub-{chr(97 + i)}", base.argv, data, base.port, data / f"hub-{chr(97 + i)}.log")
            hub.token_file = self.token_file
            self.hubs.append(hub)

    @property
    def urls(self) -> list[str]:
        return [h.url for h in self.hubs]

    def start(self) -> ReplicaSet:
        for h in self.hubs:
            h.start(60)
        return self

    def close(self) -> None:
        for h in self.hubs:
            try:
                h.stop(timeout=3)
            except Exception:  # noqa: BLE001 - best effort teardown
                pass

    def __enter__(self) -> ReplicaSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def serving(self) -> Replica:
        """A running replica (the first)."""
        for h in self.hubs:
            if h.running:
                return h
        raise RuntimeError("no replica is running")

    def cli_args(self) -> list[str]:
        hub = self.hubs[0]
        return ["--data-dir", str(hub.data_dir), *(["--database", self.database] if self.database else [])]

    def add_store(self, store_id: str, tz: str = "Europe/Berlin") -> str:
        """Register a store (on the shared database) and return its enrollment token."""
        res = hub_cli("store", "add", store_id, "--tz", tz, *self.cli_args(), "--json")
        return str(json.loads(res.stdout)["token"])

    def enrolled_agent(self, data_dir: Path, store_id: str, *extra: str) -> Agent:
        """Init an agent, enroll it with every replica's URL (in order), and return it (not started)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        token = self.add_store(store_id)
        agent_cli("init", "--data-dir", str(data_dir))
        hubs = [arg for url in self.urls for arg in ("--hub", url)]
        agent_cli("enroll", "--data-dir", str(data_dir), *hubs, "--token", token)
        agent = Agent.create(data_dir, None, "--sync-interval", "0.3", *extra)
        agent.env.update(AGENT_ENV)
        return agent

    def bursts_served(self, hub: Hub) -> int:
        """Bursts this replica answered 200 (from its log)."""
        try:
            text = hub.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if "burst store=" in line and "status=200" in line)

    def sinks_view(self) -> dict[str, Any]:
        return dict(self.serving().admin("/v1/admin/sinks"))

    def wait_in_flight(self, sink: str, timeout: float = 20.0) -> int:
        """Wait until ``sink`` has deliveries in flight; returns how many."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for s in self.sinks_view()["sinks"]:
                if s["name"] == sink and s["in_flight"]:
                    return int(s["in_flight"])
            time.sleep(0.05)
        raise TimeoutError(f"no delivery of sink {sink} in flight after {timeout} s")


def wait_synced(agent: Agent, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until a running agent has nothing pending (nudging a sync now and then)."""
    deadline = time.monotonic() + timeout
    last = 0.0
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = dict(httpx.get(agent.url + "/v1/status", timeout=10).json())
        if st["pending"] == 0 and st["acked_through"] == st["last_seq"]:
            return st
        if st.get("blocked"):
            raise AssertionError(f"agent blocked: {st['blocked']}")
        if time.monotonic() - last > 3:
            httpx.post(agent.url + "/v1/sync", timeout=10)
            last = time.monotonic()
        time.sleep(0.1)
    raise TimeoutError(f"agent not synced after {timeout} s: {st}")
