"""Wrong register tokens are limited per source address on a real agent bound beyond loopback.

The agent listens on ``::``: the guesser comes from this machine's global IPv6 address, the register
from its link-local one, so the two are different non-loopback sources, as two hosts on a store LAN are.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from agent.conftest import init_data_dir, make_txn, run_cli, write_identity
from storesync_harness.processes import Agent


def link_local() -> str | None:
    """A link-local IPv6 address with its interface (``fe80::1%eth0``), if this machine has one."""
    try:
        rows = Path("/proc/net/if_inet6").read_text().split()
    except OSError:
        return None
    for i in range(0, len(rows) - 5, 6):
        hexaddr, scope, name = rows[i], rows[i + 3], rows[i + 5]
        if scope == "20" and name != "lo":
            addr = ipaddress.IPv6Address(":".join(hexaddr[j : j + 4] for j in range(0, 32, 4)))
            return f"{addr}%{name}"
    return None


def lan_address_v6() -> str | None:
    """This machine's global IPv6 address, if it has one."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.connect(("2001:db8::1", 9))  # no packet is sent: this only picks the outgoing interface
            addr = str(s.getsockname()[0])
    except OSError:
        return None
    return None if addr in ("::1",) or addr.startswith("fe80") else addr


class V6Agent(Agent):
    """An agent bound to ``::`` (IPv6 only): the harness reaches it on ``[::1]``."""

    @property
    def url(self) -> str:
        return f"http://[::1]:{self.port}"


def test_wrong_tokens_from_one_address_get_429_while_a_register_keeps_capturing(tmp_path: Path) -> None:
    v6, local = lan_address_v6(), link_local()
    if v6 is None or local is None:
        pytest.skip("needs a global and a link-local IPv6 address on this machine")
    data = tmp_path / "agent"
    write_identity(data, init_data_dir(data))
    token = run_cli("register", "add", "R2", "--data-dir", str(data)).stdout.strip()
    agent = V6Agent.create(data, None, "--host", "::")
    agent.start()
    try:
        guesser = f"http://[{v6}]:{agent.port}/v1/transactions"
        auth = {"Authorization": f"Bearer {token}"}
        codes = []
        started = time.monotonic()
        with httpx.Client(timeout=10) as c:
            for i in range(60):
                guess = {"Authorization": f"Bearer ssr_guess{i}"}
                codes.append(c.post(guesser, json=make_txn(i + 1, "R2"), headers=guess).status_code)
            limited = c.post(guesser, json=make_txn(99, "R2"), headers=auth)
        took = time.monotonic() - started
        assert codes[:20] == [401] * 20, codes  # 20 at once, then 10 a minute
        assert set(codes[20:]) == {429}, codes
        # Once spent, even a right token from that address waits: a lucky guess is not let through.
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1, took
        assert limited.json()["error"] == "busy"
        # Another address keeps capturing with its token.
        for n in range(1, 6):
            conn = http.client.HTTPConnection(local, agent.port, timeout=10)
            try:
                body = json.dumps(make_txn(n, "R2"))
                head = auth | {"Content-Type": "application/json", "Host": f"[{local.split('%')[0]}]:{agent.port}"}
                conn.request("POST", "/v1/transactions", body, head)
                r = conn.getresponse()
                assert r.status == 201, r.read()
            finally:
                conn.close()
        assert int(agent.status()["last_seq"]) == 5
        assert token not in agent.log_path.read_text()
    finally:
        agent.stop()
