"""Real outbox databases in the states the TUI must show, built with edge_agent's own code.

Records are captured with :class:`edge_agent.store.Outbox` (signed, chained), acknowledged with real
hub receipts (:meth:`Receipt.issue` with a hub key, checked by :meth:`Outbox.apply_receipt`), and the
sync bookkeeping is written with :meth:`Outbox.update_sync` / :meth:`Outbox.log_burst` exactly as
``edge_agent.sync`` writes it. Only the clock is fixed (``sync_protocol.clock.now_iso`` is
patched), and keys come from fixed seeds, so the screens are byte-for-byte reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.config import AgentConfig
from edge_agent.drops import load
from edge_agent.drops.report import ErrorsWriter, ImportSummary, errors_path, rejected_whole, result_path, write_result
from edge_agent.store import Identity, Outbox
from storesync_harness.dropfiles import write_jsonl
from storesync_harness.pos import Pos
from sync_protocol import keys
from sync_protocol.transaction import parse_transaction
from sync_protocol.wire import Receipt

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 22, 16, 30, 0, tzinfo=UTC)  # 17:30 in the store
OPEN = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)  # 09:00 in the store
STEP = timedelta(minutes=5)
STATES = ("synced", "offline", "blocked", "agent_down", "importing")


def frozen_now() -> datetime:
    """The clock the TUI is given in tests."""
    return NOW


@dataclass
class Clock:
    """The agent's clock, moved by hand."""

    t: datetime

    def local(self) -> str:
        return self.t.astimezone(BERLIN).isoformat(timespec="milliseconds")

    def utc(self) -> str:
        return self.t.astimezone(UTC).isoformat(timespec="milliseconds")

    def iso(self, *, local: bool = False, z: bool = False) -> str:
        """``sync_protocol.clock.now_iso`` on this clock."""
        assert not z
        return self.local() if local else self.utc()


@contextmanager
def agent_clock(clock: Clock) -> Iterator[None]:
    """Make the outbox and the drop reports take their time stamps from ``clock``."""
    with (
        mock.patch("edge_agent.store.records.now_iso", clock.iso),
        mock.patch("edge_agent.store.outbox.now_iso", clock.iso),
        mock.patch("edge_agent.store.schema.now_iso", clock.iso),
        mock.patch("edge_agent.drops.report.now_iso", clock.iso),
    ):
        yield


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


@dataclass
class Store:
    """One store's agent folder being written through the agent's own outbox code."""

    data_dir: Path
    clock: Clock = field(default_factory=lambda: Clock(OPEN))
    store_id: str = "S042"

    def __post_init__(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg = AgentConfig.load(self.data_dir)
        self.key = _key(7)
        self.hub_key = _key(9)
        keys.save_private_key(self.key, cfg.key_path)
        self.db_path = cfg.db_path
        self.pos = Pos("R1", seed=1, start=datetime(2026, 11, 22, 9, 0, 0))
        self.pos2 = Pos("R2", seed=2, start=datetime(2026, 11, 22, 9, 0, 0))
        with agent_clock(self.clock):
            self.outbox = Outbox(self.db_path, key=self.key)
            self.outbox.set_identity(
                Identity(
                    store_id=self.store_id,
                    epoch=1,
                    key_id=keys.key_id(self.key),
                    public_key=keys.public_hex(self.key),
                    hub_url="https://hub.example.com",
                    hub_public_key=keys.public_hex(self.hub_key),
                    hub_key_id=keys.key_id(self.hub_key),
                    tz="Europe/Berlin",
                )
            )

    def sell(self, n: int) -> None:
        """Capture ``n`` sales from the two registers, a few seconds apart."""
        with agent_clock(self.clock):
            for i in range(n):
                pos = self.pos if i % 2 == 0 else self.pos2
                self.outbox.capture(parse_transaction(pos.mixed()))
                self.clock.t += timedelta(seconds=7)

    def sync_ok(self) -> None:
        """A successful burst: the hub's receipt for everything captured, applied by the agent."""
        with agent_clock(self.clock):
            before = self.outbox.acked_through()
            head, chain = self.outbox.head()
            if head > before:
                receipt = Receipt.issue(self.hub_key, self.store_id, 1, head, chain)
                self.outbox.apply_receipt(receipt, self.hub_key.public_key())
            self.outbox.log_burst(
                first_seq=before + 1, last_seq=head if head > before else None, count=head - before,
                result="ok", http_status=200, ms=42.0,
            )  # fmt: skip
            now = self.clock.utc()
            self.outbox.update_sync(
                last_sync_at=now, last_success_at=now, last_sync_result="ok", last_error=None, blocked=None,
                failures=0, next_attempt_at=None,
            )  # fmt: skip

    def sync_offline(self) -> None:
        """A burst that found the hub unreachable."""
        with agent_clock(self.clock):
            acked = self.outbox.acked_through()
            head, _ = self.outbox.head()
            self.outbox.log_burst(
                first_seq=acked + 1, last_seq=head, count=head - acked, result="offline", http_status=None, ms=5000.0
            )
            state = self.outbox.sync_state()
            self.outbox.update_sync(
                last_sync_at=self.clock.utc(), last_sync_result="offline",
                last_error="hub not reachable: connection refused", failures=int(state["failures"] or 0) + 1,
                next_attempt_at=(self.clock.t + timedelta(minutes=1)).isoformat(timespec="milliseconds"),
            )  # fmt: skip

    def sync_blocked(self, seq: int) -> None:
        """The hub holds another version of ``seq`` (409 conflict): the agent is blocked."""
        with agent_clock(self.clock):
            acked = self.outbox.acked_through()
            head, _ = self.outbox.head()
            self.outbox.log_burst(
                first_seq=acked + 1, last_seq=head, count=head - acked, result="conflict", http_status=409, ms=35.0
            )
            message = f"hub holds a different record at seq {seq}"
            self.outbox.update_sync(
                last_sync_at=self.clock.utc(), last_sync_result="blocked", last_error=message,
                blocked={"code": "conflict", "message": message, "seq": seq, "http_status": 409}, failures=1,
                next_attempt_at=(self.clock.t + timedelta(minutes=5)).isoformat(timespec="milliseconds"),
            )  # fmt: skip

    def heartbeat(self, at: datetime) -> None:
        with agent_clock(Clock(at)):
            self.outbox.update_sync(heartbeat_at=Clock(at).utc())

    def day(self, *, online_until: datetime | None = None, until: datetime = NOW) -> None:
        """Sales every five minutes from opening to ``until``; syncs succeed up to ``online_until``."""
        step = 0
        while self.clock.t < until - STEP:
            self.sell(1 + step % 3)
            self.clock.t = OPEN + STEP * (step + 1)
            if online_until is None or self.clock.t <= online_until:
                self.sync_ok()
            elif step % 4 == 0:
                self.sync_offline()
            step += 1

    def close(self) -> None:
        self.outbox.close()


def build(state: str, root: Path) -> tuple[Path, Path | None]:
    """Build ``state`` under ``root``; returns the agent data folder and the drop folder (if any)."""
    store = Store(root / "agent")
    drops: Path | None = None
    if state == "synced":
        store.day()
        store.heartbeat(NOW - timedelta(seconds=3))
    elif state == "offline":
        store.day(online_until=NOW - timedelta(hours=1, minutes=50))
        store.clock.t = NOW - timedelta(seconds=40)
        store.sync_offline()
        store.heartbeat(NOW - timedelta(seconds=2))
    elif state == "blocked":
        store.day(online_until=NOW - timedelta(minutes=40))
        store.clock.t = NOW - timedelta(minutes=2)
        store.sync_blocked(store.outbox.acked_through() + 1)
        store.heartbeat(NOW - timedelta(seconds=4))
    elif state == "agent_down":
        store.day(online_until=NOW - timedelta(minutes=50), until=NOW - timedelta(minutes=40))
        store.heartbeat(NOW - timedelta(minutes=41))
    elif state == "importing":
        store.day()
        drops = root / "drops"
        make_drops(store, drops)
        store.heartbeat(NOW - timedelta(seconds=1))
    else:
        raise ValueError(state)
    store.close()
    return store.data_dir, drops


def make_drops(store: Store, folder: Path) -> None:
    """A drop folder: one file half imported, one finished with bad rows, one refused whole."""
    for sub in ("processed", "rejected"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    with agent_clock(store.clock):
        # finished, 3 bad rows of 40
        done = folder / "processed" / "franchise-0521.jsonl"
        write_jsonl(done, 40, bad_every=13, register_id="F1")
        summary = ImportSummary(file=done.name, sha256="0" * 64, format="jsonl", started_at=store.clock.local())
        with ErrorsWriter(errors_path(folder / "rejected", done.name)) as errors:
            for item in load(done)[1]:
                if item.txn is not None:
                    store.outbox.capture(parse_transaction(item.txn), origin=f"file:{done.name}")
                else:
                    errors.write(item)
                summary.add(item)
        write_result(result_path(folder / "processed", done.name), summary.finish())
        # refused whole
        bad = folder / "rejected" / "till-export.csv"
        bad.write_text("date;amount\n2026-11-22;12.00\n", encoding="utf-8")
        write_result(
            result_path(folder / "rejected", bad.name),
            rejected_whole(bad.name, "1" * 64, "first line matches no format: 'date;amount'", store.clock.local()),
        )
        # running: 24 of 60 taken so far
        running = folder / "franchise-0522.jsonl"
        write_jsonl(running, 60, register_id="F2")
        for n, item in enumerate(load(running)[1]):
            if n == 24:
                break
            assert item.txn is not None
            store.outbox.capture(parse_transaction(item.txn), origin=f"file:{running.name}")
    store.sync_ok()
