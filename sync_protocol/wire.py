"""HTTP messages between agent and hub: enrollment, bursts, receipts, errors (docs/protocol.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from .canonical import canonical_bytes
from .keys import Ed25519PrivateKey, Ed25519PublicKey, key_id, sign, verify
from .record import SignedRecord

BURSTS_PATH = "/v1/bursts"
ENROLL_PATH = "/v1/enroll"
MAX_BURST_RECORDS = 10_000
MAX_INT64 = 2**63 - 1  # seqs and epochs are SQL BIGINTs; anything larger is refused as a bad request
StoreId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Hex = Annotated[str, Field(pattern=r"^[0-9a-f]*$")]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnrollRequest(_Msg):
    token: Annotated[str, Field(min_length=16, max_length=200)]
    public_key: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    hostname: Annotated[str, Field(max_length=255)] = ""
    agent_version: Annotated[str, Field(max_length=64)] = ""


class EnrollResponse(_Msg):
    store_id: StoreId
    epoch: int
    key_id: str
    tz: str
    hub_public_key: str
    hub_key_id: str


class WireRecord(_Msg):
    seq: Annotated[int, Field(ge=1, le=MAX_INT64)]
    body: Annotated[str, Field(min_length=2, max_length=1_000_000)]
    chain: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    sig: Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]

    def signed(self) -> SignedRecord:
        return SignedRecord(self.seq, self.body, bytes.fromhex(self.chain), bytes.fromhex(self.sig))


class ClockReport(_Msg):
    theta_ms: float
    delta_ms: float
    sampled_at: str


class BacklogReport(_Msg):
    """What the agent holds beyond this burst: records not in it and not acknowledged, and the age of
    the oldest of them by the agent's clock (None when there is none)."""

    pending: Annotated[int, Field(ge=0)]
    oldest_pending_age_s: Annotated[float, Field(ge=0)] | None = None
    # The agent's health (protocol.md §5): set while its sync is blocked by something only a person can
    # fix on the store machine (``outbox_damaged``), sent in a signed probe; absent once it syncs again.
    blocked: Annotated[str, Field(pattern=r"^[a-z_]{1,64}$")] | None = None
    blocked_reason: Annotated[str, Field(max_length=300)] | None = None
    blocked_seq: Annotated[int, Field(ge=1, le=MAX_INT64)] | None = None

    @model_serializer(mode="wrap")
    def _without_unset_health(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if isinstance(out, dict) and out.get("blocked") is None:  # a healthy agent's bursts stay as before
            for name in ("blocked", "blocked_reason", "blocked_seq"):
                out.pop(name, None)
        return out


class BurstRequest(_Msg):
    """A run of consecutive records from one writer. An empty run is a status probe."""

    store_id: StoreId
    epoch: Annotated[int, Field(ge=1, le=MAX_INT64)]
    first_seq: Annotated[int, Field(ge=1, le=MAX_INT64)]
    records: Annotated[list[WireRecord], Field(max_length=MAX_BURST_RECORDS)]
    sent_at: str = Field(description="Agent clock when sent (T1), ISO 8601 with offset and milliseconds")
    clock: ClockReport | None = Field(default=None, description="Agent's best clock estimate so far")
    backlog: BacklogReport | None = Field(default=None, description="Agent's backlog beyond this burst")

    @field_validator("records")
    @classmethod
    def _consecutive(cls, records: list[WireRecord], info: Any) -> list[WireRecord]:
        first = info.data.get("first_seq")
        if first is not None:
            for i, rec in enumerate(records):
                if rec.seq != first + i:
                    raise ValueError(f"records[{i}].seq is {rec.seq}, expected {first + i} (runs are consecutive)")
        return records


class Receipt(_Msg):
    """The hub's signed statement that it holds a writer's records up to ``acked_through``."""

    store_id: StoreId
    epoch: int
    acked_through: int
    chain: Hex
    hub_key_id: str
    sig: Hex

    @staticmethod
    def message(store_id: str, epoch: int, acked_through: int, chain_hex: str) -> bytes:
        return canonical_bytes(
            {
                "purpose": "storesync/v1/receipt",
                "store_id": store_id,
                "epoch": epoch,
                "acked_through": acked_through,
                "chain": chain_hex,
            }
        )

    @classmethod
    def issue(cls, key: Ed25519PrivateKey, store_id: str, epoch: int, acked_through: int, chain: bytes) -> Receipt:
        msg = cls.message(store_id, epoch, acked_through, chain.hex())
        return cls(
            store_id=store_id,
            epoch=epoch,
            acked_through=acked_through,
            chain=chain.hex(),
            hub_key_id=key_id(key),
            sig=sign(key, msg).hex(),
        )

    def valid(self, hub_key: Ed25519PublicKey) -> bool:
        msg = self.message(self.store_id, self.epoch, self.acked_through, self.chain)
        return verify(hub_key, bytes.fromhex(self.sig), msg)


class BurstResponse(_Msg):
    acked_through: int
    stored: int
    duplicates: int
    hub_received_at: str = Field(description="T2, hub clock")
    hub_sent_at: str = Field(description="T3, hub clock")
    receipt: Receipt | None = None
    clock: ClockReport | None = None


ErrorCode = Literal[
    "conflict",
    "gap",
    "record_refused",
    "unauthenticated",
    "key_revoked",
    "forbidden",
    "too_large",
    "bad_request",
    "busy",
    "invalid_token",
    "not_found",
]


class ErrorBody(_Msg):
    """Body of every non-2xx answer from the hub."""

    error: ErrorCode
    message: str
    seq: int | None = None
    expected_seq: int | None = None
    acked_through: int | None = None
    receipt: Receipt | None = None
    stored: int | None = None
    duplicates: int | None = None
