"""``storesync_runtime.heap``: start-up objects leave the cyclic collector before serving."""

from __future__ import annotations

import subprocess
import sys


def test_freeze_startup_takes_the_start_up_heap_out_of_full_collections() -> None:
    # In a fresh interpreter: freezing the test process itself would hide every later test's garbage.
    probe = """
import gc, time
import edge_agent.runtime
from storesync_runtime.heap import freeze_startup
before = len(gc.get_objects())
frozen = freeze_startup()
print(before, frozen, gc.get_freeze_count(), len(gc.get_objects()))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    before, frozen, count, tracked = map(int, out.split())
    assert frozen == count > 10_000  # the agent's modules, schemas and app types
    assert frozen >= before // 2  # most of what start-up made
    assert tracked < frozen // 10  # what the collector still walks is small beside it
