"""End to end with real processes: tmux sessions, the sim agent, the model double, git, gh.

Each test asserts the attributed reason, the strategy, the final repository state (files, the
branch on the bare origin, the PR in the forge) and that nothing is left running.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_orch_recovery.chaos.faults import FaultSpec, FaultStatus, Trigger
from pytest_orch_recovery.chaos.tiers.tmux import TmuxOutcome, run_tmux
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import Phase, Task
from pytest_orch_recovery.report.dashboard import render_markdown
from pytest_orch_recovery.report.metrics import compute, evaluate

pytestmark = pytest.mark.slow

FAKE3 = Task("task-5030", "Create /fake3 command", ("fake3.md",))
FOUR = Task("t-four", "Add the four parser modules", ("lex.py", "parse.py", "emit.py", "cli.py"))


def _data(out: TmuxOutcome, kind: EventKind, task: str) -> list[dict[str, Any]]:
    return [dict(e.payload.to_json()) for e in out.events if e.kind is kind and e.task_id == task]


def _reasons(out: TmuxOutcome, task: str) -> list[str]:
    return [d["attribution"]["reason"] for d in _data(out, EventKind.FAILURE_ATTRIBUTED, task)]


def _strategies(out: TmuxOutcome, task: str) -> list[str]:
    return [d["decision"]["strategy"] for d in _data(out, EventKind.DECISION, task)]


def _writes(out: TmuxOutcome) -> Counter[str]:
    """How many times the model double sent a Write for each path."""
    return Counter(
        str(t["action"]["target"])
        for t in out.transcript
        if isinstance(t.get("action"), dict) and t["action"].get("tool") == "Write"
    )


def _assert_clean(out: TmuxOutcome) -> None:
    assert out.leftovers == [], out.leftovers
    assert [e for e in out.events if e.kind is EventKind.WORKSPACE_ORPHANED] == []
    cleaned = {e.agent for e in out.events if e.kind is EventKind.WORKSPACE_CLEANED}
    finished = {out.agents[t] for t, phase in out.outcomes.items() if phase is Phase.SUCCEEDED}
    assert cleaned == finished, "finished tasks' worktrees are removed, others kept"


def test_task_agent_5030_reproduced_and_recovered(tmp_path: Path) -> None:
    fault = FaultSpec("sigint", Trigger("file_written", path="fake3.md"), task="task-5030")
    out = run_tmux([FAKE3], [fault], agents=["task-agent-5030"], base_dir=tmp_path)
    assert out.outcomes == {"task-5030": Phase.SUCCEEDED}
    assert _reasons(out, "task-5030") == ["sigint"]
    assert _strategies(out, "task-5030") == ["resume"]
    exited = _data(out, EventKind.ATTEMPT_EXITED, "task-5030")[0]
    # What real Claude Code does on SIGINT, and what the launch wrapper saw.
    assert exited["exit"]["code"] == 0 and "SIGINT" in exited["signals_delivered"]
    # Who sent it (the wrapper's siginfo): the fault hook's killpg, named with its command line.
    (sender,) = exited["exit"]["senders"]
    assert sender["origin"] == "process" and sender["code"] == 0
    assert "pytest_orch_recovery.chaos.faulthook" in sender["command"]
    attribution = _data(out, EventKind.FAILURE_ATTRIBUTED, "task-5030")[0]["attribution"]
    assert attribution["sender"] == sender
    state = out.repo["task-5030"]
    assert state.files == ("fake3.md",) and state.commits == 1 and state.pr == 1
    assert _writes(out) == {"fake3.md": 1}, "the resume must not write fake3.md again"
    assert out.ledger.statuses() == {"f1": FaultStatus.EXERCISED}
    dashboard = render_markdown(compute(out.events), evaluate(compute(out.events)))
    assert "task-agent-5030 (SIGINT) ✅ RECOVERED" in dashboard
    assert (
        "- **Root Cause Theory**: SIGINT (Ctrl-C) - hypothesis 2 (System signal during "
        f"resource pressure) held in part: SIGINT from pid {sender['pid']}"
    ) in dashboard
    _assert_clean(out)


def test_sigint_typed_into_the_pane_is_recovered_too(tmp_path: Path) -> None:
    fault = FaultSpec("sigint_keys", Trigger("file_written", n=1), task="t-four")
    out = run_tmux([FOUR], [fault], base_dir=tmp_path)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    assert _reasons(out, "t-four") == ["sigint"]
    assert _strategies(out, "t-four") == ["resume"]
    (sender,) = _data(out, EventKind.ATTEMPT_EXITED, "t-four")[0]["exit"]["senders"]
    assert (sender["origin"], sender["code"], sender["clients"]) == ("tty", 0x80, 0)
    assert "pid" not in sender, "a tty-generated signal has no sending process"
    _assert_clean(out)


def test_three_agents_without_the_permission_flag(tmp_path: Path) -> None:
    numbers = (1813, 3403, 3532)
    tasks = [Task(f"t{n}", f"Write notes {n}", (f"notes{n}.md",)) for n in numbers]
    out = run_tmux(
        tasks,
        [FaultSpec("missing_permission_flag")],
        agents=[f"task-agent-{n}" for n in numbers],
        operator_actions=["fix_permission_flag"],
        base_dir=tmp_path,
    )
    assert set(out.outcomes.values()) == {Phase.SUCCEEDED}
    causes = set()
    for task in tasks:
        assert _reasons(out, task.task_id) == ["permission"]
        strategies = _strategies(out, task.task_id)
        assert strategies[0] == "escalate" and "restart" not in strategies[:1]
        escalations = _data(out, EventKind.TASK_ESCALATED, task.task_id)
        causes |= {e["systematic_cause"] for e in escalations}
        assert out.repo[task.task_id].pr is not None
    assert len(causes) == 1 and "permission" in next(iter(causes))
    _assert_clean(out)


def test_pr_creation_failure_resumes_only_the_pr(tmp_path: Path) -> None:
    task = Task("t-pr", "Document the retry policy", ("docs/retry.md",))
    out = run_tmux([task], [FaultSpec("pr_create_fails", task="t-pr")], base_dir=tmp_path)
    assert out.outcomes["t-pr"] is Phase.SUCCEEDED
    assert _reasons(out, "t-pr") == ["github_error"]
    launches = _data(out, EventKind.ATTEMPT_LAUNCHED, "t-pr")
    assert [w["kind"] for w in launches[1]["work"]] == ["open_pr"]
    creates = [c for c in out.gh_calls if c["argv"][:2] == ["pr", "create"]]
    assert [c["exit_code"] for c in creates] == [1, 1, 0]
    assert out.repo["t-pr"].commits == 1 and out.repo["t-pr"].pr == 1
    _assert_clean(out)


def test_partial_files_resume_writes_only_the_missing_two(tmp_path: Path) -> None:
    fault = FaultSpec("kill", Trigger("file_written", n=2), task="t-four")
    out = run_tmux([FOUR], [fault], base_dir=tmp_path)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    assert _reasons(out, "t-four") == ["killed"]
    assert _strategies(out, "t-four") == ["resume"]
    assert _writes(out) == {p: 1 for p in FOUR.deliverables}
    assert out.repo["t-four"].files == FOUR.deliverables
    _assert_clean(out)


def test_api_529_burst_beyond_the_agents_retries(tmp_path: Path) -> None:
    fault = FaultSpec("api_overloaded", Trigger("api_request", n=2), task="t-four")
    out = run_tmux([FOUR], [fault], base_dir=tmp_path)
    assert out.outcomes["t-four"] is Phase.SUCCEEDED
    assert _reasons(out, "t-four") == ["api_error"]
    attribution = _data(out, EventKind.FAILURE_ATTRIBUTED, "t-four")[0]["attribution"]
    assert attribution["api_status"] == 529
    _assert_clean(out)


def test_stall_past_the_timeout(tmp_path: Path) -> None:
    fault = FaultSpec("stall", Trigger("tool_call", n=1), task="task-5030")
    out = run_tmux([FAKE3], [fault], attempt_timeout=8.0, base_dir=tmp_path)
    assert out.outcomes["task-5030"] is Phase.SUCCEEDED
    assert _reasons(out, "task-5030") == ["timeout"]
    exited = _data(out, EventKind.ATTEMPT_EXITED, "task-5030")[0]
    assert exited["exit"]["timed_out"] is True
    _assert_clean(out)


def test_a_stall_is_ended_at_the_stall_window_not_the_timeout(tmp_path: Path) -> None:
    fault = FaultSpec("stall", Trigger("tool_call", n=1), task="task-5030")
    out = run_tmux([FAKE3], [fault], attempt_timeout=600.0, stall_window=2.0, base_dir=tmp_path)
    assert out.outcomes["task-5030"] is Phase.SUCCEEDED
    assert _reasons(out, "task-5030") == ["timeout"]
    exited = _data(out, EventKind.ATTEMPT_EXITED, "task-5030")
    first = exited[0]["exit"]
    assert first["timed_out"] is False and first["screen"]["kind"] == "stall"
    assert first["screen"]["silent_for"] > 2.0
    assert "screen" not in exited[1]["exit"], "the resumed attempt talks: no false stall"
    assert out.ledger.statuses() == {"f1": FaultStatus.EXERCISED}
    _assert_clean(out)


def test_stale_index_lock_is_cleared_and_the_task_resumed(tmp_path: Path) -> None:
    out = run_tmux([FAKE3], [FaultSpec("stale_index_lock", task="task-5030")], base_dir=tmp_path)
    assert out.outcomes["task-5030"] is Phase.SUCCEEDED
    assert _reasons(out, "task-5030") == ["git_error"]
    launched = _data(out, EventKind.ATTEMPT_LAUNCHED, "task-5030")[1]
    assert "removed stale" in launched["remedies"][0]["result"]
    assert out.repo["task-5030"].commits == 1
    _assert_clean(out)


def test_coordinator_killed_mid_recovery_is_replaced_from_its_journal(tmp_path: Path) -> None:
    fault = FaultSpec("sigint", Trigger("file_written", path="fake3.md"), task="task-5030")
    out = run_tmux([FAKE3], [fault], crash_after_event=5, base_dir=tmp_path)
    assert out.crashes == 1
    assert out.outcomes["task-5030"] is Phase.SUCCEEDED
    keys = [e.key for e in out.events if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert len(keys) == len(set(keys)) == 2
    _assert_clean(out)


@pytest.mark.parametrize(
    ("trigger", "dialog"),
    [
        (Trigger("start"), "Do you want to create fake3.md?"),
        (Trigger("tool_call", 1), "Do you want to proceed?"),
    ],
)
def test_permission_prompt_is_seen_on_screen_and_escalated_before_the_timeout(
    tmp_path: Path,
    trigger: Trigger,
    dialog: str,
) -> None:
    fault = FaultSpec("permission_prompt", trigger, task="task-5030")
    # An attempt timeout far beyond the test's own: the dialog must be what ends it.
    out = run_tmux(
        [FAKE3], [fault], agents=["task-agent-5030"], attempt_timeout=600.0, base_dir=tmp_path
    )
    exited = _data(out, EventKind.ATTEMPT_EXITED, "task-5030")
    assert len(exited) == 1
    assert exited[0]["exit"]["timed_out"] is False, exited[0]["exit"]
    screen = exited[0]["exit"]["screen"]
    assert (screen["kind"], screen["detail"], screen["cli"]) == ("dialog", dialog, "claude-code")
    assert dialog in exited[0]["output_tail"]
    assert _reasons(out, "task-5030") == ["permission"]
    attribution = _data(out, EventKind.FAILURE_ATTRIBUTED, "task-5030")[0]["attribution"]
    first = attribution["evidence"][0]
    assert first["kind"] == "screen" and dialog in first["detail"], attribution["evidence"]
    assert _strategies(out, "task-5030") == ["escalate"]
    assert out.outcomes == {"task-5030": Phase.ESCALATED}
    assert out.repo["task-5030"].commits == 0 and out.repo["task-5030"].pr is None
    assert out.ledger.statuses() == {"f1": FaultStatus.EXERCISED}
    _assert_clean(out)
