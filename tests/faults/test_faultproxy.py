"""The loopback fault proxy, seen from an httpx client, in front of a tiny counting HTTP server."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import storesync_harness.faultproxy as faultproxy
from storesync_harness.faultproxy import FaultProxy, remote_set_mode, remote_stats
from storesync_harness.httpframing import body_framing, read_body, read_head
from storesync_harness.processes import free_port, wait_http

pytestmark = pytest.mark.faults

BIG = bytes(range(256)) * 400  # 102,400 bytes


def settled(read: Any, want: Any, timeout: float = 3.0) -> Any:
    """``read()`` once it equals ``want`` (or its last value after ``timeout``).

    Counters are bumped just after the last byte is written, so a client holding its whole answer can read them a
    moment before they move.
    """
    deadline = time.monotonic() + timeout
    got = read()
    while got != want and time.monotonic() < deadline:
        time.sleep(0.01)
        got = read()
    return got


class Upstream(ThreadingHTTPServer):
    """Counts requests received and responses fully written."""

    daemon_threads = True
    received: list[str]
    answered: int


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _send(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.server.answered += 1  # counted before any byte leaves, so clients never race it
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:
        self.server.received.append(f"GET {self.path}")
        if self.path == "/big":
            self._send(BIG)
        elif self.path == "/gzip":
            self._send(gzip.compress(BIG), {"Content-Encoding": "gzip"})
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"alpha-", b"beta-", b"gamma" * 100):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.server.answered += 1
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        else:
            self._send(b"hello " + self.path.encode())

    def do_POST(self) -> None:
        self.server.received.append(f"POST {self.path}")
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        self._send(json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "n": len(data)}).encode())


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    srv = Upstream(("127.0.0.1", 0), Handler)
    srv.received, srv.answered = [], 0
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.server_address[1]) as p:
        yield p


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=httpx.Timeout(3.0)) as c:
        yield c


def test_pass_forwards_keepalive_gzip_and_chunked(proxy: FaultProxy, client: httpx.Client, upstream: Upstream) -> None:
    assert client.get("/a").text == "hello /a"
    assert client.get("/big").content == BIG
    assert client.get("/gzip").content == BIG
    assert client.get("/chunked").content == b"alpha-beta-" + b"gamma" * 100
    payload = json.dumps({"records": list(range(5000))}).encode()
    r = client.post("/bursts", content=gzip.compress(payload), headers={"Content-Encoding": "gzip"})
    assert r.json() == {"sha256": hashlib.sha256(payload).hexdigest(), "n": len(payload)}

    def counts() -> tuple[int, ...]:
        s = proxy.stats()
        return s["connections"], s["requests"], s["upstream_requests"], s["responses"], upstream.answered

    assert settled(counts, (1, 5, 5, 5, 5)) == (1, 5, 5, 5, 5)
    assert sum(proxy.stats()["faults"].values()) == 0
    assert len(upstream.received) == 5


def test_refuse_closes_new_connections_and_recovers(
    proxy: FaultProxy, client: httpx.Client, upstream: Upstream
) -> None:
    assert client.get("/warm").status_code == 200  # leaves a pooled keep-alive connection
    proxy.set_mode("refuse")
    for _ in range(3):  # the pooled connection's request is dropped, new connections are closed
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/x")
    assert upstream.received == ["GET /warm"]
    assert proxy.stats()["faults"]["refuse"] >= 3
    proxy.set_mode("pass")
    assert client.get("/x").status_code == 200


def test_drop_reads_the_request_and_closes(proxy: FaultProxy, client: httpx.Client, upstream: Upstream) -> None:
    proxy.set_mode("drop")
    with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):
        client.post("/bursts", content=b"x" * 5000)
    s = proxy.stats()
    assert (s["requests"], s["faults"]["drop"], s["upstream_requests"]) == (1, 1, 0)
    assert upstream.received == []


def test_stall_times_out_the_client(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.set_mode("stall", seconds=30)
    started = time.monotonic()
    with (
        httpx.Client(base_url=proxy.url, timeout=httpx.Timeout(3.0, read=0.3)) as c,
        pytest.raises(httpx.ReadTimeout),
    ):
        c.get("/slow")
    assert time.monotonic() - started < 2
    assert upstream.received == []
    deadline = time.monotonic() + 2  # the proxy notices the client leaving and frees the connection
    while proxy.stats()["active_connections"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.stats()["active_connections"] == 0


def test_stall_for_a_while_then_closes(proxy: FaultProxy, client: httpx.Client) -> None:
    proxy.set_mode("stall", seconds=0.2)
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        client.get("/slow")
    assert 0.15 < time.monotonic() - started < 2


@pytest.mark.parametrize("cut", [20, 3000, None])
def test_reset_mid_response(proxy: FaultProxy, client: httpx.Client, upstream: Upstream, cut: int | None) -> None:
    proxy.set_mode("reset_mid_response", bytes=cut)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.get("/big")
    assert upstream.received == ["GET /big"] and settled(lambda: upstream.answered, 1) == 1
    assert proxy.stats()["faults"]["reset_mid_response"] == 1


@pytest.mark.parametrize("path", ["/big", "/chunked", "/short"])
def test_truncate_body(proxy: FaultProxy, client: httpx.Client, upstream: Upstream, path: str) -> None:
    proxy.set_mode("truncate_body")
    with client.stream("GET", path) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="(?i)incomplete|closed|expected"):
            r.read()
    assert settled(lambda: upstream.answered, 1) == 1


def test_5xx_storm_answers_without_upstream(proxy: FaultProxy, client: httpx.Client, upstream: Upstream) -> None:
    proxy.set_mode("http_5xx_storm", retry_after=7)
    for _ in range(4):
        r = client.post("/bursts", content=b"{}")
        assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    assert upstream.received == []
    s = proxy.stats()
    assert (s["connections"], s["faults"]["http_5xx_storm"]) == (1, 4)  # keep-alive survives the storm
    proxy.set_mode("http_5xx_storm", statuses=[500, 502], seed=3)
    seen = {client.get("/x").status_code for _ in range(20)}
    assert seen == {500, 502}
    assert "Retry-After" not in client.get("/x").headers
    assert upstream.received == []


def test_after_commit_drop_loses_the_answer(proxy: FaultProxy, client: httpx.Client, upstream: Upstream) -> None:
    proxy.set_mode("after_commit_drop")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/bursts", content=b'{"seq": 1}')
    assert upstream.received == ["POST /bursts"] and settled(lambda: upstream.answered, 1) == 1
    proxy.set_mode("after_commit_drop", rst=True)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.post("/bursts", content=b'{"seq": 2}')
    assert settled(lambda: upstream.answered, 2) == 2
    assert proxy.stats()["faults"]["after_commit_drop"] == 2


def test_count_skip_and_path_prefix_target_one_request(
    proxy: FaultProxy, client: httpx.Client, upstream: Upstream
) -> None:
    proxy.set_mode("drop", path_prefix="/bursts", skip=1, count=1)
    assert client.get("/healthz").status_code == 200  # other paths pass
    assert client.post("/bursts", content=b"1").status_code == 200  # skipped
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/bursts", content=b"2")
    assert client.post("/bursts", content=b"3").status_code == 200  # count used up
    assert proxy.mode.mode == "pass"
    assert [e["kind"] for e in proxy.events()] == ["drop"]


def _outcomes(proxy: FaultProxy) -> list[str]:
    out = []
    with httpx.Client(base_url=proxy.url, timeout=3.0) as c:
        for i in range(40):
            try:
                out.append(str(c.post(f"/bursts/{i}", content=b"x" * 100).status_code))
            except httpx.TransportError as exc:
                out.append(type(exc).__name__)
    return out


def test_random_is_reproducible_from_its_seed(proxy: FaultProxy, upstream: Upstream) -> None:
    probs = {"drop": 0.15, "reset_mid_response": 0.15, "after_commit_drop": 0.15, "http_5xx_storm": 0.15}
    proxy.set_mode("random", seed=11, probabilities=probs)
    first, first_events = _outcomes(proxy), proxy.events()
    proxy.reset_stats()
    proxy.set_mode("random", seed=11, probabilities=probs)
    assert _outcomes(proxy) == first
    assert [e["kind"] for e in proxy.events()] == [e["kind"] for e in first_events]
    kinds = {e["kind"] for e in first_events}
    assert kinds == set(probs) and "200" in first


def test_bad_modes_are_rejected(proxy: FaultProxy) -> None:
    cases: list[tuple[str, dict[str, Any]]] = [
        ("nope", {}),
        ("drop", {"bogus": 1}),
        ("random", {"probabilities": {"drop": 0.8, "stall": 0.5}}),
        ("random", {"probabilities": {"meteor": 0.1}}),
        ("drop", {"count": 0}),
    ]
    for mode, params in cases:
        with pytest.raises(ValueError):
            proxy.set_mode(mode, **params)
    assert proxy.mode.mode == "pass"


def test_upstream_down_fails_the_request() -> None:
    with (
        FaultProxy(free_port()) as proxy,
        httpx.Client(base_url=proxy.url, timeout=2.0) as c,
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        c.get("/x")


async def test_framing_of_chunked_with_trailers_and_head() -> None:
    reader = asyncio.StreamReader()
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    reader.feed_data(raw + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    reader.feed_eof()
    head = await read_head(reader)
    assert head is not None and body_framing(head, "GET") == ("chunked", 0)
    assert head.raw + await read_body(reader, body_framing(head, "GET")) == raw
    second = await read_head(reader)
    assert second is not None
    assert body_framing(second, "HEAD") == ("length", 0) and body_framing(second, "GET") == ("length", 5)
    assert await read_head(reader) is None


def test_process_form_with_control_endpoint(upstream: Upstream) -> None:
    listen, control = free_port(), free_port()
    argv = [sys.executable, "-m", "storesync_harness.faultproxy", "--listen", str(listen)]
    argv += ["--upstream", str(upstream.server_address[1]), "--control", str(control), "--lifetime", "60"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{control}/healthz", timeout=10, proc=proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{listen}", timeout=3.0) as c:
            assert c.get("/a").text == "hello /a"
            remote_set_mode(control, "http_5xx_storm", retry_after=2)
            r = c.get("/a")
            assert (r.status_code, r.headers["Retry-After"]) == (503, "2")
            bad = httpx.post(f"http://127.0.0.1:{control}/mode", json={"mode": "meteor"}, timeout=3.0)
            assert bad.status_code == 400
        stats = remote_stats(control)
        assert (stats["requests"], stats["faults"]["http_5xx_storm"], stats["mode"]["mode"]) == (2, 1, "http_5xx_storm")
        assert upstream.received == ["GET /a"]
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert json.loads(out.decode().splitlines()[0])["listen"] == listen
        assert json.loads(err.decode().splitlines()[-1])["stopped"] is True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_idle_upstream_connections_are_replaced(
    proxy: FaultProxy, client: httpx.Client, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faultproxy, "UPSTREAM_REUSE", 0.05)
    for _ in range(3):
        assert client.get("/again").status_code == 200
        time.sleep(0.1)

    def counts() -> tuple[int, ...]:
        s = proxy.stats()
        return s["connections"], s["responses"], upstream.answered

    assert settled(counts, (1, 3, 3)) == (1, 3, 3)


def test_stop_cuts_open_connections(upstream: Upstream) -> None:
    proxy = FaultProxy(upstream.server_address[1]).start()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock:
        sock.sendall(b"POST /bursts HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        deadline = time.monotonic() + 2
        while proxy.stats()["active_connections"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 2
        try:
            assert sock.recv(100) == b""
        except ConnectionResetError:
            pass
    proxy.stop()  # idempotent
    assert upstream.received == []
