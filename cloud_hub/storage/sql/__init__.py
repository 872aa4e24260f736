"""The recorders' SQL, written once for every engine.

Each recorder's statements and the Python around them live in one module of this package:
:mod:`.registry` (stores, tokens, writers), :mod:`.ledger` (streams, the ledger, conflicts, refusals,
whole tables), :mod:`.events` (events, deliveries and lanes, cursors, register times) and :mod:`.books`
(stock moves, time fallbacks, derive errors). They are mixins of an engine's unit of work, built on
:class:`SQLWork`.

Statements are written with ``?`` placeholders. The engine's unit of work runs them through a handful
of execution hooks (:meth:`SQLWork._one`, :meth:`SQLWork._all`, :meth:`SQLWork._count`,
:meth:`SQLWork._many`, ...) after its :class:`Dialect` rendered them for the driver (``?`` for apsw,
``%s`` for psycopg; a rendering is made once per distinct text and kept). What truly differs by
engine is either a fragment of the dialect (row locks, a list parameter, an identity's next value) or
a hook that the engine implements in its own module (:mod:`..sqlite`, :mod:`..postgres`): errors of a
refused insert, bulk loads (``COPY`` on PostgreSQL), reading a whole table, and event ids.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar


@dataclass(frozen=True)
class Dialect:
    """What one engine's SQL text differs in.

    Attributes:
        name: The engine, as in the storage URL scheme.
        mark: The driver's placeholder (``?`` or ``%s``); a driver with ``%s`` has its ``%`` doubled.
        row_locks: The engine locks rows (``FOR UPDATE``, ``SKIP LOCKED``); SQLite's one writer holds the
            whole database instead.
        any_of: A condition "``{column}`` is one of the list in the next placeholder".
        pack: Turns a Python list into that placeholder's value.
        follow_identity: A statement that moves the identity ``{column}`` of ``{table}`` past its highest
            value after rows were loaded with their ids; ``None`` when the engine does it by itself.
    """

    name: str
    mark: str
    row_locks: bool
    any_of: str
    pack: Callable[[list[Any]], Any]
    follow_identity: str | None = None

    def render(self, sql: str) -> str:
        """``sql`` (written with ``?``) in this driver's placeholders."""
        return _render(sql, self.mark)

    def any(self, column: str) -> str:
        """The condition ``column`` is one of the list bound to the next placeholder."""
        return self.any_of.format(column=column)

    @property
    def skip_locked(self) -> str:
        """The suffix of a subquery that takes the rows it selects, skipping those another claimer holds."""
        return " FOR UPDATE SKIP LOCKED" if self.row_locks else ""


@lru_cache(maxsize=2048)
def _render(sql: str, mark: str) -> str:
    if mark == "?":
        return sql
    return sql.replace("%", "%%").replace("?", mark)


def where(terms: Sequence[str]) -> str:
    """`` WHERE a AND b`` of the terms, or nothing when there are none."""
    return f" WHERE {' AND '.join(terms)}" if terms else ""


class SQLWork(abc.ABC):
    """The execution hooks the shared recorders run their SQL through; an engine's unit of work
    implements them on its open connection. Statements are written with ``?``."""

    dialect: ClassVar[Dialect]
    #: True in a write transaction, False in a read-only snapshot.
    _write: bool

    @property
    def _for_update(self) -> str:
        """`` FOR UPDATE`` where a write transaction locks the rows it reads, else nothing."""
        return " FOR UPDATE" if self._write and self.dialect.row_locks else ""

    @abc.abstractmethod
    def _run(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Run one statement."""

    @abc.abstractmethod
    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first row of a query, ``None`` when it has none."""

    @abc.abstractmethod
    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query (or of ``RETURNING``)."""

    @abc.abstractmethod
    def _count(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""

    @abc.abstractmethod
    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for each row of arguments (nothing when there are none); rows changed in all."""

    @abc.abstractmethod
    def _try_insert(self, sql: str, args: Sequence[Any]) -> str | None:
        """Insert one row, the transaction staying usable when it is refused for a uniqueness constraint.

        Returns:
            ``None`` when the row went in; else the constraint it broke, ``""`` when the engine does not
            name it.
        """

    @abc.abstractmethod
    def _refused(self, what: str) -> AbstractContextManager[None]:
        """Inside it, a constraint that refuses a statement raises ``StorageError("<what> refused: ...")``."""

    @abc.abstractmethod
    def _load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Insert rows into ``table`` the engine's fastest way (values given for every column); how many."""

    @abc.abstractmethod
    def _stream_rows(self, table: str, sql: str) -> Iterator[tuple[Any, ...]]:
        """The rows of a query over the whole ``table``, streamed."""
