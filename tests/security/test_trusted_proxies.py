"""The hub behind a reverse proxy: per-source limits follow X-Forwarded-For only from trusted_proxies.

A tiny forwarding proxy (written here) listens on 127.0.0.1, connects to the real hub from 127.0.0.2
(the only trusted proxy) and appends its peer's address to ``X-Forwarded-For``, as nginx's
``proxy_add_x_forwarded_for`` does. Clients bind distinct loopback source addresses.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from storesync_harness.processes import Hub

PROXY_SOURCE = "127.0.0.2"


class ForwardingProxy(ThreadingHTTPServer):
    """Forwards each request to ``upstream`` from ``PROXY_SOURCE``, appending the client to X-Forwarded-For."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        super().__init__(("127.0.0.1", 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    server: ForwardingProxy

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("x-forwarded-for", "connection")}
        seen = self.headers.get("x-forwarded-for")
        headers["X-Forwarded-For"] = f"{seen}, {self.client_address[0]}" if seen else self.client_address[0]
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=10, source_address=(PROXY_SOURCE, 0))
        try:
            conn.request(self.command, self.path, body, headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "connection", "date", "server"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def proxied_hub(tmp_path: Path) -> Iterator[tuple[Hub, ForwardingProxy]]:
    hub = Hub.create(tmp_path / "hub")
    hub.env = {
        "CLOUD_HUB_TRUSTED_PROXIES": PROXY_SOURCE,
        "CLOUD_HUB_RATE_AUTH_FAIL_BURST": "3",
        "CLOUD_HUB_RATE_AUTH_FAIL_PER_MIN": "1",
    }
    hub.start()
    proxy = ForwardingProxy(hub.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub, proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        hub.stop()


def client(source: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=10)


def guess(c: httpx.Client, url: str, xff: str | None = None) -> httpx.Response:
    headers = {"Authorization": "Bearer guess"} | ({"X-Forwarded-For": xff} if xff else {})
    return c.get(url + "/v1/admin/stores", headers=headers)


def test_per_source_limits_follow_the_real_client_behind_a_trusted_proxy(
    proxied_hub: tuple[Hub, ForwardingProxy],
) -> None:
    hub, proxy = proxied_hub
    with client("127.0.0.10") as a, client("127.0.0.11") as b:
        codes = [guess(a, proxy.url).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429], codes
        limited = guess(a, proxy.url)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        # The proxy is one peer for the hub, but B is another client: its budget is its own.
        assert guess(b, proxy.url).status_code == 401
        ok = b.get(proxy.url + "/v1/admin/stores", headers={"Authorization": f"Bearer {hub.admin_token}"})
        assert ok.status_code == 200, ok.text
        # A client cannot pass for another one by sending the header itself: the proxy appends the real peer.
        assert guess(a, proxy.url, xff="127.0.0.99").status_code == 429


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(proxied_hub: tuple[Hub, ForwardingProxy]) -> None:
    hub, proxy = proxied_hub
    with client("127.0.0.1") as direct, client("127.0.0.11") as b:
        # A new made-up address in every request would give a fresh budget each time if the header counted.
        codes = [guess(direct, hub.url, xff=f"198.51.100.{i}").status_code for i in range(5)]
        assert codes[:3] == [401] * 3 and codes[3:] == [429, 429], codes
        # Naming another client's address does not spend that client's budget either.
        assert guess(b, proxy.url).status_code == 401
