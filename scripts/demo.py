"""`make demo`: two stores, their agents and a hub on SQLite, with a hub outage in the middle.

Prints what happens as it happens, then a summary a person can check. The verdict is the harness's
content checker (``storesync_harness.invariants``): exit 0 only when every transaction the POS was
told is saved is in the hub ledger exactly once, with exactly the content the POS sent, chained and
signed with its store's key, and has exactly one transaction event, carrying that transaction, in the
hub's embedded jsonl sink.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from storesync_harness.invariants import PosJournal, check_stores
from storesync_harness.pos import Pos
from storesync_harness.processes import Agent, Hub, agent_cli

STORES = [("BERLIN-01", "Europe/Berlin"), ("NYC-07", "America/New_York")]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def show_events(hub: Hub) -> None:
    """Events per type in the embedded jsonl sink."""
    events = [json.loads(line) for line in (hub.data_dir / "events.jsonl").read_text().splitlines()]
    per_type = Counter(e["type"] for e in events)
    print()
    print(f"{'event type':<30} {'events':>7}   (jsonl sink {hub.data_dir / 'events.jsonl'})")
    for type_, n in sorted(per_type.items()):
        print(f"{type_:<30} {n:>7}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default="demo-data", type=Path)
    ap.add_argument("--per-store", type=int, default=400, help="transactions per store")
    args = ap.parse_args()

    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    args.data_dir.mkdir(parents=True)
    say(f"data in {args.data_dir.resolve()}")

    hub = Hub.create(args.data_dir / "hub").start()
    say(f"hub up at {hub.url} (SQLite: {hub.data_dir / 'hub.db'})")
    agents: dict[str, Agent] = {}
    try:
        for store_id, tz in STORES:
            agents[store_id] = Agent.enrolled(
                args.data_dir / store_id, hub, store_id, tz, "--sync-interval", "1"
            ).start()
            say(f"store {store_id} ({tz}) enrolled; agent capture API at {agents[store_id].url}")

        registers = {s: [Pos(f"{s[:3]}R{i}", seed=7) for i in (1, 2)] for s, _ in STORES}
        accepted: dict[str, list[dict]] = {s: [] for s, _ in STORES}
        journal = PosJournal()  # every POS call, exact text and answer: the verdict's reference
        retries = {s: 0 for s, _ in STORES}
        refused = {s: 0 for s, _ in STORES}
        total = args.per_store
        outage = (int(total * 0.35), int(total * 0.7))
        with httpx.Client(timeout=10) as client:
            for i in range(total):
                if i == outage[0]:
                    hub.stop()
                    say(f"hub STOPPED (simulated outage) after {i} transactions per store; stores keep selling")
                if i == outage[1]:
                    for store_id, agent in agents.items():
                        st = agent.status()
                        say(f"  {store_id}: {st['pending']} waiting, last sync: {st['last_sync_result']}")
                    hub.start()
                    say("hub STARTED again; agents catch up on their own")
                for store_id, agent in agents.items():
                    pos = registers[store_id][i % 2]
                    txn = pos.mixed()
                    r = journal.post(client, agent.url, txn)
                    if r.status_code != 201:
                        say(f"  unexpected {r.status_code} from {store_id}: {r.text}")
                        refused[store_id] += 1
                        continue
                    accepted[store_id].append(txn)
                    if i % 25 == 0:  # the POS lost the answer and retries the same transaction
                        again = journal.post(client, agent.url, txn)
                        if again.status_code == 200 and again.json()["duplicate"]:
                            retries[store_id] += 1
                if i and i % 100 == 0:
                    say(f"{i} transactions per store captured")
            # A bad transaction shows the clear error a POS integrator gets.
            bad = dict(registers[STORES[0][0]][0].sale(), total="0.01")
            r = journal.post(client, agents[STORES[0][0]].url, bad)
            say(f"a transaction whose totals do not add up gets {r.status_code}: {r.json()['errors'][0]}")

        say("waiting for every store to catch up ...")
        for agent in agents.values():
            agent.wait_synced(timeout=120)

        print()
        print(f"{'store':<11} {'captured':>8} {'POS retries':>11} {'pending':>7} {'acked':>6} {'in hub':>6} "
              f"{'exactly once':>12} {'conflicts':>9} {'chain':>6}")  # fmt: skip
        ok = True
        for store_id, agent in agents.items():
            st = agent.status()
            ledger = hub.ledger(store_id)
            info = hub.admin(f"/v1/admin/stores/{store_id}")
            conflicts = sum(len(s["conflicts"]) for s in info["streams"])
            keys_ = [
                (json.loads(r["body"])["txn"]["register_id"], json.loads(r["body"])["txn"]["txn_id"]) for r in ledger
            ]
            want = {(t["register_id"], t["txn_id"]) for t in accepted[store_id]}
            once = len(keys_) == len(set(keys_)) == len(want) and set(keys_) == want
            seq_ok = [r["seq"] for r in ledger] == list(range(1, len(ledger) + 1))
            chain_ok = agent_cli("verify", "--data-dir", str(agent.data_dir), check=False).returncode == 0
            ok &= once and seq_ok and conflicts == 0 and chain_ok and st["pending"] == 0
            print(f"{store_id:<11} {len(accepted[store_id]):>8} {retries[store_id]:>11} {st['pending']:>7} "
                  f"{st['acked_through']:>6} {len(ledger):>6} {'yes' if once and seq_ok else 'NO':>12} "
                  f"{conflicts:>9} {'ok' if chain_ok else 'BROKEN':>6}")  # fmt: skip
        print()
        print("POS retries: the same transaction sent twice; the agent answered 200 duplicate with the original seq.")
        say("waiting for the delivery workers to write every event to the jsonl sink ...")
        verdict = check_stores(hub, journal, {s: a.data_dir for s, a in agents.items()})
        show_events(hub)
        print()
        print("content check: " + verdict.counts())
        for line in verdict.event_lines():
            print(line)
        for detail in verdict.details:
            print(f"  ! {detail}")
        ok &= verdict.ok and verdict.found == verdict.acknowledged
        say(
            "RESULT: every acknowledged transaction is in the hub ledger exactly once, with the content the POS "
            "sent and a valid signature, and its event reached the sink once"
            if ok
            else "RESULT: MISMATCH"
        )
        return 0 if ok else 1
    finally:
        for agent in agents.values():
            agent.stop()
        hub.stop()


if __name__ == "__main__":
    sys.exit(main())
