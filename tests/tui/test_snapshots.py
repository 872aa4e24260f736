"""Snapshots of the main states, from real outbox databases and a frozen clock."""

from __future__ import annotations

from collections.abc import Callable

from tui_support import HubStandIn, presses

from tui.app import StoreTuiApp


def test_all_synced(snap_compare: Callable[..., bool], store_app: Callable[..., StoreTuiApp]) -> None:
    """Everything reached head office: green banner, nothing waiting."""
    assert snap_compare(store_app("synced"), run_before=presses())


def test_offline_with_backlog(snap_compare: Callable[..., bool], store_app: Callable[..., StoreTuiApp]) -> None:
    """Hub unreachable for almost two hours: 'Offline since', backlog rising in the sparkline; bursts tab."""
    assert snap_compare(store_app("offline"), run_before=presses("b"))


def test_blocked_by_conflict(snap_compare: Callable[..., bool], store_app: Callable[..., StoreTuiApp]) -> None:
    """The hub holds another version of a sale: blocked, with the explanation and next step."""
    assert snap_compare(store_app("blocked"), run_before=presses())


def test_agent_down(snap_compare: Callable[..., bool], store_app: Callable[..., StoreTuiApp]) -> None:
    """No heartbeat for 41 minutes: the first thing on screen is that the agent is not running."""
    assert snap_compare(store_app("agent_down"), run_before=presses())


def test_import_running(snap_compare: Callable[..., bool], store_app: Callable[..., StoreTuiApp]) -> None:
    """A drop file half imported, one partly rejected, one refused whole (drop files tab), 100 columns."""
    assert snap_compare(store_app("importing"), run_before=presses("d"), terminal_size=(100, 28))


def test_fleet_view(snap_compare: Callable[..., bool]) -> None:
    """Head office: stores with lag and conflicts, sinks, dead letters; the token is masked."""
    assert snap_compare(HubStandIn().app(), run_before=presses(), terminal_size=(100, 30))
