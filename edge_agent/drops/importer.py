"""Import one drop file into the outbox: chunked, parallel, crash-safe, never losing or doubling a row.

The folder layout is :class:`edge_agent.drops.folders.DropFolders`.

An import is one row of the ``imports`` table (:mod:`edge_agent.store.imports`). Each chunk of
transactions (read and validated by worker processes, :mod:`edge_agent.drops.pipeline`) is stored
with the import's counters, checkpoint and errors-file size in ONE SQLite transaction. After a crash
:meth:`Importer.resume_all` (or importing the same file again) goes on from the checkpoint, cutting
the errors file back to its recorded size; keys already in the outbox count as duplicates. Only when
everything is stored are the errors file, ``<file>.result.json`` and the file itself moved to their
folder, and the row marked finished; each of those steps can be repeated after a crash.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from sync_protocol.cards import mask_file_name, mask_pans, redact_csv_row, redact_row
from sync_protocol.clock import now_iso
from sync_protocol.record import file_timeline

from .._exceptions import DropRejected, ImportInterrupted
from ..store import Outbox, Prepared, Stored
from ..store import imports as ledger
from ..store.imports import COUNTERS, DONE, DUPLICATE, REJECTED, RUNNING
from . import load
from .folders import DropFolders, move, send_back, take_ticket
from .formats import Checkpoint
from .pipeline import CHUNK_ITEMS, ChunkResult, PoolSigner, make_pool, read_chunks
from .report import (
    STATUS_DUPLICATE,
    STATUS_REJECTED,
    ErrorsWriter,
    ImportSummary,
    errors_path,
    fsync_dir,
    rejected_whole,
    result_path,
    sha256_file,
    write_result,
)

log = logging.getLogger("edge_agent.drops")

PARALLEL_MIN_BYTES = 2 << 20  # smaller files are read in this process (no pool start-up cost)
COMMIT_ITEMS = 4000  # lines (JSON Lines) or transactions (CSV) per SQLite commit: one fsync each
LOCAL_SIGN_SHARE = 0.5  # of a commit's signatures made by this process while the readers make the rest
PROGRESS_EVERY = 5.0
WORKERS = 2


def _outside(path: Path, root: Path) -> str | None:
    """Why a file found in the drop folder must not be read: a symbolic link, or a path leading out of it.

    A file named explicitly (``edge-agent import FILE``) elsewhere is the caller's choice and is read.
    """
    if path.parent.absolute() != root.absolute():
        return None
    if path.is_symlink():
        return "a symbolic link is never followed; copy the file itself into the drop folder"
    try:
        inside = path.resolve(strict=True).is_relative_to(root.resolve())
    except OSError:
        return "the file cannot be resolved inside the drop folder"
    return None if inside else "the file resolves outside the drop folder and is not read"


class Importer:
    """Imports drop files through one outbox connection (one import at a time).

    Args:
        outbox: An outbox opened with the signing key; used only by the importing thread.
        folders: Where files end up.
        workers: Reader processes (0: read in this process).
        chunk_items: Lines (JSON Lines) or transactions (CSV) per chunk and per commit (one fsync, with
            the chunk's checkpoint).
        read_items: At most this many of a chunk's lines or transactions are read by one worker
            task, so the workers share the reading of a chunk.
        inflight: Worker tasks read ahead at most (at least a chunk's worth more are kept reading).
        key_file: The signing key's file: with reader processes, they load it and sign the records'
            chain values in parallel (:class:`~edge_agent.drops.pipeline.PoolSigner`); without it,
            or when the file is read in this process, this process signs.
        on_chunk: Called after each committed chunk (the sync scheduler's nudge).
        progress_every: Seconds between progress lines.
        say: Also receives each progress and summary line (the CLI prints them).

    Attributes:
        stats: CPU seconds the reader processes spent reading chunks and signing, and their peak RSS
            (KiB), for benchmarks.
    """

    def __init__(
        self,
        outbox: Outbox,
        folders: DropFolders,
        *,
        workers: int = WORKERS,
        chunk_items: int = COMMIT_ITEMS,
        read_items: int = CHUNK_ITEMS,
        inflight: int = 4,
        key_file: Path | None = None,
        on_chunk: Callable[[], None] | None = None,
        progress_every: float = PROGRESS_EVERY,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.folders = folders.ensure()
        self.workers = workers
        self.chunk_items = chunk_items
        self.read_items = read_items
        self.inflight = inflight
        self.key_file = key_file
        self.on_chunk = on_chunk
        self.progress_every = progress_every
        self.say = say
        self.stop_requested = False
        self.stats = {"reader_cpu_s": 0.0, "reader_max_rss_kb": 0}

    def _tell(self, text: str) -> None:
        log.info("%s", text)
        if self.say is not None:
            self.say(text)

    def _refuse_unread(self, path: Path, reason: str) -> ImportSummary:
        """Refuse a file without opening it: the link (never its target) goes to ``rejected/``."""
        name = mask_file_name(path.name)
        dest = self._dest_name(name)
        summary = rejected_whole(dest, "", reason, now_iso(local=True))
        write_result(result_path(self.folders.rejected, dest), summary)
        os.replace(path, self.folders.rejected / dest)  # renames the link itself
        self._tell(f"import {name} → rejected/{dest}: rejected: {reason}")
        return summary

    def _rename_masked(self, path: Path) -> Path:
        """A file whose name holds a card number, renamed beside itself to the masked name first.

        Everything after (the import ledger, ``result.json``, the errors file, logs, the TUI) only ever
        sees the new name; the full number is not kept anywhere.
        """
        stem, dot, ext = mask_file_name(path.name).partition(".")
        n = 1
        while (target := path.with_name(stem + ("" if n == 1 else f"-{n}") + dot + ext)).exists():
            n += 1
        os.rename(path, target)
        fsync_dir(target.parent)
        self._tell(f"drop file name held a card number: renamed to {target.name} before import")
        return target

    # -- entry points ---------------------------------------------------------------------------

    def import_file(self, path: Path) -> ImportSummary:
        """Import one complete file (resuming its interrupted import, if there is one).

        Raises:
            NotEnrolled: the agent is not enrolled; the file is left where it is.
            StorageError: SQLite failed; the import stays ``running`` and resumes later.
            OSError: the file cannot be read.
        """
        path = path.absolute()
        self.outbox.require_identity()
        outside = _outside(path, self.folders.root)
        if outside is not None:
            return self._refuse_unread(path, outside)
        if mask_file_name(path.name) != path.name:
            path = self._rename_masked(path)
        sha = sha256_file(path)
        prior = ledger.by_sha(self.outbox, sha)
        if (
            prior is not None
            and prior["status"] == RUNNING
            and (prior["path"] == str(path) or not Path(prior["path"]).exists())
        ):
            if prior["path"] != str(path):  # the same bytes again while their import waits to resume
                ledger.update(self.outbox, prior["id"], now_iso(local=True), path=str(path))
            return self._run(prior["id"])
        if prior is not None and not (take_ticket(self.folders, sha) or prior["retry_allowed"]):
            return self._duplicate(path, sha, prior)
        now = now_iso(local=True)
        import_id = ledger.insert(
            self.outbox,
            now,
            sha256=sha,
            name=path.name,
            path=str(path),
            folder=str(self.folders.root),
            dest_name=self._dest_name(path.name),
            status=RUNNING,
            size=path.stat().st_size,
        )
        return self._run(import_id)

    def resume_all(self) -> list[ImportSummary]:
        """Finish every import a crash or stop left ``running`` in this drop folder."""
        done = []
        for row in ledger.running(self.outbox):
            if row["folder"] != str(self.folders.root):
                continue
            self._tell(f"resuming import of {row['name']} at line {row['checkpoint_line']}")
            done.append(self._run(row["id"]))
        return done

    # -- one import -----------------------------------------------------------------------------

    def _locate(self, row: dict[str, Any], verify: bool) -> Path | None:
        """The file of a running import: where it was, or already moved by an interrupted finish.

        With ``verify`` the file must still have the import's SHA-256 (it may have been replaced
        while the agent was down); a replaced file is left for a new import.
        """
        places = (
            Path(row["path"]),
            self.folders.processed / row["dest_name"],
            self.folders.rejected / row["dest_name"],
        )
        for candidate in places:
            if candidate.is_file() and (not verify or sha256_file(candidate) == row["sha256"]):
                return candidate
        return None

    def _run(self, import_id: int) -> ImportSummary:
        row = ledger.get(self.outbox, import_id)
        assert row is not None
        resuming = row["checkpoint_offset"] > 0 or row["checkpoint_line"] > 0
        if row["reason"] == "interrupted":  # set by a Ctrl-C'd ``edge-agent import``; running again now
            ledger.update(self.outbox, import_id, now_iso(local=True), reason=None)
            row["reason"] = None
        path = self._locate(row, verify=resuming)
        if path is None:
            reason = "the file was removed or changed while it was being imported"
            return self._finish(row, None, None, None, counts={c: int(row[c]) for c in COUNTERS}, reason=reason)
        if row["checkpoint_offset"] == 0 and row["checkpoint_line"] == 0:
            start = None
        else:
            start = Checkpoint(row["checkpoint_offset"], row["checkpoint_line"])
        try:
            with open(path, "rb") as f:
                fmt, _ = load(f)  # whole-file checks: text, not empty, a known header
        except DropRejected as exc:
            return self._finish(row, path, None, None, reason=exc.reason)
        if row["format"] != fmt:
            ledger.update(self.outbox, import_id, now_iso(local=True), format=fmt)
            row["format"] = fmt
        err_final = errors_path(self.folders.rejected, row["dest_name"])
        part = err_final.with_name(err_final.name + ".part")
        writer = None
        if part.exists() or not err_final.exists():
            writer = ErrorsWriter(err_final, resume_at=row["errors_size"])
        counts = {c: int(row[c]) for c in COUNTERS}
        remaining = path.stat().st_size - (start.offset if start else 0)
        pool = None
        if self.workers > 0 and remaining >= PARALLEL_MIN_BYTES:
            pool = make_pool(self.workers, self.key_file)
        try:
            self._chunks(row, path, fmt, start, counts, writer, pool)
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return self._finish(row, path, fmt, writer, counts=counts)

    def _chunks(
        self,
        row: dict[str, Any],
        path: Path,
        fmt: str,
        start: Checkpoint | None,
        counts: dict[str, int],
        writer: ErrorsWriter | None,
        pool: Executor | None,
    ) -> None:
        origin = f"file:{row['name']}"
        batch = file_timeline(path.stat().st_mtime)  # the file's own timeline, for the hub's time checks
        began, rows_before = time.monotonic(), counts["rows"]
        offset_before = start.offset if start else 0
        last_said = began
        size = max(1, int(row["size"]))
        key = self.outbox.signing_key
        signer = None
        if pool is not None and self.key_file and key:
            signer = PoolSigner(pool, key, self.workers, local_share=LOCAL_SIGN_SHARE)
        piece = min(self.read_items, self.chunk_items)
        per_commit = -(-self.chunk_items // piece)  # worker tasks per commit
        inflight = max(self.inflight, per_commit + self.workers + 1)  # workers keep reading during a commit
        group: list[ChunkResult] = []
        chunks = read_chunks(str(path), fmt, start, pool=pool, inflight=inflight, chunk_items=piece)
        for res in _then_none(chunks):
            if res is not None:
                group.append(res)
                if len(group) < per_commit:
                    continue
            if not group:
                break
            end = self._commit(row, group, counts, writer, origin, batch, signer)
            group = []
            now = time.monotonic()
            if now - last_said >= self.progress_every:
                last_said = now
                rate = (counts["rows"] - rows_before) / max(now - began, 1e-9)
                byte_rate = (end - offset_before) / max(now - began, 1e-9)
                eta = (size - end) / byte_rate if byte_rate > 0 else None
                self._tell(
                    f"import {row['name']}: {counts['rows']} rows ({100 * end // size}%), "
                    f"{rate:,.0f} rows/s, ETA {_eta(eta)}, "
                    f"{counts['accepted']} accepted, {counts['duplicates']} duplicates, {counts['rejected']} rejected"
                )
            if self.stop_requested:
                raise ImportInterrupted(row["name"])

    def _commit(
        self,
        row: dict[str, Any],
        group: list[ChunkResult],
        counts: dict[str, int],
        writer: ErrorsWriter | None,
        origin: str,
        batch: dict[str, Any],
        signer: PoolSigner | None,
    ) -> int:
        """Store one chunk (the results of consecutive worker tasks) and its checkpoint in ONE SQLite commit.

        Returns:
            The checkpoint's byte offset.
        """
        if writer is None:  # pragma: no cover - the errors file was committed: nothing is left to read
            raise RuntimeError(f"import {row['id']}: data after the errors file was committed")
        book = _Bookkeeping(group, counts, writer)
        ledger.store_chunk(
            self.outbox,
            [item for res in group for item in res.good],
            import_id=row["id"],
            origin=origin,
            now=now_iso(local=True),
            bookkeeping=book,
            batch=batch,
            signer=signer,
        )
        counts.update(book.counts)
        for res in group:
            self.stats["reader_cpu_s"] += res.cpu_s
            self.stats["reader_max_rss_kb"] = max(self.stats["reader_max_rss_kb"], res.max_rss_kb)
        if signer is not None:
            self.stats["reader_cpu_s"] += signer.cpu_s
            signer.cpu_s = 0.0
        if self.on_chunk is not None and book.new:
            try:
                self.on_chunk()
            except Exception:
                log.exception("on_chunk hook failed")
        return group[-1].end.offset

    def _finish(
        self,
        row: dict[str, Any],
        src: Path | None,
        fmt: str | None,
        writer: ErrorsWriter | None,
        *,
        counts: dict[str, int] | None = None,
        reason: str | None = None,
    ) -> ImportSummary:
        dest = row["dest_name"]
        if reason is not None:
            reason = mask_pans(reason)  # a refused header or cell is never quoted with a card number in it
        summary = ImportSummary(file=dest, sha256=row["sha256"], format=fmt, started_at=row["started_at"])
        for name, value in (counts or {}).items():
            setattr(summary, name, value)
        if reason is not None:
            summary.reason = reason
            summary.finish(STATUS_REJECTED)
        else:
            summary.finish()
        if writer is not None:
            writer.commit()
        else:
            part = errors_path(self.folders.rejected, dest)
            part.with_name(part.name + ".part").unlink(missing_ok=True)
        folder = self.folders.rejected if summary.status == STATUS_REJECTED else self.folders.processed
        write_result(result_path(folder, dest), summary)
        if src is not None:
            move(src, folder / dest)
        ledger.update(
            self.outbox,
            row["id"],
            summary.finished_at,
            status=REJECTED if summary.status == STATUS_REJECTED else DONE,
            result=summary.status,
            reason=reason,
            format=fmt,
            path=str(folder / dest),
            finished_at=summary.finished_at,
            **{c: getattr(summary, c) for c in COUNTERS},
        )
        what = f"rejected: {reason}" if reason else summary.status
        self._tell(
            f"import {row['name']} → {folder.name}/{dest}: {what}; {summary.rows} rows, {summary.transactions} "
            f"transactions, {summary.accepted} accepted, {summary.duplicates} duplicates, {summary.rejected} rejected"
        )
        return summary

    def _duplicate(self, path: Path, sha: str, prior: dict[str, Any]) -> ImportSummary:
        now = now_iso(local=True)
        dest = self._dest_name(path.name)
        reason = f"same SHA-256 as {prior['name']} (import {prior['id']}, {prior['result'] or prior['status']})"
        summary = ImportSummary(file=dest, sha256=sha, format=prior["format"], started_at=now, reason=reason)
        summary.finish(STATUS_DUPLICATE)
        write_result(result_path(self.folders.rejected, dest), summary)
        size = path.stat().st_size
        move(path, self.folders.rejected / dest)
        ledger.insert(
            self.outbox, now, sha256=sha, name=path.name, path=str(self.folders.rejected / dest),
            folder=str(self.folders.root), dest_name=dest, format=prior["format"], status=DUPLICATE,
            result=STATUS_DUPLICATE, reason=reason, size=size, finished_at=summary.finished_at,
        )  # fmt: skip
        self._tell(f"import {path.name} → rejected/{dest}: duplicate_file ({reason})")
        return summary

    def _dest_name(self, name: str) -> str:
        """A name free in processed/ and rejected/ (with its result and errors files), and unclaimed."""
        claimed = {r["dest_name"] for r in ledger.running(self.outbox)}
        stem, dot, ext = name.partition(".")
        n = 1
        while True:
            cand = name if n == 1 else f"{stem}-{n}{dot}{ext}"
            taken = cand in claimed or any(
                (folder / f).exists()
                for folder in (self.folders.processed, self.folders.rejected)
                for f in (cand, result_path(folder, cand).name, errors_path(folder, cand).name)
            )
            if not taken:
                return cand
            n += 1


def _then_none(items: Iterator[ChunkResult]) -> Iterator[ChunkResult | None]:
    """The items, then None (the end: the last, partial chunk is committed)."""
    yield from items
    yield None


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s}s" if s < 120 else f"{s // 60}m{s % 60:02d}s"


class _Bookkeeping:
    """Runs inside a commit's SQLite transaction: writes its error lines, returns the import row's new values.

    The error lines go to the errors file in file order: each worker task's reader errors, then the
    conflicts found when storing its transactions.
    """

    def __init__(self, group: list[ChunkResult], counts: dict[str, int], writer: ErrorsWriter) -> None:
        self.group, self.counts, self.writer = group, dict(counts), writer
        self.new = 0

    def __call__(self, stored: list[Stored]) -> dict[str, Any]:
        c = self.counts
        wrote = False
        at = 0
        for res in self.group:
            outcomes = stored[at : at + len(res.good)]
            at += len(res.good)
            if res.errors:
                self.writer.write_lines(res.errors, res.error_lines)
                wrote = True
            conflicts = 0
            for item, out in zip(res.good, outcomes, strict=True):
                if out.conflict:
                    conflicts += 1
                    self.writer.write_lines(_conflict_line(item, out), 1)
                    wrote = True
                elif out.duplicate:
                    c["duplicates"] += 1
                else:
                    self.new += 1
                    c["accepted"] += 1
            c["rows"] += res.rows
            c["transactions"] += res.transactions
            c["rejected"] += res.rejected + conflicts
        if at != len(stored):  # pragma: no cover - store_chunk returns one outcome per item
            raise RuntimeError("internal error: outcomes do not match the chunks")
        if wrote:
            self.writer.flush()
        end = self.group[-1].end
        return {**c, "checkpoint_offset": end.offset, "checkpoint_line": end.line,
                "errors_size": self.writer.tell()}  # fmt: skip


def _conflict_line(item: Prepared, out: Stored) -> bytes:
    """The errors-file line of a transaction whose key is stored with other content."""
    rec: dict[str, Any] = {
        "line": item.first_line,
        "field": "txn_id",
        "reason": f"{item.register_id}/{item.txn_id} is already stored as seq {out.seq} with "
        "different content; the outbox keeps the first",
        "row": redact_row(item.raw) if isinstance(item.raw, str) else redact_csv_row(item.raw[0]),
    }
    if isinstance(item.raw, list) and len(item.raw) > 1:
        rec["rows"] = [redact_csv_row(r) for r in item.raw]
    return json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n"


def retry(outbox: Outbox, folders: DropFolders, sha256: str) -> Path:
    """Send a finished file of these bytes back for another import (:func:`edge_agent.drops.folders.send_back`).

    The file goes back under a new name (``<stem>.retry<N>.<ext>``); its old result and errors files
    move to ``rejected/retried/`` with a time stamp.

    Raises:
        LookupError: no import of that SHA-256 has its file in ``rejected/`` or ``processed/``.
    """
    for row in ledger.of_sha(outbox, sha256):
        for src in (folders.rejected / row["dest_name"], folders.processed / row["dest_name"]):
            if src.is_file() and row["status"] != RUNNING:
                return send_back(folders, src)
    raise LookupError(f"no finished file with SHA-256 {sha256}")
