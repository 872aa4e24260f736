"""Forwarding: the hub's sink configuration (``hub.toml``) and the :class:`Forwarder`, which turns
stored ledger rows into canonical events and delivery rows (DESIGN §5, §6).

Per stored record, in seq order: normalize its times (store zone, the stream's clock estimate, the
burst's receive time, the previous ``occurred_at_utc`` of the same register for the DST fold), derive
its events, route each event to the configured sinks, and insert the events and one ``pending``
delivery per (sink, event). A record whose events cannot be derived (a body the agent should never
have signed) is kept in the ledger and listed in ``derive_errors``; it does not block the store.

Configuration, see docs/sinks.md::

    [delivery]
    batch_size = 500      # events per sink call
    inline_max = 100      # bursts up to this size get their events in the burst transaction
    poll_s = 0.5          # idle wait between claims (workers are also woken by ingest)
    lease_s = 60          # a claimed delivery is re-delivered after this when its worker died
    shutdown_grace_s = 10

    [[sinks]]
    name = "archive"
    kind = "jsonl"
    path = "events.jsonl" # relative paths are inside the data folder

Any sink option ``X_env = "VAR"`` takes the value of option ``X`` from environment variable ``VAR``,
so secrets need not be in the file. Values are never logged.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._exceptions import AlreadyResolved, ConfigError, DeriveStillFails, NotFound
from .config import read_toml
from .events import INVENTORY_SUFFIX, SinkConfig, StockRules, derive_events, event_json, route, source_of
from .records import DeriveFailure, validated_doc
from .sinks import KINDS, SINK_KINDS
from .storage import (
    LedgerRow,
    NewDelivery,
    NewEvent,
    StockMove,
    Storage,
    TimeFallback,
    UnitOfWork,
    Writer,
    iso_utc,
)
from .timenorm import FALLBACK_METHODS, TimePolicy, normalize_times

log = logging.getLogger("cloud_hub.forwarding")

# Every option each sink kind reads (cloud_hub/sinks/*): anything else in a [[sinks]] table is a typo.
KNOWN_OPTIONS: dict[str, frozenset[str]] = {
    "jsonl": frozenset({"path", "fsync"}),
    "webhook": frozenset({"url", "secret", "mode", "concurrency", "headers", "timeout_s"}),
    "nats": frozenset({"servers", "subject_prefix", "stream", "ensure_stream", "duplicate_window_s", "timeout_s"}),
    "erpnext": frozenset(
        {
            "url",
            "api_key",
            "api_secret",
            "company",
            "customer",
            "warehouse",
            "warehouses",
            "modes_of_payment",
            "tax_account",
            "timezone",
            "channel_order_field",
            "timeout_s",
        }
    ),  # fmt: skip
    "shopify_inventory": frozenset(
        {
            "shop_url",
            "access_token",
            "api_version",
            "locations",
            "inventory_items",
            "reason",
            "max_changes",
            "window_s",
            "timeout_s",
        }
    ),  # fmt: skip
}
DEFAULT_SINKS: list[dict[str, Any]] = [{"name": "events", "kind": "jsonl", "role": "archive", "path": "events.jsonl"}]


@dataclass(frozen=True)
class DeliverySettings:
    """Worker settings (the ``[delivery]`` table).

    Attributes:
        batch_size: Most deliveries one sink call carries.
        inline_max: Largest burst whose events are derived inside the burst transaction; larger
            bursts (catch-up) are derived by the workers right after, in order.
        poll_s: Idle wait between claims when nothing is due.
        lease_s: How long a claim holds its rows; after a crash they are delivered again then.
        shutdown_grace_s: How long a stopping worker lets its current call finish.
    """

    batch_size: int = 500
    inline_max: int = 100
    poll_s: float = 0.5
    lease_s: float = 60.0
    shutdown_grace_s: float = 10.0

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], where: str) -> DeliverySettings:
        """Build from the ``[delivery]`` table.

        Raises:
            ConfigError: naming the bad field.
        """
        unknown = set(doc) - {"batch_size", "inline_max", "poll_s", "lease_s", "shutdown_grace_s"}
        if unknown:
            raise ConfigError(f"{where}: [delivery] has unknown field {sorted(unknown)[0]!r}")
        try:
            out = cls(
                batch_size=int(doc.get("batch_size", cls.batch_size)),
                inline_max=int(doc.get("inline_max", cls.inline_max)),
                poll_s=float(doc.get("poll_s", cls.poll_s)),
                lease_s=float(doc.get("lease_s", cls.lease_s)),
                shutdown_grace_s=float(doc.get("shutdown_grace_s", cls.shutdown_grace_s)),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: [delivery]: {exc}") from None
        if not 1 <= out.batch_size <= 10_000:
            raise ConfigError(f"{where}: [delivery] batch_size must be between 1 and 10000")
        if out.inline_max < 0:
            raise ConfigError(f"{where}: [delivery] inline_max must be 0 or more")
        if out.poll_s <= 0 or out.lease_s <= 0 or out.shutdown_grace_s < 0:
            raise ConfigError(f"{where}: [delivery] poll_s and lease_s must be > 0, shutdown_grace_s ≥ 0")
        return out


def _resolve_env(doc: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(doc)
    name = doc.get("name", "?")
    for key, value in doc.items():
        if not key.endswith("_env") or key in ("name", "kind"):
            continue
        target = key[: -len("_env")]
        if target in doc:
            raise ConfigError(f"{where}: sink {name}: give either {target!r} or {key!r}, not both")
        if not isinstance(value, str) or value not in os.environ:
            raise ConfigError(f"{where}: sink {name}: {key} names environment variable {value!r}, which is not set")
        out[target] = os.environ[value]
        del out[key]
    return out


def sink_from_dict(doc: Mapping[str, Any], data_dir: Path, where: str) -> SinkConfig:
    """One validated sink: kind, required options, ``*_env`` indirection, jsonl path in the data folder.

    Raises:
        ConfigError: naming the sink and the field.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: every [[sinks]] entry must be a table")
    resolved = _resolve_env(doc, where)
    try:
        cfg = SinkConfig.from_dict(resolved)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if cfg.kind not in KINDS:
        raise ConfigError(f"{where}: sink {cfg.name}: kind must be one of {', '.join(KINDS)}, not {cfg.kind!r}")
    unknown = sorted(set(cfg.options) - KNOWN_OPTIONS[cfg.kind])
    if unknown:
        import difflib

        known = sorted(KNOWN_OPTIONS[cfg.kind] | {"name", "kind", "role", "types", "channel", "ordering", "retry"})
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: sink {cfg.name}: unknown key {unknown[0]!r}{hint}; known keys: {', '.join(known)}")
    for key in SINK_KINDS[cfg.kind].required:
        if not cfg.options.get(key):
            raise ConfigError(f"{where}: sink {cfg.name}: kind {cfg.kind} needs {key!r} (or {key}_env)")
    if cfg.kind == "webhook" and cfg.options.get("mode", "structured") not in ("structured", "binary"):
        raise ConfigError(f"{where}: sink {cfg.name}: mode must be 'structured' or 'binary'")
    if cfg.kind == "jsonl":
        path = Path(str(cfg.options["path"]))
        options = dict(cfg.options, path=str(path if path.is_absolute() else data_dir / path))
        cfg = SinkConfig(cfg.name, cfg.kind, cfg.role, cfg.types, cfg.channel, cfg.ordering, cfg.retry, options)
    return cfg


def time_policy_from_dict(doc: Mapping[str, Any], where: str) -> TimePolicy:
    """The ``[time]`` table: ``max_pos_skew_hours`` (live capture window, default 24) and
    ``max_batch_age_days`` (how much older than its file a batch-file time may be, default 35).

    Raises:
        ConfigError: naming the bad field.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: [time] must be a table")
    unknown = set(doc) - {"max_pos_skew_hours", "max_batch_age_days", "clock_tolerance_ms"}
    if unknown:
        raise ConfigError(f"{where}: [time] has unknown field {sorted(unknown)[0]!r}")
    base = TimePolicy()
    values: dict[str, float] = {}
    for key, scale, attr, default in (
        ("max_pos_skew_hours", 3600.0, "max_pos_skew_s", base.max_pos_skew_s),
        ("max_batch_age_days", 86400.0, "max_batch_age_s", base.max_batch_age_s),
        ("clock_tolerance_ms", 1.0, "tolerance_ms", base.tolerance_ms),
    ):
        raw = doc.get(key)
        if raw is None:
            values[attr] = default
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
            raise ConfigError(f"{where}: [time] {key} must be a number greater than 0, not {raw!r}")
        values[attr] = float(raw) * scale
    return TimePolicy(**values)


def stock_rules_from_dict(doc: Mapping[str, Any], where: str) -> StockRules:
    """The ``[stock]`` table: ``non_stock_skus``, glob patterns of SKUs that never move stock.

    Raises:
        ConfigError: naming the bad field.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: [stock] must be a table")
    unknown = set(doc) - {"non_stock_skus"}
    if unknown:
        raise ConfigError(f"{where}: [stock] has unknown field {sorted(unknown)[0]!r}")
    patterns = doc.get("non_stock_skus", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise ConfigError(f"{where}: [stock] non_stock_skus must be a list of non-empty SKU patterns")
    return StockRules(tuple(patterns))


@dataclass(frozen=True)
class ForwardingConfig:
    """Sinks, delivery settings, time thresholds and stock rules of one hub."""

    sinks: tuple[SinkConfig, ...]
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    source: str = "(embedded default)"
    time: TimePolicy = field(default_factory=TimePolicy)
    stock: StockRules = field(default_factory=StockRules)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], data_dir: Path, source: str = "(embedded default)") -> ForwardingConfig:
        """Validate a parsed ``hub.toml``.

        Raises:
            ConfigError: naming the sink and field.
        """
        unknown = set(doc) - {
            "hub",
            "sinks",
            "delivery",
            "storage",
            "time",
            "stock",
        }  # [hub]: .settings, [storage]: .config
        if unknown:
            raise ConfigError(
                f"{source}: unknown table {sorted(unknown)[0]!r}"
                " (expected [hub], [[sinks]], [delivery], [storage], [time] and [stock])"
            )
        raw = doc.get("sinks", [])
        if not isinstance(raw, list):
            raise ConfigError(f"{source}: sinks must be an array of tables ([[sinks]])")
        sinks = tuple(sink_from_dict(s, data_dir, source) for s in raw)
        names = [s.name for s in sinks]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"{source}: sink name {dup!r} is used twice")
        delivery = doc.get("delivery", {})
        if not isinstance(delivery, Mapping):
            raise ConfigError(f"{source}: [delivery] must be a table")
        return cls(
            sinks,
            DeliverySettings.from_dict(delivery, source),
            source,
            time_policy_from_dict(doc.get("time", {}), source),
            stock_rules_from_dict(doc.get("stock", {}), source),
        )

    def sink(self, name: str) -> SinkConfig | None:
        return next((s for s in self.sinks if s.name == name), None)


def load_config(path: Path | None, data_dir: Path) -> ForwardingConfig:
    """``hub.toml`` at ``path``, or the embedded default (one jsonl sink, DATA/events.jsonl).

    Raises:
        ConfigError: unreadable file, bad TOML, or an invalid sink or setting.
    """
    if path is None:
        return ForwardingConfig.from_doc({"sinks": DEFAULT_SINKS}, data_dir)
    if not Path(path).exists():
        raise ConfigError(f"config file {path} does not exist")
    doc = read_toml(path)
    if "sinks" not in doc:  # a hub.toml with only [hub] (or [delivery]) keeps the default sink; `sinks = []` for none
        doc = {**doc, "sinks": DEFAULT_SINKS}
    return ForwardingConfig.from_doc(doc, data_dir, str(path))


# ------------------------------------------------------------------------------------------- hook


@dataclass
class _Plan:
    """What deriving a run of records of one stream writes."""

    store_id: str
    epoch: int
    through: int
    events: list[NewEvent] = field(default_factory=list)
    deliveries: list[NewDelivery] = field(default_factory=list)
    registers: dict[str, str] = field(default_factory=dict)
    errors: list[tuple[int, int, str, str]] = field(default_factory=list)
    moves: dict[tuple[str, str], StockMove] = field(default_factory=dict)
    fallbacks: list[TimeFallback] = field(default_factory=list)


class Forwarder:
    """Derives events and delivery rows from ledger rows, in seq order per stream.

    As the ``after_store`` hook it works inside the burst's transaction when the burst holds at most
    ``inline_max`` records and the stream's events are derived up to the burst (the usual case of a
    store that is online). A larger burst (a catch-up backlog) is left to :meth:`catch_up`, which the
    delivery workers run in their own short transactions: deriving costs ~10× what storing does, and
    doing it inline would cut catch-up ingest from >20,000 to ~4,000 records/s. Either way the
    per-stream cursor ``derived_through`` moves in the transaction that writes the events, so every
    stored record gets its events exactly once, crash or not.

    Args:
        sinks: Configured sinks (routing only; nothing is sent here).
        inline_max: Largest burst derived inside the burst transaction (0: always deferred).
        policy: Time normalization thresholds.
        notify: Called after rows were added or deferred (wakes in-process workers).
        now: Unix time source for ``next_attempt_at``.
    """

    def __init__(
        self,
        sinks: Sequence[SinkConfig],
        *,
        inline_max: int = 100,
        policy: TimePolicy | None = None,
        stock: StockRules | None = None,
        notify: Callable[[], None] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.sinks = list(sinks)
        self.inline_max = inline_max
        self.policy = policy or TimePolicy()
        self.stock = stock or StockRules()
        self.notify = notify
        self.now = now
        self._tz: dict[str, str] = {}
        self.derive_failures = 0

    @classmethod
    def from_config(cls, config: ForwardingConfig, **kw: Any) -> Forwarder:
        """A forwarder with the sinks, inline limit, time policy and stock rules of ``config``."""
        return cls(config.sinks, inline_max=config.delivery.inline_max, policy=config.time, stock=config.stock, **kw)

    def __call__(self, tx: UnitOfWork, writer: Writer, rows: Sequence[LedgerRow]) -> None:
        if not rows:
            return
        if len(rows) <= self.inline_max and tx.forward_cursor(writer.store_id, writer.epoch) == rows[0].seq - 1:
            self.forward(tx, writer.store_id, writer.epoch, rows)
        if self.notify is not None:
            self.notify()

    def catch_up(self, storage: Storage, limit: int = 500) -> int:
        """Derive events for up to ``limit`` records of the first lagging stream; how many were done.

        The deriving runs on a read snapshot; only the insert takes the write lock (and is dropped
        when another worker moved the cursor meanwhile), so ingest is never held up by it.
        """
        with storage.snapshot() as tx:
            lag = tx.forward_lag()
            if not lag:
                return 0
            store_id, epoch, derived, _acked = lag[0]
            rows = tx.ledger_page(store_id, epoch, derived, limit)
            if not rows:
                return 0
            plan = self._plan(tx, store_id, epoch, rows)

        def write(tx: UnitOfWork) -> int:
            if tx.forward_cursor(store_id, epoch) != derived:  # read under the cursor's lock
                return 0  # another worker derived them first
            self._write(tx, plan)
            return len(rows)

        return storage.run(write)

    def _zone(self, tx: UnitOfWork, store_id: str) -> str:
        tz = self._tz.get(store_id)
        if tz is None:
            store = tx.get_store(store_id)
            tz = store.tz if store is not None else "UTC"
            self._tz[store_id] = tz  # a store's zone never changes (store add refuses another zone)
        return tz

    def forward(self, tx: UnitOfWork, store_id: str, epoch: int, rows: Sequence[LedgerRow]) -> None:
        """Events and deliveries of ``rows`` (consecutive, right after the cursor); moves the cursor."""
        self._write(tx, self._plan(tx, store_id, epoch, rows))

    def rederive(self, storage: Storage, error_id: int) -> int:
        """Derive the events of a record listed in ``derive_errors`` after its cause was fixed.

        Exactly once: the events, their deliveries and ``resolved_at`` are written in one
        transaction, and a resolved error is refused. The fold of an ambiguous local time is chosen
        from the capture time alone (the register's later records were derived meanwhile).

        Returns:
            How many events were derived.

        Raises:
            NotFound: no such derive error, or its record is not in the ledger.
            AlreadyResolved: it was re-derived before.
            DeriveStillFails: deriving fails again (the error stays open).
        """
        with storage.transaction() as tx:
            err = tx.derive_error(error_id)
            if err is None:
                raise NotFound(f"no derive error {error_id}")
            if err.resolved_at is not None:
                raise AlreadyResolved(f"derive error {error_id} was re-derived at {err.resolved_at}")
            rows = tx.ledger_page(err.store_id, err.epoch, err.seq - 1, 1)
            if not rows or rows[0].seq != err.seq:
                raise NotFound(f"record {err.store_id}/{err.epoch}/{err.seq} is not in the ledger")
            plan = self._plan(tx, err.store_id, err.epoch, rows, seq_order=False)
            if plan.errors:
                raise DeriveStillFails(f"record {err.store_id}/{err.epoch}/{err.seq}: {plan.errors[0][2]}")
            self._write(tx, plan, move_cursor=False)
            tx.resolve_derive_error(error_id, iso_utc(datetime.now(UTC)))
        if self.notify is not None:
            self.notify()
        return len(plan.events)

    def _plan(
        self, tx: UnitOfWork, store_id: str, epoch: int, rows: Sequence[LedgerRow], *, seq_order: bool = True
    ) -> _Plan:
        """Derive everything to write for ``rows`` (reads only).

        Every body is decoded strictly and its transaction validated (:func:`validated_doc`); the
        events carry the validated canonical transaction. ``seq_order=False`` (re-deriving one
        record out of order) neither reads nor moves the registers' last times.
        """
        plan = _Plan(store_id, epoch, rows[-1].seq)
        tz = self._zone(tx, store_id)
        stream = tx.get_stream(store_id, epoch)
        clock = stream.clock if stream is not None else None
        source = source_of(store_id)
        docs: list[tuple[LedgerRow, dict[str, Any] | None, str]] = []
        for row in rows:
            try:
                # In seq order the rows were checked for card numbers by this hub's ingest; a re-derived
                # record may predate that check, so it is scanned again.
                checked = validated_doc(row.body, scan_cards=not seq_order)
                docs.append((row, checked, checked["txn"]["register_id"]))
            except DeriveFailure as exc:
                docs.append((row, None, str(exc)))
        valid = [(doc, reg) for _, doc, reg in docs if doc is not None]
        prev = tx.register_times(store_id, [reg for _, reg in valid]) if seq_order else {}
        voided_keys = [(reg, d["txn"]["voided_txn_id"]) for d, reg in valid if d["kind"] == "void"]
        known = tx.stock_moves(store_id, voided_keys) if voided_keys else {}
        moves, events, deliveries = plan.moves, plan.events, plan.deliveries
        due = self.now()
        for row, doc, reg in docs:
            try:
                if doc is None:
                    raise ValueError(reg)
                try:
                    norm = normalize_times(
                        doc,
                        tz=tz,
                        clock=clock,
                        hub_received_at=row.received_at,
                        prev_occurred_at_utc=prev.get(reg),
                        policy=self.policy,
                    )
                except (ValueError, KeyError) as exc:
                    raise DeriveFailure("bad_time", f"{type(exc).__name__}: {exc}") from None
                txn = doc["txn"]
                voided: StockMove | None = None
                if doc["kind"] == "void":
                    vkey = (reg, txn["voided_txn_id"])
                    voided = moves.get(vkey) or known.get(vkey)
                    if voided is None:
                        log.warning("void %s/%s of %s: the voided sale is unknown here", reg, txn["txn_id"], vkey[1])
                derived = derive_events(
                    doc,
                    norm,
                    check=False,
                    stock=self.stock,
                    voided=None if voided is None else {"event_id": voided.event_id, "adjustments": voided.adjustments},
                )
                texts = [event_json(e) for e in derived]
            except Exception as exc:  # noqa: BLE001 - one bad record must not block its store
                self.derive_failures += 1
                if isinstance(exc, DeriveFailure):
                    reason = str(exc)[:300]
                elif doc is None:
                    reason = reg[:300]
                else:
                    reason = f"internal: {type(exc).__name__}: {exc}"[:300]
                log.warning("no events for store=%s epoch=%s seq=%s: %s", store_id, row.epoch, row.seq, reason)
                plan.errors.append((row.epoch, row.seq, reason, row.received_at))
                continue
            if seq_order:
                prev[reg] = plan.registers[reg] = norm["occurred_at_utc"]
            self._book(plan, row, doc, norm, derived, voided)
            for event, text in zip(derived, texts, strict=True):
                index = len(events)
                events.append(
                    NewEvent(source, event["id"], store_id, row.epoch, row.seq, event["type"], text, row.received_at)
                )
                for sink in route(self.sinks, event):
                    deliveries.append(NewDelivery(index, sink, store_id, due))
        return plan

    @staticmethod
    def _book(
        plan: _Plan,
        row: LedgerRow,
        doc: Mapping[str, Any],
        norm: Mapping[str, Any],
        derived: Sequence[Mapping[str, Any]],
        voided: StockMove | None,
    ) -> None:
        """Keep what later records and operators need: stock movements and untrusted times."""
        txn = doc["txn"]
        reg = txn["register_id"]
        if doc["kind"] in ("sale", "return"):
            inv = next((e for e in derived if str(e["id"]).endswith(INVENTORY_SUFFIX)), None)
            adjustments = list(inv["data"]["adjustments"]) if inv is not None else []
            plan.moves[(reg, txn["txn_id"])] = StockMove(
                plan.store_id, reg, txn["txn_id"], row.epoch, row.seq, inv["id"] if inv else None, adjustments
            )
        elif voided is not None and voided.adjustments:
            # Reversed once: a second void of the same sale moves nothing.
            plan.moves[(reg, voided.txn_id)] = StockMove(
                voided.store_id, reg, voided.txn_id, voided.epoch, voided.seq, voided.event_id, []
            )
        quality = norm["time_quality"]
        if quality["method"] in FALLBACK_METHODS:
            reason = ",".join(f for f in quality["flags"] if f.startswith(("pos_", "batch_")))
            plan.fallbacks.append(
                TimeFallback(
                    0,
                    plan.store_id,
                    row.epoch,
                    row.seq,
                    reg,
                    txn["txn_id"],
                    txn["occurred_at"],
                    norm["occurred_at_utc"],
                    quality["method"],
                    reason,
                    row.received_at,
                )  # fmt: skip
            )

    def _write(self, tx: UnitOfWork, plan: _Plan, *, move_cursor: bool = True) -> None:
        for epoch, seq, reason, at in plan.errors:
            tx.record_derive_error(plan.store_id, epoch, seq, reason, at)
        tx.insert_events(plan.events, plan.deliveries)
        if plan.moves:
            tx.record_stock_moves(list(plan.moves.values()))
        if plan.fallbacks:
            tx.record_time_fallbacks(plan.fallbacks)
        if plan.registers:
            tx.set_register_times(plan.store_id, plan.registers)
        if move_cursor:
            tx.set_forward_cursor(plan.store_id, plan.epoch, plan.through)
