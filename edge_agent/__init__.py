"""StoreSync edge agent: captures POS transactions into a signed outbox and syncs them to the hub.

Modules: ``config`` (data folder and settings), ``store`` (the package that owns the SQLite outbox:
schema, numbering/chaining/signing, typed queries, the TUI's read-only view), ``capture`` (group-commit
writer), ``transport`` and ``sync`` (bursts to the hub), ``scheduler`` (background jobs), ``status``,
``api`` (loopback HTTP API), ``drops`` (file drops) and ``cli`` (the ``edge-agent`` command).
"""

__version__ = "0.1.0"
