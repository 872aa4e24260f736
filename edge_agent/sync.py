"""Sync passes: send pending records to the hub in idempotent bursts (docs/protocol.md §5–§7).

A pass sends bursts of consecutive records from ``acked_through + 1`` until nothing is pending or an
error stops it, with one burst in flight. Every answer is handled as the protocol says:

- 200: the receipt must verify and match our chain, then ``acked_through`` advances.
- 409 ``gap``: rewind to ``expected_seq`` when those records are still here, else an unrecoverable gap.
- 409 ``conflict``, 422, 401, 403 and other 4xx: nothing is deleted; the agent is *blocked* and
  retries every ``blocked_retry`` seconds.
- 413 or a timeout: the burst size is halved.
- 429/503: wait ``Retry-After``; network errors and other 5xx: exponential backoff with full jitter.

With several hub URLs (replicas of one hub, docs/replicas.md) the agent stays on one until it fails: a
hub it cannot connect to is skipped at once for the next URL in the same pass; any other failure
(timeout, dropped connection, 5xx, 429) moves to the next URL for the next attempt, after the usual backoff.
While backing off, :meth:`Syncer.probe_tick` (run every ``probe_interval`` by the scheduler) asks
``GET /healthz`` whether a hub we could not reach answers again, and if so ends the wait at once, so
an outage costs no more than a probe interval after the hub is back. A ``Retry-After`` is never cut
short, and a hub that answers ``/healthz`` but fails bursts keeps its exponential backoff.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sync_protocol import keys
from sync_protocol._exceptions import KeyFileError
from sync_protocol.clock import ClockSample, estimate, iso, now_iso
from sync_protocol.record import SignedRecord
from sync_protocol.wire import BacklogReport, BurstRequest, ClockReport, WireRecord

from ._exceptions import (
    AgentError,
    BadReceipt,
    ConfigError,
    HubRejected,
    HubUnavailable,
    OutboxDamaged,
    UnrecoverableGap,
)
from .config import AgentConfig, check_hub_transport, hub_tls
from .status import parse_time
from .store import Identity, Outbox
from .transport import HubClient, hub_answers, monotonic_ms

log = logging.getLogger(__name__)

CLOCK_WINDOW = timedelta(hours=1)
IDLE_PROBE_EVERY = timedelta(seconds=60)
MAX_REWINDS_PER_PASS = 3


@dataclass(frozen=True)
class PassResult:
    """What one sync pass did.

    Attributes:
        result: ``ok``, ``offline``, ``blocked``, ``waiting`` (backoff not over), ``busy`` (another
            pass holds the lock) or ``not_enrolled``.
        sent: Records the hub newly stored during this pass.
        acked_through: Our ``acked_through`` after the pass.
        pending: Records still waiting.
        message: Human explanation for anything but ``ok``.
        retry_in: Seconds until the next attempt, when one is scheduled.
    """

    result: str
    sent: int = 0
    acked_through: int = 0
    pending: int = 0
    message: str | None = None
    retry_in: float | None = None


@dataclass
class _Progress:
    """What the current pass achieved so far (kept across a failover)."""

    sent: int = 0
    contacted: bool = False
    rewinds: int = 0


def _intact(records: list[SignedRecord], acked: int, head_seq: int, limit: int) -> list[SignedRecord]:
    """The leading run of ``records`` that is ``acked + 1, acked + 2, …`` with none missing.

    Raises:
        OutboxDamaged: when not even the first record is there (or records up to the writer head are
            missing), naming the first missing seq. Nothing is deleted; nothing past it is sent.
    """
    for i, rec in enumerate(records):
        if rec.seq != acked + 1 + i:
            if i > 0:
                return records[:i]  # send what is intact; the next round blocks at the hole
            raise OutboxDamaged(
                acked + 1, f"outbox damaged at seq {acked + 1}: record missing (next stored is {rec.seq})"
            )
    last = records[-1].seq if records else acked
    if len(records) < limit and last < head_seq:
        if records:
            return records
        raise OutboxDamaged(
            last + 1, f"outbox damaged at seq {last + 1}: records up to the head (seq {head_seq}) are missing"
        )
    return records


@contextmanager
def pass_lock(path: os.PathLike[str] | str) -> Iterator[bool]:
    """An exclusive, non-blocking file lock so only one process syncs a store at a time."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Syncer:
    """Runs sync passes for one agent. Use from one thread at a time.

    Args:
        config: Agent settings (timeouts, backoff, burst size).
        outbox: The syncer's own outbox connection.
        key: Our signing key (signs the HTTP requests).
        rng: Random source in [0, 1) for jitter.
        transport: The httpx transport of every call to the hub; None for the network (tests pass
            ``httpx.MockTransport`` to drive the state machine in-process).
    """

    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        key: keys.Ed25519PrivateKey,
        *,
        rng: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.key = key
        self.key_id = keys.key_id(key)
        self._rng = rng
        self._transport = transport
        self._client: HubClient | None = None
        self._probed = False
        self._last_contact: datetime | None = None
        self._samples: deque[ClockSample] = deque()
        # In-memory backoff picture for the reachability probe (monotonic seconds).
        self._backing_off = False
        self._hub_down = False
        self._backoff_until = 0.0
        self._retry_after_until = 0.0
        self._due_mono: float | None = None  # monotonic time of the next attempt, when this process set it
        self._urls: tuple[str, ...] = ()
        self._url_index = 0
        state = outbox.sync_state()
        size = state.get("burst_size")
        self.burst_size = int(size) if size else config.burst_records
        self.burst_size = max(1, min(self.burst_size, config.burst_records))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- one pass -------------------------------------------------------------------------------

    def run_pass(self, *, force: bool = False) -> PassResult:
        """Sync now: probe at first, then send bursts until nothing is pending or an error stops us.

        Args:
            force: Ignore the backoff / blocked wait (``POST /v1/sync``, ``edge-agent sync``).
        """
        ident = self.outbox.identity()
        if ident is None:
            return PassResult("not_enrolled", message="agent is not enrolled")
        with pass_lock(self.config.lock_path) as locked:
            if not locked:
                return self._result("busy", ident, message="another process is syncing this outbox")
            return self._locked_pass(ident, force)

    def _locked_pass(self, ident: Identity, force: bool) -> PassResult:
        state = self.outbox.sync_state()
        now = datetime.now(UTC)
        wait = self._wait_left(state, now)
        self._set_urls(ident)
        if not force and wait > 0:
            if not self._backing_off and state.get("last_sync_result") == "offline":
                # Backoff from before a restart: let the probe end it as soon as the hub answers.
                self._backing_off, self._hub_down = True, True
                self._backoff_until = time.monotonic() + wait
                self._due_mono = self._backoff_until
            return self._result("waiting", ident, retry_in=wait)
        self._backing_off = False
        self._due_mono = None
        if ident.key_id != self.key_id:
            message = f"enrolled key is {ident.key_id} but this process signs with {self.key_id}; restart edge-agent"
            return self._block(ident, "key_changed", message, None, state)
        urls = self._set_urls(ident)
        if not urls:
            return self._block(ident, "no_hub", "no hub URL is configured; run 'edge-agent enroll'", None, state)
        try:
            hub_key = keys.public_from_hex(ident.hub_public_key)
        except KeyFileError:
            return self._block(ident, "no_hub_key", "the hub key from enrollment is missing or malformed", None, state)
        progress = _Progress()
        tried = 1
        while True:
            try:
                self._connect(urls[self._url_index])
            except ConfigError as exc:  # plain http:// beyond loopback, an unloadable CA file
                return self._block(ident, "hub_transport", str(exc), None, state)
            try:
                self._send_pending(ident, hub_key, now, progress)
                break
            except HubUnavailable as exc:
                if len(urls) > 1:
                    self._fail_over(urls, exc)
                    if exc.unreachable and tried < len(urls):
                        tried += 1  # nothing reached the dead one: try the next replica at once
                        continue
                return self._offline(ident, exc, state, progress.sent)
            except HubRejected as exc:
                seq = exc.body.seq if exc.body is not None else None
                if seq is None and exc.body is not None:
                    seq = exc.body.expected_seq
                return self._block(ident, exc.error, str(exc), seq, state, status=exc.status, sent=progress.sent)
            except OutboxDamaged as exc:
                self._report_blocked(ident, hub_key, exc)
                return self._block(ident, exc.code, str(exc), exc.seq, state, sent=progress.sent)
            except UnrecoverableGap as exc:
                return self._block(ident, exc.code, str(exc), exc.seq, state, sent=progress.sent)
            except BadReceipt as exc:
                return self._block(ident, exc.code, str(exc), None, state, sent=progress.sent)
        sent, contacted = progress.sent, progress.contacted
        fields: dict[str, Any] = {
            "last_sync_result": "ok",
            "last_error": None,
            "blocked": None,
            "failures": 0,
            "next_attempt_at": None,
            "burst_size": self.burst_size,
        }
        if contacted:
            fields["last_sync_at"] = fields["last_success_at"] = now_iso()
        if state.get("last_sync_result") in ("offline", "blocked") and contacted:
            log.warning(
                "hub answers again after %s: %d records sent, acked through %d",
                state.get("last_sync_result"),
                sent,
                self.outbox.acked_through(),
            )
        if contacted or state.get("last_sync_result") != "ok" or state.get("next_attempt_at"):
            self.outbox.update_sync(**fields)
        return self._result("ok", ident, sent=sent)

    def _send_pending(
        self, ident: Identity, hub_key: keys.Ed25519PublicKey, now: datetime, progress: _Progress
    ) -> None:
        """Send bursts until nothing is pending (or one probe, when due); errors propagate."""
        while True:
            head_seq = self.outbox.head()[0]
            # An outbox that ends before what the hub acknowledged (rows deleted and the head rewritten, an
            # old backup) probes from its real end: the hub records that the chain went backwards and says so.
            acked = min(self.outbox.acked_through(), head_seq)
            records = _intact(self.outbox.pending(acked, self.burst_size), acked, head_seq, self.burst_size)
            idle_probe = self._last_contact is None or now - self._last_contact > IDLE_PROBE_EVERY
            if not records and self._probed and not idle_probe:
                return
            try:
                progress.sent += self._burst(ident, hub_key, records, acked + 1)
                progress.contacted = True
            except HubRejected as exc:
                progress.contacted = True
                if exc.error == "gap" and exc.body is not None and exc.body.expected_seq is not None:
                    progress.rewinds += 1
                    self._rewind(exc.body.expected_seq, progress.rewinds)
                    continue
                if exc.status == 413 and len(records) > 1:
                    self.burst_size = max(1, len(records) // 2)
                    continue
                raise
            self._probed = True
            if not records:
                return

    # -- several hub URLs (replicas) ------------------------------------------------------------

    def _set_urls(self, ident: Identity) -> tuple[str, ...]:
        """The hub URLs in failover order (config override, else enrollment); keeps the current one."""
        raw = self.config.hub_url or ident.hub_url
        urls = tuple(u.rstrip("/") for u in raw.split())
        if urls != self._urls:
            self._urls, self._url_index = urls, 0
        return urls

    def _connect(self, url: str) -> None:
        if self._client is None or self._client.base_url != url:
            self.close()
            check_hub_transport(url, self.config.insecure_http)
            self._client = HubClient(
                url,
                connect_timeout=self.config.connect_timeout,
                read_timeout=self.config.read_timeout,
                verify=hub_tls(self.config),
                transport=self._transport,
            )

    def _fail_over(self, urls: tuple[str, ...], exc: HubUnavailable) -> None:
        """Move to the next hub URL for the next attempt (a burst is idempotent: a resend is a duplicate)."""
        old = urls[self._url_index]
        self._url_index = (self._url_index + 1) % len(urls)
        log.warning("hub %s unavailable (%s); failing over to %s", old, exc, urls[self._url_index])

    @property
    def hub_url(self) -> str:
        """The hub URL the next burst goes to ("" before the first pass)."""
        return self._urls[self._url_index] if self._urls else ""

    def _rewind(self, expected_seq: int, rewinds: int) -> None:
        if rewinds > MAX_REWINDS_PER_PASS:
            raise UnrecoverableGap(expected_seq, f"hub keeps asking for seq {expected_seq}; giving up this pass")
        if not self.outbox.rewind(expected_seq):
            ident = self.outbox.require_identity()
            anchor, head = self.outbox.bounds(ident.epoch)
            if expected_seq <= anchor:
                message = (
                    f"unrecoverable gap seq {expected_seq}..{anchor}: the hub lost these records (restored from "
                    f"an old backup?) and this agent already pruned them after the hub's receipt; nothing was "
                    f"invented, records from seq {anchor + 1} on are kept; see docs/operations.md"
                )
            else:
                message = (
                    f"unrecoverable gap: the hub expects seq {expected_seq} but this outbox ends at seq {head} "
                    "(was the agent's data folder restored from an old backup?); see docs/operations.md"
                )
            log.error("%s", message)
            raise UnrecoverableGap(expected_seq, message)
        log.warning("hub asked for seq %d again; rewound", expected_seq)

    # -- reachability probe ---------------------------------------------------------------------

    def probe_tick(self) -> str | None:
        """Called every ``probe_interval`` seconds from the scheduler, never during a pass.

        Returns:
            ``"due"`` when the backoff is over (run a pass now), ``"up"`` when a hub we could not
            reach answers ``/healthz`` again (run a pass now, skipping the rest of the backoff), or
            None (keep waiting).
        """
        if not self._backing_off:
            return None
        mono = time.monotonic()
        if mono >= self._backoff_until:
            return "due"
        if mono < self._retry_after_until:
            return None  # the hub asked us to wait: honour it
        if not self._urls:
            return None
        n = len(self._urls)
        for i in range(n):  # the current hub first, then the other replicas in order
            index = (self._url_index + i) % n
            if hub_answers(self._urls[index], self.config.probe_timeout, self._transport):
                if self._hub_down:
                    log.info("hub %s answers; ending the backoff", self._urls[index])
                    self._url_index = index
                    self._backing_off = False
                    return "up"
                return None
        self._hub_down = True
        return None

    # -- one burst ------------------------------------------------------------------------------

    def _report_blocked(self, ident: Identity, hub_key: keys.Ed25519PublicKey, exc: OutboxDamaged) -> None:
        """Tell the hub, in a signed probe, that this outbox is damaged (its fleet view shows it).

        A hub that cannot be reached or refuses is not an error here: the block is reported locally anyway.
        """
        acked = min(self.outbox.acked_through(), self.outbox.head()[0])
        health = {"blocked": exc.code, "blocked_reason": str(exc)[:300], "blocked_seq": exc.seq}
        try:
            self._burst(ident, hub_key, [], acked + 1, health)
        except (HubUnavailable, HubRejected, BadReceipt) as err:
            log.info("could not report the damaged outbox to the hub: %s", err)

    def _burst(
        self,
        ident: Identity,
        hub_key: keys.Ed25519PublicKey,
        records: list[SignedRecord],
        first: int,
        health: dict[str, Any] | None = None,
    ) -> int:
        assert self._client is not None
        t1 = datetime.now().astimezone()
        best = self.best_clock()
        through = first - 1 + len(records)  # the backlog this burst leaves behind (protocol.md §5)
        head, _ = self.outbox.head(ident.epoch)
        left = max(0, head - through)
        oldest = self.outbox.oldest_pending_captured_at(ident.epoch, through) if left else None
        oldest_at = parse_time(oldest)
        age = None if oldest_at is None else round(max(0.0, (t1 - oldest_at).total_seconds()), 3)
        request = BurstRequest(
            store_id=ident.store_id,
            epoch=ident.epoch,
            first_seq=first,
            # Our own signed outbox rows: already valid, so skip re-validating 2,000 of them per burst.
            records=[WireRecord.model_construct(**rec.wire()) for rec in records],
            sent_at=iso(t1),
            clock=None
            if best is None
            else ClockReport(theta_ms=best.theta_ms, delta_ms=best.delta_ms, sampled_at=best.sampled_at),
            backlog=BacklogReport(pending=left, oldest_pending_age_s=age, **(health or {})),
        )
        last = first + len(records) - 1 if records else None
        started = time.perf_counter()
        try:
            exchange = self._client.post_burst(request, t1, self.key, self.key_id)
        except HubRejected as exc:
            self._log(first, last, len(records), exc.error, exc.status, started)
            if exc.body is not None and exc.body.receipt is not None:
                try:  # a 422 keeps the records before the bad one, with a receipt for them
                    self.outbox.apply_receipt(exc.body.receipt, hub_key)
                except BadReceipt:
                    log.warning("receipt in the hub's %s answer does not check out", exc.error)
            raise
        except HubUnavailable as exc:
            self._log(first, last, len(records), "offline", exc.status, started)
            if exc.timeout and len(records) > 1:
                self.burst_size = max(1, len(records) // 2)
            raise
        self._last_contact = datetime.now(UTC)
        answer = exchange.response
        before = self.outbox.acked_through()
        if answer.receipt is not None:
            if answer.receipt.acked_through != answer.acked_through:
                raise BadReceipt(
                    f"receipt covers seq {answer.receipt.acked_through}, answer says {answer.acked_through}"
                )
            self.outbox.apply_receipt(answer.receipt, hub_key)
        elif answer.acked_through > 0:
            raise BadReceipt(f"hub acknowledged seq {answer.acked_through} without a receipt")
        after = self.outbox.acked_through()
        self._record_clock(exchange.t1, answer.hub_received_at, answer.hub_sent_at, exchange.t4)
        self._log(first, last, len(records), "ok", exchange.status, started)
        if records and after < first:
            raise HubUnavailable(f"hub answered 200 but acknowledged only up to seq {after}", status=200)
        if records and len(records) == self.burst_size:
            self.burst_size = min(self.config.burst_records, self.burst_size * 2)
        return max(0, after - before)

    def _wait_left(self, state: dict[str, Any], now: datetime) -> float:
        """Seconds until the next attempt is due (0: now).

        A delay this process set is timed on the monotonic clock, so a wall clock stepped back by hours
        does not stall sync for hours. A ``next_attempt_at`` from before a restart is wall-clock time;
        it is capped at the longest delay the agent ever sets, for the same reason.
        """
        if self._due_mono is not None:
            return max(0.0, self._due_mono - time.monotonic())
        due = parse_time(state.get("next_attempt_at"))
        if due is None:
            return 0.0
        longest = max(self.config.backoff_cap, self.config.blocked_retry)
        return min(max(0.0, (due - now).total_seconds()), longest)

    def _log(self, first: int, last: int | None, count: int, result: str, status: int | None, t0: float) -> None:
        try:
            self.outbox.log_burst(
                first_seq=first, last_seq=last, count=count, result=result, http_status=status, ms=monotonic_ms(t0)
            )
        except AgentError:
            log.warning("could not log a burst", exc_info=True)

    # -- clock ----------------------------------------------------------------------------------

    def _record_clock(self, t1: datetime, t2_text: str, t3_text: str, t4: datetime) -> None:
        t2, t3 = parse_time(t2_text), parse_time(t3_text)
        if t2 is None or t3 is None:
            return
        self._samples.append(estimate(t1, t2, t3, t4))
        best = self.best_clock()
        if best is not None:
            self.outbox.update_sync(clock=best.as_dict())

    def best_clock(self) -> ClockSample | None:
        """The sample with the smallest round-trip delay among those of the last hour."""
        cutoff = datetime.now(UTC) - CLOCK_WINDOW
        while self._samples and (parse_time(self._samples[0].sampled_at) or cutoff) < cutoff:
            self._samples.popleft()
        if not self._samples:
            return None
        return min(self._samples, key=lambda s: s.delta_ms)

    # -- outcomes -------------------------------------------------------------------------------

    def _result(self, result: str, ident: Identity, **kw: Any) -> PassResult:
        acked = self.outbox.acked_through()
        head, _ = self.outbox.head(ident.epoch)
        return PassResult(result, acked_through=acked, pending=max(0, head - acked), **kw)

    def _offline(self, ident: Identity, exc: HubUnavailable, state: dict[str, Any], sent: int) -> PassResult:
        failures = int(state.get("failures") or 0) + 1
        if exc.retry_after is not None:
            delay = min(exc.retry_after, self.config.blocked_retry)
        else:
            ceiling = min(self.config.backoff_cap, self.config.backoff_base * 2 ** min(failures - 1, 30))
            delay = self._rng() * ceiling
        mono = time.monotonic()
        self._backing_off = True
        self._hub_down = exc.unreachable
        self._backoff_until = mono + delay
        self._retry_after_until = mono + delay if exc.retry_after is not None else 0.0
        self._due_mono = mono + delay
        now = datetime.now(UTC)
        if state.get("last_sync_result") != "offline":  # once per outage, at the default level
            pending = max(0, self.outbox.head(ident.epoch)[0] - self.outbox.acked_through())
            log.warning("hub unavailable, %d records waiting (captures continue; retrying): %s", pending, exc)
        self.outbox.update_sync(
            last_sync_at=now_iso(),
            last_sync_result="offline",
            last_error=str(exc),
            failures=failures,
            next_attempt_at=iso(now + timedelta(seconds=delay)),
            burst_size=self.burst_size,
        )
        return self._result("offline", ident, sent=sent, message=str(exc), retry_in=delay)

    def _block(
        self,
        ident: Identity,
        code: str,
        message: str,
        seq: int | None,
        state: dict[str, Any],
        *,
        status: int | None = None,
        sent: int = 0,
    ) -> PassResult:
        delay = self.config.blocked_retry
        self._due_mono = time.monotonic() + delay
        now = datetime.now(UTC)
        blocked = {"code": code, "message": message, "seq": seq, "http_status": status}
        self.outbox.update_sync(
            last_sync_at=now_iso(),
            last_sync_result="blocked",
            last_error=message,
            blocked=blocked,
            failures=int(state.get("failures") or 0) + 1,
            next_attempt_at=iso(now + timedelta(seconds=delay)),
            burst_size=self.burst_size,
        )
        log.error("sync blocked: %s", message)
        return self._result("blocked", ident, sent=sent, message=message, retry_in=delay)
