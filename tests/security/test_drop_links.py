"""The drop folder never follows a link out of itself and never quotes a refused file's content."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent.conftest import init_data_dir, write_identity
from edge_agent.config import AgentConfig
from edge_agent.drops.importer import DropFolders, Importer
from edge_agent.store import Outbox

SECRET = "root:x:0:0:secret-line-do-not-quote:/root:/bin/bash"


@pytest.fixture
def env(tmp_path: Path) -> Any:
    data = tmp_path / "agent"
    key = init_data_dir(data)
    write_identity(data, key)
    folders = DropFolders(tmp_path / "drop").ensure()
    outbox = Outbox(AgentConfig.load(data).db_path, key=key)
    try:
        yield outbox, folders, tmp_path
    finally:
        outbox.close()


def all_text(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_symlink_out_of_the_drop_folder_is_refused_unread(env: Any) -> None:
    outbox, folders, tmp = env
    secret = tmp / "passwd"
    secret.write_text(SECRET + "\n")
    link = folders.root / "orders.jsonl"
    os.symlink(secret, link)
    summary = Importer(outbox, folders, workers=0).import_file(link)
    assert summary.status == "rejected" and "symbolic link" in (summary.reason or "")
    assert SECRET not in all_text(folders.root) and "secret-line" not in all_text(folders.root)
    assert (folders.rejected / "orders.jsonl").is_symlink()  # the link moved, never its target
    assert secret.read_text() == SECRET + "\n"
    assert outbox.count() == 0


def test_a_refused_file_is_not_quoted_in_its_result(env: Any) -> None:
    outbox, folders, _ = env
    src = folders.root / "odd.csv"
    src.write_text(SECRET + "\n")
    summary = Importer(outbox, folders, workers=0).import_file(src)
    assert summary.status == "rejected" and "unknown format" in (summary.reason or "")
    assert "secret-line" not in (summary.reason or "")
    assert "secret-line" not in (folders.rejected / "odd.csv.result.json").read_text()
