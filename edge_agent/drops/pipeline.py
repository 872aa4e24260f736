"""Reading a drop file in chunks, in parallel worker processes, in file order, with bounded memory.

The main process plans chunk boundaries with a cheap scan that does not validate: every
``chunk_items`` lines (JSON Lines) or transactions (CSV formats: a new ``txn_id`` / ``Name`` starts one,
by the same rule the reader uses). A worker opens the file, runs the real reader from the chunk's
start (:func:`edge_agent.drops.load` with ``resume=``), validates every transaction and returns the
canonical JSON of the good ones (``Parsed.txn`` holds only strings, lists and objects, so the
unchecked fast encoder ``plain_dumps`` writes its canonical form; the chunk store checks one body per
chunk against ``make_body``) and the errors-file lines of the bad ones. Results come back in
chunk order with at most ``inflight`` chunks outstanding, so memory stays bounded whatever the size.

The same workers also sign for the importing process when it gives them the signing key's file
(:class:`PoolSigner`): the importing process numbers and chains every record
(:func:`edge_agent.store.records.append`), and the Ed25519 signatures of those chain values, the
largest part of its work, are made by the workers in parallel. Each worker loads the key from its
file (mode 0600, checked as at agent start) and refuses to sign when it is not the key the importing
process stores with.

Should a reader ever read past a planned boundary (the plan and the reader disagree), that chunk's
result says so (``overran``); the chunks planned after it are dropped and planning restarts where
the reader actually stopped, so nothing is lost or read twice either way.
"""

from __future__ import annotations

import json
import multiprocessing
import os

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sync_protocol import keys
from sync_protocol.canonical import plain_dumps

from ..store import Prepared, txn_digest
from . import load
from .formats import CSV_CANONICAL, JSONL, SHOPIFY_CSV, Checkpoint, detect, iter_records
from .report import error_records

CHUNK_ITEMS = 500
PARENT_CHECK_S = 1.0
_BLOCK = 1 << 20
# A validated transaction's canonical() holds only plain JSON types: the fast encoder, unchecked.
_canonical = plain_dumps


@dataclass(frozen=True, slots=True)
class Span:
    """A planned chunk: read from ``start``; items that begin after ``end.line`` belong to the next."""

    index: int
    start: Checkpoint
    end: Checkpoint


@dataclass
class ChunkResult:
    """What a worker read from one span.

    Attributes:
        index: The span's index.
        end: Where the next chunk starts (the span's end, or further when the reader overran it).
        overran: The reader went past the planned end; later spans must be planned again.
        rows: Data rows the chunk's items consumed.
        transactions: Items read.
        rejected: Items that failed validation.
        good: The valid transactions, in file order.
        errors: The errors-file lines of the rejected items (JSON, newline-terminated).
        error_lines: How many lines ``errors`` holds.
        cpu_s: CPU seconds the reading took.
        max_rss_kb: Peak resident memory of the process that read it (KiB).
    """

    index: int
    end: Checkpoint
    overran: bool = False
    rows: int = 0
    transactions: int = 0
    rejected: int = 0
    good: list[Prepared] = field(default_factory=list)
    errors: bytes = b""
    error_lines: int = 0
    cpu_s: float = 0.0
    max_rss_kb: int = 0


def plan(path: str, fmt: str, start: Checkpoint | None, chunk_items: int = CHUNK_ITEMS) -> Generator[Span, None, None]:
    """Yield the chunks of a file from ``start`` (the beginning when None)."""
    with open(path, "rb") as f:
        if fmt == JSONL:
            yield from _plan_lines(f, start or Checkpoint(), chunk_items)
        elif fmt in (CSV_CANONICAL, SHOPIFY_CSV):
            yield from _plan_groups(f, fmt, start, chunk_items)
        else:  # pragma: no cover - formats come from detect()
            raise ValueError(f"unknown format {fmt!r}")


def _plan_lines(src: IO[bytes], start: Checkpoint, n: int) -> Iterator[Span]:
    src.seek(start.offset)
    offset, line, count, index = start.offset, start.line, 0, 0
    chunk_start = start
    last = b"\n"
    while block := src.read(_BLOCK):
        pos = 0
        while (nl := block.find(b"\n", pos)) >= 0:
            pos = nl + 1
            line += 1
            count += 1
            if count == n:
                end = Checkpoint(offset + pos, line)
                yield Span(index, chunk_start, end)
                index, chunk_start, count = index + 1, end, 0
        offset += len(block)
        last = block[-1:]
    if last != b"\n":
        line += 1  # a last line without a line end
    if offset > chunk_start.offset:
        yield Span(index, chunk_start, Checkpoint(offset, line))


def _plan_groups(src: IO[bytes], fmt: str, start: Checkpoint | None, n: int) -> Iterator[Span]:
    found = detect(src)
    canonical = fmt == CSV_CANONICAL
    key_at = found.header.index("txn_id" if canonical else "Name")
    begin = start or found.data_start
    chunk_start, prev_end = begin, begin
    group_open, group_key, groups, index = False, None, 0, 0
    for rec in iter_records(src, begin, found.delimiter):
        fields = rec.fields
        key = fields[key_at] if fields is not None and key_at < len(fields) else None
        # The readers' own rules for "this record starts the next transaction".
        if canonical:
            new = not group_open or (key is not None and key != group_key)
        else:
            new = not group_open or (bool(key) and key != group_key)
        if new:
            if groups == n:
                yield Span(index, chunk_start, prev_end)
                index, chunk_start, groups = index + 1, prev_end, 0
            groups += 1
            group_open = True
            group_key = (key or "") if canonical else key
        prev_end = rec.end
    if group_open:
        yield Span(index, chunk_start, prev_end)


def read_chunk(path: str, span: Span) -> ChunkResult:
    """Read and validate one span with the real reader (runs in a worker process)."""
    began = time.process_time()
    result = ChunkResult(span.index, span.end)
    errors: list[str] = []
    last: Checkpoint | None = None
    with open(path, "rb") as f:
        _, items = load(f, resume=span.start)
        for item in items:
            if item.first_line > span.end.line:
                break
            last = item.resume
            result.rows += item.rows
            result.transactions += 1
            if item.ok and item.txn is not None:
                txn = item.txn
                text = _canonical(txn)
                result.good.append(
                    Prepared(
                        txn["register_id"],
                        txn["txn_id"],
                        txn["kind"],
                        text,
                        txn_digest(text),
                        item.first_line,
                        item.raw,
                    )  # fmt: skip
                )
            else:
                result.rejected += 1
                errors.extend(json.dumps(rec, ensure_ascii=False) for rec in error_records(item))
    if last is not None and last.offset > span.end.offset:
        result.end, result.overran = last, True
    if errors:
        result.errors = ("\n".join(errors) + "\n").encode("utf-8")
        result.error_lines = len(errors)
    result.cpu_s = time.process_time() - began
    result.max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if resource is not None else 0
    return result


class _Now(Future[ChunkResult]):
    """A future computed at once (no worker processes)."""

    def __init__(self, fn: Callable[[], ChunkResult]) -> None:
        super().__init__()
        try:
            self.set_result(fn())
        except BaseException as exc:
            self.set_exception(exc)


def pool_start_method(os_name: str = os.name) -> str:
    """``forkserver`` on POSIX (safe in a threaded agent); ``spawn`` on Windows, which has no fork."""
    return "spawn" if os_name == "nt" else "forkserver"


def make_pool(workers: int, key_file: Path | None = None) -> Executor:
    """A process pool for :func:`read_chunks` (forkserver: safe in a threaded agent).

    With ``key_file`` each worker loads the signing key from it, for :class:`PoolSigner`.
    Workers exit on their own when the importing process dies (``kill -9`` included), which a
    process pool does not do by itself.
    """
    ctx = multiprocessing.get_context(pool_start_method())
    if ctx.get_start_method() == "forkserver":
        # Nothing preloaded: the fork server stays a bare interpreter (~10 MB instead of ~40 MB with the
        # readers' modules), and each worker imports what it needs itself, once per import.
        ctx.set_forkserver_preload([])
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), key_file)
    )


_key: keys.Ed25519PrivateKey | None = None  # a worker's signing key (PoolSigner)
_key_error: str | None = None


def _init_worker(owner: int, key_file: Path | None) -> None:
    global _key, _key_error
    _watch(owner)
    if key_file is not None:
        try:
            _key = keys.load_private_key(key_file)
        except Exception as exc:  # the worker still reads; sign_values says why it cannot sign
            _key_error = f"{type(exc).__name__}: {exc}"


def sign_values(key_id: str, values: list[bytes]) -> tuple[list[bytes], float]:
    """Sign chain values with this worker's key (runs in a worker process); also returns the CPU seconds.

    Raises:
        RuntimeError: the worker has no key, or not the key with ``key_id``.
    """
    if _key is None:
        raise RuntimeError(f"reader worker has no signing key ({_key_error or 'none given'})")
    if keys.key_id(_key) != key_id:
        raise RuntimeError("the key file holds another key than the importing process signs with")
    began = time.process_time()
    sign = _key.sign
    return [sign(v) for v in values], time.process_time() - began


class PoolSigner:
    """Signs chain values in the pool's workers (a :data:`edge_agent.store.records.Signer`).

    The values are split in one part per worker, plus a share signed in this process meanwhile (it
    would otherwise wait: the workers first finish the pieces they were given to read); the parts'
    signatures come back in order, and the last signature of each worker's part is verified with
    ``key``'s public key.

    Args:
        pool: A pool made by :func:`make_pool` with the key's file.
        key: The key the importing process stores with.
        parts: How many parts to give the workers (the number of workers).
        local_share: The fraction of each batch (its end) signed here with ``key``.
    """

    def __init__(self, pool: Executor, key: keys.Ed25519PrivateKey, parts: int, local_share: float = 0.0) -> None:
        self.pool, self.parts, self.key = pool, max(1, parts), key
        self.local_share = min(max(local_share, 0.0), 1.0)
        self.key_id, self.public = keys.key_id(key), key.public_key()
        self.cpu_s = 0.0  # the workers' CPU seconds spent signing

    def __call__(self, values: list[bytes]) -> list[bytes]:
        remote = values[: len(values) - int(len(values) * self.local_share)]
        step = max(1, -(-len(remote) // self.parts))
        cuts = [remote[i : i + step] for i in range(0, len(remote), step)]
        futures = [self.pool.submit(sign_values, self.key_id, part) for part in cuts]
        sign = self.key.sign
        local = [sign(v) for v in values[len(remote) :]]
        out: list[bytes] = []
        for part, fut in zip(cuts, futures, strict=True):
            sigs, cpu_s = fut.result()
            self.cpu_s += cpu_s
            if len(sigs) != len(part) or not keys.verify(self.public, sigs[-1], part[-1]):
                raise RuntimeError("a reader worker returned a wrong signature")
            out.extend(sigs)
        return out + local


def _watch(owner: int) -> None:
    # Ctrl-C reaches the whole process group: the owner decides when to stop, workers just finish their chunk.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    if os.name == "nt":  # pragma: no cover - Windows: os.kill(pid, 0) would send CTRL_C_EVENT
        parent = multiprocessing.parent_process()  # with spawn, the importing process itself

        def wait_parent() -> None:
            if parent is not None:
                parent.join()
            os._exit(0)

        threading.Thread(target=wait_parent, name="owner-watch", daemon=True).start()
        return

    def loop() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # pragma: no cover - the pid was reused by another user's process
                os._exit(0)

    threading.Thread(target=loop, name="owner-watch", daemon=True).start()


def read_chunks(
    path: str,
    fmt: str,
    start: Checkpoint | None,
    *,
    pool: Executor | None = None,
    inflight: int = 4,
    chunk_items: int = CHUNK_ITEMS,
) -> Iterator[ChunkResult]:
    """Yield the file's chunks in order, read by ``pool`` (in this process when None).

    At most ``inflight`` chunks are planned and not yet consumed at any time.
    """
    pos = start
    while True:
        replan = False
        pending: deque[Future[ChunkResult]] = deque()
        with closing(plan(path, fmt, pos, chunk_items)) as spans:
            try:
                for span in spans:
                    if pool is None:
                        pending.append(_Now(lambda s=span: read_chunk(path, s)))  # type: ignore[misc]
                    else:
                        pending.append(pool.submit(read_chunk, path, span))
                    while len(pending) >= inflight or (pending and pending[0].done()):
                        res = pending.popleft().result()
                        yield res
                        if res.overran:
                            pos, replan = res.end, True
                            break
                    if replan:
                        break
                while pending and not replan:
                    res = pending.popleft().result()
                    yield res
                    if res.overran:
                        pos, replan = res.end, True
            finally:
                for fut in pending:
                    fut.cancel()
        if not replan:
            return
