"""Simulated stores that speak the real wire protocol without an agent process.

A :class:`SimStore` enrolls over HTTP with a one-time token, seals real records (chain + Ed25519,
through ``sync_protocol``) from a :class:`~storesync_harness.pos.Pos`, and prepares signed, gzipped
``POST /v1/bursts`` requests ahead of time, so a benchmark or a test can send them later (to any
replica) and check the answers: the hub's receipt must verify with the hub key given at enrollment.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from typing import Any

import httpx

from sync_protocol import chain, keys
from sync_protocol.httpsig import sign_request
from sync_protocol.record import SignedRecord, make_body, seal
from sync_protocol.transaction import parse_transaction
from sync_protocol.wire import BURSTS_PATH, ENROLL_PATH, BurstRequest, BurstResponse, EnrollRequest, Receipt

from .pos import Pos

CAPTURED_AT = "2026-11-22T10:15:04.120+01:00"
SENT_AT = "2026-11-22T09:15:03.000Z"
CREATED = 1_795_000_000  # fixed signature `created`: bursts are byte-identical however often they are built


@dataclass(frozen=True)
class PreparedBurst:
    """One signed burst ready to send: ``content`` and ``headers`` for ``POST /v1/bursts``."""

    store_id: str
    first_seq: int
    last_seq: int
    content: bytes
    headers: dict[str, str]

    @property
    def records(self) -> int:
        return self.last_seq - self.first_seq + 1


@dataclass
class SimStore:
    """One store's writer: key, epoch, sealed records and the transactions they carry.

    Args:
        store_id: The store.
        registers: Registers generating the sales (each its own ``txn_id`` series).
        seed: Seed of the generated transactions.
    """

    store_id: str
    registers: int = 2
    seed: int = 0
    key: keys.Ed25519PrivateKey = field(default_factory=keys.generate)
    epoch: int = 0
    hub_public_key: str = ""
    records: list[SignedRecord] = field(default_factory=list)
    txns: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._pos = [Pos(f"{self.store_id}-R{i + 1}", seed=self.seed) for i in range(self.registers)]

    @property
    def key_id(self) -> str:
        return keys.key_id(self.key)

    def enroll(self, hub_url: str, token: str, client: httpx.Client | None = None) -> None:
        """``POST /v1/enroll`` with our key; remembers the epoch and the hub's public key.

        Raises:
            httpx.HTTPStatusError: the hub refused.
        """
        request = EnrollRequest(token=token, public_key=keys.public_hex(self.key), hostname=f"sim-{self.store_id}")
        c = client or httpx.Client(timeout=30)
        try:
            r = c.post(hub_url.rstrip("/") + ENROLL_PATH, content=request.model_dump_json().encode())
            r.raise_for_status()
        finally:
            if client is None:
                c.close()
        doc = r.json()
        self.epoch, self.hub_public_key = int(doc["epoch"]), str(doc["hub_public_key"])

    def seal(self, count: int) -> list[SignedRecord]:
        """Seal ``count`` new sales onto the chain (needs :meth:`enroll` first for the epoch)."""
        assert self.epoch, "enroll first"
        head = self.records[-1].chain if self.records else chain.genesis(self.store_id, self.epoch)
        out = []
        for _ in range(count):
            seq = len(self.records) + 1
            txn = parse_transaction(self._pos[seq % self.registers].sale()).canonical()
            body = make_body(
                store_id=self.store_id, epoch=self.epoch, seq=seq, kind=txn["kind"], captured_at=CAPTURED_AT, txn=txn
            )
            rec = seal(self.key, head, seq, body)
            head = rec.chain
            self.records.append(rec)
            self.txns.append(txn)
            out.append(rec)
        return out

    def prepare(self, first: int, last: int) -> PreparedBurst:
        """The signed, gzipped burst of records ``first..last`` (already sealed)."""
        request = BurstRequest.model_validate(
            {
                "store_id": self.store_id,
                "epoch": self.epoch,
                "first_seq": first,
                "records": [r.wire() for r in self.records[first - 1 : last]],
                "sent_at": SENT_AT,
                "clock": None,
            }
        )
        raw = gzip.compress(request.model_dump_json().encode(), compresslevel=1, mtime=0)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        headers.update(sign_request("POST", BURSTS_PATH, raw, self.key, self.key_id, CREATED))
        return PreparedBurst(self.store_id, first, last, raw, headers)

    def bursts(self, size: int) -> list[PreparedBurst]:
        """Every sealed record as consecutive bursts of at most ``size`` records."""
        n = len(self.records)
        return [self.prepare(i, min(n, i + size - 1)) for i in range(1, n + 1, size)]

    def check_answer(self, answer: bytes, expected_acked: int) -> Receipt:
        """Parse a 200 answer and check its receipt against our chain and the hub key from enrollment.

        Raises:
            AssertionError: the receipt does not cover ``expected_acked`` or does not verify.
        """
        response = BurstResponse.model_validate_json(answer)
        receipt = response.receipt
        assert receipt is not None, f"{self.store_id}: no receipt"
        assert receipt.acked_through == expected_acked, f"{self.store_id}: receipt {receipt.acked_through}"
        assert receipt.chain == self.records[expected_acked - 1].chain.hex(), f"{self.store_id}: receipt chain"
        assert receipt.valid(keys.public_from_hex(self.hub_public_key)), f"{self.store_id}: bad receipt signature"
        return receipt
