"""StoreSync edge agent: captures POS transactions into a signed outbox and syncs them to the hub.

Modules: ``config`` (data folder and settings), ``outbox`` (SQLite outbox), ``capture`` (group-commit
writer), ``transport`` and ``sync`` (bursts to the hub), ``scheduler`` (background jobs), ``status``,
``api`` (loopback HTTP API) and ``cli`` (the ``edge-agent`` command).
"""

__version__ = "0.1.0"
