"""The agent's Prometheus metrics (``GET /metrics``), in a registry of its own, the hub's conventions.

- ``storesync_capture_seconds`` (histogram): from the capture request received to its committed answer
  (201/200 only: the time a till waits for "saved"). Observing takes prometheus_client's own short lock
  and nothing else; no lock is held across I/O.
- ``storesync_capture_records_total``: records newly stored through the capture API since the start.
- Read from the outbox at scrape time (the same reader as ``GET /v1/status``): ``storesync_pending_records``,
  ``storesync_oldest_pending_record_age_seconds``, ``storesync_last_ack_age_seconds`` (since the last
  burst the hub acknowledged), ``storesync_sync_blocked``, ``storesync_outbox_last_seq``.
- ``storesync_build_info{service="edge-agent",version}`` (always 1). No ``*_created`` series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .status import parse_time

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
disable_created_metrics()  # Prometheus conventions (issue 13), as on the hub
CAPTURE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _StatusCollector(Collector):
    """Gauges from the status dict, read on each scrape."""

    def __init__(self, read_status: Callable[[], dict[str, Any]]) -> None:
        self.read_status = read_status

    def collect(self) -> Iterator[Metric]:
        st = self.read_status()
        now = datetime.now(UTC)
        yield GaugeMetricFamily(
            "storesync_pending_records", "Records in the outbox not yet acknowledged by the hub", st["pending"]
        )
        yield GaugeMetricFamily("storesync_outbox_last_seq", "Highest seq stored in the outbox", st["last_seq"])
        oldest = GaugeMetricFamily(
            "storesync_oldest_pending_record_age_seconds", "How long the oldest record not at the hub has waited"
        )
        oldest.add_metric([], float(st["oldest_pending_age_s"] or 0.0))
        yield oldest
        acked = parse_time(st.get("last_success_at"))
        if acked is not None:  # never acknowledged: no sample rather than a made-up age
            yield GaugeMetricFamily(
                "storesync_last_ack_age_seconds",
                "Seconds since the hub last acknowledged a burst",
                max(0.0, (now - acked).total_seconds()),
            )
        yield GaugeMetricFamily(
            "storesync_sync_blocked", "1 while the hub refuses this outbox's records (a person must look)",
            1 if st.get("blocked") else 0,
        )  # fmt: skip


class AgentMetrics:
    """The capture histogram and counter, and the registry ``GET /metrics`` renders.

    Args:
        read_status: Returns :func:`edge_agent.status.compute_status`'s dict (run in a worker thread).
    """

    def __init__(self, read_status: Callable[[], dict[str, Any]] | None = None) -> None:
        from . import __version__

        self.registry = CollectorRegistry()
        r = self.registry
        self.capture_seconds = Histogram(
            "storesync_capture_seconds",
            "Time from a capture request received to its committed answer (201 or 200)",
            buckets=CAPTURE_BUCKETS,
            registry=r,
        )
        self.records = Counter("storesync_capture_records", "Records newly stored through the capture API", registry=r)
        build = Gauge("storesync_build_info", "The agent's version (always 1)", ["service", "version"], registry=r)
        build.labels("edge-agent", __version__).set(1)
        if read_status is not None:
            r.register(_StatusCollector(read_status))

    def captured(self, status: int, body: Any, seconds: float) -> None:
        """Count one answered capture request (an object or an array of them)."""
        if isinstance(body, dict) and "results" in body:  # an array: 200 with one answer per item
            statuses = [x.get("status") for x in body["results"]]
            self.records.inc(statuses.count(201))
            saved = 201 in statuses or 200 in statuses
        else:
            saved = status in (200, 201)
            if status == 201:
                self.records.inc()
        if saved:  # refused or failed requests stored nothing: not a till's wait for "saved"
            self.capture_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition format (reads the outbox: call from a worker thread)."""
        return generate_latest(self.registry)
