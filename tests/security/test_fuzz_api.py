"""Schemathesis against the hub's and the agent's OpenAPI documents, real processes: no answer ≥ 500.

Bounded here (``STORESYNC_FUZZ_EXAMPLES`` per operation and mode, default 10); ``make fuzz`` runs many
more. Each run prints how many cases it sent. Bursts are signed with an enrolled store key half the
time, so the generated bodies get past the signature check into parsing and ingest.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from agent.conftest import init_data_dir, write_identity
from storesync_harness.processes import Agent, Hub
from sync_protocol import keys
from sync_protocol.httpsig import sign_request
from sync_protocol.wire import BURSTS_PATH, EnrollResponse

EXAMPLES = int(os.environ.get("STORESYNC_FUZZ_EXAMPLES", "10"))
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)
Sender = Callable[[schemathesis.Case, bool], httpx.Response]


def body_bytes(kwargs: dict[str, Any]) -> bytes:
    if "json" in kwargs:
        return json.dumps(kwargs["json"]).encode()
    data = kwargs.get("data") or kwargs.get("content") or b""
    return data.encode() if isinstance(data, str) else bytes(data)


def sendable(generated: dict[str, Any] | None) -> dict[str, str]:
    """Generated headers as an HTTP client can send them.

    The documents declare security schemes (admin / register bearer tokens), so schemathesis also makes up
    ``Authorization`` values; one with a trailing space or a control character is refused by httpx before
    anything is sent. Such values are trimmed, or left out when nothing sendable remains.
    """
    out = {}
    for name, value in (generated or {}).items():
        text = str(value).strip()
        if text and all(32 <= ord(c) < 127 or 128 <= ord(c) < 256 for c in text):  # what h11 sends
            out[name] = text
    return out


def fuzz(schema_url: str, send: Sender) -> tuple[Counter[str], list[str]]:
    """Run every operation of the schema in positive and negative mode; count cases, collect ≥ 500s."""
    schema = schemathesis.openapi.from_url(schema_url)
    counts: Counter[str] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @given(case=op.as_strategy(generation_mode=mode), signed=st.booleans())
            def run(case: schemathesis.Case, signed: bool) -> None:
                response = send(case, signed)
                counts[f"{case.method} {case.path}"] += 1
                if response.status_code == 503 and "retry-after" in response.headers:
                    counts["(503 busy: database lock wait under load, allowed by DESIGN §10)"] += 1
                elif response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} {response.status_code} {response.text[:200]}")

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (no parameters, no body): positive mode covers it
                pass
    return counts, failures


def report(name: str, counts: Counter[str], failures: list[str]) -> None:
    total = sum(counts.values())
    print(f"\nfuzz {name}: {total} cases over {len(counts)} operations, {len(failures)} answers >= 500")
    for label, n in sorted(counts.items()):
        print(f"  {n:6d}  {label}")
    assert total > 0
    assert not failures, "\n".join(failures[:20])


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub whose rate limits are out of the way: the fuzzer sends hundreds of unsigned requests."""
    h = Hub.create(tmp_path / "hub")
    h.env = {f"CLOUD_HUB_RATE_{name}": "1e9" for name in ("AUTH_FAIL_BURST", "ENROLL_BURST", "BURST_BURST")}
    h.start()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def enrolled_key(hub: Hub) -> tuple[keys.Ed25519PrivateKey, str]:
    key = keys.generate()
    token = hub.add_store("FZ")
    answer = httpx.post(hub.url + "/v1/enroll", json={"token": token, "public_key": keys.public_hex(key)}, timeout=10)
    assert answer.status_code == 201, answer.text
    return key, EnrollResponse.model_validate(answer.json()).key_id


def test_hub_openapi_fuzz_never_answers_5xx(hub: Hub, enrolled_key: tuple[keys.Ed25519PrivateKey, str]) -> None:
    key, key_id = enrolled_key
    admin = {"Authorization": f"Bearer {hub.admin_token}"}

    # One connection per case: a refusal sent before the body is read closes the connection, and a reused
    # keep-alive connection would then race that close (a client-side reset, not an answer of the hub).
    with httpx.Client(base_url=hub.url, timeout=30, limits=NO_KEEPALIVE) as client:

        def send(case: schemathesis.Case, signed: bool) -> httpx.Response:
            kwargs = case.as_transport_kwargs(base_url=hub.url)
            headers = sendable(kwargs.get("headers"))
            body = body_bytes(kwargs)
            if case.path == BURSTS_PATH and signed:
                headers |= sign_request("POST", BURSTS_PATH, body, key, key_id)
            elif case.path.startswith("/v1/admin") and signed:
                headers |= admin
            return client.request(
                case.method, kwargs["url"], params=kwargs.get("params"), content=body, headers=headers
            )

        counts, failures = fuzz(hub.url + "/openapi.json", send)
    report("hub", counts, failures)
    assert "Traceback" not in hub.log_path.read_text()


@pytest.fixture
def agent_proc(tmp_path: Path) -> Iterator[Agent]:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    write_identity(data, key)
    (tmp_path / "drops").mkdir()
    agent = Agent.create(data, None, "--drop-dir", str(tmp_path / "drops")).start()
    try:
        yield agent
    finally:
        agent.stop()


def test_agent_openapi_fuzz_never_answers_5xx(agent_proc: Agent) -> None:
    url = agent_proc.url
    with httpx.Client(timeout=30, limits=NO_KEEPALIVE) as client:

        def send(case: schemathesis.Case, signed: bool) -> httpx.Response:
            kwargs = case.as_transport_kwargs(base_url=url)
            headers = sendable(kwargs.get("headers"))
            if not signed:  # half the cases as a POS sends them, half exactly as generated
                headers.setdefault("Content-Type", "application/json")
            return client.request(
                case.method, kwargs["url"], params=kwargs.get("params"), content=body_bytes(kwargs), headers=headers
            )

        counts, failures = fuzz(url + "/openapi.json", send)
    report("agent", counts, failures)
    assert "Traceback" not in agent_proc.log_path.read_text()
