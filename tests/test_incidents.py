"""Systematic incidents (engine/incidents.py), the runtime's worker pool (runtime/workers.py)
and the PR lookups a burst of exits shares (infra/gh.py).

The incidents are driven through the simulation tier: agents killed at every start fail the
same way across the fleet, the circuit breaker opens, and every escalation after that joins one
incident, which one release frees; a replayed coordinator holds the same incidents.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.sim import simulate
from pytest_orch_recovery.engine.events import Event, EventKind, OperatorAction, TaskEscalated
from pytest_orch_recovery.engine.incidents import IncidentBook
from pytest_orch_recovery.engine.model import Reason, Task
from pytest_orch_recovery.infra.gh import GhPullRequests
from pytest_orch_recovery.runtime.workers import EXIT, LAUNCH, WorkPool

TASKS = [Task(f"t{i}", f"Write note {i}", (f"n{i}.md",)) for i in range(6)]


def _killed_once_each() -> list[Event]:
    faults = [FaultSpec("kill", Trigger("start"), task=t.task_id, attempt=1) for t in TASKS]
    return simulate(TASKS, faults, seed=7).events


def test_one_cause_across_the_fleet_is_one_incident() -> None:
    events = _killed_once_each()
    escalated = [e for e in events if e.kind is EventKind.TASK_ESCALATED]
    assert len(escalated) == len(TASKS) - 2  # the breaker (threshold 3) opens at the third
    incidents = {e.payload.incident for e in escalated if isinstance(e.payload, TaskEscalated)}
    assert incidents == {"killed-1"}
    book = IncidentBook()
    for event in events:
        book.fold(event)
    incident = book.incidents["killed-1"]
    assert incident.reason == "killed" and not incident.closed
    assert book.held(incident) == [e.task_id for e in escalated]
    assert all(book.incident_of(str(e.task_id)) is incident for e in escalated)
    assert book.release_target("killed-1", {t.task_id for t in TASKS}) is incident


def test_releasing_the_incident_frees_its_tasks_and_closes_it() -> None:
    events = _killed_once_each()
    book = IncidentBook()
    for event in events:
        book.fold(event)
    held = book.held(book.incidents["killed-1"])
    release = Event(
        OperatorAction("fixed it", tuple(held), (Reason.KILLED,), incident="killed-1"),
        time=events[-1].time + 1,
        seq=len(events) + 1,
    )
    book.fold(release)
    assert book.incidents["killed-1"].closed
    assert book.open_for("killed") is None
    assert book.release_target("killed-1", set()) == "incident released already"
    assert book.release_target(held[0], set(held)) == "not escalated (nothing to release)"
    assert book.next_id("killed") == "killed-2"  # the next escalation opens a new one


def test_an_escalation_of_its_own_is_no_incident() -> None:
    book = IncidentBook()
    book.fold(Event(TaskEscalated("budget spent", None, Reason.TIMEOUT), 1.0, "t1", seq=1))
    assert book.incidents == {} and book.escalated == {"t1": None}
    assert book.release_target("t1", {"t1"}) is None
    assert book.release_target("t9", {"t1"}) == "no such task or incident"


def test_the_pool_runs_exits_before_launches_and_applies_in_the_owners_thread() -> None:
    pool = WorkPool(1)
    gate = threading.Event()
    order: list[str] = []
    applied_in: set[int] = set()

    def record(name: str) -> None:
        order.append(name)
        applied_in.add(threading.get_ident())

    try:
        started = threading.Event()

        def blocker() -> None:
            started.set()
            gate.wait()

        pool.submit(LAUNCH, blocker, lambda _r: record("blocker"), _raise)  # holds the worker
        assert started.wait(60)
        for n in range(3):
            pool.submit(LAUNCH, functools.partial(str.format, "launch{}", n), record, _raise)
        pool.submit(EXIT, lambda: "exit", record, _raise)
        gate.set()
        deadline = time.monotonic() + 60
        while pool.pending and time.monotonic() < deadline:
            pool.wait(1.0)
    finally:
        pool.close()
    assert order == ["blocker", "exit", "launch0", "launch1", "launch2"]
    assert applied_in == {threading.get_ident()}


def test_a_failed_job_reaches_its_owner_after_the_others_are_applied() -> None:
    pool = WorkPool(2)
    seen: list[object] = []
    try:
        pool.submit(EXIT, lambda: 1 / 0, seen.append, _raise)
        pool.submit(EXIT, lambda: "fine", seen.append, _raise)
        deadline = time.monotonic() + 60
        errors = []
        while pool.pending and time.monotonic() < deadline:
            try:
                pool.wait(1.0)
            except ZeroDivisionError as exc:
                errors.append(exc)
    finally:
        pool.close()
    assert seen == ["fine"] and len(errors) == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["t1", "t2", "t3"]), min_size=1, max_size=12))
def test_every_escalation_with_a_cause_is_in_exactly_one_open_incident(tasks: list[str]) -> None:
    book = IncidentBook()
    for seq, task in enumerate(tasks, 1):
        incident = book.open_for("api_error")
        book.fold(
            Event(
                TaskEscalated(
                    "wall",
                    "systematic api_error",
                    Reason.API_ERROR,
                    incident.incident_id if incident else book.next_id("api_error"),
                ),
                float(seq),
                task,
                seq=seq,
            )
        )
    assert list(book.incidents) == ["api_error-1"]
    assert sorted(book.held(book.incidents["api_error-1"])) == sorted(set(tasks))


def _raise(error: BaseException) -> None:
    raise error


_FAKE_GH = """#!/bin/sh
# gh stand-in counting its calls: pr list answers slowly (so lookups overlap) with branches
# b0..b9 open; pr view knows no PR.
echo "$*" >> "$CALLS"
case "$1 $2" in
"pr list")
    sleep 0.5
    printf '['
    for i in 0 1 2 3 4 5 6 7 8 9; do
        [ $i -gt 0 ] && printf ','
        printf '{"number":%d,"state":"OPEN","url":"u","title":"t","headRefName":"b%d"}' $i $i
    done
    printf ']\\n' ;;
*) echo 'no pull requests found for branch "x"' >&2; exit 1 ;;
esac
"""


def test_lookups_at_the_same_time_share_one_listing(tmp_path: Path) -> None:
    gh = tmp_path / "gh"
    gh.write_text(_FAKE_GH)
    gh.chmod(0o755)
    calls = tmp_path / "calls"
    prs = GhPullRequests(tmp_path, env={**os.environ, "CALLS": str(calls)}, gh=str(gh), batch=True)
    branches = [f"b{i}" for i in range(10)] + ["gone"]
    found: dict[str, int | None] = {}

    def look(branch: str) -> None:
        pr = prs.pull_request_for(branch)
        found[branch] = None if pr is None else pr.number

    threads = [threading.Thread(target=look, args=(b,)) for b in branches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert found == {**{f"b{i}": i for i in range(10)}, "gone": None}
    lines = calls.read_text().splitlines()
    listings = [line for line in lines if line.startswith("pr list")]
    assert 1 <= len(listings) <= 2 < len(branches)  # shared, not one per lookup
    assert [line for line in lines if line.startswith("pr view")] == [
        "pr view --json number,state,url,title,headRefName -- gone"
    ]


def test_a_lookup_for_an_ended_agent_takes_a_listing_started_after_its_end(
    tmp_path: Path,
) -> None:
    gh = tmp_path / "gh"
    gh.write_text(_FAKE_GH)
    gh.chmod(0o755)
    calls = tmp_path / "calls"
    prs = GhPullRequests(tmp_path, env={**os.environ, "CALLS": str(calls)}, gh=str(gh), batch=True)
    ended = time.time()
    first = prs.listed_after(ended).pull_request_for("b1")  # lists: nothing listed since
    again = prs.listed_after(ended).pull_request_for("b2")  # that listing started after
    assert (first and first.number, again and again.number) == (1, 2)
    assert calls.read_text().count("pr list") == 1
    assert prs.pull_request_for("b3") is not None  # a plain lookup wants a newer listing
    later = time.time()
    assert prs.listed_after(later).pull_request_for("b4") is not None  # and so does this
    assert calls.read_text().count("pr list") == 3


def test_a_prefetched_listing_answers_the_exits_noticed_before_it(tmp_path: Path) -> None:
    gh = tmp_path / "gh"
    gh.write_text(_FAKE_GH)
    gh.chmod(0o755)
    calls = tmp_path / "calls"
    prs = GhPullRequests(tmp_path, env={**os.environ, "CALLS": str(calls)}, gh=str(gh), batch=True)
    noticed = time.time()
    prs.prefetch(noticed)  # lists
    prs.prefetch(noticed)  # one that started after `noticed` is done: nothing to do
    found = prs.listed_after(noticed).pull_request_for("b5")
    assert found is not None and found.number == 5
    assert calls.read_text().count("pr list") == 1


def test_a_prefetch_during_an_older_listing_has_another_follow_it(tmp_path: Path) -> None:
    gh = tmp_path / "gh"
    gh.write_text(_FAKE_GH)
    gh.chmod(0o755)
    calls = tmp_path / "calls"
    prs = GhPullRequests(tmp_path, env={**os.environ, "CALLS": str(calls)}, gh=str(gh), batch=True)
    first = threading.Thread(target=prs.prefetch, args=(time.time(),))
    first.start()
    deadline = time.monotonic() + 60
    while not (calls.exists() and "pr list" in calls.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    changed = time.time()  # a PR changed while that listing ran: it may not hold it
    prs.prefetch(changed)  # returns at once; the listing thread lists again when it ends
    assert calls.read_text().count("pr list") == 1
    first.join(120)
    assert calls.read_text().count("pr list") == 2
    found = prs.listed_after(changed).pull_request_for("b3")  # that second listing answers
    assert found is not None and found.number == 3
    assert calls.read_text().count("pr list") == 2
