"""The promise, as one content checker: what the POS was told is saved is at the hub exactly once,
with exactly the content the POS sent, signed by the store, and its event reached every sink once.

The reference is a :class:`PosJournal`: the exact JSON text of every POS call and the answer it got.
After a trial, :func:`judge` checks, for each transaction the POS got a 201 or 200 for:

- exactly one ledger record holds it (``lost`` / ``duplicated``);
- the record's transaction, in canonical form, equals the canonical form of the JSON the POS sent
  (``mismatched``): a bug that changes an amount but keeps ``(register_id, txn_id)`` is caught here;
- the record's chain link follows its predecessor from the writer's genesis value, and its signature
  verifies against the store's public key (``chain_errors`` / ``bad_signatures``);
- for each sink given, exactly one transaction event (``retail.pos.*``) with that record's id whose
  ``data.txn`` is that transaction (``events_missing`` / ``events_doubled`` / ``events_mismatched``
  per sink).

Nothing else may be in the ledger, except a transaction the POS sent without a definite answer
(in doubt, or abandoned by the POS), at most once and with the content sent. The agent's own outbox
must pass ``edge-agent verify``. The checker knows the wire format only through ``sync_protocol``
(canonical form, chain, signatures), never through the agent's or the hub's code.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from sync_protocol import chain, keys
from sync_protocol.canonical import canonical_dumps
from sync_protocol.transaction import parse_transaction

from .processes import Hub, agent_cli

Key = tuple[str, str]  # (register_id, txn_id)
TXN_EVENT_PREFIX = "retail.pos."
ACKED = (200, 201)


def txn_key(txn: Mapping[str, Any]) -> Key:
    return (str(txn.get("register_id")), str(txn.get("txn_id")))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def canonical_digest(txn: Any) -> bytes:
    """SHA-256 of a stored transaction's canonical JSON (as a ledger or outbox body holds it)."""
    return _digest(canonical_dumps(txn))


def sent_digest(sent: str) -> bytes | None:
    """SHA-256 of the canonical form of a transaction as the POS sent it (None: not a valid one)."""
    try:
        return _digest(parse_transaction(json.loads(sent)).canonical_json())
    except Exception:  # noqa: BLE001 - invalid input is never acknowledged, so it has no expected form
        return None


# ------------------------------------------------------------------------------------- the POS side


@dataclass(frozen=True, slots=True)
class PosCall:
    """One POS call: the exact JSON text sent, and the answer (``status`` None: none arrived)."""

    key: Key
    sent: str
    status: int | None
    answer: str | None


class PosJournal:
    """Every POS call and its answer, from any number of threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[PosCall] = []
        self._acked: dict[Key, str] = {}
        self._sent: dict[Key, set[str]] = {}

    def record(self, txn_or_text: Mapping[str, Any] | str, status: int | None, answer: str | None = None) -> Key:
        """Book one call (``txn_or_text``: the text sent, or the dict whose compact JSON was sent)."""
        sent = txn_or_text if isinstance(txn_or_text, str) else encode(txn_or_text)
        key = txn_key(json.loads(sent))
        with self._lock:
            self.calls.append(PosCall(key, sent, status, answer))
            self._sent.setdefault(key, set()).add(sent)
            if status in ACKED:
                self._acked[key] = sent
        return key

    def post(self, client: httpx.Client, agent_url: str, txn: Mapping[str, Any]) -> httpx.Response:
        """POST one transaction to an agent and book it; re-raises a transport error after booking it."""
        sent = encode(txn)
        try:
            r = client.post(
                agent_url.rstrip("/") + "/v1/transactions",
                content=sent.encode("utf-8"),
                headers={"Content-Type": "application/json"},
            )
        except httpx.HTTPError:
            self.record(sent, None)
            raise
        self.record(sent, r.status_code, r.text)
        return r

    @property
    def acknowledged(self) -> dict[Key, str]:
        """Key -> the text the POS sent for each transaction it got a 201/200 for."""
        with self._lock:
            return dict(self._acked)

    def sent(self, key: Key) -> set[str]:
        with self._lock:
            return set(self._sent.get(key, ()))

    @property
    def attempted(self) -> set[Key]:
        with self._lock:
            return set(self._sent)

    def acknowledged_keys(self) -> set[Key]:
        with self._lock:
            return set(self._acked)


def encode(txn: Mapping[str, Any]) -> str:
    """The compact JSON text a POS sends for ``txn``."""
    return json.dumps(txn, separators=(",", ":"), ensure_ascii=False)


# ------------------------------------------------------------------------------------ the hub side


@dataclass
class Verdict:
    """The invariants after one trial (or a whole run).

    Attributes:
        acknowledged: Transactions the POS was told were saved.
        found: Of those, how many are in the hub ledger (at least once).
        lost: Acknowledged but not in the ledger.
        duplicated: Transactions (acknowledged or not) in the ledger more than once.
        unexpected: Ledger records that the POS never sent.
        mismatched: Ledger records whose canonical transaction is not the canonical form of what the POS sent.
        chain_errors: Ledger records whose seq or chain link does not follow their predecessor.
        bad_signatures: Ledger records whose signature does not verify with the store's public key.
        events_checked: Sinks whose events were checked (empty: events not checked).
        events_missing / events_doubled / events_mismatched: Per sink, ledger records with no
            transaction event, with more than one, or whose event's ``data.txn`` is not the record's.
        events_unexpected: Per sink, transaction events that name no ledger record.
        agent_verify_ok: ``edge-agent verify`` passed (None when not run).
        details: The first few problems, for the log.
    """

    acknowledged: int = 0
    found: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    mismatched: int = 0
    chain_errors: int = 0
    bad_signatures: int = 0
    events_checked: list[str] = field(default_factory=list)
    events_missing: dict[str, int] = field(default_factory=dict)
    events_doubled: dict[str, int] = field(default_factory=dict)
    events_mismatched: dict[str, int] = field(default_factory=dict)
    events_unexpected: dict[str, int] = field(default_factory=dict)
    agent_verify_ok: bool | None = None
    details: list[str] = field(default_factory=list)

    @property
    def event_problems(self) -> int:
        return sum(
            sum(d.values())
            for d in (self.events_missing, self.events_doubled, self.events_mismatched, self.events_unexpected)
        )

    @property
    def ok(self) -> bool:
        bad = self.lost + self.duplicated + self.unexpected + self.mismatched + self.chain_errors + self.bad_signatures
        return not bad and not self.event_problems and self.agent_verify_ok is not False

    def note(self, text: str) -> None:
        if len(self.details) < 12:
            self.details.append(text)

    def counts(self) -> str:
        """One line with every count (the crash matrix and the demo print it)."""
        parts = [
            f"acknowledged {self.acknowledged}",
            f"found {self.found}",
            f"lost {self.lost}",
            f"duplicated {self.duplicated}",
            f"unexpected {self.unexpected}",
            f"content mismatches {self.mismatched}",
            f"chain errors {self.chain_errors}",
            f"bad signatures {self.bad_signatures}",
        ]
        return ", ".join(parts)

    def event_lines(self) -> list[str]:
        """One line per checked sink."""
        return [
            f"sink {name}: events missing {self.events_missing.get(name, 0)}, "
            f"doubled {self.events_doubled.get(name, 0)}, content mismatches {self.events_mismatched.get(name, 0)}, "
            f"unexpected {self.events_unexpected.get(name, 0)}"
            for name in self.events_checked
        ]


@dataclass(frozen=True, slots=True)
class _Held:
    epoch: int
    seq: int
    txn_digest: bytes


class LedgerWatcher:
    """Reads one writer's hub ledger incrementally, checking seq, chain link and signature as records arrive.

    The hub ledger is append-only, so each call only fetches records after the last one seen. Only a
    digest of each record's canonical transaction is kept, so a 72-hour backlog fits in memory.

    Args:
        store_id: The store.
        public_key: The writer's public key; None skips the signature check (unit tests of the checker only).
        epoch: The writer's epoch.
    """

    def __init__(self, store_id: str, public_key: keys.Ed25519PublicKey | None = None, epoch: int = 1) -> None:
        self.store_id = store_id
        self.public_key = public_key
        self.epoch = epoch
        self.last_seq = 0
        self.prev = chain.genesis(store_id, epoch)
        self.held: dict[Key, list[_Held]] = {}
        self.chain_errors = 0
        self.bad_signatures = 0
        self.problems: list[str] = []

    @property
    def counts(self) -> Counter[Key]:
        return Counter({k: len(v) for k, v in self.held.items()})

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
                self.take(rec)
                new += 1

    def _problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    def take(self, rec: Mapping[str, Any]) -> None:
        """Check one record as the admin ledger gives it: ``{seq, body, chain, sig}``."""
        seq = int(rec["seq"])
        if seq != self.last_seq + 1:
            self.chain_errors += 1
            self._problem(f"ledger seq {seq} follows seq {self.last_seq}")
        value = chain.link(self.prev, rec["body"])
        if value.hex() != rec["chain"]:
            self.chain_errors += 1
            self._problem(f"ledger chain broken at seq {seq}")
        if self.public_key is not None:
            sig = bytes.fromhex(str(rec.get("sig") or ""))
            if not keys.verify(self.public_key, sig, bytes.fromhex(rec["chain"])):
                self.bad_signatures += 1
                self._problem(f"signature of seq {seq} does not verify with the store's key")
        self.prev = bytes.fromhex(rec["chain"])
        self.last_seq = seq
        txn = json.loads(rec["body"]).get("txn") or {}
        digest = _digest(canonical_dumps(txn))
        self.held.setdefault(txn_key(txn), []).append(_Held(self.epoch, seq, digest))


def store_public_key(agent_dir: Path, epoch: int | None = None) -> keys.Ed25519PublicKey:
    """The store's public key, from the agent's key file (the key the hub enrolled).

    A forced re-enrollment archives the previous epoch's key as ``agent.key.epoch<N>``; give ``epoch``
    to get that one when it exists.
    """
    archived = agent_dir / f"agent.key.epoch{epoch}"
    path = archived if epoch is not None and archived.exists() else agent_dir / "agent.key"
    return keys.load_private_key(path).public_key()


def agent_verify(agent_dir: Path) -> tuple[bool, str]:
    """Run ``edge-agent verify`` on a data folder (the agent may be running)."""
    res = agent_cli("verify", "--data-dir", str(agent_dir), check=False)
    return res.returncode == 0, (res.stdout + res.stderr).strip()


# ----------------------------------------------------------------------------------------- sinks


def jsonl_events(path: Path) -> list[dict[str, Any]]:
    """Every event line of a jsonl sink file (a torn last line is ignored, as the sink itself does)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            out.append(json.loads(line))
    return out


def underived_records(hub: Hub) -> int:
    """Stored records whose events are not derived yet (catch-up bursts are derived after the ingest)."""
    admin = {"Authorization": f"Bearer {hub.admin_token}"}  # per-store series need the admin token
    text = httpx.get(hub.url + "/metrics", headers=admin, timeout=30).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("storesync_store_underived_records{")
    )


def wait_delivered(hub: Hub, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until every stored record has its events and no sink has a delivery pending or in flight.

    Both are needed: the events of a catch-up burst (more than ``inline_max`` records) are derived
    after the burst, so for a moment its records have no delivery rows at all, pending or otherwise.
    Returns the last sinks view.
    """
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = hub.admin("/v1/admin/sinks")
        if all(s["pending"] == 0 and s["in_flight"] == 0 for s in view["sinks"]) and not underived_records(hub):
            view = hub.admin("/v1/admin/sinks")  # derived just now: its deliveries must be done too
            if all(s["pending"] == 0 and s["in_flight"] == 0 for s in view["sinks"]):
                return view
        time.sleep(0.2)
    raise TimeoutError(f"deliveries not done after {timeout} s: {view}")


def _check_sink(
    v: Verdict,
    name: str,
    events: Iterable[Mapping[str, Any]],
    records: Mapping[tuple[str, int, int], bytes],
) -> None:
    seen: dict[tuple[str, int, int], list[bytes]] = {}
    stores = {where[0] for where in records}
    for ev in events:
        if not str(ev.get("type", "")).startswith(TXN_EVENT_PREFIX):
            continue
        data = ev.get("data") or {}
        try:
            store_id, epoch, seq = str(ev["id"]).rsplit(":", 2)
            where = (store_id, int(epoch), int(seq))
        except (KeyError, ValueError):
            where = ("?", 0, 0)
        if where[0] not in stores and where[0] != "?":
            continue  # another store's event: checked with that store's watchers
        if (data.get("store_id"), data.get("epoch"), data.get("seq")) != where:
            v.events_mismatched[name] = v.events_mismatched.get(name, 0) + 1
            v.note(f"sink {name}: event {ev.get('id')} data names another record")
        seen.setdefault(where, []).append(_digest(canonical_dumps(data.get("txn"))))
    for where, digest in records.items():
        got = seen.get(where, [])
        label = f"{where[0]}:{where[1]}:{where[2]}"
        if not got:
            v.events_missing[name] = v.events_missing.get(name, 0) + 1
            v.note(f"sink {name}: no event for {label}")
        elif len(got) > 1:
            v.events_doubled[name] = v.events_doubled.get(name, 0) + 1
            v.note(f"sink {name}: {len(got)} events for {label}")
        if any(d != digest for d in got):
            v.events_mismatched[name] = v.events_mismatched.get(name, 0) + 1
            v.note(f"sink {name}: event {label} data.txn differs from the ledger record")
    extra = [w for w in seen if w not in records]
    if extra:
        v.events_unexpected[name] = len(extra)
        v.note(f"sink {name}: events for records not in the ledger, e.g. {extra[0]}")


def judge(
    ledger: LedgerWatcher | Sequence[LedgerWatcher],
    journal: PosJournal,
    *,
    sinks: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
) -> Verdict:
    """Check the ledger (one watcher per writer epoch) and the sinks' events against the POS journal.

    Args:
        ledger: Up-to-date watchers, one per epoch of the store(s) checked.
        journal: Every POS call and answer.
        sinks: Sink name -> every event the sink received (e.g. :func:`jsonl_events`); None skips events.
    """
    watchers = [ledger] if isinstance(ledger, LedgerWatcher) else list(ledger)
    acked = journal.acknowledged
    v = Verdict(acknowledged=len(acked))
    held: dict[Key, list[_Held]] = {}
    records: dict[tuple[str, int, int], bytes] = {}
    for w in watchers:
        v.chain_errors += w.chain_errors
        v.bad_signatures += w.bad_signatures
        for text in w.problems[:5]:
            v.note(text)
        for key, items in w.held.items():
            held.setdefault(key, []).extend(items)
            for h in items:
                records[(w.store_id, h.epoch, h.seq)] = h.txn_digest
    for key in acked:
        if key in held:
            v.found += 1
        else:
            v.lost += 1
            v.note(f"lost: {key[0]}/{key[1]}")
    digests: dict[str, bytes | None] = {}
    for key, items in held.items():
        if len(items) > 1:
            v.duplicated += 1
            v.note(f"duplicated x{len(items)}: {key[0]}/{key[1]} at seqs {[h.seq for h in items]}")
        sent = journal.sent(key)
        if not sent:
            v.unexpected += 1
            v.note(f"unexpected: {key[0]}/{key[1]}")
            continue
        want = {digests.setdefault(s, sent_digest(s)) for s in sent}
        for h in items:
            if h.txn_digest not in want:
                v.mismatched += 1
                v.note(f"content mismatch: {key[0]}/{key[1]} (epoch {h.epoch} seq {h.seq}) is not what the POS sent")
    if sinks is not None:
        for name, events in sinks.items():
            v.events_checked.append(name)
            _check_sink(v, name, events, records)
    return v


def check_stores(
    hub: Hub,
    journal: PosJournal,
    agent_dirs: Mapping[str, Path],
    *,
    sink_files: Mapping[str, Path] | None = None,
    sinks: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    epochs: Sequence[int] = (1,),
    verify: bool = True,
) -> Verdict:
    """The whole check for stores on a running hub: every ledger from genesis, the sinks, ``edge-agent verify``.

    Args:
        hub: The running hub.
        journal: Every POS call of these stores.
        agent_dirs: Store id -> its agent's data folder (for the public key and ``verify``).
        sink_files: Sink name -> its jsonl file (default: the hub's embedded ``events`` sink), read
            after every delivery is done.
        sinks: More sinks' events, already collected (e.g. a NATS stream's messages).
        epochs: The writer epochs to read.
        verify: Run ``edge-agent verify`` on every agent folder.
    """
    watchers = []
    for store_id, agent_dir in agent_dirs.items():
        for epoch in epochs:
            w = LedgerWatcher(store_id, store_public_key(agent_dir, epoch), epoch)
            w.update(hub)
            watchers.append(w)
    files = {"events": hub.data_dir / "events.jsonl"} if sink_files is None else sink_files
    events: dict[str, Iterable[Mapping[str, Any]]] = {}
    if files:
        wait_delivered(hub)
        events.update({name: jsonl_events(path) for name, path in files.items()})
    events.update(sinks or {})
    v = judge(watchers, journal, sinks=events)
    if verify:
        v.agent_verify_ok = True
        for agent_dir in agent_dirs.values():
            ok, text = agent_verify(agent_dir)
            if not ok:
                v.agent_verify_ok = False
                v.note(f"edge-agent verify {agent_dir.name}: {text}")
    return v
