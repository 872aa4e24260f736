"""A drop file NAMED with a card number: the full number is never stored, logged or shown (DESIGN §9).

A real agent watches a drop folder. The file is renamed to its masked name (``card-1111.jsonl``)
before its import starts, so the import ledger, ``result.json``, the errors report's name, the log and
the TUI only ever see the masked name.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent.conftest import init_data_dir, write_identity
from storesync_harness.dropfiles import sale
from storesync_harness.processes import Agent
from sync_protocol.cards import contains_pan, mask_file_name
from tui.drops_data import DropImport

PAN = "4111111111111111"


def test_a_drop_file_named_with_a_card_number_is_renamed_masked_before_import(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    write_identity(data, init_data_dir(data))
    drops = tmp_path / "drops"
    agent = Agent.create(data, None, "--drop-dir", str(drops))
    agent.env = {"EDGE_AGENT_DROP_SETTLE": "0.3"}
    agent.start()
    try:
        good = [json.dumps(sale(i)) for i in range(1, 4)]
        bad = json.dumps(sale(9) | {"total": "0.01"})
        (drops / f"{PAN}.jsonl").write_text("\n".join([*good, bad]) + "\n")
        (drops / "4111 1111-1111.1111 sales.jsonl").write_text(json.dumps(sale(20)) + "\n")
        deadline = time.monotonic() + 60
        results: list[Path] = []
        while time.monotonic() < deadline and len(results) < 2:
            time.sleep(0.2)
            results = sorted(drops.rglob("*.result.json"))
        assert len(results) == 2, sorted(p.name for p in drops.rglob("*"))
        assert agent.status()["last_seq"] == 4
        assert (drops / "processed" / "card-1111.jsonl").is_file()
        assert (drops / "processed" / "card-1111 sales.jsonl").is_file()
        assert (drops / "rejected" / "card-1111.jsonl.errors.jsonl").is_file()
        for path in drops.rglob("*"):
            assert not contains_pan(path.name), path
        for result in results:
            doc = json.loads(result.read_text())
            assert doc["file"].startswith("card-1111") and PAN not in result.read_text(), doc
        # The import ledger (and everything else in the outbox), the log: no full number anywhere.
        stored = b"".join(p.read_bytes() for p in data.glob("outbox.db*"))
        assert PAN.encode() not in stored and b"4111 1111-1111.1111" not in stored
        log = agent.log_path.read_text()
        assert PAN not in log and "renamed to card-1111.jsonl" in log, log[-2000:]
    finally:
        agent.stop()


def test_the_tui_masks_a_waiting_file_named_with_a_card_number() -> None:
    # A file still settling in the drop folder has not been renamed yet: the panel masks it itself.
    assert DropImport(f"{PAN}.jsonl", "waiting").file == "card-1111.jsonl"
    assert mask_file_name("sales-2026-11-22.jsonl") == "sales-2026-11-22.jsonl"
