"""Hypothesis properties of the engine over thousands of simulated fault schedules."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.chaos.faults import CATALOGUE, FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.sim import simulate
from pytest_orch_recovery.chaos.tiers.simruntime import SimRuntime
from pytest_orch_recovery.engine.coordinator import (
    Coordinator,
    CoordinatorConfig,
    TaskState,
)
from pytest_orch_recovery.engine.events import Event, EventKind
from pytest_orch_recovery.engine.model import Phase, Reason, Task
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.report.metrics import compute
from pytest_orch_recovery.store.journal import Journal

Campaign = tuple[list[Task], list[FaultSpec], int]  # tasks, fault schedule, seed

ATTEMPT_FAULTS = sorted(
    k for k, v in CATALOGUE.items() if v.scope == "attempt" and k != "corrupt_checkpoint"
)


@st.composite
def tasks(draw: st.DrawFn) -> list[Task]:
    count = draw(st.integers(1, 4))
    out = []
    for i in range(count):
        files = draw(st.integers(1, 6))
        out.append(
            Task(
                f"t{i}",
                f"Task {i}",
                tuple(f"src/m{i}_{j}.py" for j in range(files)),
                tests="pytest -q" if draw(st.booleans()) else None,
                wants_pr=draw(st.booleans()),
            )
        )
    return out


@st.composite
def schedules(draw: st.DrawFn, task_ids: list[str]) -> list[FaultSpec]:
    # Swarm testing: each schedule uses a random subset of the catalogue.
    kinds = draw(st.lists(st.sampled_from(ATTEMPT_FAULTS), min_size=1, max_size=4, unique=True))
    faults = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(kinds))
        event = draw(st.sampled_from(["tool_call", "api_request", "file_written", "start"]))
        trigger = None if draw(st.booleans()) else Trigger(event, n=draw(st.integers(1, 4)))
        faults.append(
            FaultSpec(
                kind,
                trigger,
                task=draw(st.sampled_from([*task_ids, "*"])),
                attempt=draw(st.sampled_from([1, 1, 2, None])),
            )
        )
    if draw(st.booleans()):
        faults.append(
            FaultSpec(
                "corrupt_checkpoint",
                Trigger("tool_call", n=1),
                task=draw(st.sampled_from(task_ids)),
            )
        )
    return faults


@st.composite
def campaigns(draw: st.DrawFn) -> Campaign:
    ts = draw(tasks())
    return ts, draw(schedules([t.task_id for t in ts])), draw(st.integers(0, 2**32 - 1))


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(campaigns())
def test_every_task_ends_succeeded_or_escalated_within_budget(c: Campaign) -> None:
    ts, faults, seed = c
    out = simulate(ts, faults, seed=seed)
    assert set(out.outcomes.values()) <= {Phase.SUCCEEDED, Phase.ESCALATED}
    launches = Counter(e.task_id for e in out.events if e.kind is EventKind.ATTEMPT_LAUNCHED)
    # Attempts ended by the account's usage limit are not the task's: a few are free.
    limited = Counter(
        e.task_id
        for e in out.events
        if e.kind is EventKind.FAILURE_ATTRIBUTED
        and e.payload.to_json()["attribution"].get("usage_limit")
    )
    policy = Policy()
    for task_id, count in launches.items():
        free = min(limited[task_id], policy.free_limit_waits)
        assert count - free <= policy.max_attempts, task_id


@PROPERTY_SETTINGS
@given(campaigns())
def test_never_two_live_attempts_and_no_key_launched_twice(c: Campaign) -> None:
    ts, faults, seed = c
    out = simulate(ts, faults, seed=seed)
    assert out.runtime.violations == []
    keys = [k for _, k in out.runtime.launch_log]
    assert len(keys) == len(set(keys))


@PROPERTY_SETTINGS
@given(campaigns())
def test_every_failure_is_attributed_to_a_known_reason(c: Campaign) -> None:
    ts, faults, seed = c
    out = simulate(ts, faults, seed=seed)
    exits = [e for e in out.events if e.kind is EventKind.ATTEMPT_EXITED]
    judged = [
        e for e in out.events if e.kind in (EventKind.FAILURE_ATTRIBUTED, EventKind.TASK_SUCCEEDED)
    ]
    assert len(exits) == len(judged)
    for e in out.events:
        if e.kind is EventKind.FAILURE_ATTRIBUTED:
            attribution = e.payload.to_json()["attribution"]
            assert attribution["reason"] != Reason.UNKNOWN, attribution
            assert attribution["evidence"]


@PROPERTY_SETTINGS
@given(campaigns())
def test_metrics_agree_with_the_journal(c: Campaign) -> None:
    ts, faults, seed = c
    out = simulate(ts, faults, seed=seed)
    m = compute(out.events)
    phases = Counter(out.outcomes.values())
    assert m.total_tasks == len(ts)
    assert m.first_try + m.required_recovery == len(ts)
    assert m.recovered + m.escalated + m.recovering == m.required_recovery
    assert m.escalated == phases[Phase.ESCALATED]
    failures = sum(1 for e in out.events if e.kind is EventKind.FAILURE_ATTRIBUTED)
    assert m.failures == failures
    assert sum(r["count"] for r in m.to_json()["reasons"]) == failures


@settings(max_examples=60, deadline=None)
@given(campaigns())
def test_same_seed_same_journal(c: Campaign) -> None:
    ts, faults, seed = c
    first = [e.to_json() for e in simulate(ts, faults, seed=seed).events]
    second = [e.to_json() for e in simulate(ts, faults, seed=seed).events]
    assert first == second


_FOUR = [
    Task(task_id=f"t{i}", title=f"Task {i}", deliverables=(f"src/m{i}_0.py",)) for i in range(4)
]


@settings(max_examples=60, deadline=None)
@given(campaigns(), st.integers(1, 60))
# Found by this property: stalled agents killed at their timeout, the coordinator crashing
# after the kills and before the exits are recorded.
@example(
    c=(
        _FOUR,
        [
            FaultSpec(kind="api_stall", task="t0"),
            FaultSpec(kind="api_stall", trigger=Trigger(event="api_request", n=1), task="*"),
        ],
        0,
    ),
    crash_after=9,
)
# Found by it in CI: backoff jitter drawn from one stream for every decision, so a coordinator
# rebuilt after the crash waited differently and t0 ran into the circuit breaker.
@example(
    c=(
        [dataclasses.replace(t, wants_pr=False) for t in _FOUR],
        [
            FaultSpec(
                kind="api_overloaded", trigger=Trigger(event="tool_call", n=1), task="t0", attempt=1
            ),
            FaultSpec(kind="api_overloaded", task="t0", attempt=2),
            FaultSpec(kind="api_overloaded", task="*", attempt=1),
        ],
        208172,
    ),
    crash_after=11,
)
def test_a_coordinator_crash_anywhere_changes_no_outcome(c: Campaign, crash_after: int) -> None:
    ts, faults, seed = c
    clean = simulate(ts, faults, seed=seed)
    crashed = simulate(ts, faults, seed=seed, crash_after_event=crash_after)
    assert crashed.outcomes == clean.outcomes
    keys = [k for _, k in crashed.runtime.launch_log]
    assert len(keys) == len(set(keys))
    assert [e.seq for e in crashed.events] == list(range(1, len(crashed.events) + 1))


@settings(max_examples=60, deadline=None)
@given(campaigns())
def test_memory_rebuilt_from_the_journal_equals_the_live_memory(c: Campaign) -> None:
    # Live events are folded from the objects they were written from, replayed ones from
    # their JSON form: after every event, both must leave a coordinator in the same state.
    ts, faults, seed = c
    journal = Journal(None)
    config = CoordinatorConfig(seed=seed, attempt_timeout=1800.0)
    differences: list[str] = []

    def journaled(state: TaskState) -> TaskState:
        # ``partial`` is the live coordinator's cache of the workspace, and ``timed_out`` of
        # a live attempt the kill it has ordered: neither is journal state until the exit.
        attempts = [
            a if a.exit is not None else dataclasses.replace(a, timed_out=False)
            for a in state.attempts
        ]
        return dataclasses.replace(state, partial=None, attempts=attempts)

    def compare(event: Event) -> None:
        rebuilt = Coordinator(
            SimRuntime(seed=seed), Journal(None), policy=Policy(seed=seed), config=config
        )
        for stored in journal.events():
            rebuilt._apply(Event.from_json(json.loads(json.dumps(stored.to_json()))))
        for task_id, state in live.tasks.items():
            if journaled(state) != journaled(rebuilt.tasks[task_id]):
                differences.append(f"{task_id} after {event.kind} #{event.seq}")
        if rebuilt.policy.breaker.open_causes() != live.policy.breaker.open_causes():
            differences.append(f"breaker after {event.kind} #{event.seq}")

    live = Coordinator(
        SimRuntime(seed=seed, faults=faults),
        journal,
        policy=Policy(seed=seed),
        config=config,
        on_event=compare,
    )
    for task in ts:
        live.submit(task)
    live.run()
    assert differences == []


def test_a_timeout_kill_stays_a_timeout_when_the_coordinator_crashes_before_the_exit() -> None:
    # Found by the property above: three agents parked at a permission prompt are killed at
    # their timeout; the coordinator crashes after the kills, before the exits are recorded.
    # The replacement must still see timeouts (permission at the prompt, one systematic
    # escalation), not three SIGTERMs from nowhere that it resumes.
    tasks = [
        Task(task_id=f"t{i}", title=f"Task {i}", deliverables=(f"src/m{i}_0.py",)) for i in range(4)
    ]
    faults = [
        FaultSpec(kind="permission_prompt", trigger=Trigger(event="tool_call", n=1), task="*"),
        FaultSpec(kind="api_overloaded", task="t0"),
        FaultSpec(kind="api_overloaded", trigger=Trigger(event="tool_call", n=1), task="t0"),
    ]
    clean = simulate(tasks, faults, seed=0)
    crashed = simulate(tasks, faults, seed=0, crash_after_event=15)
    assert crashed.crashes == 1
    assert crashed.outcomes == clean.outcomes
    assert [crashed.outcomes[f"t{i}"] for i in range(1, 4)] == [Phase.ESCALATED] * 3


def _most_live(events: list[Event]) -> int:
    live = most = 0
    for event in events:
        if event.kind is EventKind.ATTEMPT_LAUNCHED:
            live += 1
        elif event.kind is EventKind.ATTEMPT_EXITED:
            live -= 1
        most = max(most, live)
    return most


@settings(max_examples=100, deadline=None)
@given(campaigns(), st.integers(1, 3), st.integers(1, 60))
def test_at_most_max_live_attempts_run_at_once_and_crashes_change_nothing(
    c: Campaign, cap: int, crash_after: int
) -> None:
    ts, faults, seed = c
    config = CoordinatorConfig(seed=seed, attempt_timeout=1800.0, max_live=cap)
    capped = simulate(ts, faults, seed=seed, config=config)
    assert _most_live(list(capped.events)) <= cap
    assert set(capped.outcomes.values()) <= {Phase.SUCCEEDED, Phase.ESCALATED}
    assert capped.runtime.violations == []
    crashed = simulate(ts, faults, seed=seed, config=config, crash_after_event=crash_after)
    assert _most_live(list(crashed.events)) <= cap
    assert crashed.outcomes == capped.outcomes


def test_launches_wait_their_turn_in_the_order_they_fell_due() -> None:
    ts = [Task(f"t{i}", f"Task {i}", (f"f{i}.md",)) for i in range(5)]
    out = simulate(ts, [], seed=3, config=CoordinatorConfig(seed=3, max_live=2))
    launched = [e.task_id for e in out.events if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert launched == [t.task_id for t in ts]
    assert _most_live(list(out.events)) == 2
    assert set(out.outcomes.values()) == {Phase.SUCCEEDED}
