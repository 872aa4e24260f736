"""Exceptions raised by the store TUI.

The tree, under the project root ``sync_protocol._exceptions.StoreSyncError``::

    StoreSyncError
     └── TuiError                    base of the TUI's own errors
          └── HubUnreachable         the hub did not answer, or refused the admin token

Errors of the agent's store view (``edge_agent._exceptions.AgentError``) and of SQLite are shown as
they come, as a line on the screen; the TUI never turns them into a traceback.
"""

from __future__ import annotations

from sync_protocol._exceptions import StoreSyncError


class TuiError(StoreSyncError):
    """Base of the store TUI's own errors."""

    code = "tui"


class HubUnreachable(TuiError):
    """The hub did not answer, or refused the admin token."""

    code = "hub_unreachable"
