"""The reader processes sign the records' chain values for the importer: same records, or nothing stored."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from edge_agent.drops import importer as importer_mod
from edge_agent.drops import pipeline
from edge_agent.drops.importer import Importer
from edge_agent.store import imports as ledger
from storesync_harness.dropfiles import write_jsonl
from sync_protocol import keys

from .test_importer import WRITERS, check_errors, env, expected_keys, stored_keys, verify_cli

__all__ = ["env"]  # the fixture, imported for these tests


def _count_signed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many chain values each PoolSigner call had signed by the workers."""
    calls: list[int] = []
    original: Callable[[pipeline.PoolSigner, list[bytes]], list[bytes]] = pipeline.PoolSigner.__call__

    def counting(self: pipeline.PoolSigner, values: list[bytes]) -> list[bytes]:
        calls.append(len(values))
        return original(self, values)

    monkeypatch.setattr(pipeline.PoolSigner, "__call__", counting)
    return calls


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_the_workers_sign_every_stored_record(env, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data, key, outbox, folders = env
    monkeypatch.setattr(importer_mod, "PARALLEL_MIN_BYTES", 0)
    signed = _count_signed(monkeypatch)
    write, name = WRITERS[fmt]
    src = folders.root / name
    df = write(src, 400, bad_every=31)
    want = expected_keys(src)
    imp = Importer(outbox, folders, workers=2, chunk_items=100, read_items=30, key_file=AgentConfig.load(data).key_path)
    summary = imp.import_file(src)
    assert summary.accepted == len(want) and summary.rejected == len(df.bad)
    assert sorted(stored_keys(outbox)) == sorted(want)
    assert sum(signed) == len(want) and len(signed) > 1  # every chain value went to the PoolSigner, one call per commit
    public = key.public_key()
    rows = outbox.query("SELECT chain, sig FROM outbox ORDER BY seq")
    assert len(rows) == len(want) and all(keys.verify(public, bytes(sig), bytes(chain)) for chain, sig in rows)
    check_errors(folders.rejected / f"{name}.errors.jsonl", df.bad)
    verify_cli(data)


@pytest.mark.parametrize("problem", ["another key", "readable by others"])
def test_workers_that_cannot_sign_with_the_key_store_nothing(
    env, tmp_path: Path, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _, outbox, folders = env
    monkeypatch.setattr(importer_mod, "PARALLEL_MIN_BYTES", 0)
    bad_key = tmp_path / "other" / "agent.key"
    if problem == "another key":
        keys.save_private_key(keys.generate(), bad_key)
    else:
        bad_key.parent.mkdir()
        bad_key.write_bytes(AgentConfig.load(data).key_path.read_bytes())
        os.chmod(bad_key, 0o644)
    src = folders.root / "day.jsonl"
    write_jsonl(src, 300)
    with pytest.raises(RuntimeError):
        Importer(outbox, folders, workers=2, chunk_items=100, key_file=bad_key).import_file(src)
    assert outbox.count() == 0
    (row,) = ledger.running(outbox)
    assert row["checkpoint_offset"] == 0 and src.exists()

    # With the agent's own key file the import resumes and stores everything, signed by that key.
    again = Importer(outbox, folders, workers=2, chunk_items=100, key_file=AgentConfig.load(data).key_path)
    (summary,) = again.resume_all()
    assert (summary.status, summary.accepted) == ("ok", 300)
    verify_cli(data)
