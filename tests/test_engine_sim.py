"""The seed's recovery patterns, end to end through the real coordinator on the simulation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pytest_orch_recovery.chaos.faults import FaultSpec, FaultStatus, Trigger
from pytest_orch_recovery.chaos.tiers.sim import SimOutcome, simulate
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import Phase, Reason, Task, WorkKind
from pytest_orch_recovery.report.metrics import compute

FAKE3 = Task("task-5030", "Create /fake3 command", ("fake3.md",))
FOUR = Task("t-four", "Add four modules", ("a.py", "b.py", "c.py", "d.py"))


def _kinds(out: SimOutcome, kind: EventKind, task: str | None = None) -> list[dict[str, Any]]:
    return [
        dict(e.payload.to_json())
        for e in out.events
        if e.kind is kind and (task is None or e.task_id == task)
    ]


def _reasons(out: SimOutcome, task: str) -> list[str]:
    return [d["attribution"]["reason"] for d in _kinds(out, EventKind.FAILURE_ATTRIBUTED, task)]


def _strategies(out: SimOutcome, task: str) -> list[str]:
    return [d["decision"]["strategy"] for d in _kinds(out, EventKind.DECISION, task)]


def _launch_work(out: SimOutcome, task: str) -> list[list[tuple[str, str | None]]]:
    return [
        [(w["kind"], w["path"]) for w in d["work"]]
        for d in _kinds(out, EventKind.ATTEMPT_LAUNCHED, task)
    ]


def test_task_agent_5030_sigint_is_resumed_and_pr_opened() -> None:
    fault = FaultSpec("sigint", Trigger("file_written", path="fake3.md"), task="task-5030")
    out = simulate([FAKE3], [fault], seed=5030, agents=["task-agent-5030"])
    assert out.outcomes == {"task-5030": Phase.SUCCEEDED}
    assert _reasons(out, "task-5030") == ["sigint"]
    assert _strategies(out, "task-5030") == ["resume"]
    # The resume does not write fake3.md again: it commits, pushes and opens the PR.
    assert _launch_work(out, "task-5030")[1] == [
        ("commit", None),
        ("push", None),
        ("open_pr", None),
    ]
    ws = out.runtime.workspaces["task-agent-5030"]
    assert ws.pr is not None and ws.pushed_commits == ws.commits == 1
    exited = _kinds(out, EventKind.ATTEMPT_EXITED, "task-5030")[0]
    # Real Claude Code's way of ending on SIGINT: exit 0, no output; the wrapper saw INT.
    assert exited["exit"]["code"] == 0 and exited["signals_delivered"] == [2]
    assert out.ledger.statuses() == {"f1": FaultStatus.EXERCISED}
    assert out.runtime.violations == []


def test_three_permission_failures_escalate_once_then_complete_after_fix() -> None:
    tasks = [Task(f"t{n}", f"Task {n}", (f"f{n}.md",)) for n in (1813, 3403, 3532)]
    agents = [f"task-agent-{n}" for n in (1813, 3403, 3532)]
    out = simulate(
        tasks,
        [FaultSpec("missing_permission_flag")],
        seed=7,
        agents=agents,
        operator_actions=["fix_permission_flag"],
    )
    assert set(out.outcomes.values()) == {Phase.SUCCEEDED}
    for task in tasks:
        assert _reasons(out, task.task_id) == ["permission"]
        # Escalated, never restarted blindly; then resumed/restarted once after the fix.
        assert _strategies(out, task.task_id)[0] == "escalate"
        assert len(_kinds(out, EventKind.ATTEMPT_LAUNCHED, task.task_id)) == 2
    causes = {d["systematic_cause"] for d in _kinds(out, EventKind.TASK_ESCALATED)}
    assert len(causes) == 1 and "permission" in next(iter(causes))
    metrics = compute(out.events)
    assert metrics.recovered_after_operator == 3
    assert metrics.required_recovery == 3


def test_pr_creation_failure_resumes_only_the_pr() -> None:
    task = Task("t-pr", "Add docs", ("docs.md",))
    out = simulate([task], [FaultSpec("pr_create_fails", task="t-pr")], seed=3)
    assert out.outcomes["t-pr"] is Phase.SUCCEEDED
    assert _reasons(out, "t-pr") == ["github_error"]
    assert _strategies(out, "t-pr") == ["resume"]
    assert _launch_work(out, "t-pr")[1] == [("open_pr", None)]


def test_partial_files_resume_writes_only_the_missing_two() -> None:
    fault = FaultSpec("kill", Trigger("file_written", n=2), task="t-four")
    out = simulate([FOUR], [fault], seed=11)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    assert _reasons(out, "t-four") == ["killed"]
    assert _strategies(out, "t-four") == ["resume"]
    second = _launch_work(out, "t-four")[1]
    assert [p for k, p in second if k == "write"] == ["c.py", "d.py"]


def test_tests_failing_after_implementation_are_reassigned_to_a_fixer() -> None:
    task = Task("t-tests", "Implement parser", ("parser.py",), tests="pytest -q")
    out = simulate([task], [FaultSpec("tests_fail", task="t-tests")], seed=2)
    assert out.outcomes["t-tests"] is Phase.SUCCEEDED
    assert _reasons(out, "t-tests") == ["test_failure"]
    assert _strategies(out, "t-tests") == ["reassign"]
    launches = _kinds(out, EventKind.ATTEMPT_LAUNCHED, "t-tests")
    assert launches[1]["agent_type"] == "claude-code-fixer"
    assert launches[1]["work"][0]["kind"] == str(WorkKind.FIX_TESTS)


def test_stall_is_killed_at_the_timeout_and_attributed_to_it() -> None:
    out = simulate([FOUR], [FaultSpec("stall", Trigger("tool_call", n=1), task="t-four")], seed=5)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    assert _reasons(out, "t-four") == ["timeout"]
    exited = _kinds(out, EventKind.ATTEMPT_EXITED, "t-four")[0]
    assert exited["exit"]["timed_out"] is True
    assert exited["ended_at"] - exited["started_at"] >= 1800.0


def test_api_burst_longer_than_retries_backs_off_and_recovers() -> None:
    fault = FaultSpec("api_overloaded", Trigger("api_request", n=2), task="t-four")
    out = simulate([FOUR], [fault], seed=8)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    assert _reasons(out, "t-four") == ["api_error"]
    decision = _kinds(out, EventKind.DECISION, "t-four")[0]["decision"]
    assert decision["rule"] == "api_error_retry" and decision["delay"] > 0


def test_api_burst_absorbed_by_agent_retries_is_ledgered_ineffective() -> None:
    fault = FaultSpec(
        "api_overloaded", Trigger("api_request", n=1), task="t-four", params={"count": 3}
    )
    out = simulate([FOUR], [fault], seed=8)
    assert _kinds(out, EventKind.FAILURE_ATTRIBUTED) == []
    assert out.ledger.statuses() == {"f1": FaultStatus.INEFFECTIVE}


def test_rate_limit_retry_after_is_honoured() -> None:
    fault = FaultSpec(
        "api_rate_limit", Trigger("api_request", n=1), task="t-four", params={"retry_after": 90}
    )
    out = simulate([FOUR], [fault], seed=9)
    attribution = _kinds(out, EventKind.FAILURE_ATTRIBUTED, "t-four")[0]["attribution"]
    assert attribution["reason"] == "api_error" and attribution["api_status"] == 429
    assert attribution["retry_after"] == 90
    assert _kinds(out, EventKind.DECISION, "t-four")[0]["decision"]["delay"] >= 90


def test_stale_index_lock_is_removed_before_the_resume() -> None:
    out = simulate([FAKE3], [FaultSpec("stale_index_lock", task="task-5030")], seed=4)
    assert out.outcomes["task-5030"] is Phase.SUCCEEDED
    assert _reasons(out, "task-5030") == ["git_error"]
    launched = _kinds(out, EventKind.ATTEMPT_LAUNCHED, "task-5030")[1]
    assert launched["remedies"][0]["remedy"] == "remove_stale_index_lock"
    assert "removed" in launched["remedies"][0]["result"]


def test_sigint_during_the_resume_is_recovered_again() -> None:
    faults = [
        FaultSpec("sigint", Trigger("file_written", n=1), task="t-four", attempt=1),
        FaultSpec("sigint", Trigger("file_written", n=1), task="t-four", attempt=2),
    ]
    out = simulate([FOUR], faults, seed=12)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    assert _reasons(out, "t-four") == ["sigint", "sigint"]
    assert _strategies(out, "t-four") == ["resume", "resume"]


def test_corrupt_checkpoint_falls_back_to_restart() -> None:
    faults = [
        FaultSpec("corrupt_checkpoint", Trigger("tool_call", n=2), task="t-four"),
        FaultSpec("kill", Trigger("tool_call", n=2), task="t-four"),
    ]
    out = simulate([FOUR], faults, seed=13)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    decision = _kinds(out, EventKind.DECISION, "t-four")[0]["decision"]
    assert decision["strategy"] == "restart" and decision["rule"] == "corrupt_checkpoint"


def test_permission_prompt_parked_agent_is_blamed_on_permission_not_timeout() -> None:
    out = simulate(
        [FAKE3], [FaultSpec("permission_prompt", Trigger("start"), task="task-5030")], seed=14
    )
    assert _reasons(out, "task-5030") == ["permission"]
    assert out.outcomes["task-5030"] is Phase.ESCALATED


def test_attempt_budget_escalates_a_task_that_keeps_failing() -> None:
    fault = FaultSpec("kill", Trigger("tool_call", n=1), task="t-four", attempt=None)
    out = simulate([FOUR], [fault], seed=15)
    assert out.outcomes["t-four"] is Phase.ESCALATED
    assert len(_kinds(out, EventKind.ATTEMPT_LAUNCHED, "t-four")) == 4
    assert _kinds(out, EventKind.DECISION, "t-four")[-1]["decision"]["rule"] == (
        "attempt_budget_spent"
    )


def test_fleet_wide_api_outage_opens_the_breaker() -> None:
    tasks = [Task(f"t{n}", f"Task {n}", (f"f{n}.md", "g.md")) for n in range(5)]
    fault = FaultSpec("api_server_error", Trigger("api_request", n=1), attempt=None)
    out = simulate(tasks, [fault], seed=16)
    escalated = [d for d in _kinds(out, EventKind.TASK_ESCALATED) if d["systematic_cause"]]
    assert escalated, "the breaker should have escalated the outage"
    causes = {d["systematic_cause"] for d in escalated}
    assert len(causes) == 1 and "api_error" in next(iter(causes))
    # No task was restarted more than the breaker allows: each escalates instead.
    launches = Counter(e.task_id for e in out.events if e.kind is EventKind.ATTEMPT_LAUNCHED)
    assert max(launches.values()) < 4


def test_coordinator_crash_mid_recovery_loses_nothing_and_launches_nothing_twice() -> None:
    fault = FaultSpec("sigint", Trigger("file_written", path="fake3.md"), task="task-5030")
    clean = simulate([FAKE3], [fault], seed=21)
    for crash_after in range(1, len(clean.events) + 1):
        out = simulate([FAKE3], [fault], seed=21, crash_after_event=crash_after)
        assert out.crashes == 1
        assert out.outcomes == {"task-5030": Phase.SUCCEEDED}, crash_after
        keys = [k for _, k in out.runtime.launch_log]
        assert len(keys) == len(set(keys)), crash_after
        assert [e.seq for e in out.events] == list(range(1, len(out.events) + 1))
        assert _reasons(out, "task-5030") == ["sigint"]


def test_first_try_success_is_not_a_failure() -> None:
    out = simulate([FAKE3, FOUR], [], seed=1)
    assert set(out.outcomes.values()) == {Phase.SUCCEEDED}
    metrics = compute(out.events)
    assert metrics.first_try == 2 and metrics.required_recovery == 0
    assert Reason.UNKNOWN not in {
        Reason(r) for t in ("task-5030", "t-four") for r in _reasons(out, t)
    }


def test_coordinator_crash_right_after_an_operator_release_finishes_the_release() -> None:
    tasks = [Task(f"t{n}", f"Task {n}", (f"f{n}.md",)) for n in (1, 2, 3)]
    faults = [FaultSpec("missing_permission_flag")]
    clean = simulate(tasks, faults, seed=7, operator_actions=["fix_permission_flag"])
    release_seq = next(e.seq for e in clean.events if e.kind is EventKind.OPERATOR_ACTION)
    out = simulate(
        tasks,
        faults,
        seed=7,
        operator_actions=["fix_permission_flag"],
        crash_after_event=release_seq,
    )
    assert out.crashes == 1
    assert out.outcomes == clean.outcomes == {t.task_id: Phase.SUCCEEDED for t in tasks}


def test_a_workspace_nobody_cleaned_is_counted_as_an_orphan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_orch_recovery.chaos.tiers.simruntime import SimRuntime

    monkeypatch.setattr(SimRuntime, "cleanup", lambda self, agent: None)
    out = simulate([FAKE3, FOUR], [], seed=1)
    assert compute(out.events).orphaned_workspaces == 2


def test_escalated_workspaces_are_kept_not_orphaned() -> None:
    out = simulate([FAKE3], [FaultSpec("missing_permission_flag")], seed=1)
    assert out.outcomes["task-5030"] is Phase.ESCALATED
    assert compute(out.events).orphaned_workspaces == 0


def test_recover_refuses_a_coordinator_that_already_has_state() -> None:
    import pytest

    from pytest_orch_recovery.chaos.tiers.simruntime import SimRuntime
    from pytest_orch_recovery.engine.coordinator import Coordinator
    from pytest_orch_recovery.store.journal import Journal

    coordinator = Coordinator(SimRuntime(), Journal(None))
    coordinator.submit(FAKE3)
    with pytest.raises(RuntimeError, match="fresh coordinator"):
        coordinator.recover()
