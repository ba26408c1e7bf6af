from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest
from events import (
    SEED_CAUSE,
    JournalBuilder,
    first_try_success,
    random_journal,
    seed_incident,
    sigint_resumed,
)
from hypothesis import given, settings

from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import ExitInfo, Reason, Strategy
from pytest_orch_recovery.report.metrics import (
    Criteria,
    CriterionResult,
    Metrics,
    Outcome,
    compute,
    evaluate,
)


def _by_name(results: list[CriterionResult]) -> dict[str, CriterionResult]:
    return {r.name: r for r in results}


def _row(m: Metrics, reason: Reason) -> tuple[int, float, tuple[str, ...]]:
    row = next(r for r in m.reasons if r.reason is reason)
    return row.count, row.percentage, row.common_agents


# --------------------------------------------------------------------------- the seed's incident


def test_seed_incident_reproduces_the_seed_dashboard() -> None:
    m = compute(seed_incident().events)
    assert m.total_tasks == 5
    assert (m.first_try, m.first_try_agents) == (1, ("update-fake3-agent",))
    assert m.required_recovery == 4
    assert dict(m.required_recovery_by_reason) == {Reason.PERMISSION: 3, Reason.SIGINT: 1}
    assert m.required_recovery_by_reason[0][0] is Reason.PERMISSION  # most first
    assert _row(m, Reason.SIGINT) == (1, 25.0, ("task-agent-5030",))
    assert _row(m, Reason.PERMISSION) == (
        3,
        75.0,
        ("task-agent-1813", "task-agent-3403", "task-agent-3532"),
    )
    assert all(_row(m, r)[0] == 0 for r in Reason if r not in (Reason.SIGINT, Reason.PERMISSION))
    assert m.recovery_time_mean == pytest.approx(300.0)  # "Average Recovery Time: 5 minutes"
    assert (m.recovered, m.recovered_after_operator, m.escalated) == (4, 3, 0)
    assert (m.orphaned_workspaces, m.unattributed_failures) == (0, 0)


def test_seed_incident_recent_event_for_task_agent_5030() -> None:
    m = compute(seed_incident().events)
    newest = m.recent[0]
    assert (newest.agent, newest.reason, newest.outcome) == (
        "task-agent-5030",
        Reason.SIGINT,
        Outcome.RECOVERED,
    )
    assert (newest.date, newest.exit_code, newest.exit_signal) == ("2025-07-23", 130, "SIGINT")
    assert newest.title == "Create /fake3 command"
    assert newest.partial_work[0] == "created fake3.md"
    assert newest.missing_work[:2] == ("write fake3.py", "write fake3_runner.py")
    assert newest.strategies == (Strategy.RESUME,)
    assert (newest.recovery_time, newest.pr) == (300.0, 886)
    assert newest.root_cause.startswith("sigint: pane_dead_signal=2")
    assert "pure markdown" in newest.lesson
    times = [r.time for r in m.recent]
    assert times == sorted(times, reverse=True)


def test_seed_incident_systematic_cause_and_operator_release() -> None:
    m = compute(seed_incident().events)
    (cause,) = m.systematic_causes
    assert cause.cause == SEED_CAUSE
    assert cause.reason is Reason.PERMISSION
    assert cause.agents == ("task-agent-1813", "task-agent-3403", "task-agent-3532")
    assert cause.operator_actions == ("Updated task_dispatcher.py line 639 to include flag",)
    perm = [r for r in m.recent if r.reason is Reason.PERMISSION]
    assert all(r.strategies == (Strategy.ESCALATE, Strategy.RESTART) for r in perm)
    assert all(r.released_by_operator for r in perm)


def test_metrics_to_json_is_plain_json() -> None:
    data = compute(seed_incident().events).to_json()
    again = json.loads(json.dumps(data))
    assert again["reasons"][0] == {
        "reason": "sigint",
        "count": 1,
        "percentage": 25.0,
        "common_agents": ["task-agent-5030"],
    }
    assert again["recent"][0]["outcome"] == "RECOVERED"
    assert again["recent"][0]["root_cause"].startswith("sigint:")
    assert again["recovery_settled"] == 4


# --------------------------------------------------------------------------- counting rules


def test_exit_followed_by_success_is_not_a_failure() -> None:
    j = JournalBuilder()
    first_try_success(j, "t1", "a1")
    m = compute(j.events)
    assert (m.failures, m.required_recovery, m.unattributed_failures) == (0, 0, 0)
    assert m.recovery_time_mean is None


def test_exit_without_attribution_is_unattributed() -> None:
    j = JournalBuilder()
    t = j.task("t1", "a1").launch().exit(ExitInfo(1))
    t.launch(Strategy.RESTART).exit(ExitInfo(0)).succeed()
    j.task("t2", "a2").launch().exit(ExitInfo(status=None, signal=9))  # journal ends here
    j.task("t3", "a3").launch().exit(ExitInfo(0))  # clean exit, not yet judged: not counted
    j.task("t4", "a4").launch().fail_with(Reason.UNKNOWN)
    assert compute(j.events).unattributed_failures == 3


def test_escalated_unreleased_and_in_progress() -> None:
    j = JournalBuilder()
    j.task("e", "a1").launch().fail_with(Reason.API_ERROR).decide(Strategy.ESCALATE).escalate()
    f = j.task("f", "a2").launch().fail_with(Reason.TIMEOUT).decide(Strategy.RESTART)
    f.launch(Strategy.RESTART).fail_with(Reason.TIMEOUT).decide(Strategy.ESCALATE).escalate()
    j.task("r", "a3").launch().fail_with(Reason.KILLED).decide(Strategy.RESTART)
    m = compute(j.events)
    assert (m.required_recovery, m.recovered, m.escalated) == (3, 0, 2)
    assert (m.recovering, m.recovery_settled) == (1, 2)
    assert _row(m, Reason.TIMEOUT)[0] == 2  # failures, not tasks
    outcomes = {r.task_id: r.outcome for r in m.recent}
    assert outcomes == {"e": Outcome.ESCALATED, "f": Outcome.ESCALATED, "r": Outcome.IN_PROGRESS}
    assert next(r for r in m.recent if r.task_id == "f").reasons == (Reason.TIMEOUT,) * 2


def test_complexity_split_counts_only_settled_tasks() -> None:
    j = JournalBuilder()
    first_try_success(j, "s", "a1", deliverables=["a.py"])
    first_try_success(j, "c", "a2", deliverables=[f"f{i}.py" for i in range(5)])
    j.task("c2", "a3", deliverables=[f"f{i}.py" for i in range(6)]).launch().fail_with(
        Reason.INCOMPLETE
    )
    j.task("c3", "a4", deliverables=[f"f{i}.py" for i in range(7)]).launch()  # still running
    m = compute(j.events)
    assert (m.simple_tasks, m.complex_tasks) == (1, 3)
    assert (m.first_try_simple, m.settled_simple) == (1, 1)
    assert (m.first_try_complex, m.settled_complex) == (1, 2)
    assert m.unsettled == 1


def test_concatenated_journals_and_orphans() -> None:
    a, b = JournalBuilder(), JournalBuilder()
    first_try_success(a, "a1", "agent-a")
    a.orphaned("/w/a")
    a.orphaned("/w/b")
    a.cleaned("/w/b")
    sigint_resumed(b, "b1", "agent-b")
    m = compute([*a.events, *b.events])
    assert (m.total_tasks, m.first_try, m.recovered) == (2, 1, 1)
    assert (m.orphaned_workspaces, m.orphaned_paths) == (1, ("/w/a",))
    assert compute(a.events, orphaned_workspaces=4).orphaned_workspaces == 4


# --------------------------------------------------------------------------- criteria


def test_describe_matches_the_documented_line() -> None:
    j = JournalBuilder()
    for n in range(3):
        sigint_resumed(j, f"ok{n}", f"agent-{n}")
    j.task("bad", "agent-x").launch().fail_with(Reason.API_ERROR).decide(
        Strategy.ESCALATE
    ).escalate()
    result = _by_name(evaluate(compute(j.events)))["recovery_rate"]
    assert result.describe() == (
        "FAIL recovery_rate: observed 0.750 (3/4), 95% lower bound 0.301, threshold > 0.900"
    )
    assert result.to_json()["line"] == result.describe()


def test_recovery_rate_threshold_is_strict_and_first_try_inclusive() -> None:
    base = compute([])
    ten = replace(base, required_recovery=10, recovered=9)
    strict = _by_name(evaluate(ten, Criteria(min_recovery_rate=0.9)))
    assert strict["recovery_rate"].verdict == "fail"  # 90% is not "> 90%"
    twenty = replace(base, first_try_simple=19, settled_simple=20)
    assert _by_name(evaluate(twenty))["first_try_simple"].verdict == "pass"  # 95% >= 95%


def test_lower_bound_gate_needs_more_evidence() -> None:
    few = replace(compute([]), required_recovery=5, recovered=5)
    many = replace(few, required_recovery=200, recovered=199)
    assert _by_name(evaluate(few))["recovery_rate"].verdict == "pass"
    gated = Criteria(gate="lower-bound")
    assert _by_name(evaluate(few, gated))["recovery_rate"].verdict == "fail"
    assert _by_name(evaluate(many, gated))["recovery_rate"].verdict == "pass"


def test_min_samples_and_no_samples_are_not_failures() -> None:
    m = replace(compute([]), required_recovery=2, recovered=0)
    results = _by_name(evaluate(m, Criteria(min_samples=3)))
    assert results["recovery_rate"].verdict == "insufficient samples"
    assert results["recovery_rate"].lower_bound == 0.0
    empty = _by_name(evaluate(compute([])))["first_try_complex"]
    assert (empty.verdict, empty.observed, empty.n) == ("insufficient samples", None, 0)
    assert empty.describe() == (
        "INSUFFICIENT SAMPLES first_try_complex: no samples (0/0), threshold >= 0.800"
    )


def test_count_criteria() -> None:
    m = replace(compute([]), orphaned_workspaces=2, unattributed_failures=1)
    results = _by_name(evaluate(m, Criteria(max_orphans=2)))
    assert results["orphaned_workspaces"].verdict == "pass"
    assert results["unattributed_failures"].describe() == (
        "FAIL unattributed_failures: observed 1, threshold <= 0"
    )


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"min_recovery_rate": 1.5}, "min_recovery_rate"),
        ({"min_first_try_simple": -0.1}, "min_first_try_simple"),
        ({"max_orphans": -1}, "max_orphans"),
        ({"gate": "median"}, "gate"),
    ],
)
def test_criteria_reject_bad_values_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"Criteria.{field}"):
        Criteria(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- invariants


@settings(max_examples=150, deadline=None)
@given(random_journal())
def test_metrics_invariants(events: list[Event]) -> None:
    m = compute(events)
    assert m.first_try + m.required_recovery + m.unsettled == m.total_tasks
    assert m.simple_tasks + m.complex_tasks == m.total_tasks
    outcomes = Counter(r.outcome for r in m.recent)
    assert outcomes[Outcome.RECOVERED] == m.recovered
    assert outcomes[Outcome.IN_PROGRESS] == m.recovering
    # A task can also be escalated over an exit nobody attributed (no failed attempt).
    assert outcomes[Outcome.ESCALATED] <= m.escalated
    assert sum(outcomes.values()) == m.required_recovery
    assert sum(n for _, n in m.required_recovery_by_reason) == m.required_recovery
    assert sum(r.count for r in m.reasons) == m.failures
    if m.failures:
        assert sum(r.percentage for r in m.reasons) == pytest.approx(100.0)
    assert 0 <= m.recovered_after_operator <= m.recovered
    assert m.first_try_simple <= m.settled_simple <= m.simple_tasks
    assert m.first_try_complex <= m.settled_complex <= m.complex_tasks
    assert len(m.recent) == m.required_recovery
    assert len(m.recovery_times) <= m.recovered
    for result in evaluate(m):
        if result.observed is not None and result.is_rate:
            assert 0.0 <= result.observed <= 1.0
            assert result.lower_bound is not None and result.lower_bound <= result.observed
    if m.recovery_times:
        assert m.recovery_time_p50 is not None and m.recovery_time_p95 is not None
        assert min(m.recovery_times) <= m.recovery_time_p50 <= m.recovery_time_p95
        assert m.recovery_time_p95 <= max(m.recovery_times)


def test_escalation_over_an_unattributed_exit_is_not_a_recovery() -> None:
    j = JournalBuilder()
    j.task("t1", "a1").launch().exit(ExitInfo(1)).decide(Strategy.ESCALATE).escalate()
    m = compute(j.events)
    assert (m.escalated, m.required_recovery, m.unattributed_failures) == (1, 0, 1)
    assert m.unsettled == 1 and m.settled_simple == 1  # ended, though not on a first try
