"""``storesync_runtime.serving``: start-up objects leave the cyclic collector before serving."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from storesync_harness.processes import Hub


def test_freeze_startup_takes_the_start_up_heap_out_of_full_collections() -> None:
    # In a fresh interpreter: freezing the test process itself would hide every later test's garbage.
    probe = """
import gc, time
import edge_agent.runtime
from storesync_runtime.serving import freeze_startup
before = len(gc.get_objects())
frozen = freeze_startup()
print(before, frozen, gc.get_freeze_count(), len(gc.get_objects()))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    before, frozen, count, tracked = map(int, out.split())
    assert frozen == count > 10_000  # the agent's modules, schemas and app types
    assert frozen >= before // 2  # most of what start-up made
    assert tracked < frozen // 10  # what the collector still walks is small beside it


def test_an_idle_connection_outlives_the_clients_expiry(hub: Hub) -> None:
    """After 6 s idle (past httpx's and uvicorn's default 5 s) the hub still holds the connection."""
    with httpx.Client(timeout=10, limits=httpx.Limits(keepalive_expiry=60)) as client:
        first = client.get(hub.url + "/healthz")
        port = first.extensions["network_stream"].get_extra_info("client_addr")[1]
        time.sleep(6)
        second = client.get(hub.url + "/healthz")
        assert second.extensions["network_stream"].get_extra_info("client_addr")[1] == port
