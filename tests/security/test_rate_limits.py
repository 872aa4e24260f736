"""Per-store and per-source rate limits on a real hub: 429 with Retry-After (DESIGN §10)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from storesync_harness.processes import Hub
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
        "CLOUD_HUB_RATE_BURST_RATE": "1",
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
