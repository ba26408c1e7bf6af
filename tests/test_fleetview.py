"""The fleet views (report/fleetview.py) over journal stories, and their agreement with
report/metrics.py."""

from __future__ import annotations

from collections import Counter

from events import JournalBuilder, random_journal, seed_incident, sigint_resumed
from hypothesis import given

from pytest_orch_recovery.cli.status import render
from pytest_orch_recovery.cli.statusrows import DETECTION_DELAY_SHOWN
from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    LaunchOrder,
    TaskSubmitted,
    TmuxTarget,
)
from pytest_orch_recovery.engine.model import Decision, ExitInfo, Phase, Reason, Strategy, Task
from pytest_orch_recovery.report.fleetview import FleetView
from pytest_orch_recovery.report.metrics import compute


def test_seed_incident_rows() -> None:
    j = seed_incident()
    view = FleetView(j.events, budget=4)
    rows = {r.task_id: r for r in view.statuses(now=j.clock + 1000)}
    assert set(rows) == {"update-fake3", "perm-0", "perm-1", "perm-2", "fake3"}
    assert all(r.phase is Phase.SUCCEEDED for r in rows.values())
    fake3 = rows["fake3"]
    assert (fake3.agent, fake3.attempt, fake3.budget) == ("task-agent-5030", 2, 4)
    assert fake3.reason is Reason.SIGINT and fake3.confidence == 0.9
    assert fake3.evidence is not None and fake3.evidence.detail.startswith("pane_dead_signal=2")
    assert fake3.next_launch_at is None
    # A finished task's elapsed time stops at its outcome, whatever "now" is.
    assert fake3.elapsed == FleetView(j.events).statuses(now=j.clock + 99999)[-1].elapsed


def test_failures_carry_reason_evidence_exit_and_the_strategy_decided() -> None:
    j = seed_incident()
    failures = FleetView(j.events).failures()
    assert [f.reason for f in failures] == [Reason.PERMISSION] * 3 + [Reason.SIGINT]
    assert [f.strategy for f in failures] == [Strategy.ESCALATE] * 3 + [Strategy.RESUME]
    sigint = failures[-1]
    assert sigint.exit == ExitInfo(status=None, signal=2, source="tmux")
    assert sigint.evidence[0].weight == 0.9  # strongest first
    assert sigint.why == "policy chose resume"


def test_partial_work_is_the_last_probe_and_filters_by_agent() -> None:
    j = JournalBuilder()
    t = sigint_resumed(j)
    running = j.task("t2", "task-agent-9", deliverables=("x.py",)).launch()
    view = FleetView(j.events)
    fake3 = view.partial_work(agent=t.agent)
    assert len(fake3) == 1
    part = fake3[0]
    # Succeeded: the row is the success, not the failed attempt's state beside the final PR.
    assert (part.phase, part.attempt, part.work.pr, part.probed) == (Phase.SUCCEEDED, 2, 886, False)
    assert part.work.deliverables_missing == () and part.missing_work == ()
    # Before the success, the row was the failed attempt's probe, with that moment's PR.
    success = next(i for i, e in enumerate(j.events) if e.kind is EventKind.TASK_SUCCEEDED)
    before = FleetView(j.events[:success]).partial_work(agent=t.agent)[0]
    assert before.work.deliverables_present == ("fake3.md",)
    assert before.work.deliverables_missing == ("fake3.py", "fake3_runner.py")
    assert before.work.uncommitted == ("fake3.md",) and before.work.pr is None
    other = view.partial_work(agent=running.agent)
    assert [p.probed for p in other] == [False] and other[0].phase is Phase.RUNNING


def test_waiting_task_shows_next_launch_from_the_decision() -> None:
    j = JournalBuilder()
    t = j.task("t1", "task-agent-1").launch().fail_with(Reason.API_ERROR)
    decision = Decision(Strategy.RESTART, "backoff", "api-backoff", delay=30.0)
    j.add(
        DecisionMade(decision, LaunchOrder(2, "claude-code", "", (), None, j.clock + 31.0)),
        task_id="t1",
        agent="task-agent-1",
        attempt=1,
        key="t1:2:restart",
    )
    row = FleetView(j.events).statuses(now=j.clock)[0]
    assert row.phase is Phase.WAITING and row.next_strategy is Strategy.RESTART
    assert row.next_launch_at == j.clock + 30.0
    assert row.reason is Reason.API_ERROR
    assert t.attempt == 1 and row.attempt == 1


def test_tmux_target_and_budget_recorded_in_the_journal_win() -> None:
    j = JournalBuilder()
    j.add(TaskSubmitted.of(Task("t1", "T"), budget=2), task_id="t1", agent="a1")
    j.add(
        AttemptLaunched("sim", tmux=TmuxTarget("s", "a1")),
        task_id="t1",
        agent="a1",
        attempt=1,
        key="t1:1",
    )
    row = FleetView(j.events, budget=4).statuses(now=j.clock + 5)[0]
    assert row.budget == 2 and row.tmux is not None and row.tmux.session == "a1"
    assert row.elapsed == 6.0  # submitted one second before the launch
    j.add(AttemptExited(ExitInfo(0)), task_id="t1", agent="a1", attempt=1)
    assert FleetView(j.events).statuses(now=j.clock)[0].tmux is None


def test_operator_release_puts_an_escalated_task_back_to_waiting() -> None:
    j = JournalBuilder()
    t = j.task("t1", "a1").launch().fail_with(Reason.PERMISSION)
    t.decide(Strategy.ESCALATE).escalate()
    assert FleetView(j.events).statuses(now=j.clock)[0].phase is Phase.ESCALATED
    j.operator_action("fixed the flag", ["t1"])
    row = FleetView(j.events).statuses(now=j.clock)[0]
    assert row.phase is Phase.WAITING and row.released_by == "fixed the flag"


def test_events_of_an_unsubmitted_task_still_make_a_row() -> None:
    events = [Event(AttemptExited(ExitInfo(1)), 5.0, task_id="ghost", seq=1)]
    rows = FleetView(events).statuses(now=10.0)
    assert [(r.task_id, r.agent, r.phase) for r in rows] == [("ghost", "ghost", Phase.EXITED)]


def _phase_counts(events: list[Event]) -> Counter[Phase]:
    return Counter(r.phase for r in FleetView(events).statuses(now=0.0))


@given(random_journal())
def test_views_never_crash_and_agree_with_metrics(events: list[Event]) -> None:
    view = FleetView(events, budget=4)
    end = max((e.time for e in events), default=0.0)
    rows = view.statuses(now=end)
    failures = view.failures()
    partial = view.partial_work()
    metrics = compute(events)
    assert len(rows) == metrics.total_tasks == len(partial)
    assert sum(r.attempt for r in rows) == metrics.attempts
    assert len(failures) == metrics.failures
    assert Counter(f.reason for f in failures) == Counter(
        {row.reason: row.count for row in metrics.reasons if row.count}
    )
    phases = _phase_counts(events)
    assert phases[Phase.SUCCEEDED] == metrics.first_try + metrics.recovered
    assert phases[Phase.ESCALATED] == metrics.escalated
    assert sum(1 for r in rows if r.reason is not None) == metrics.required_recovery
    for row in rows:
        assert row.elapsed >= 0.0 and (row.budget == 4)
        assert (row.next_launch_at is not None) <= (row.phase is Phase.WAITING)
        assert row.to_json()["phase"] == str(row.phase)
    for failure in failures:
        assert failure.to_json()["reason"] == str(failure.reason)


def test_an_attempt_an_operator_granted_past_the_budget_reads_as_such() -> None:
    from pytest_orch_recovery.cli.status import render

    j = JournalBuilder()
    t = j.task("t1", "task-agent-1")
    for _ in range(4):
        t.launch().fail_with(Reason.PERMISSION).decide(Strategy.RESTART)
    t.escalate()
    j.operator_action("added the permission flag", ["t1"])
    t.launch()
    (row,) = FleetView(j.events, budget=4).statuses(now=j.clock)
    assert (row.attempt, row.budget, row.releases) == (5, 4, 1)
    table = render([row], None, "table", j.clock)
    assert " 5/4+1 " in table and " 5/4 " not in table


def test_an_adopted_task_shows_its_own_run_time_not_the_time_since() -> None:
    j = JournalBuilder()
    submitted = j.add(
        TaskSubmitted(task=Task("a1", "a1"), adopted_from="seed orchestrator"),
        task_id="a1",
        agent="a1",
    )
    j.add(AttemptLaunched(), task_id="a1", agent="a1", attempt=1, after=10.0)
    j.add(AttemptExited(exit=ExitInfo(1)), task_id="a1", agent="a1", attempt=1, after=300.0)
    (row,) = FleetView(j.events).statuses(now=j.clock + 147 * 3600)
    assert row.elapsed == j.clock - submitted.time  # 310 s, not 147 h


def test_partial_words_never_say_pushed_beside_a_missing_push() -> None:
    from pytest_orch_recovery.engine.events import PartialSummary
    from pytest_orch_recovery.report.metrics import describe_partial

    bare = PartialSummary(commits_ahead=0, pushed=True, uncommitted=("a.md",))
    assert not any("pushed" in w for w in describe_partial(bare))
    ahead = PartialSummary(commits_ahead=2, pushed=True)
    assert describe_partial(ahead) == ("2 commits on the branch, pushed",)


def test_a_late_noticed_exit_shows_its_detection_delay() -> None:
    j = JournalBuilder()
    j.task("t-prompt", "a1").launch().exit(ExitInfo(1))  # noticed as it ended
    late = j.task("t-late", "a2").launch()
    late._add(
        AttemptExited(exit=ExitInfo(1), started_at=j.clock, ended_at=j.clock + 10.0),
        after=10.0 + 42.0,  # journaled 42 s after the agent's own end
    )
    rows = FleetView(j.events).statuses(now=j.clock)
    delays = {row.task_id: row.detection_delay for row in rows}
    assert delays == {"t-prompt": 0.0, "t-late": 42.0}
    assert 0.0 < DETECTION_DELAY_SHOWN < 42.0
    table = render(rows, None, "table", j.clock)
    assert "t-late: its last exit was noticed 42s after the agent ended" in table
    assert "t-prompt: its last exit" not in table
