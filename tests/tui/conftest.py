"""Fixtures for the TUI tests: the TUI on real outbox states with a frozen clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tui_states import build, frozen_now
from tui_support import DEAD_PORT_URL

from tui.agent_client import AgentClient
from tui.app import StoreTuiApp


@pytest.fixture
def store_app(tmp_path: Path) -> Callable[..., StoreTuiApp]:
    """``store_app(state)``: the TUI on a freshly built real outbox in that state."""

    def make(state: str, agent_url: str = DEAD_PORT_URL, **kw: Any) -> StoreTuiApp:
        data, drops = build(state, tmp_path / state)
        return StoreTuiApp.for_store(
            data, drop_dir=drops, clock=kw.pop("clock", frozen_now), refresh_s=0, agent=AgentClient(agent_url), **kw
        )

    return make
