"""Prometheus metrics of one hub (``GET /metrics``), in a registry of its own (no global state).

Counters are kept in process; gauges (open deliveries per sink and state, oldest pending age,
per-store lag) are read from the database at scrape time, so every replica reports the same truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .books import sync_lag_s
from .sinks import Outcome
from .storage import DeriveError, SinkCounts, Storage, StoreSummary

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Prometheus conventions (issue 13): no `*_created` series next to every counter, ages as `*_age_seconds`.
disable_created_metrics()
BURST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _age(iso: str | None, now: float) -> float:
    if not iso:
        return 0.0
    return max(0.0, now - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


# The gauges read from the database: key -> (name, help, labels). Order is the order of the scrape.
_GAUGES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "open": (
        "storesync_deliveries",
        "Open deliveries per sink and state (pending, in_flight, dead)",
        ("sink", "state"),
    ),
    "dead": ("storesync_dead_letters", "Dead-lettered deliveries per sink", ("sink",)),
    "pending": ("storesync_pending_deliveries", "Pending + in-flight deliveries per sink", ("sink",)),
    "oldest": (
        "storesync_oldest_pending_age_seconds",
        "Age of the oldest pending delivery per sink (the sink's delivery lag)",
        ("sink",),
    ),
    "sink_lag": (
        "storesync_sink_delivery_lag_seconds",
        "Wait of the oldest event not yet delivered to the sink (pending or in flight); 0 when caught up",
        ("sink",),
    ),
    "acked": ("storesync_store_acked_through", "Highest seq stored per store (newest epoch)", ("store",)),
    "seen": ("storesync_store_last_seen_age_seconds", "Seconds since the store's last burst", ("store",)),
    "lag": ("storesync_store_open_deliveries", "Deliveries of the store not yet done (delivery lag)", ("store",)),
    "underived": (
        "storesync_store_underived_records",
        "Stored records whose events are not derived yet",
        ("store",),
    ),
    "derive": (
        "storesync_derive_errors",
        "Stored records whose events could not be derived (open, not yet re-derived), by store and reason",
        ("store", "reason"),
    ),
    "fallbacks": ("storesync_time_fallbacks", "Records whose POS time was not trusted and fell back", ("store",)),
    "backlog": (
        "storesync_store_backlog_records",
        "Records the store's agent holds beyond its last burst",
        ("store",),
    ),
    "sync_lag": (
        "storesync_store_sync_lag_seconds",
        "How long the store's oldest record not yet at the hub has waited (0: none waiting)",
        ("store",),
    ),
    "blocked": (
        "storesync_store_blocked",
        "1 while the store's agent reports its sync blocked (e.g. outbox damaged), by store and reason code",
        ("store", "code"),
    ),
}


class _StoreTables(NamedTuple):
    """What one scrape reads of the stores, in one snapshot."""

    stores: list[StoreSummary]
    by_store: dict[str, int]
    behind: list[tuple[str, int, int, int]]
    errors: list[DeriveError]
    fell_back: dict[str, int]


def _sink_samples(g: dict[str, GaugeMetricFamily], counts: list[SinkCounts], now: float) -> None:
    for c in counts:
        for state in ("pending", "in_flight", "dead"):
            g["open"].add_metric([c.sink, state], c.counts.get(state, 0))
        g["dead"].add_metric([c.sink], c.counts.get("dead", 0))
        g["pending"].add_metric([c.sink], c.counts.get("pending", 0) + c.counts.get("in_flight", 0))
        g["oldest"].add_metric([c.sink], _age(c.oldest_pending_at, now))
        g["sink_lag"].add_metric([c.sink], _age(c.oldest_pending_at, now))


def _store_samples(g: dict[str, GaugeMetricFamily], t: _StoreTables, now: float) -> None:
    by_reason: dict[tuple[str, str], int] = {}
    for e in t.errors:
        by_reason[(e.store_id, e.code)] = by_reason.get((e.store_id, e.code), 0) + 1
    for (store_id, code), n in sorted(by_reason.items()):
        g["derive"].add_metric([store_id, code], n)
    under: dict[str, int] = {}
    for store_id, _epoch, derived, acked_through in t.behind:
        under[store_id] = under.get(store_id, 0) + acked_through - derived
    for s in t.stores:
        g["acked"].add_metric([s.store_id], s.acked_through)
        if s.last_seen_at:
            g["seen"].add_metric([s.store_id], _age(s.last_seen_at, now))
        g["lag"].add_metric([s.store_id], t.by_store.get(s.store_id, 0))
        g["underived"].add_metric([s.store_id], under.get(s.store_id, 0))
        g["fallbacks"].add_metric([s.store_id], t.fell_back.get(s.store_id, 0))
        if s.backlog is not None:
            if s.backlog.get("blocked"):
                g["blocked"].add_metric([s.store_id, str(s.backlog["blocked"])], 1)
            g["backlog"].add_metric([s.store_id], int(s.backlog.get("pending") or 0))
            waited = sync_lag_s(s.backlog, s.last_seen_at, now)
            if waited is not None:
                g["sync_lag"].add_metric([s.store_id], waited)


class _StorageCollector(Collector):
    """Gauges read from the database on each scrape."""

    def __init__(self, storage: Storage, sinks: Sequence[str]) -> None:
        self.storage = storage
        self.sinks = list(sinks)

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        g = {key: GaugeMetricFamily(name, doc, labels=list(labels)) for key, (name, doc, labels) in _GAUGES.items()}
        with self.storage.snapshot() as tx:
            counts = tx.sink_counts(include_done=False)
            tables = _StoreTables(
                tx.store_summaries(),
                tx.open_by_store(),
                tx.forward_lag(),
                tx.derive_errors(open_only=True),
                tx.time_fallback_counts(),
            )
        known = {c.sink for c in counts}
        counts += [SinkCounts(name, {}, None) for name in self.sinks if name not in known]
        _sink_samples(g, counts, now)
        _store_samples(g, tables, now)
        yield from g.values()


class _WithoutStores(Collector):
    """Every family of ``source`` with the samples labelled ``store`` removed (families left empty dropped)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            samples = [x for x in family.samples if "store" not in x.labels]
            if not samples and family.samples:
                continue
            family.samples = samples
            yield family


class HubMetrics:
    """The hub's counters and its registry.

    Args:
        storage: When given, database gauges are collected on each scrape.
        sinks: Configured sink names (reported with zeros when they have nothing open).
    """

    def __init__(self, storage: Storage | None = None, sinks: Sequence[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self._public_registry: CollectorRegistry | None = None
        r = self.registry
        self.bursts = Counter("storesync_ingest_bursts", "Bursts answered, by HTTP status", ["status"], registry=r)
        self.records = Counter("storesync_ingest_records", "Records newly stored", registry=r)
        self.duplicates = Counter("storesync_ingest_duplicates", "Resent records already held", registry=r)
        self.conflicts = Counter(
            "storesync_ingest_conflicts", "Resent records that differ from the held one", registry=r
        )
        self.refusals = Counter("storesync_ingest_refusals", "Records refused (422)", registry=r)
        self.burst_seconds = Histogram(
            "storesync_ingest_burst_duration_seconds",
            "Time to verify, store and answer one burst",
            ["status"],
            buckets=BURST_BUCKETS,
            registry=r,
        )
        from . import __version__

        build = Gauge("storesync_build_info", "The hub's version (always 1)", ["service", "version"], registry=r)
        build.labels("cloud-hub", __version__).set(1)
        self.attempts = Counter("storesync_delivery_attempts", "Events handed to a sink", ["sink"], registry=r)
        self.outcomes = Counter(
            "storesync_delivery_outcomes", "Delivery results by sink and outcome", ["sink", "outcome"], registry=r
        )
        if storage is not None:
            r.register(_StorageCollector(storage, sinks))

    def burst(self, status: int, code: str | None, stored: int, duplicates: int, seconds: float | None = None) -> None:
        """Count one answered burst."""
        if seconds is not None:
            self.burst_seconds.labels(str(status)).observe(seconds)
        self.bursts.labels(str(status)).inc()
        self.records.inc(stored)
        self.duplicates.inc(duplicates)
        if code == "conflict":
            self.conflicts.inc()
        elif code == "record_refused":
            self.refusals.inc()

    def delivered(self, sink: str, outcomes: Sequence[Outcome]) -> None:
        """Count the attempted deliveries of one sink call."""
        if not outcomes:
            return
        self.attempts.labels(sink).inc(len(outcomes))
        for status in ("ok", "transient", "permanent"):
            n = sum(1 for o in outcomes if o.status == status)
            if n:
                self.outcomes.labels(sink, status).inc(n)

    def render(self, per_store: bool = True) -> bytes:
        """The text exposition format; without ``per_store``, every series labelled by store is left out.

        ``GET /metrics`` without the admin token gets only fleet-wide series (docs/security.md): which stores
        exist and how far each got is for head office, not for whoever can reach the port.
        """
        return generate_latest(self.registry if per_store else self._public)

    @property
    def _public(self) -> CollectorRegistry:
        if self._public_registry is None:
            reg = CollectorRegistry(auto_describe=False)
            reg.register(_WithoutStores(self.registry))
            self._public_registry = reg
        return self._public_registry
