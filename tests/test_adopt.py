"""``Coordinator.adopt``: a host takes over tasks whose previous host was lost (its lease ran
out), from their history alone, on the simulation runtime: the lost attempts' ends are
journaled as ``host_lost``, each task is reassigned to the same agent type with the
continuation prompt, and neither the attempt budget nor the circuit breaker counts them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orch_recovery.chaos.tiers.simruntime import SimRuntime
from pytest_orch_recovery.engine.coordinator import Coordinator
from pytest_orch_recovery.engine.errors import InvalidState, InvalidValue
from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
)
from pytest_orch_recovery.engine.model import HOST_LOST, Phase, Reason, Strategy, Task
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.store.journal import Journal

TASKS = tuple(Task(f"t-{n}", f"Write note number {n}", (f"note{n}.md",)) for n in range(3))


def _lost_mid_attempt(*tasks: Task) -> list[Event]:
    """The history a lost host left: every task submitted and its first attempt launched."""
    alpha = Coordinator(SimRuntime(), Journal(None))
    for task in tasks:
        alpha.submit(task)
    alpha.run(until=alpha.runtime.clock.now() + 1e-3)  # launched, none ended yet
    events = list(alpha.journal.events())
    assert [e.kind for e in events].count(EventKind.ATTEMPT_LAUNCHED) == len(tasks)
    assert not any(e.kind is EventKind.ATTEMPT_EXITED for e in events)
    return events


def test_adopted_tasks_are_reassigned_and_complete_without_opening_the_breaker() -> None:
    history = _lost_mid_attempt(*TASKS)
    beta = Coordinator(SimRuntime(seed=1), Journal(None), policy=Policy(max_attempts=1))
    adopted = beta.adopt(history, lost="host alpha lost: lease ran out")
    assert adopted == [t.task_id for t in TASKS]
    own = list(beta.journal.events())
    exits = [e for e in own if e.kind is EventKind.ATTEMPT_EXITED]
    assert [(e.task_id, e.attempt) for e in exits] == [(t.task_id, 1) for t in TASKS]
    for event in exits:
        assert isinstance(event.payload, AttemptExited)
        assert event.payload.exit is not None and event.payload.exit.source == HOST_LOST
        assert event.payload.output_tail == "host alpha lost: lease ran out"
    decisions = [e.payload for e in own if e.kind is EventKind.DECISION]
    assert len(decisions) == len(TASKS)
    for decided in decisions:
        assert isinstance(decided, DecisionMade) and decided.decision is not None
        # Three agents killed at once would open the breaker for "killed"; a lost host does
        # not, and a budget of one attempt is not spent by the attempt the host took along.
        assert decided.decision.rule == "host_lost"
        assert decided.decision.strategy is Strategy.REASSIGN
        assert decided.decision.agent_type == "claude-code"  # the same agent, not a fixer
    assert not beta.policy.breaker.is_open(Reason.KILLED)
    beta.run()
    assert {t: beta.outcome(t) for t in adopted} == dict.fromkeys(adopted, Phase.SUCCEEDED)
    launches = [e for e in beta.journal.events() if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert sorted((e.task_id, e.attempt, e.key) for e in launches) == [
        (t.task_id, 2, f"{t.task_id}:2:reassign") for t in TASKS
    ]
    for event in launches:
        assert isinstance(event.payload, AttemptLaunched)
        assert event.payload.prompt.startswith("You are continuing the task")


def test_a_task_whose_lost_host_never_launched_it_launches_its_first_attempt() -> None:
    submitted = [e for e in _lost_mid_attempt(TASKS[0]) if e.kind is EventKind.TASK_SUBMITTED]
    beta = Coordinator(SimRuntime(), Journal(None))
    assert beta.adopt(submitted, lost="host alpha lost") == ["t-0"]
    assert not list(beta.journal.events())  # nothing was in flight: nothing to record
    beta.run()
    launches = [e for e in beta.journal.events() if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert [(e.attempt, e.key) for e in launches] == [(1, "t-0:1:initial")]
    assert beta.outcome("t-0") is Phase.SUCCEEDED


def test_adopt_refuses_a_task_it_has_and_a_history_without_its_submission() -> None:
    history = _lost_mid_attempt(TASKS[0])
    beta = Coordinator(SimRuntime(), Journal(None))
    beta.submit(TASKS[0])
    with pytest.raises(InvalidState, match="already this host's"):
        beta.adopt(history, lost="x")
    fresh = Coordinator(SimRuntime(), Journal(None))
    with pytest.raises(InvalidValue, match="has no submission"):
        fresh.adopt(history[1:], lost="x")


def test_recover_ends_a_foreign_running_attempt_instead_of_launching_it_here(
    tmp_path: Path,
) -> None:
    """A host that claimed a task and died before recording the loss: its replacement reads
    the task's history with attempt 1 still running elsewhere, and must not start it here."""
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for event in _lost_mid_attempt(TASKS[0]):
        journal.append(event)
    journal.close()
    runtime = SimRuntime()
    started: list[str] = []
    launch = runtime.launch

    def recording_launch(spec: LaunchSpec) -> None:
        started.append(spec.key)
        launch(spec)

    runtime.launch = recording_launch  # type: ignore[method-assign]
    beta = Coordinator(runtime, Journal(path)).recover(lost={"t-0": "host alpha was lost"})
    exited = [e for e in beta.journal.events() if e.kind is EventKind.ATTEMPT_EXITED]
    assert [(e.attempt, e.payload.exit.source) for e in exited] == [(1, HOST_LOST)]  # type: ignore[attr-defined]
    beta.run()
    launches = [e for e in beta.journal.events() if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert [(e.attempt, e.key) for e in launches] == [(1, "t-0:1:initial"), (2, "t-0:2:reassign")]
    assert beta.outcome("t-0") is Phase.SUCCEEDED
    assert started == ["t-0:2:reassign"]  # attempt 1 never started here


def test_a_task_let_go_is_decided_no_more_while_the_others_go_on() -> None:
    alpha = Coordinator(SimRuntime(), Journal(None))
    for task in TASKS[:2]:
        alpha.submit(task)
    alpha.run(until=alpha.runtime.clock.now() + 1e-3)  # both launched
    before = len(alpha.journal)
    state = alpha.let_go("t-0")
    assert state is not None and state.phase is Phase.RUNNING
    assert alpha.let_go("t-0") is None
    alpha.run()  # t-0's exit, when the runtime reports it, is no longer this host's
    assert alpha.outcome("t-1") is Phase.SUCCEEDED and "t-0" not in alpha.tasks
    assert all(e.task_id != "t-0" for e in list(alpha.journal.events())[before:])
