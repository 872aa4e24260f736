"""``store-tui``: one Textual app with a store screen and a fleet screen.

At the store the app shows :class:`tui.store_screen.StoreScreen` (``--data-dir``); at head office
:class:`tui.fleet_screen.FleetScreen` (``--hub``). Given both, it opens on the store screen and
``f`` / ``t`` switch between them. The command line is :mod:`tui.__main__`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from .fleet_screen import FleetScreen
from .hub_client import HubClient
from .store_screen import StoreScreen


class StoreTuiApp(App[None]):
    """The StoreSync TUI: the store screen, the fleet screen, or both.

    Args:
        store: The store screen (store staff), if any.
        fleet: The fleet screen (head office), if any.

    Raises:
        ValueError: when neither screen is given.
    """

    CSS_PATH = "store_tui.tcss"
    TITLE = "StoreSync"
    BINDINGS = [
        Binding("f", "show('fleet')", "Fleet"),
        Binding("t", "show('store')", "Store"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, *, store: StoreScreen | None = None, fleet: FleetScreen | None = None) -> None:
        if store is None and fleet is None:
            raise ValueError("store-tui needs a store screen, a fleet screen, or both")
        super().__init__()
        self.store = store
        self.fleet = fleet
        if store is None:
            self.title = FleetScreen.TITLE  # the terminal's window title too

    @classmethod
    def for_store(cls, data_dir: Path, **kw: Any) -> StoreTuiApp:
        """The app with only the store screen (``kw`` as :class:`StoreScreen` takes them)."""
        return cls(store=StoreScreen(data_dir, **kw))

    @classmethod
    def for_fleet(cls, hub: HubClient, **kw: Any) -> StoreTuiApp:
        """The app with only the fleet screen (``kw`` as :class:`FleetScreen` takes them)."""
        return cls(fleet=FleetScreen(hub, **kw))

    def get_default_screen(self) -> Screen[Any]:
        """The first screen: the store screen when there is one, else the fleet screen."""
        first = self.store if self.store is not None else self.fleet
        assert first is not None
        return first

    def on_mount(self) -> None:
        if self.store is not None and self.fleet is not None:
            self.install_screen(self.fleet, "fleet")  # pushed over the store screen, kept when popped

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The screen switch keys exist only when the app has both screens."""
        if action == "show":
            return self.store is not None and self.fleet is not None
        return True

    def action_show(self, name: str) -> None:
        """Show the store screen (the first) or the fleet screen (pushed over it)."""
        if self.store is None or self.fleet is None:
            return
        if name == "fleet" and self.screen is not self.fleet:
            self.push_screen("fleet")
        elif name == "store" and self.screen is self.fleet:
            self.pop_screen()
