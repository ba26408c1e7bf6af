"""The PostgreSQL fleet store: appends, claims and lease takeover, against the JSONL journal.

Run ``python benchmarks/bench_store.py``; prints one JSON object. It starts its own private
PostgreSQL server from the installed binaries (``infra.postgres_server``), as the test suite
does, and removes it after. The baseline is the JSONL journal with fsync on, appending the same
events in the same run: ``append_vs_jsonl`` is the store's time per event over the journal's.

``takeover``: a host claims a task and stops beating; another host polls ``claim`` every
``--poll`` seconds. The figure is the time from the first host's last renewal to the second
host's claim, per lease length: what the store adds to a host loss before any agent is
relaunched (the relaunch itself is not measured here; see docs/multi-host.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from bench_journal import realistic_events

from pytest_orch_recovery.engine.events import DecisionMade, Event
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.infra.postgres_server import LocalPostgres
from pytest_orch_recovery.store import schema
from pytest_orch_recovery.store.journal import Journal
from pytest_orch_recovery.store.postgres import PostgresStore


def _database(server: LocalPostgres, name: str) -> str:
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = server.url.replace("/postgres?", f"/{name}?")
    with psycopg.connect(url, autocommit=True) as conn:
        schema.upgrade(conn, create=True)
    return url


def _appends(url: str, events: list[Event]) -> float:
    with PostgresStore(url, host="bench") as store:
        store.register(capacity=None)
        for task_id in dict.fromkeys(e.task_id for e in events if e.task_id):
            store.submit(Task(task_id, task_id, ("x.md",)))
        while store.claim():
            pass
        start = time.perf_counter()
        for event in events:
            store.append(event)
        return time.perf_counter() - start


def _jsonl_appends(events: list[Event]) -> float:
    with (
        tempfile.TemporaryDirectory(prefix="bench-store-") as tmp,
        Journal(Path(tmp) / "journal.jsonl", fsync=True) as journal,
    ):
        start = time.perf_counter()
        for event in events:
            journal.append(event)
        return time.perf_counter() - start


def _claims(url: str, tasks: int, claimers: int) -> dict[str, Any]:
    with PostgresStore(url) as submitter:
        for n in range(tasks):
            submitter.submit(Task(f"c{claimers}-{n}", "claim me", ("x.md",)))
    counts = [0] * claimers
    barrier = threading.Barrier(claimers + 1)

    def claimer(i: int) -> None:
        with PostgresStore(url, host=f"claimer-{claimers}-{i}") as store:
            store.register(capacity=None)
            barrier.wait()
            while store.claim(room=1):
                counts[i] += 1

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    assert sum(counts) == tasks, counts
    return {"claimers": claimers, "tasks": tasks, "per_second": round(tasks / wall)}


def _takeover(url: str, lease: float, poll: float, n: int) -> float:
    with (
        PostgresStore(url, host=f"lost-{n}", lease=lease) as lost,
        PostgresStore(url, host=f"heir-{n}", lease=lease) as heir,
    ):
        lost.register(capacity=None)
        heir.register(capacity=None)
        lost.submit(Task(f"failover-{n}", "take me over", ("x.md",)))
        lost.claim()
        lost.append(Event(DecisionMade(), 1.0, f"failover-{n}"))
        lost.heartbeat()
        last_beat = time.monotonic()
        while not heir.claim():
            time.sleep(poll)
        return time.monotonic() - last_beat


def run(events_count: int, tasks: int, leases: list[float], poll: float) -> dict[str, Any]:
    events = list(realistic_events(events_count))
    with LocalPostgres() as server:
        server.start()
        url = _database(server, "bench_appends")
        store_seconds = _appends(url, events)
        jsonl_seconds = _jsonl_appends(events)
        claims_url = _database(server, "bench_claims")
        claims = [_claims(claims_url, tasks, k) for k in (1, 2, 4)]
        takeover = [
            {
                "lease_seconds": lease,
                "takeover_seconds": round(
                    _takeover(_database(server, f"bench_takeover_{i}"), lease, poll, i), 3
                ),
            }
            for i, lease in enumerate(leases)
        ]
    return {
        "events": len(events),
        "append_store_per_second": round(len(events) / store_seconds),
        "append_jsonl_fsync_per_second": round(len(events) / jsonl_seconds),
        "append_vs_jsonl": round(store_seconds / jsonl_seconds, 2),
        "claims": claims,
        "takeover_poll_seconds": poll,
        "takeover": takeover,
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2_000, help="events to append")
    parser.add_argument("--tasks", type=int, default=500, help="tasks claimed per claimer count")
    parser.add_argument(
        "--lease", type=float, action="append", help="lease seconds to measure (repeatable)"
    )
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between heir's claims")
    args = parser.parse_args(argv)
    print(
        json.dumps(run(args.events, args.tasks, args.lease or [1.0, 2.0, 4.0], args.poll), indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
