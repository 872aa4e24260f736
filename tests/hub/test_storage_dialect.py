"""The recorders' SQL is written once with ``?``; each engine's dialect renders it for its driver."""

from __future__ import annotations

import pytest

from cloud_hub.storage.sql import where
from cloud_hub.storage.sqlite import SQLITE

pytest.importorskip("psycopg")

from cloud_hub.storage.postgres import POSTGRES  # noqa: E402  (needs the postgres extra)


def test_sqlite_runs_the_text_as_written() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c LIKE '10%'"
    assert SQLITE.render(sql) == sql


def test_postgres_gets_its_placeholders_and_a_literal_percent_stays_literal() -> None:
    rendered = POSTGRES.render("SELECT a FROM t WHERE b = ? AND c LIKE '10%' AND d = ?")
    assert rendered == "SELECT a FROM t WHERE b = %s AND c LIKE '10%%' AND d = %s"


def test_the_engine_fragments() -> None:
    assert SQLITE.any("id") == "id IN (SELECT value FROM json_each(?))"
    assert SQLITE.pack([3, 1]) == "[3, 1]"
    assert POSTGRES.any("id") == "id = ANY(?)"
    assert POSTGRES.pack([3, 1]) == [3, 1]
    assert (SQLITE.skip_locked, POSTGRES.skip_locked) == ("", " FOR UPDATE SKIP LOCKED")
    assert where([]) == ""
    assert where(["a = ?", "b = ?"]) == " WHERE a = ? AND b = ?"
