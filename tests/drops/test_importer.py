"""The importer end to end: real drop files, a real SQLite outbox, the real ``edge-agent`` CLI for checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.conftest import AgentProcess, init_data_dir, make_txn, run_cli, write_identity
from edge_agent.config import AgentConfig
from edge_agent.drops import importer as importer_mod
from edge_agent.drops import load
from edge_agent.drops.importer import DropFolders, Importer, ImportInterrupted, retry
from edge_agent.drops.report import read_result
from edge_agent.store import Outbox
from edge_agent.store import imports as ledger
from storesync_harness.dropfiles import DropFile, write_canonical_csv, write_jsonl, write_shopify_export
from sync_protocol import keys

WRITERS: dict[str, tuple[Callable[..., DropFile], str]] = {
    "jsonl": (write_jsonl, "day.jsonl"),
    "csv_canonical": (write_canonical_csv, "day.csv"),
    "shopify_csv": (write_shopify_export, "orders_export.csv"),
}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, keys.Ed25519PrivateKey, Outbox, DropFolders]]:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    write_identity(data, key)
    folders = DropFolders(tmp_path / "drop").ensure()
    outbox = Outbox(AgentConfig.load(data).db_path, key=key)
    try:
        yield data, key, outbox, folders
    finally:
        outbox.close()


def expected_keys(path: Path) -> set[tuple[str, str]]:
    """The keys of the valid transactions, read by the plain sequential reader."""
    _, items = load(path)
    return {(p.txn["register_id"], p.txn["txn_id"]) for p in items if p.ok and p.txn is not None}


def stored_keys(outbox: Outbox) -> list[tuple[str, str]]:
    return [(r, t) for r, t in outbox.query("SELECT register_id, txn_id FROM outbox")]


def check_errors(path: Path, bad: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Every injected error is reported (a wrong total also names the tenders), in file order."""
    errors = [json.loads(line) for line in path.read_text().splitlines()]
    lines = [e["line"] for e in errors]
    assert lines == sorted(lines) and sorted(set(lines)) == [line for line, _ in bad]
    assert set(bad) <= {(e["line"], e["field"]) for e in errors}
    assert all(e["reason"] and e["row"] for e in errors)
    return errors


def verify_cli(data: Path) -> str:
    result = run_cli("verify", "--data-dir", str(data))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_each_format_imports_good_rows_and_reports_bad_ones(env, fmt: str) -> None:
    data, _, outbox, folders = env
    write, name = WRITERS[fmt]
    src = folders.root / name
    df = write(src, 300, bad_every=23)
    want = expected_keys(src)
    summary = Importer(outbox, folders, workers=0, chunk_items=40).import_file(src)

    assert summary.format == fmt and summary.status == "partial"
    assert summary.rejected == len(df.bad) > 0 and summary.accepted == len(want) and summary.duplicates == 0
    assert summary.rows == df.rows and summary.transactions == df.transactions
    got = stored_keys(outbox)
    assert len(got) == len(set(got)) and set(got) == want
    origins = {o for (o,) in outbox.query("SELECT DISTINCT origin FROM outbox")}
    assert origins == {f"file:{name}"}
    assert f"chain OK: {len(want)} records" in verify_cli(data)

    assert not src.exists() and (folders.processed / name).is_file()
    assert read_result(folders.processed / f"{name}.result.json").to_dict() == summary.to_dict()
    check_errors(folders.rejected / f"{name}.errors.jsonl", df.bad)
    row = ledger.recent(outbox)[0]
    assert row["status"] == "done" and row["result"] == "partial" and row["accepted"] == summary.accepted
    assert row["checkpoint_offset"] > 0 and row["finished_at"]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_parallel_readers_give_the_same_import(env, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    data, _, outbox, folders = env
    monkeypatch.setattr(importer_mod, "PARALLEL_MIN_BYTES", 0)
    write, name = WRITERS[fmt]
    src = folders.root / name
    df = write(src, 400, bad_every=31)
    want = expected_keys(src)
    imp = Importer(outbox, folders, workers=2, chunk_items=25, inflight=3)
    summary = imp.import_file(src)
    assert summary.accepted == len(want) and summary.rejected == len(df.bad)
    assert sorted(stored_keys(outbox)) == sorted(want)
    assert imp.stats["reader_cpu_s"] > 0 and imp.stats["reader_max_rss_kb"] > 0
    check_errors(folders.rejected / f"{name}.errors.jsonl", df.bad)
    verify_cli(data)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"\n\n  \n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (b"date;amount;shop\n2026-05-01;12.00;Berlin\n", "unknown format"),
    ],
)
def test_file_rejected_whole_with_the_reason(env, content: bytes, reason: str) -> None:
    _, _, outbox, folders = env
    src = folders.root / "export.csv"
    src.write_bytes(content)
    summary = Importer(outbox, folders, workers=0).import_file(src)
    assert summary.status == "rejected" and summary.reason and reason in summary.reason
    assert outbox.count() == 0
    assert (folders.rejected / "export.csv").read_bytes() == content
    assert read_result(folders.rejected / "export.csv.result.json").reason == summary.reason
    assert not (folders.rejected / "export.csv.errors.jsonl").exists()
    assert ledger.recent(outbox)[0]["status"] == "rejected"


def test_file_with_only_bad_rows_goes_to_rejected(env) -> None:
    _, _, outbox, folders = env
    src = folders.root / "bad.jsonl"
    df = write_jsonl(src, 6, bad_every=1)
    summary = Importer(outbox, folders, workers=0).import_file(src)
    assert (summary.status, summary.accepted, summary.rejected) == ("rejected", 0, 6)
    assert (folders.rejected / "bad.jsonl").exists() and outbox.count() == 0
    check_errors(folders.rejected / "bad.jsonl.errors.jsonl", df.bad)


def test_same_file_twice_is_a_duplicate_file(env) -> None:
    data, _, outbox, folders = env
    write_jsonl(folders.root / "a.jsonl", 50)
    copy = (folders.root / "a.jsonl").read_bytes()
    imp = Importer(outbox, folders, workers=0)
    assert imp.import_file(folders.root / "a.jsonl").accepted == 50
    (folders.root / "a.jsonl").write_bytes(copy)  # the same bytes, the same name
    (folders.root / "b.jsonl").write_bytes(copy)  # the same bytes, another name
    first = imp.import_file(folders.root / "a.jsonl")
    second = imp.import_file(folders.root / "b.jsonl")
    for summary in (first, second):
        assert summary.status == "duplicate_file" and summary.accepted == 0 and "a.jsonl" in (summary.reason or "")
    assert first.file == "a-2.jsonl"  # processed/a.jsonl keeps its name; the copy gets a free one
    assert read_result(folders.rejected / "a-2.jsonl.result.json").status == "duplicate_file"
    assert (folders.rejected / "b.jsonl").exists() and (folders.processed / "a.jsonl").exists()
    assert outbox.count() == 50
    assert [r["status"] for r in ledger.recent(outbox)] == ["duplicate_file", "duplicate_file", "done"]
    verify_cli(data)


def test_transactions_captured_through_the_api_are_skipped_and_counted(env) -> None:
    data, _, outbox, folders = env
    src = folders.root / "day.jsonl"
    write_jsonl(src, 40)
    _, items = load(src)
    already = [p.txn for p in items][5:15]
    agent = AgentProcess(data)
    try:
        for txn in already:
            assert httpx.post(f"{agent.url}/v1/transactions", json=txn, timeout=10).status_code == 201
    finally:
        assert agent.stop() == 0
    summary = Importer(outbox, folders, workers=0, chunk_items=7).import_file(src)
    assert (summary.status, summary.accepted, summary.duplicates, summary.rejected) == ("ok", 30, 10, 0)
    assert outbox.count() == 40 and len(set(stored_keys(outbox))) == 40
    verify_cli(data)


def test_same_key_with_other_content_is_rejected_as_a_conflict(env) -> None:
    _, _, outbox, folders = env
    from sync_protocol import parse_transaction

    outbox.capture(parse_transaction(make_txn(1, register="R9")))
    other = make_txn(1, register="R9", price="5.00")
    src = folders.root / "c.jsonl"
    src.write_text(json.dumps(other) + "\n" + json.dumps(make_txn(2, register="R9")) + "\n")
    summary = Importer(outbox, folders, workers=0).import_file(src)
    assert (summary.status, summary.accepted, summary.rejected) == ("partial", 1, 1)
    (err,) = [json.loads(x) for x in (folders.rejected / "c.jsonl.errors.jsonl").read_text().splitlines()]
    assert err["line"] == 1 and err["field"] == "txn_id" and "seq 1" in err["reason"]
    assert json.loads(err["row"]) == other


def test_interrupted_import_resumes_at_its_checkpoint(env) -> None:
    data, key, outbox, folders = env
    src = folders.root / "big.jsonl"
    df = write_jsonl(src, 500, bad_every=17)
    want = expected_keys(src)
    first = Importer(outbox, folders, workers=0, chunk_items=60)
    calls = []

    def stop_after_three() -> None:
        calls.append(1)
        first.stop_requested = len(calls) >= 3

    first.on_chunk = stop_after_three
    with pytest.raises(ImportInterrupted):
        first.import_file(src)
    (row,) = ledger.running(outbox)
    assert row["checkpoint_line"] == 180 and row["rows"] == 180 and src.exists()
    part = folders.rejected / "big.jsonl.errors.jsonl.part"
    assert part.stat().st_size == row["errors_size"] > 0
    with open(part, "ab") as f:  # what a crash between errors flush and commit leaves behind
        f.write(b'{"line": 999999, "half written')

    # A restart: a new connection and importer, as the agent does on start.
    with Outbox(AgentConfig.load(data).db_path, key=key) as again:
        (summary,) = Importer(again, folders, workers=0, chunk_items=60).resume_all()
    assert summary.accepted == len(want) and summary.rejected == len(df.bad) and summary.duplicates == 0
    assert summary.rows == 500 and summary.transactions == 500
    got = stored_keys(outbox)
    assert len(got) == len(set(got)) and set(got) == want
    check_errors(folders.rejected / "big.jsonl.errors.jsonl", df.bad)
    assert not part.exists() and (folders.processed / "big.jsonl").exists()
    verify_cli(data)


def test_importing_the_file_again_resumes_rather_than_duplicates(env) -> None:
    _, _, outbox, folders = env
    src = folders.root / "x.jsonl"
    write_jsonl(src, 100)
    imp = Importer(outbox, folders, workers=0, chunk_items=30)
    imp.on_chunk = lambda: setattr(imp, "stop_requested", True)
    with pytest.raises(ImportInterrupted):
        imp.import_file(src)
    again = Importer(outbox, folders, workers=0, chunk_items=30).import_file(src)
    assert (again.status, again.accepted, again.duplicates, again.rows) == ("ok", 100, 0, 100)
    assert len(ledger.recent(outbox)) == 1


def test_retry_sends_a_rejected_file_back_and_allows_the_same_bytes(env) -> None:
    _, _, outbox, folders = env
    src = folders.root / "day.jsonl"
    src.write_text("{broken\n")
    imp = Importer(outbox, folders, workers=0)
    first = imp.import_file(src)
    assert first.status == "rejected"
    sha = first.sha256
    with pytest.raises(LookupError):
        retry(outbox, folders, "0" * 64)
    back = retry(outbox, folders, sha)
    assert back.parent == folders.root and back.name == "day.retry1.jsonl"
    assert not (folders.rejected / "day.jsonl").exists()
    kept = sorted(p.name.split("-", 1)[1] for p in folders.retried.iterdir())
    assert kept == ["day.jsonl.errors.jsonl", "day.jsonl.result.json"]
    second = imp.import_file(back)  # the same bytes: allowed once, because of the retry
    assert second.status == "rejected" and second.reason is None and second.rejected == 1
    third_copy = folders.root / "again.jsonl"
    third_copy.write_bytes((folders.rejected / second.file).read_bytes())
    assert imp.import_file(third_copy).status == "duplicate_file"


def test_tui_retry_while_the_agent_is_down_is_imported_again_not_a_duplicate(env) -> None:
    """The TUI's own retry (agent not running) goes through the agent's retry path: the same bytes import again."""
    from datetime import datetime

    from tui import drops_data

    _, _, outbox, folders = env
    src = folders.root / "s.jsonl"
    write_jsonl(src, 20, bad_every=10)  # partly rejected: the file ends in processed/, its errors in rejected/
    imp = Importer(outbox, folders, workers=0)
    first = imp.import_file(src)
    assert (first.status, first.accepted, first.rejected) == ("partial", 18, 2)
    back = drops_data.retry(folders.root, "s.jsonl", datetime(2026, 5, 21, 9, 30))
    assert back == folders.root / "s.jsonl" and not (folders.processed / "s.jsonl").exists()
    assert len(list(folders.retried.iterdir())) == 2  # the old result and error report are kept
    again = imp.import_file(back)  # what the agent does when it next sees the file
    assert again.status != "duplicate_file"
    assert (again.status, again.accepted, again.duplicates, again.rejected) == ("partial", 0, 18, 2)
    copy = folders.root / "copy.jsonl"
    copy.write_bytes((folders.processed / again.file).read_bytes())
    assert imp.import_file(copy).status == "duplicate_file"  # the retry was for one more import only


def test_status_and_imports_cli_show_the_import(env) -> None:
    data, _, outbox, folders = env
    src = folders.root / "s.jsonl"
    write_jsonl(src, 20, bad_every=10)
    Importer(outbox, folders, workers=0).import_file(src)
    status = json.loads(run_cli("status", "--json", "--data-dir", str(data)).stdout)
    last: dict[str, Any] = status["imports"]["last"]
    assert status["imports"]["running"] is None
    assert (last["name"], last["result"], last["accepted"], last["rejected"]) == ("s.jsonl", "partial", 18, 2)
    listing = run_cli("imports", "--data-dir", str(data))
    assert "s.jsonl  partial" in listing.stdout and "accepted 18" in listing.stdout


def test_import_cli_prints_progress_and_summary(env, tmp_path: Path) -> None:
    data, _, outbox, folders = env
    src = tmp_path / "elsewhere.csv"
    write_canonical_csv(src, 30)
    result = run_cli(
        "import", str(src), "--json", "--progress", "0", "--data-dir", str(data), "--drop-dir", str(folders.root)
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["status"], out["accepted"], out["format"]) == ("ok", 30, "csv_canonical")
    assert "rows/s" in result.stderr and "→ processed/elsewhere.csv" in result.stderr
    assert (folders.processed / "elsewhere.csv").exists() and outbox.count() == 30
    again = run_cli("import", str(folders.processed / "elsewhere.csv"), "--data-dir", str(data),
                    "--drop-dir", str(folders.root))  # fmt: skip
    assert again.returncode == 1 and "duplicate_file" in again.stdout
