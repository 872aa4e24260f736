"""Test helpers: a minimal honest agent that seals real records with sync_protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cloud_hub import registry
from cloud_hub.storage import Storage
from sync_protocol import chain, keys
from sync_protocol.record import SignedRecord, make_body, seal
from sync_protocol.wire import BurstRequest, EnrollRequest

NOW = datetime(2026, 11, 22, 9, 15, 3, tzinfo=UTC)


def txn(n: int) -> dict[str, Any]:
    """A canonical sale (DESIGN §9) numbered ``n``."""
    return {
        "txn_id": f"R2-{n:06d}",
        "register_id": "R2",
        "kind": "sale",
        "occurred_at": "2026-11-22T10:15:03",
        "currency": "EUR",
        "lines": [{"sku": "TEE-BLK-M", "qty": "2", "unit_price": "19.90", "discount": "0.00", "tax": "6.36"}],
        "tenders": [{"type": "card", "amount": "46.16", "card_last4": "4242"}],
        "total": "46.16",
    }


@dataclass
class Agent:
    """One writer ``(store_id, epoch)`` with its key and its outbox."""

    store_id: str
    epoch: int
    key: keys.Ed25519PrivateKey
    outbox: list[SignedRecord] = field(default_factory=list)

    @property
    def key_id(self) -> str:
        return keys.key_id(self.key)

    @property
    def head(self) -> bytes:
        return self.outbox[-1].chain if self.outbox else chain.genesis(self.store_id, self.epoch)

    def body(self, seq: int, *, store_id: str | None = None, epoch: int | None = None, n: int | None = None) -> str:
        return make_body(
            store_id=store_id or self.store_id,
            epoch=epoch or self.epoch,
            seq=seq,
            kind="sale",
            captured_at="2026-11-22T10:15:04.120+01:00",
            txn=txn(seq if n is None else n),
        )

    def make(self, count: int) -> list[SignedRecord]:
        """Seal ``count`` new records onto the outbox and return them."""
        out = []
        for _ in range(count):
            seq = len(self.outbox) + 1
            rec = seal(self.key, self.head, seq, self.body(seq))
            self.outbox.append(rec)
            out.append(rec)
        return out

    def records(self, first: int, last: int) -> list[SignedRecord]:
        return self.outbox[first - 1 : last]

    def burst(
        self,
        records: list[SignedRecord],
        *,
        first_seq: int | None = None,
        clock: dict[str, Any] | None = None,
        store_id: str | None = None,
        epoch: int | None = None,
    ) -> BurstRequest:
        first = first_seq if first_seq is not None else (records[0].seq if records else len(self.outbox) + 1)
        return BurstRequest.model_validate(
            {
                "store_id": store_id or self.store_id,
                "epoch": epoch or self.epoch,
                "first_seq": first,
                "records": [r.wire() for r in records],
                "sent_at": "2026-11-22T09:15:03.000Z",
                "clock": clock,
            }
        )


def enroll_agent(storage: Storage, store_id: str, hub_key: keys.Ed25519PrivateKey, tz: str = "Europe/Berlin") -> Agent:
    """Register (or re-enroll) a store and return an agent with a fresh key."""
    issued = registry.add_store(storage, store_id, tz, now=NOW)
    key = keys.generate()
    answer = registry.enroll(
        storage,
        EnrollRequest(token=issued.token, public_key=keys.public_hex(key), hostname="till-1"),
        hub_key=hub_key,
        now=NOW,
    )
    return Agent(store_id, answer.epoch, key)
