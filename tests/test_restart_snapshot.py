"""Coordinator snapshots: a restart from the snapshot plus the journal's tail rebuilds the
coordinator a whole replay builds, and does the same next; damaged or stale snapshots are
ignored."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from events import JournalBuilder, random_journal, seed_incident
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sim_properties import Campaign, campaigns

from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.simruntime import SimRuntime
from pytest_orch_recovery.engine.coordinator import (
    Coordinator,
    CoordinatorConfig,
    CoordinatorState,
    fold_settings,
)
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import Event, EventKind, TaskEscalated, TaskSubmitted
from pytest_orch_recovery.engine.model import (
    ExitInfo,
    PartialWork,
    Phase,
    Reason,
    Strategy,
    Task,
)
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.engine.ports import AttemptExit, LaunchSpec
from pytest_orch_recovery.store.journal import Journal, JournalError, journal_text
from pytest_orch_recovery.store.restart import (
    _compact_row,
    load_state,
    open_journal,
    save_state,
    state_path,
)

CORPUS = Path(__file__).parent / "corpus"


class _Clock:
    def __init__(self, now: float) -> None:
        self.time = now

    def now(self) -> float:
        return self.time


class Recorder:
    """A runtime with nothing running that writes down what a recovering coordinator asks."""

    def __init__(self, now: float) -> None:
        self.clock = _Clock(now)
        self.calls: list[tuple[str, str]] = []

    def launch(self, spec: LaunchSpec) -> None:
        self.calls.append(("launch", spec.key))

    def next_exit(self, deadline: float | None) -> AttemptExit | None:
        return None

    def interrupt(self, agent: str) -> None:
        self.calls.append(("interrupt", agent))

    def kill(self, agent: str) -> None:
        self.calls.append(("kill", agent))

    def output(self, agent: str) -> str:
        return ""

    def partial_work(self, task: Task, agent: str) -> PartialWork:
        self.calls.append(("partial_work", agent))
        return PartialWork(deliverables_missing=task.deliverables)

    def live(self) -> frozenset[str]:
        return frozenset()

    def apply_remedy(self, agent: str, remedy: str) -> str:
        self.calls.append(("remedy", agent))
        return "done"

    def cleanup(self, agent: str) -> None:
        self.calls.append(("cleanup", agent))


def _config(seed: int) -> CoordinatorConfig:
    return CoordinatorConfig(seed=seed, attempt_timeout=1800.0)


def _settings(seed: int) -> tuple[tuple[str, str | int | float | None], ...]:
    return fold_settings(_config(seed), Policy(seed=seed))


def _live_run(c: Campaign) -> tuple[list[Event], dict[int, CoordinatorState | None]]:
    """The campaign's journal, and the state the live coordinator exported after each
    event (as a supervisor exports it between steps, here after every one)."""
    ts, faults, seed = c
    states: dict[int, CoordinatorState | None] = {}
    journal = Journal(None)

    def export(event: Event) -> None:
        states[event.seq] = live.state()

    live = Coordinator(
        SimRuntime(seed=seed, faults=faults),
        journal,
        policy=Policy(seed=seed),
        config=_config(seed),
        on_event=export,
    )
    for task in ts:
        live.submit(task)
    live.run()
    # An operator closes every breaker and releases what escalated: operator actions and
    # incidents in the journal too.
    live.release("fixed everything", reasons=list(Reason))
    live.run()
    return list(journal.events()), states


def _write(path: Path, events: list[Event]) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(_lines(events))


def _lines(events: list[Event]) -> str:
    return "".join(
        json.dumps(e.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n" for e in events
    )


def _timers(coordinator: Coordinator) -> list[tuple[float, str, str]]:
    entries = sorted(coordinator._launches._heap)
    return [
        (t, tid, key) for t, n, tid, key in entries if coordinator._pending_of((t, n, tid, key))
    ]


def _memory(coordinator: Coordinator) -> dict[str, Any]:
    """What a coordinator holds beyond its tasks."""
    breaker = coordinator.policy.breaker
    return {
        "running": coordinator._running,
        "by_agent": coordinator._by_agent,
        "limits": coordinator._limits,
        "stopped": coordinator._stopped_keys,
        "names_used": coordinator._names._used,
        "names_rng": coordinator._names._rng.getstate(),
        "breaker": (breaker._open, breaker._recent, breaker._agents),
        "incidents": coordinator.incidents,
        "launch_timers": _timers(coordinator),
        "state": coordinator.state(),
    }


def _restart(
    path: Path, seed: int, now: float, *, snapshot: bool
) -> tuple[Coordinator, Recorder, Journal, CoordinatorState | None]:
    recorder = Recorder(now)
    if snapshot:
        journal, state = open_journal(path, _settings(seed))
    else:
        journal, state = Journal(path), None
    coordinator = Coordinator(recorder, journal, policy=Policy(seed=seed), config=_config(seed))
    coordinator.recover(state=state)
    return coordinator, recorder, journal, state


def _assert_same_restart(root: Path, seed: int, now: float, *, used: bool) -> None:
    """Restart from ``root/a`` (journal + snapshot) and from a copy of the journal alone:
    the same coordinator, the same requests to the runtime, the same events appended."""
    whole_dir = root / "whole"
    whole_dir.mkdir()
    shutil.copy(root / "a" / "journal.jsonl", whole_dir / "journal.jsonl")
    restart_seq = int((root / "cut").read_text())
    fast, fast_runtime, fast_journal, state = _restart(
        root / "a" / "journal.jsonl", seed, now, snapshot=True
    )
    whole, whole_runtime, whole_journal, _ = _restart(
        whole_dir / "journal.jsonl", seed, now, snapshot=False
    )
    try:
        assert (state is not None) is used
        assert fast_journal.resumed_at == (state.seq if state is not None else 0)
        settled = fast.settled
        assert set(settled) <= {t for t, s in whole.tasks.items() if s.phase is Phase.SUCCEEDED}
        assert settled == {t: whole.tasks[t].agent for t in settled}
        assert fast.tasks == {t: s for t, s in whole.tasks.items() if t not in settled}
        assert _memory(fast) == _memory(whole)
        # Tasks settled in the snapshot were cleaned up when they succeeded.
        assert fast_runtime.calls == _without_cleanups(whole_runtime.calls, settled.values())
        assert len(fast_journal) == len(whole_journal)
        fast_new = [e.to_json() for e in fast_journal.events() if e.seq > restart_seq]
        whole_new = [e.to_json() for e in whole_journal.events() if e.seq > restart_seq]
        assert fast_new == whole_new
    finally:
        fast_journal.close()
        whole_journal.close()


def _without_cleanups(calls: list[tuple[str, str]], agents: Iterable[str]) -> list[tuple[str, str]]:
    """``calls`` less one cleanup of each of ``agents`` (an agent may serve several tasks)."""
    left = Counter(agents)
    out = []
    for call in calls:
        if call[0] == "cleanup" and left[call[1]]:
            left[call[1]] -= 1
            continue
        out.append(call)
    return out


def _snapshot_at(
    root: Path, events: list[Event], state: CoordinatorState, cut: int, restart: int
) -> Path:
    """``root/a/journal.jsonl`` with the first ``restart`` events, and beside it the
    snapshot of ``state`` written when the journal held ``cut`` of them."""
    directory = root / "a"
    directory.mkdir()
    path = directory / "journal.jsonl"
    _write(path, events[:cut])
    with Journal(path) as journal:
        assert save_state(journal, state)
    _write(path, events[cut:restart])
    (root / "cut").write_text(str(restart))
    return path


_PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@_PROPERTY
@given(campaigns(), st.data())
def test_a_snapshot_plus_the_tail_restarts_as_the_whole_journal(
    tmp_path_factory: pytest.TempPathFactory, c: Campaign, data: st.DataObject
) -> None:
    events, cut, state = _live_snapshot(c, data)
    restart = data.draw(st.integers(cut, len(events)), label="restart after event")
    root = tmp_path_factory.mktemp("restart")
    _snapshot_at(root, events, state, cut, restart)
    _assert_same_restart(root, c[2], events[-1].time + 60.0, used=True)


def _live_snapshot(
    c: Campaign, data: st.DataObject, *, escalated: bool = False
) -> tuple[list[Event], int, CoordinatorState]:
    """The campaign's journal, an event drawn from it, and the state the live coordinator
    exported after it (``escalated``: one with tasks escalated and waiting, if any)."""
    events, states = _live_run(c)
    usable = [seq for seq, state in states.items() if state is not None]
    waiting = [seq for seq in usable if states[seq].compact]  # type: ignore[union-attr]
    if escalated and waiting:
        usable = waiting
    cut = data.draw(st.sampled_from(usable), label="snapshot after event")
    state = states[cut]
    assert state is not None
    return events, cut, state


@_PROPERTY
@given(campaigns(), st.data())
def test_a_crash_while_the_snapshot_was_written_restarts_as_the_whole_journal(
    tmp_path_factory: pytest.TempPathFactory, c: Campaign, data: st.DataObject
) -> None:
    # The snapshot is written to a temporary file renamed over the old one: a crash leaves
    # the old snapshot and a partial temporary file. Shown here as worse: the snapshot
    # itself cut anywhere, with the partial file beside it.
    events, cut, state = _live_snapshot(c, data)
    root = tmp_path_factory.mktemp("torn")
    path = _snapshot_at(root, events, state, cut, len(events))
    snapshot = state_path(path).read_bytes()
    torn = data.draw(st.integers(0, len(snapshot) - 1), label="bytes written before the crash")
    state_path(path).write_bytes(snapshot[:torn])
    (path.parent / f".{state_path(path).name}.a1b2c3.tmp").write_bytes(snapshot[: torn // 2])
    _assert_same_restart(root, c[2], events[-1].time + 60.0, used=False)


@settings(max_examples=30, deadline=None)
@given(campaigns())
def test_the_live_coordinator_exports_what_a_replay_exports(c: Campaign) -> None:
    # The supervisor exports its live coordinator's memory; a snapshot must say what a
    # replay of the same events would hold, after any event.
    events, states = _live_run(c)
    seed = c[2]
    for seq in sorted(states)[:: max(1, len(states) // 8)]:
        replayed = Coordinator(
            Recorder(0.0), Journal(None), policy=Policy(seed=seed), config=_config(seed)
        )
        for event in events[:seq]:
            replayed._fold(Event.from_json(json.loads(json.dumps(event.to_json()))))
        assert _as_written(states[seq]) == _as_written(replayed.state()), seq


def _as_written(state: CoordinatorState | None) -> object:
    """A state with its events and compact tasks as the snapshot writes them (a live event
    holds the objects it was made from, a replayed one what its JSON gave back)."""
    if state is None:
        return None
    lines = [json.dumps(e.to_json()) for e in state.events]
    rows = [json.dumps(_compact_row(entry)) for entry in state.compact]
    return dataclasses.replace(state, events=(), compact=()), lines, rows


def _finished_journal(tmp_path: Path, tasks: int = 30) -> tuple[Path, list[Event]]:
    """A journal of ``tasks`` tasks of a simulated fleet, all finished."""
    ts = [Task(f"t{i}", f"Task {i}", (f"src/m{i}.py",)) for i in range(tasks)]
    events, _ = _live_run((ts, [], 7))
    path = tmp_path / "journal.jsonl"
    _write(path, events)
    return path, events


def _save_now(path: Path, seed: int = 7) -> CoordinatorState:
    with Journal(path) as journal:
        coordinator = Coordinator(
            Recorder(1e6), journal, policy=Policy(seed=seed), config=_config(seed)
        ).recover()
        state = coordinator.state()
        assert state is not None
        assert save_state(journal, state)
    return state


def test_a_restart_reads_only_the_tail_after_the_snapshot(tmp_path: Path) -> None:
    path, events = _finished_journal(tmp_path)
    state = _save_now(path)
    assert state.seq == len(events) and state.settled and not state.events
    # Damage a line well before the snapshot's mark (outside the seam it checks): a
    # restart that read the whole journal would refuse it; one from the snapshot never
    # reads it.
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    lines[2] = lines[2].replace(b'"seq":3,', b'"seq":9,')  # same length
    assert len(raw) - raw.find(lines[3]) > 4096
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=":3: field 'seq'"):
        Journal(path).close()
    journal, loaded = open_journal(path, _settings(7))
    with journal:
        assert loaded is not None and journal.resumed_at == len(events)
        coordinator = Coordinator(
            Recorder(1e6), journal, policy=Policy(seed=7), config=_config(7)
        ).recover(state=loaded)
        assert coordinator.settled == state.settled and not coordinator.tasks
        assert coordinator.outcome("t3") is Phase.SUCCEEDED
        with pytest.raises(InvalidValue, match="already submitted"):
            coordinator.submit(Task("t3", "again"))
        with pytest.raises(JournalError, match="opened after event"):
            journal.has_key("t3:1:initial")
        new = coordinator.submit(Task("t99", "new"))
        assert new not in state.settled.values()
    journal, loaded = open_journal(path, _settings(7))
    with journal:  # the submission went on after the mark, as the next event
        assert [e.seq for e in journal.events()] == [len(events) + 1]


def test_a_task_reopened_after_it_settled_makes_the_restart_replay_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, events = _finished_journal(tmp_path, tasks=3)
    _save_now(path)
    again = events[0]  # a second submission of t0, as a hand-edited journal might hold
    assert again.kind is EventKind.TASK_SUBMITTED
    _write(path, [dataclasses.replace(again, seq=len(events) + 1)])
    with caplog.at_level(logging.INFO, logger="pytest_orch_recovery.store.restart"):
        journal, state = open_journal(path, _settings(7))
    with journal:
        assert state is None and journal.resumed_at == 0
    assert "changes task 't0', which had settled" in caplog.text


def _damage(kind: str) -> Callable[[list[Any]], None]:
    def header(rows: list[Any], key: str, value: Any) -> None:
        rows[0][key] = value

    def fleet(rows: list[Any], key: str, value: Any) -> None:
        rows[1][key] = value

    cases: dict[str, Callable[[list[Any]], None]] = {
        "fingerprint": lambda rows: header(rows, "state", "0" * 16),
        "format": lambda rows: header(rows, "format", 99),
        "settings": lambda rows: header(rows, "settings", [["seed", 8]]),
        "seq as text": lambda rows: header(rows, "seq", "30"),
        "count": lambda rows: header(rows, "settled", 1),
        "reason": lambda rows: fleet(rows, "breaker_open", [["meteor", "sky"]]),
        "limit": lambda rows: fleet(rows, "limits", [["claude-code", "soon"]]),
        "incident": lambda rows: fleet(rows, "incidents", [["killed-1", "killed"]]),
        "settled": lambda rows: rows.__setitem__(2, ["t0", 5]),
        "event": lambda rows: rows.append({"seq": 1, "kind": "meteor", "time": 1.0}),
    }
    return cases[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "fingerprint",
        "format",
        "settings",
        "seq as text",
        "count",
        "reason",
        "limit",
        "incident",
        "settled",
        "event",
    ],
)
def test_a_damaged_or_foreign_snapshot_is_ignored(tmp_path: Path, kind: str) -> None:
    path, _ = _finished_journal(tmp_path, tasks=3)
    _save_now(path)
    rows = [json.loads(line) for line in state_path(path).read_text().splitlines()]
    _damage(kind)(rows)
    state_path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_state(path, _settings(7)) is None
    journal, state = open_journal(path, _settings(7))
    with journal:
        assert state is None and journal.resumed_at == 0


def test_a_snapshot_of_a_rewritten_journal_is_ignored(tmp_path: Path) -> None:
    path, events = _finished_journal(tmp_path, tasks=6)
    _save_now(path)
    # Same length, other bytes just before the mark: the seam no longer matches.
    text = path.read_text()
    where = text.rindex('"time":', 0, len(text) - 100)
    assert text[where + 7] == "1"
    path.write_text(text[: where + 7] + "2" + text[where + 8 :])
    journal, state = open_journal(path, _settings(7))
    with journal:
        assert state is None and journal.resumed_at == 0
    # Cut short: the mark is past the end.
    path.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n")
    journal, state = open_journal(path, _settings(7))
    with journal:
        assert state is None and len(journal) < len(events)


def test_a_snapshot_is_data_not_code(tmp_path: Path) -> None:
    path, _ = _finished_journal(tmp_path, tasks=2)
    _save_now(path)
    rows = state_path(path).read_text().splitlines()
    rows[1] = '{"__reduce__": ["os.system", ["touch pwned"]]}'
    state_path(path).write_text("\n".join(rows) + "\n")
    assert load_state(path, _settings(7)) is None
    assert not (tmp_path / "pwned").exists()


def test_a_fifo_in_place_of_the_snapshot_does_not_hang_the_restart(tmp_path: Path) -> None:
    path, _ = _finished_journal(tmp_path, tasks=2)
    os.mkfifo(state_path(path))
    journal, state = open_journal(path, _settings(7))
    with journal:
        assert state is None


def _legacy_journal() -> str:
    """The seed's incident as the coordinator writes it, plus a task a schema-1 tool ended
    with a ``task_failed`` line (read as the escalation it amounts to)."""
    j = seed_incident()
    t = j.task("legacy", "task-agent-9", deliverables=("x.py",))
    t.launch().exit(ExitInfo(1)).attribute(Reason.TIMEOUT)
    text = journal_text(j.events)
    seq = text.count("\n") + 1
    failed = {
        "seq": seq,
        "kind": "task_failed",
        "time": j.events[-1].time + 1.0,
        "task_id": "legacy",
        "agent": "task-agent-9",
        "attempt": 1,
        "data": {"why": "recovery budget exhausted", "reason": "timeout"},
    }
    return text + json.dumps(failed) + "\n"


def test_a_schema_1_journal_restarts_from_a_snapshot_as_it_replays(tmp_path: Path) -> None:
    lines = _legacy_journal().splitlines(keepends=True)
    for cut in range(1, len(lines) + 1):
        root = tmp_path / f"cut{cut}"
        root.mkdir()
        _replayed_snapshot_at(root, lines, cut)
        _assert_same_restart(root, 0, 1e10, used=True)


def _replayed_snapshot_at(root: Path, lines: list[str], cut: int) -> None:
    """``root/a/journal.jsonl`` of ``lines``, with the snapshot a replay of the first
    ``cut`` of them exports (written when the journal held just those)."""
    (root / "a").mkdir()
    path = root / "a" / "journal.jsonl"
    path.write_text("".join(lines[:cut]))
    with Journal(path) as journal:
        replayed = Coordinator(Recorder(0.0), journal, config=_config(0))
        for event in journal.events():
            replayed._fold(event)
        state = replayed.state()
        assert state is not None
        assert save_state(journal, state)
    with open(path, "a") as out:
        out.write("".join(lines[cut:]))
    (root / "cut").write_text(str(len(lines)))


def test_the_fold_settings_must_match(tmp_path: Path) -> None:
    path, _ = _finished_journal(tmp_path, tasks=2)
    _save_now(path)
    other = fold_settings(CoordinatorConfig(seed=7, attempt_timeout=60.0), Policy(seed=7))
    assert load_state(path, other) is None
    assert load_state(path, _settings(7)) is not None


def test_submitted_without_an_agent_name_is_not_exported() -> None:
    coordinator = Coordinator(Recorder(0.0), Journal(None), config=_config(0))
    coordinator._fold(Event(TaskSubmitted(Task("t1", "one")), 1.0, "t1", None, seq=1))
    assert coordinator.tasks["t1"].agent.startswith("task-agent-")
    assert coordinator.state() is None


@_PROPERTY
@given(random_journal(), st.data())
def test_hand_built_journals_restart_from_a_snapshot_as_they_replay(
    tmp_path_factory: pytest.TempPathFactory, events: list[Event], data: st.DataObject
) -> None:
    # Journals as tests and other tools write them: agents shared by several tasks, exits
    # never judged, releases by hand.
    lines = journal_text(events).splitlines(keepends=True)
    if not lines:
        return
    cut = data.draw(st.integers(1, len(lines)), label="snapshot after line")
    root = tmp_path_factory.mktemp("built")
    _replayed_snapshot_at(root, lines, cut)
    _assert_same_restart(root, 0, 1e10, used=True)


def _pages(journal: Journal) -> tuple[set[int], set[int]]:
    """The escalations a restarting supervisor's page walks see in ``journal.events()``:
    those of an incident, those of a task alone."""
    incident: set[int] = set()
    alone: set[int] = set()
    for event in journal.events():
        payload = event.payload
        if isinstance(payload, TaskEscalated):
            (alone if payload.incident is None else incident).add(event.seq)
    return incident, alone


@st.composite
def _escalating_campaigns(draw: st.DrawFn) -> Campaign:
    """Campaigns in which one to three tasks are killed at every start: they escalate
    (alone, or in an incident once the breaker opens), and again after a release."""
    ts, faults, seed = draw(campaigns())
    ids = [t.task_id for t in ts]
    doomed = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True))
    kills = [FaultSpec("kill", Trigger("start"), task=t, attempt=None) for t in doomed]
    return ts, [*faults, *kills], seed


@_PROPERTY
@given(_escalating_campaigns(), st.data())
def test_after_a_restart_with_escalated_tasks_the_fleet_goes_on_as_after_a_replay(
    tmp_path_factory: pytest.TempPathFactory, c: Campaign, data: st.DataObject
) -> None:
    # Tasks escalated and waiting are kept compact in the snapshot. After the restart an
    # operator releases some (by reason, incident or task), a new task comes, the fleet
    # runs on (new failures feed the breaker, escalations open incidents): every event
    # journaled, every call to the runtime and the coordinator at the end are the same as
    # after a whole replay.
    _, faults, seed = c
    events, cut, state = _live_snapshot(c, data, escalated=True)
    restart = data.draw(st.integers(cut, len(events)), label="restart after event")
    root = tmp_path_factory.mktemp("after")
    path = _snapshot_at(root, events, state, cut, restart)
    (root / "whole").mkdir()
    shutil.copy(path, root / "whole" / "journal.jsonl")
    fast_journal, loaded = open_journal(path, _settings(seed))
    whole_journal = Journal(root / "whole" / "journal.jsonl")
    with fast_journal, whole_journal:
        assert loaded is not None and loaded.compact == state.compact
        # The page walks: every incident's escalations; an escalation of a task alone
        # that only the whole journal shows came before the snapshot, whose step paged it.
        fast_pages, whole_pages = _pages(fast_journal), _pages(whole_journal)
        assert fast_pages[0] == whole_pages[0]
        assert fast_pages[1] <= whole_pages[1]
        assert all(seq <= cut for seq in whole_pages[1] - fast_pages[1])
        pair = []
        for journal, from_state in ((fast_journal, loaded), (whole_journal, None)):
            runtime = SimRuntime(seed=seed, faults=faults)
            runtime.clock.advance_to(events[-1].time + 60.0)
            coordinator = Coordinator(
                runtime, journal, policy=Policy(seed=seed), config=_config(seed)
            ).recover(state=from_state)
            pair.append(coordinator)
        fast, whole = pair
        hypothesis.event(f"compact tasks: {min(len(loaded.compact), 3)}")
        compact = {entry.task_id for entry in state.compact}
        changed = any(e.task_id in compact for e in events[cut:restart])
        hypothesis.event(f"compact tasks changed in the tail: {changed}")
        assert fast.tasks == {t: s for t, s in whole.tasks.items() if t not in fast.settled}
        assert _memory(fast) == _memory(whole)
        how = data.draw(st.sampled_from(["reasons", "incident", "tasks", "none"]), label="how")
        escalated = sorted(t for t, s in whole.tasks.items() if s.phase is Phase.ESCALATED)
        incidents = sorted(whole.incidents.incidents)
        if how == "incident" and incidents:
            chosen = data.draw(st.sampled_from(incidents), label="incident")
            order: dict[str, Any] = {"incident": chosen}
        elif how == "tasks" and escalated:
            some = st.lists(st.sampled_from(escalated), min_size=1)
            order = {"tasks": data.draw(some, label="tasks")}
        elif how == "reasons":
            held = sorted({s.attribution.reason for s in whole.tasks.values() if s.attribution})
            some = st.lists(st.sampled_from(held or list(Reason)), min_size=1)
            order = {"reasons": data.draw(some, label="reasons")}
        else:
            order = {}
        outcome = []
        for coordinator, journal in ((fast, fast_journal), (whole, whole_journal)):
            for task_id in escalated[:1]:  # submitted again: refused, as it was known
                with pytest.raises(InvalidValue, match="already submitted"):
                    coordinator.submit(whole.tasks[task_id].task)
            released = coordinator.release("operator", **order) if order else []
            hypothesis.event(
                f"released compact: {bool(set(released) & {x.task_id for x in state.compact})}"
            )
            coordinator.submit(Task("late", "A task after the restart", ("src/late.py",)))
            coordinator.run()
            new = [e.to_json() for e in journal.events() if e.seq > restart]
            outcome.append((released, new, _pages(journal)[0]))
        assert outcome[0] == outcome[1]
        assert fast.tasks == {t: s for t, s in whole.tasks.items() if t not in fast.settled}
        assert _memory(fast) == _memory(whole)
        assert _as_written(fast.state()) == _as_written(whole.state())


def _escalated_journal(tmp_path: Path) -> tuple[Path, JournalBuilder]:
    """Two tasks escalated and waiting (one of them after a release and a second try), one
    succeeded, written to ``tmp_path/journal.jsonl``."""
    j = JournalBuilder()
    first = j.task("esc-1", "task-agent-11", deliverables=("a.py",))
    first.launch().fail_with(Reason.PERMISSION).decide(Strategy.ESCALATE).escalate()
    j.operator_action("fixed", ["esc-1"])
    first.launch(Strategy.RESTART).fail_with(Reason.TIMEOUT).decide(Strategy.ESCALATE).escalate()
    j.task("ok", "task-agent-12").launch().exit(ExitInfo(0)).succeed()
    second = j.task("esc-2", "task-agent-13", deliverables=("b.py",))
    second.launch().fail_with(Reason.KILLED).decide(Strategy.ESCALATE).escalate()
    return j.write_jsonl(tmp_path / "journal.jsonl"), j


def test_escalated_tasks_are_kept_compact_and_come_back_as_replayed(tmp_path: Path) -> None:
    path, _ = _escalated_journal(tmp_path)
    state = _save_now(path)
    assert [c.task_id for c in state.compact] == ["esc-1", "esc-2"]
    assert not [e for e in state.events if e.task_id in ("esc-1", "esc-2")]
    assert len(state.compact[0].state.attempts) == 2
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    shutil.copy(path, root / "a" / "journal.jsonl")
    shutil.copy(state_path(path), state_path(root / "a" / "journal.jsonl"))
    (root / "cut").write_text(str(len(path.read_text().splitlines())))
    _assert_same_restart(root, 7, 1e10, used=True)


def test_a_later_event_that_sets_an_old_launch_key_again_makes_the_restart_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A replay still holds the escalated task's old launch timers; a compact task does
    # not. An event that sets one of their keys again (only a hand-edited journal) would
    # make the old timer valid again: the snapshot is not used.
    path, j = _escalated_journal(tmp_path)
    _save_now(path)
    old = next(e for e in j.events if e.task_id == "esc-2" and e.key == "esc-2:1")
    _write(path, [dataclasses.replace(old, seq=len(j.events) + 1, time=old.time + 9e3)])
    with caplog.at_level(logging.INFO, logger="pytest_orch_recovery.store.restart"):
        journal, state = open_journal(path, _settings(7))
    with journal:
        assert state is None and journal.resumed_at == 0
    assert "sets launch key 'esc-2:1' of task 'esc-2' again" in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        lambda row: row.pop(),  # a field missing
        lambda row: row.__setitem__(2, 10**6),  # taken after the snapshot's mark
        lambda row: row.__setitem__(0, "other"),  # not the task its state is of
        lambda row: row[6][0].__setitem__(1, 0),  # attempt number 0
        lambda row: row[6][0].__setitem__(5, "meteor"),  # no failure reason
        lambda row: row[6][0].__setitem__(7, "yes"),  # a flag that is no boolean
        lambda row: row[9].append({"kind": "dance"}),  # no kind of work
        lambda row: row.__setitem__(10, float("nan")),  # NaN (JSON's NaN)
    ],
)
def test_a_damaged_compact_task_makes_the_restart_replay(
    tmp_path: Path, damage: Callable[[list[Any]], None]
) -> None:
    path, _ = _escalated_journal(tmp_path)
    _save_now(path)
    lines = state_path(path).read_text().splitlines()
    row = json.loads(lines[3])
    assert row[0] == "esc-1"
    damage(row)
    lines[3] = json.dumps(row)
    state_path(path).write_text("\n".join(lines) + "\n")
    assert load_state(path, _settings(7)) is None
