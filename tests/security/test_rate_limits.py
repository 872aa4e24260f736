"""Per-store and per-source rate limits on a real hub: 429 with Retry-After (DESIGN §10)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storesync_harness.processes import Hub
from storesync_harness.simstore import SimStore
from sync_protocol import keys
from sync_protocol.httpsig import sign_request
from sync_protocol.wire import BURSTS_PATH, EnrollResponse


@pytest.fixture
def tight_hub(tmp_path: Path) -> Iterator[Hub]:
    hub = Hub.create(tmp_path / "hub")
    hub.env = {
        "CLOUD_HUB_RATE_AUTH_FAIL_BURST": "5",
        "CLOUD_HUB_RATE_AUTH_FAIL_PER_MIN": "6",
        "CLOUD_HUB_RATE_ENROLL_BURST": "3",
        "CLOUD_HUB_RATE_ENROLL_PER_MIN": "6",
        "CLOUD_HUB_RATE_BURST_BURST": "5",
        "CLOUD_HUB_RATE_BURST_RATE": "0.2",  # one more every 5 s: a loaded machine does not refill it between probes
    }
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()


def enroll(hub: Hub, store_id: str) -> tuple[keys.Ed25519PrivateKey, EnrollResponse]:
    key = keys.generate()
    r = httpx.post(
        hub.url + "/v1/enroll", json={"token": hub.add_store(store_id), "public_key": keys.public_hex(key)}, timeout=10
    )
    assert r.status_code == 201, r.text
    return key, EnrollResponse.model_validate(r.json())


def probe(hub: Hub, key: keys.Ed25519PrivateKey, enrolled: EnrollResponse) -> httpx.Response:
    body = (
        f'{{"store_id":"{enrolled.store_id}","epoch":{enrolled.epoch},"first_seq":1,"records":[],'
        '"sent_at":"2026-11-22T09:15:03.000Z"}'
    ).encode()
    headers = sign_request("POST", BURSTS_PATH, body, key, enrolled.key_id) | {"Content-Type": "application/json"}
    return httpx.post(hub.url + BURSTS_PATH, content=body, headers=headers, timeout=10)


def test_a_flooding_store_gets_429_and_the_others_do_not(tight_hub: Hub) -> None:
    k1, s1 = enroll(tight_hub, "F1")
    k2, s2 = enroll(tight_hub, "F2")
    answers = [probe(tight_hub, k1, s1).status_code for _ in range(8)]
    assert answers[:5] == [200] * 5 and 429 in answers[5:], answers
    limited = probe(tight_hub, k1, s1)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert probe(tight_hub, k2, s2).status_code == 200  # another store is not slowed down


def test_enrollment_and_failed_authentication_are_limited_per_source(tight_hub: Hub) -> None:
    codes = [
        httpx.post(tight_hub.url + "/v1/enroll", json={"token": "x" * 20, "public_key": "0" * 64}).status_code
        for _ in range(6)
    ]
    assert codes[:3] == [401] * 3 and codes[-1] == 429, codes  # 3 enrollments at once, then wait
    for _ in range(5):
        httpx.get(tight_hub.url + "/v1/admin/stores", headers={"Authorization": "Bearer guess"})
    guessed = httpx.get(tight_hub.url + "/v1/admin/stores", headers={"Authorization": "Bearer guess"})
    assert guessed.status_code == 429 and int(guessed.headers["retry-after"]) >= 1
    unsigned = httpx.post(tight_hub.url + BURSTS_PATH, content=b"{}")
    assert unsigned.status_code == 429  # the address is cooling down for every guarded endpoint
    assert httpx.get(tight_hub.url + "/healthz").status_code == 200


def test_a_store_flooding_with_parallel_bursts_gets_429_while_a_quiet_store_syncs(tmp_path: Path) -> None:
    """Default limits: more than two bursts of one store at once are refused; a quiet store is not."""
    hub = Hub.create(tmp_path / "hub").start()
    try:
        flooder, quiet = SimStore("FLOOD", seed=1), SimStore("QUIET", seed=2)
        for s in (flooder, quiet):
            s.enroll(hub.url, hub.add_store(s.store_id))
        flooder.seal(400)
        quiet.seal(40)
        flood_burst = flooder.prepare(1, 400)
        stop = threading.Event()
        answers: list[httpx.Response] = []

        def flood() -> None:
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    answers.append(
                        c.post(hub.url + BURSTS_PATH, content=flood_burst.content, headers=flood_burst.headers)
                    )

        threads = [threading.Thread(target=flood) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 60
            while not any(r.status_code == 429 for r in answers) and time.monotonic() < deadline:
                time.sleep(0.05)
            with httpx.Client(timeout=30) as c:
                quiet_codes = [
                    c.post(hub.url + BURSTS_PATH, content=b.content, headers=b.headers).status_code
                    for b in quiet.bursts(10)
                ]
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        limited = [r for r in answers if r.status_code == 429]
        assert limited, sorted({r.status_code for r in answers})
        assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
        assert limited[0].json()["error"] == "busy"
        assert {r.status_code for r in answers} <= {200, 429}, sorted({r.status_code for r in answers})
        assert quiet_codes == [200] * 4, quiet_codes
        assert hub.admin("/v1/admin/stores/QUIET")["streams"][0]["acked_through"] == 40
    finally:
        hub.stop()
