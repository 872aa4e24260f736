"""Errors a person can act on: one or two lines, a documented exit code, never a traceback (issue 13).

Every command runs as a real subprocess against real hub and agent processes and SQLite files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from edge_agent.store import Identity, Outbox
from storesync_harness.dropfiles import write_jsonl
from storesync_harness.faultproxy import FaultProxy
from storesync_harness.processes import Agent, Hub, agent_cli, free_port, hub_cli
from sync_protocol import keys

EXIT_PROBLEM, EXIT_USAGE, EXIT_HUB, EXIT_LOCKED, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


def one_line_error(res: subprocess.CompletedProcess[str], prog: str) -> str:
    """The single error line on stderr (asserting there is exactly one and no traceback)."""
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    return lines[0]


def init_agent(data: Path) -> None:
    agent_cli("init", "--data-dir", str(data))


def write_identity(data: Path) -> None:
    """An enrolled identity without a hub (for commands that never talk to one)."""
    key, hub_key = keys.load_private_key(data / "agent.key"), keys.generate()
    with Outbox(data / "outbox.db") as outbox:
        outbox.set_identity(
            Identity(
                store_id="S1",
                epoch=1,
                key_id=keys.key_id(key),
                public_key=keys.public_hex(key),
                hub_url="http://127.0.0.1:9",
                hub_public_key=keys.public_hex(hub_key),
                hub_key_id=keys.key_id(hub_key),
                tz="Europe/Berlin",
            )
        )


def test_short_enrollment_token_names_the_flag(tmp_path: Path) -> None:
    init_agent(tmp_path / "a")
    res = agent_cli(
        "enroll", "--data-dir", str(tmp_path / "a"), "--hub", "http://127.0.0.1:9", "--token", "short", check=False
    )
    assert res.returncode == EXIT_USAGE
    line = one_line_error(res, "edge-agent")
    assert "--token" in line and "at least 16 characters" in line


def test_wrong_hub_url_is_named(tmp_path: Path) -> None:
    init_agent(tmp_path / "a")
    url = f"http://127.0.0.1:{free_port()}"
    res = agent_cli("enroll", "--data-dir", str(tmp_path / "a"), "--hub", url, "--token", "x" * 43, check=False)
    assert res.returncode == EXIT_HUB
    assert url in one_line_error(res, "edge-agent")


def test_unwritable_data_folders_for_init_and_store_add(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = agent_cli("init", "--data-dir", str(blocker / "agent"), check=False)
    assert res.returncode == EXIT_USAGE
    assert str(blocker / "agent") in one_line_error(res, "edge-agent")
    res = hub_cli("init", "--data-dir", str(blocker / "hub"), check=False)
    assert res.returncode == EXIT_USAGE
    assert str(blocker / "hub") in one_line_error(res, "cloud-hub")
    res = hub_cli("store", "add", "S1", "--tz", "UTC", "--data-dir", str(blocker / "hub"), check=False)
    assert res.returncode == EXIT_USAGE
    one_line_error(res, "cloud-hub")


@pytest.mark.parametrize("command", [["stores"], ["store", "add", "S1", "--tz", "UTC"], ["deliveries", "list"]])
def test_only_init_creates_a_hub(tmp_path: Path, command: list[str]) -> None:
    typo = tmp_path / "hub-dtaa"
    res = hub_cli(*command, "--data-dir", str(typo), check=False)
    assert res.returncode == EXIT_USAGE
    line = one_line_error(res, "cloud-hub")
    assert "is not a hub data folder" in line and "cloud-hub init" in line
    assert not typo.exists()


def test_serve_refuses_a_folder_that_is_not_a_hub(tmp_path: Path) -> None:
    res = hub_cli("serve", "--data-dir", str(tmp_path / "nothing"), "--port", "0", check=False)
    assert res.returncode == EXIT_USAGE and "is not a hub data folder" in one_line_error(res, "cloud-hub")
    assert not (tmp_path / "nothing").exists()


def test_init_twice_is_refused_and_keeps_the_key(tmp_path: Path) -> None:
    hub_cli("init", "--data-dir", str(tmp_path / "h"))
    key = (tmp_path / "h" / "hub.key").read_bytes()
    res = hub_cli("init", "--data-dir", str(tmp_path / "h"), check=False)
    assert res.returncode == EXIT_USAGE and "already" in one_line_error(res, "cloud-hub")
    assert (tmp_path / "h" / "hub.key").read_bytes() == key


def test_hub_port_in_use_is_one_line(tmp_path: Path) -> None:
    hub_cli("init", "--data-dir", str(tmp_path / "h"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = hub_cli("serve", "--data-dir", str(tmp_path / "h"), "--port", str(port), check=False)
    assert res.returncode == EXIT_USAGE
    line = one_line_error(res, "cloud-hub")
    assert f"127.0.0.1:{port}" in line and "in use" in line


def test_status_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    init_agent(tmp_path / "a")
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that already exited
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_agent", "status", "--data-dir", str(tmp_path / "a")],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 141


def test_status_exit_code_follows_the_state(tmp_path: Path, hub: Hub) -> None:
    data = tmp_path / "agent"
    res = agent_cli("status", "--data-dir", str(tmp_path / "missing"), "--json", check=False)
    assert res.returncode == EXIT_USAGE and json.loads(res.stdout)["ok"] is False
    init_agent(data)
    assert agent_cli("status", "--data-dir", str(data), check=False).returncode == EXIT_PROBLEM  # not enrolled
    agent_cli("enroll", "--data-dir", str(data), "--hub", hub.url, "--token", hub.add_store("S1"))
    assert agent_cli("status", "--data-dir", str(data), check=False).returncode == 0  # in sync (nothing yet)
    sale = {"txn_id": "T1", "register_id": "R1", "kind": "sale", "occurred_at": "2026-11-22T10:15:03",
            "currency": "EUR", "lines": [{"sku": "A", "qty": "1", "unit_price": "1.00", "discount": "0.00",
            "tax": "0.00"}], "tenders": [{"type": "cash", "amount": "1.00"}], "total": "1.00"}  # fmt: skip
    cap = agent_cli("capture", "--data-dir", str(data), "-", "--json", input=json.dumps(sale))
    assert json.loads(cap.stdout)["results"][0] == {"item": "item 1", "result": "stored", "seq": 1}
    assert agent_cli("status", "--data-dir", str(data), check=False).returncode == EXIT_PROBLEM  # 1 pending
    synced = json.loads(agent_cli("sync", "--data-dir", str(data), "--json").stdout)
    assert synced["ok"] is True and synced["acked_through"] == 1
    assert agent_cli("status", "--data-dir", str(data)).returncode == 0
    verified = json.loads(agent_cli("verify", "--data-dir", str(data), "--json").stdout)
    assert verified["ok"] is True and verified["count"] >= 1


def test_second_run_and_import_are_refused_naming_the_holder(tmp_path: Path, hub: Hub) -> None:
    agent = Agent.enrolled(tmp_path / "agent", hub, "S1").start()
    try:
        res = agent_cli("run", "--data-dir", str(agent.data_dir), "--port", "0", check=False)
        assert res.returncode == EXIT_LOCKED
        line = one_line_error(res, "edge-agent")
        assert "'edge-agent run'" in line and f"pid {agent.proc.pid}" in line  # type: ignore[union-attr]
        drop = tmp_path / "d.jsonl"
        write_jsonl(drop, 3)
        res = agent_cli("import", "--data-dir", str(agent.data_dir), str(drop), check=False)
        assert res.returncode == EXIT_LOCKED and "'edge-agent run'" in one_line_error(res, "edge-agent")
        assert drop.exists()
    finally:
        agent.stop()
    # the lock goes with the process: a new run starts
    again = Agent.create(agent.data_dir).start()
    again.stop()


def test_second_serve_of_a_sqlite_hub_is_refused(tmp_path: Path, hub: Hub) -> None:
    res = hub_cli("serve", "--data-dir", str(hub.data_dir), "--port", "0", check=False)
    assert res.returncode == EXIT_LOCKED
    line = one_line_error(res, "cloud-hub")
    assert "'cloud-hub serve'" in line and f"pid {hub.proc.pid}" in line  # type: ignore[union-attr]


def test_ctrl_c_during_import_marks_it_interrupted_and_the_next_run_resumes(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    init_agent(data)
    write_identity(data)
    src = tmp_path / "big.jsonl"
    write_jsonl(src, 40_000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    argv = [sys.executable, "-m", "edge_agent", "import", "--data-dir", str(data), str(src)]
    proc = subprocess.Popen(
        [*argv, "--workers", "0", "--progress", "0"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # wait for a committed chunk
        if " rows (" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "import interrupted" in err and "run the same command again" in err
    listing = agent_cli("imports", "--data-dir", str(data)).stdout
    assert "big.jsonl  interrupted" in listing
    res = subprocess.run([*argv, "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    summary = json.loads(res.stdout)
    assert (summary["rows"], summary["accepted"], summary["duplicates"]) == (40_000, 40_000, 0)
    status = json.loads(agent_cli("status", "--data-dir", str(data), "--json", check=False).stdout)
    assert status["last_seq"] == 40_000
    assert "interrupted" not in agent_cli("imports", "--data-dir", str(data)).stdout


def test_enrollment_is_idempotent_when_the_answer_is_lost(tmp_path: Path, hub: Hub) -> None:
    data = tmp_path / "agent"
    init_agent(data)
    with FaultProxy(upstream_port=hub.port) as proxy:
        for epoch in (1, 2):  # first enrollment, then a re-enrollment to a new epoch with a staged key
            token = hub.add_store("S1")
            proxy.set_mode("after_commit_drop", path_prefix="/v1/enroll", count=1)
            lost = agent_cli("enroll", "--data-dir", str(data), "--hub", proxy.url, "--token", token, check=False)
            assert lost.returncode == EXIT_HUB and proxy.url in one_line_error(lost, "edge-agent")
            proxy.set_mode("pass")
            res = agent_cli("enroll", "--data-dir", str(data), "--hub", proxy.url, "--token", token, "--json")
            answer = json.loads(res.stdout)
            assert answer["epoch"] == epoch
            key = keys.load_private_key(data / "agent.key")
            assert answer["key_id"] == keys.key_id(key)
            assert not (data / "agent.key.new").exists()
    stores = hub.admin("/v1/admin/stores/S1")
    assert json.dumps(stores).count('"epoch"') >= 1
    # the token stays single-use for any other key
    other = httpx.post(
        hub.url + "/v1/enroll",
        json={"token": token, "public_key": keys.public_hex(keys.generate()), "hostname": "x", "agent_version": "0"},
        timeout=10,
    )
    assert other.status_code == 401


def test_every_flag_has_help() -> None:
    from cloud_hub.cli import build_parser as hub_parser
    from edge_agent.cli import build_parser as agent_parser

    missing = []
    for parser in (agent_parser(), hub_parser()):
        stack = [parser]
        while stack:
            p = stack.pop()
            for action in p._actions:
                if action.choices and isinstance(action.choices, dict):
                    stack.extend(action.choices.values())
                elif action.help is None and action.dest != "help":
                    missing.append(f"{p.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
    assert agent_cli("--version").stdout.startswith("edge-agent ")
    assert hub_cli("--version").stdout.startswith("cloud-hub ")


def test_a_bug_is_exit_70_in_one_line_and_storesync_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from storesync_runtime.cli import DEBUG_ENV, EXIT_INTERNAL, run

    def bug() -> int:
        return {}["missing"]

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert EXIT_INTERNAL == 70
    assert run("edge-agent", bug, handlers=(), json_mode=True) == 70
    out, err = capsys.readouterr()
    assert json.loads(out) == {"ok": False, "error": "internal", "message": json.loads(out)["message"], "exit_code": 70}
    assert err.startswith("edge-agent: error: internal error (KeyError at test_cli_errors.py:")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setenv(DEBUG_ENV, "1")
    assert run("edge-agent", bug, handlers=()) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err
