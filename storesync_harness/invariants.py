"""The promise, as checks: what the POS was told is saved is at the hub exactly once, in a valid chain.

The reference is the set of transactions the POS got a 201 or 200 for (``acknowledged``). After a
trial, the hub ledger of the writer must hold each of them exactly once; every ledger record must
chain from the genesis value; nothing else may be there, except that a transaction the POS got no
answer for (``in_doubt``: sent, connection lost) may be present, at most once. The agent's own
outbox must pass ``edge-agent verify``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_protocol import chain

from .processes import Hub, agent_cli

Key = tuple[str, str]  # (register_id, txn_id)


@dataclass
class Verdict:
    """The invariants after one trial (or a whole run).

    Attributes:
        acknowledged: Transactions the POS was told were saved.
        found: Of those, how many are in the hub ledger.
        lost: Acknowledged but not in the ledger.
        duplicated: Transactions (acknowledged or not) in the ledger more than once.
        unexpected: Ledger records that the POS never sent (or never even tried).
        chain_errors: Ledger records whose chain link does not verify (0 or the count).
        agent_verify_ok: ``edge-agent verify`` passed (None when not run).
        details: The first few problems, for the log.
    """

    acknowledged: int = 0
    found: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    chain_errors: int = 0
    agent_verify_ok: bool | None = None
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.chain_errors) and (
            self.agent_verify_ok is not False
        )


class LedgerWatcher:
    """Reads one writer's hub ledger incrementally, checking each chain link as records arrive.

    The hub ledger is append-only, so each call only fetches records after the last one seen.
    """

    def __init__(self, store_id: str, epoch: int = 1) -> None:
        self.store_id = store_id
        self.epoch = epoch
        self.last_seq = 0
        self.prev = chain.genesis(store_id, epoch)
        self.counts: Counter[Key] = Counter()
        self.chain_errors = 0
        self.problems: list[str] = []

    def update(self, hub: Hub) -> int:
        """Fetch and check the records after the last seen one; returns how many arrived."""
        new = 0
        while True:
            page = hub.admin(
                f"/v1/admin/stores/{self.store_id}/ledger?epoch={self.epoch}&after={self.last_seq}&limit=5000"
            )["records"]
            if not page:
                return new
            for rec in page:
                self._take(rec)
                new += 1

    def _take(self, rec: dict[str, Any]) -> None:
        seq = int(rec["seq"])
        if seq != self.last_seq + 1:
            self.chain_errors += 1
            self.problems.append(f"ledger seq {seq} follows seq {self.last_seq}")
        link = chain.link(self.prev, rec["body"])
        if link.hex() != rec["chain"]:
            self.chain_errors += 1
            self.problems.append(f"ledger chain broken at seq {seq}")
        self.prev = bytes.fromhex(rec["chain"])
        self.last_seq = seq
        txn = json.loads(rec["body"]).get("txn") or {}
        self.counts[(str(txn.get("register_id")), str(txn.get("txn_id")))] += 1


def agent_verify(agent_dir: Path) -> tuple[bool, str]:
    """Run ``edge-agent verify`` on a data folder (the agent may be running)."""
    res = agent_cli("verify", "--data-dir", str(agent_dir), check=False)
    return res.returncode == 0, (res.stdout + res.stderr).strip()


def judge(
    watcher: LedgerWatcher,
    acknowledged: set[Key],
    in_doubt: set[Key],
    *,
    attempted: set[Key] | None = None,
) -> Verdict:
    """Compare the ledger seen by ``watcher`` with what the POS was told.

    Args:
        watcher: An up-to-date :class:`LedgerWatcher`.
        acknowledged: Keys the POS got 201/200 for.
        in_doubt: Keys sent without an answer (may be present once, or not at all).
        attempted: Every key the POS ever sent; defaults to ``acknowledged | in_doubt``.
    """
    counts = watcher.counts
    allowed = attempted if attempted is not None else acknowledged | in_doubt
    v = Verdict(acknowledged=len(acknowledged), chain_errors=watcher.chain_errors)
    v.details.extend(watcher.problems[:5])
    for key in acknowledged:
        n = counts.get(key, 0)
        if n:
            v.found += 1
        else:
            v.lost += 1
            if len(v.details) < 10:
                v.details.append(f"lost: {key[0]}/{key[1]}")
    for key, n in counts.items():
        if n > 1:
            v.duplicated += 1
            if len(v.details) < 10:
                v.details.append(f"duplicated x{n}: {key[0]}/{key[1]}")
        if key not in allowed:
            v.unexpected += 1
            if len(v.details) < 10:
                v.details.append(f"unexpected: {key[0]}/{key[1]}")
    return v
