"""Take the README's screenshot of ``store-tui`` from a real run: hub and agent processes, sales, a hub outage.

Usage: ``.venv/bin/python scripts/tui_screenshot.py [OUT.svg]`` (default ``docs/tui-main.svg``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub
from tui.agent_client import AgentClient
from tui.app import StoreTuiApp

ROOT = Path(__file__).resolve().parents[1]


async def shoot(app: StoreTuiApp, out: Path) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("b")  # the recent syncs: sent, then "hub unreachable"
        for _ in range(3):
            await app.workers.wait_for_complete()
            await pilot.pause()
        app.save_screenshot(out.name, str(out.parent))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "tui-main.svg"
    with tempfile.TemporaryDirectory(prefix="tui-shot-") as tmp:
        hub = Hub.create(Path(tmp) / "hub").start()
        agent = Agent.enrolled(Path(tmp) / "agent", hub, "S042")
        agent.start()
        try:
            registers = [Pos("R1", seed=1), Pos("R2", seed=2)]
            with httpx.Client(timeout=10) as client:
                for i in range(60):
                    agent.post(registers[i % 2].mixed(), client)
                agent.wait_synced()
                hub.stop()  # head office goes away; the tills keep selling
                for i in range(37):
                    agent.post(registers[i % 2].mixed(), client)
            deadline = time.monotonic() + 30
            while agent.status()["last_sync_result"] != "offline" and time.monotonic() < deadline:
                time.sleep(0.2)
            app = StoreTuiApp.for_store(agent.data_dir, agent=AgentClient(agent.url), refresh_s=0)
            asyncio.run(shoot(app, out))
        finally:
            agent.stop()
            hub.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
