"""Errors file and result summary: content, atomic writes, resuming the errors file after a crash."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from edge_agent.drops import load
from edge_agent.drops.report import (
    STATUS_OK,
    STATUS_PARTIAL,
    STATUS_REJECTED,
    ErrorsWriter,
    ImportSummary,
    error_records,
    errors_path,
    read_result,
    rejected_whole,
    result_path,
    sha256_file,
    write_result,
)
from storesync_harness.dropfiles import write_canonical_csv, write_jsonl


def import_file(path: str, folder: Path) -> ImportSummary:
    """A minimal importer over the helpers: every good item counts as accepted."""
    name = Path(path).name
    summary = ImportSummary(file=name, sha256=sha256_file(path), format=None, started_at="t0")
    fmt, items = load(path)
    summary.format = fmt
    with ErrorsWriter(errors_path(folder, name)) as errors:
        for item in items:
            summary.add(item)
            if not item.ok:
                errors.write(item)
    write_result(result_path(folder, name), summary.finish())
    return summary


def test_errors_file_has_line_field_reason_and_original_rows(tmp_path: Path) -> None:
    drop = write_canonical_csv(tmp_path / "day.csv", 20, bad_rows=[4])
    summary = import_file(drop.path, tmp_path)
    lines = [json.loads(x) for x in errors_path(tmp_path, "day.csv").read_text().splitlines()]
    (rec,) = lines
    assert (rec["line"], rec["field"]) == drop.bad[0]
    assert "1.5x" in rec["row"] and rec["row"] in rec["rows"] and len(rec["rows"]) == 2
    assert set(rec) == {"line", "field", "reason", "row", "rows"}
    result = json.loads(result_path(tmp_path, "day.csv").read_text())
    assert result == summary.to_dict()
    assert result["status"] == STATUS_PARTIAL
    assert (result["rows"], result["transactions"], result["accepted"], result["rejected"]) == (drop.rows, 20, 19, 1)
    assert result["sha256"] == hashlib.sha256(Path(drop.path).read_bytes()).hexdigest()
    assert read_result(result_path(tmp_path, "day.csv")) == summary
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.tmp"))


def test_clean_file_leaves_no_errors_file(tmp_path: Path) -> None:
    drop = write_jsonl(tmp_path / "ok.jsonl", 10)
    summary = import_file(drop.path, tmp_path)
    assert summary.status == STATUS_OK and summary.accepted == 10
    assert not errors_path(tmp_path, "ok.jsonl").exists()


def test_jsonl_error_row_is_the_line() -> None:
    _, items = load(io.BytesIO(b'{"txn_id": 1}\n'))
    (rec,) = [r for i in items for r in error_records(i)][:1]
    assert rec["row"] == '{"txn_id": 1}' and rec["line"] == 1 and "rows" not in rec


def test_errors_writer_resumes_at_the_recorded_size(tmp_path: Path) -> None:
    _, items = load(write_jsonl(tmp_path / "d.jsonl", 30, bad_every=5).path)
    bad = [i for i in items if not i.ok]
    target = tmp_path / "d.jsonl.errors.jsonl"
    w = ErrorsWriter(target)
    w.write(bad[0])
    w.write(bad[1])
    w.flush()
    checkpoint = w.tell()
    w.write(bad[2])  # written after the checkpoint, then the process dies
    w._f.close()
    w2 = ErrorsWriter(target, resume_at=checkpoint)
    for item in bad[2:]:
        w2.write(item)
    assert w2.commit() == target
    got = [json.loads(x)["line"] for x in target.read_text().splitlines()]
    assert got == [r["line"] for i in bad for r in error_records(i)]


def test_summary_counts_and_statuses() -> None:
    s = ImportSummary(file="f", sha256="0" * 64, format="jsonl")
    _, items = load(io.BytesIO(b'{"txn_id": 1}\n'))
    for item in items:
        s.add(item)
    assert s.finish().status == STATUS_REJECTED
    whole = rejected_whole("f", "0" * 64, "the file is empty (0 bytes)", "t0")
    assert whole.to_dict()["reason"] == "the file is empty (0 bytes)" and whole.status == STATUS_REJECTED
    assert whole.finished_at
    assert "reason" not in ImportSummary(file="f", sha256="", format=None).to_dict()


def test_write_result_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "f.result.json"
    write_result(path, ImportSummary(file="f", sha256="a", format="jsonl", rows=1))
    write_result(path, ImportSummary(file="f", sha256="a", format="jsonl", rows=2))
    assert json.loads(path.read_text())["rows"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["f.result.json"]
