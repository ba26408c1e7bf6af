"""The recovery policy table, backoff, the circuit breaker and user overrides."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.engine.analyze import missing_work
from pytest_orch_recovery.engine.model import (
    Attribution,
    Checkpoint,
    Decision,
    Evidence,
    PartialWork,
    PullRequest,
    Reason,
    SignalOrigin,
    SignalSender,
    Strategy,
    Task,
    WorkItem,
    WorkKind,
    full_plan,
)
from pytest_orch_recovery.engine.policy import (
    DEFAULT_RULES,
    REMEDY_STALE_INDEX_LOCK,
    TASK_SPECIFIC_REASONS,
    Backoff,
    CircuitBreaker,
    PastAttempt,
    Policy,
    Rule,
    Situation,
    describe_rules,
    systematic_cause,
)

W = WorkKind
FILES = ("fake3.md", "fake3.py", "fake3_runner.py")
TASK = Task("t1", "Create /fake3 command", FILES, tests="pytest -q")
PR = PullRequest(886, "agent/t1", "https://example.invalid/pull/886")
RULE_NAMES = [r.name for r in DEFAULT_RULES]

FRESH = PartialWork(deliverables_missing=FILES)
PARTIAL = PartialWork(deliverables_present=FILES[:1], deliverables_missing=FILES[1:])
CODE_DONE = PartialWork(deliverables_present=FILES, uncommitted=FILES)
PUSHED_NO_PR = PartialWork(
    deliverables_present=FILES, commits_ahead=1, pushed=True, tests_passed=True
)


def _situation(
    reason: Reason = Reason.UNKNOWN,
    *,
    partial: PartialWork = FRESH,
    task: Task = TASK,
    agent_type: str = "claude-code",
    history: tuple[PastAttempt, ...] | None = None,
    breaker_open: bool = False,
    max_attempts: int = 4,
    **attribution: Any,
) -> Situation:
    if history is None:
        history = (PastAttempt(1, agent_type, reason, None),)
    return Situation(
        task=task,
        agent="task-agent-5030",
        agent_type=agent_type,
        attribution=Attribution(reason, attribution.pop("confidence", 0.9), **attribution),
        partial=partial,
        missing=missing_work(task, partial),
        history=history,
        breaker_open=breaker_open,
        max_attempts=max_attempts,
    )


def _decide(s: Situation, policy: Policy | None = None) -> Decision:
    return (policy or Policy()).decide(s)


def _before(first: str, second: str) -> bool:
    return RULE_NAMES.index(first) < RULE_NAMES.index(second)


# --------------------------------------------------------------------------- the table's order


def test_table_order() -> None:
    assert RULE_NAMES == [
        "attempt_budget_spent",
        "usage_limit_fallback",
        "usage_limit_beyond_horizon",
        "usage_limit_wait",
        "circuit_breaker_open",
        "weak_permission_cue",
        "missing_permissions",
        "poison_task",
        "corrupt_checkpoint",
        "tests_fail_after_implementation",
        "pr_creation_failed",
        "api_error_retry",
        "sigint_typed_by_person",
        "sigint_with_checkpoint",
        "sigint_with_partial_work",
        "sigint_without_checkpoint",
        "stale_git_lock",
        "partial_files",
        "progress_worth_keeping",
        "nothing_to_keep",
    ]
    assert _before("attempt_budget_spent", "circuit_breaker_open")
    # A usage limit is the account's: it neither opens nor meets the breaker.
    assert _before("usage_limit_wait", "circuit_breaker_open")
    assert _before("circuit_breaker_open", "missing_permissions")
    assert _before("sigint_with_checkpoint", "sigint_without_checkpoint")


def test_every_rule_explains_itself() -> None:
    assert len(set(RULE_NAMES)) == len(RULE_NAMES)
    for rule in DEFAULT_RULES:
        assert rule.lesson.strip(), rule.name
    assert DEFAULT_RULES[-1].when(_situation())  # a catch-all closes the table


# --------------------------------------------------------------------------- each rule fires


def test_budget_spent_escalates_before_anything_else() -> None:
    history = tuple(PastAttempt(n, "claude-code", Reason.PERMISSION, None) for n in (1, 2, 3, 4))
    d = _decide(_situation(Reason.PERMISSION, history=history, breaker_open=True))
    assert d.rule == "attempt_budget_spent"
    assert d.strategy is Strategy.ESCALATE
    assert "4 attempts spent (budget 4)" in d.why and "permission" in d.why
    assert d.work == () and d.delay == 0.0
    assert d.systematic_cause is None


def test_budget_not_spent_one_below() -> None:
    history = tuple(PastAttempt(n, "claude-code", Reason.UNKNOWN, None) for n in (1, 2, 3))
    assert _decide(_situation(history=history)).rule != "attempt_budget_spent"


def test_budget_uses_the_situation_max_attempts() -> None:
    d = _decide(_situation(Reason.API_ERROR, max_attempts=1))
    assert d.rule == "attempt_budget_spent"


def test_open_breaker_escalates_before_permissions() -> None:
    d = _decide(_situation(Reason.PERMISSION, breaker_open=True))
    assert d.rule == "circuit_breaker_open"
    assert d.strategy is Strategy.ESCALATE
    assert d.systematic_cause == systematic_cause(Reason.PERMISSION)
    assert "--dangerously-skip-permissions" in (d.systematic_cause or "")
    assert d.work == ()


def test_open_breaker_names_the_breakers_own_cause() -> None:
    policy = Policy()
    for agent in ("task-agent-1813", "task-agent-3403", "task-agent-3532"):
        policy.breaker.record(Reason.API_ERROR, agent, 10.0)
    d = policy.decide(_situation(Reason.API_ERROR, breaker_open=True, partial=PARTIAL))
    assert d.rule == "circuit_breaker_open"
    assert d.systematic_cause == policy.breaker.cause(Reason.API_ERROR)
    assert "api_error" in d.why


def test_permission_escalates_once_even_without_the_breaker() -> None:
    d = _decide(_situation(Reason.PERMISSION, partial=PARTIAL))
    assert d.rule == "missing_permissions"
    assert d.strategy is Strategy.ESCALATE
    assert "--dangerously-skip-permissions" in d.why
    assert d.systematic_cause == systematic_cause(Reason.PERMISSION)
    assert d.work == ()


def test_a_weak_permission_cue_costs_one_retry_not_an_escalation() -> None:
    weak = _decide(_situation(Reason.PERMISSION, partial=PARTIAL, confidence=0.45))
    assert weak.rule == "weak_permission_cue"
    assert weak.strategy is Strategy.RESTART
    assert "0.45" in weak.why
    again = (
        PastAttempt(1, "claude-code", Reason.PERMISSION, None),
        PastAttempt(2, "claude-code", Reason.PERMISSION, Strategy.RESTART),
    )
    repeated = _decide(
        _situation(Reason.PERMISSION, partial=PARTIAL, confidence=0.45, history=again)
    )
    assert repeated.rule == "missing_permissions"
    assert repeated.strategy is Strategy.ESCALATE


def test_permissions_before_poison() -> None:
    history = (
        PastAttempt(1, "claude-code", Reason.SIGINT, None),
        PastAttempt(2, "claude-code-fixer", Reason.PERMISSION, Strategy.REASSIGN),
    )
    d = _decide(_situation(Reason.PERMISSION, history=history, agent_type="claude-code-fixer"))
    assert d.rule == "missing_permissions"


def _two_types(reason: Reason) -> tuple[PastAttempt, ...]:
    return (
        PastAttempt(1, "claude-code", Reason.TEST_FAILURE, None),
        PastAttempt(2, "claude-code-fixer", reason, Strategy.REASSIGN),
    )


def test_poison_task_after_two_agent_types() -> None:
    s = _situation(
        Reason.TEST_FAILURE,
        partial=CODE_DONE,
        history=_two_types(Reason.TEST_FAILURE),
        agent_type="claude-code-fixer",
    )
    d = _decide(s)
    assert d.rule == "poison_task"
    assert d.strategy is Strategy.ESCALATE
    assert "2 agent types (claude-code, claude-code-fixer)" in d.why
    assert d.systematic_cause is None
    assert d.work == ()


def test_same_agent_type_twice_is_not_poison() -> None:
    history = (
        PastAttempt(1, "claude-code", Reason.UNKNOWN, None),
        PastAttempt(2, "claude-code", Reason.UNKNOWN, Strategy.RESTART),
    )
    assert _decide(_situation(history=history)).rule != "poison_task"


def test_successful_attempts_do_not_count_towards_poison() -> None:
    history = (
        PastAttempt(1, "other-agent", None, None),
        PastAttempt(2, "claude-code", Reason.UNKNOWN, Strategy.RESTART),
    )
    assert _decide(_situation(history=history)).rule != "poison_task"


def test_api_errors_are_not_poison() -> None:
    d = _decide(_situation(Reason.API_ERROR, history=_two_types(Reason.API_ERROR)))
    assert d.rule == "api_error_retry"


def test_poison_before_corrupt_checkpoint() -> None:
    partial = PartialWork(deliverables_missing=FILES, checkpoint_problem="torn JSON")
    d = _decide(_situation(Reason.SIGINT, partial=partial, history=_two_types(Reason.SIGINT)))
    assert d.rule == "poison_task"


def test_corrupt_checkpoint_restarts_with_the_full_task() -> None:
    partial = PartialWork(
        deliverables_present=FILES, checkpoint_problem="fake3.json: completed_subtasks"
    )
    d = _decide(_situation(Reason.TEST_FAILURE, partial=partial))
    assert d.rule == "corrupt_checkpoint"  # before tests_fail_after_implementation
    assert d.strategy is Strategy.RESTART
    assert d.work == full_plan(TASK)
    assert "fake3.json: completed_subtasks" in d.why
    assert d.resume_session is None


def test_corrupt_checkpoint_does_not_stop_an_api_retry() -> None:
    partial = PartialWork(deliverables_missing=FILES, checkpoint_problem="torn")
    assert _decide(_situation(Reason.API_ERROR, partial=partial)).rule == "api_error_retry"


def test_failing_tests_after_implementation_reassign_to_a_fixer() -> None:
    partial = PartialWork(deliverables_present=FILES, uncommitted=FILES, tests_passed=False)
    d = _decide(_situation(Reason.TEST_FAILURE, partial=partial))
    assert d.rule == "tests_fail_after_implementation"
    assert d.strategy is Strategy.REASSIGN
    assert d.agent_type == "claude-code-fixer"
    assert d.work == (
        WorkItem(W.FIX_TESTS),
        WorkItem(W.COMMIT),
        WorkItem(W.PUSH),
        WorkItem(W.OPEN_PR),
    )
    assert d.delay == 0.0


def test_fixer_work_replaces_a_plain_test_step() -> None:
    partial = PartialWork(deliverables_present=FILES, tests_passed=None)
    d = _decide(_situation(Reason.TEST_FAILURE, partial=partial))
    assert [w.kind for w in d.work].count(W.FIX_TESTS) == 1
    assert W.TEST not in [w.kind for w in d.work]


def test_fix_agent_types_override() -> None:
    partial = PartialWork(deliverables_present=FILES, tests_passed=False)
    policy = Policy(fix_agent_types={"claude-code": "sim-fixer"})
    assert _decide(_situation(Reason.TEST_FAILURE, partial=partial), policy).agent_type == (
        "sim-fixer"
    )
    assert policy.fix_agent_for("codex") == "codex-fixer"


def test_failing_tests_with_files_missing_resume_instead() -> None:
    partial = PartialWork(
        deliverables_present=FILES[:1], deliverables_missing=FILES[1:], tests_passed=False
    )
    d = _decide(_situation(Reason.TEST_FAILURE, partial=partial))
    assert d.rule == "partial_files"
    assert d.strategy is Strategy.RESUME


@pytest.mark.parametrize("reason", [Reason.GITHUB_ERROR, Reason.INCOMPLETE])
def test_pr_creation_failed_resumes_only_for_the_pr(reason: Reason) -> None:
    d = _decide(_situation(reason, partial=PUSHED_NO_PR))
    assert d.rule == "pr_creation_failed"
    assert d.strategy is Strategy.RESUME
    assert d.work == (WorkItem(W.OPEN_PR),)
    assert d.why.endswith("resuming only to open the PR.")
    assert 0.0 <= d.delay <= Backoff().base


def test_pr_creation_failed_with_commit_and_push_left() -> None:
    partial = PartialWork(deliverables_present=FILES, uncommitted=FILES, tests_passed=True)
    d = _decide(_situation(Reason.GITHUB_ERROR, partial=partial))
    assert d.rule == "pr_creation_failed"
    assert [w.kind for w in d.work] == [W.COMMIT, W.PUSH, W.OPEN_PR]
    assert "git commit, git push, open the PR" in d.why


def test_github_error_with_tests_to_run_is_not_pr_only() -> None:
    partial = PartialWork(deliverables_present=FILES, commits_ahead=1, pushed=True)
    d = _decide(_situation(Reason.GITHUB_ERROR, partial=partial))  # tests not run yet
    assert d.rule == "progress_worth_keeping"


def test_github_error_without_a_wanted_pr_is_not_pr_only() -> None:
    task = Task("t1", "x", FILES, wants_pr=False)
    partial = PartialWork(deliverables_present=FILES, uncommitted=FILES)
    d = _decide(_situation(Reason.GITHUB_ERROR, partial=partial, task=task))
    assert d.rule != "pr_creation_failed"


def test_api_error_retries_with_backoff_and_retry_after() -> None:
    d = _decide(_situation(Reason.API_ERROR, partial=PARTIAL, api_status=529, retry_after=30.0))
    assert d.rule == "api_error_retry"  # before partial_files
    assert d.strategy is Strategy.RESUME
    assert d.delay >= 30.0
    assert "(HTTP 529)" in d.why and "Retry-After 30s" in d.why
    assert d.work == missing_work(TASK, PARTIAL)


def test_api_error_without_status_or_retry_after() -> None:
    d = _decide(_situation(Reason.API_ERROR))
    assert d.why == "the model API failed; retrying after backoff."
    assert 0.0 <= d.delay <= Backoff().base


def test_api_error_backoff_grows_with_the_streak() -> None:
    history = tuple(PastAttempt(n, "claude-code", Reason.API_ERROR, None) for n in (1, 2, 3))
    b = Backoff()
    for seed in range(20):
        d = _decide(_situation(Reason.API_ERROR, history=history), Policy(seed=seed))
        assert 0.0 <= d.delay <= b.base * b.factor**2


def test_sigint_with_a_checkpoint_resumes_the_session() -> None:
    checkpoint = Checkpoint("task-agent-5030", "t1", created_files=("fake3.md",), session_id="s-1")
    partial = PartialWork(
        deliverables_present=FILES[:1], deliverables_missing=FILES[1:], checkpoint=checkpoint
    )
    d = _decide(_situation(Reason.SIGINT, partial=partial))
    assert d.rule == "sigint_with_checkpoint"
    assert d.strategy is Strategy.RESUME
    assert d.resume_session == "s-1"
    assert d.work == missing_work(TASK, partial)
    assert d.delay == 0.0


def test_a_ctrl_c_typed_by_a_person_waits_for_the_operator() -> None:
    checkpoint = Checkpoint("task-agent-5030", "t1", created_files=("fake3.md",), session_id="s-1")
    partial = PartialWork(
        deliverables_present=FILES[:1], deliverables_missing=FILES[1:], checkpoint=checkpoint
    )
    person = SignalSender(2, SignalOrigin.TTY, 0x80, clients=1)
    d = _decide(_situation(Reason.SIGINT, partial=partial, sender=person))
    assert d.rule == "sigint_typed_by_person"
    assert d.strategy is Strategy.ESCALATE
    assert "1 client(s) attached" in d.why and d.work == ()
    # Keys a program typed into a pane nobody watches, or a kill() from a process: resumed.
    for sender in (
        SignalSender(2, SignalOrigin.TTY, 0x80, clients=0),
        SignalSender(2, SignalOrigin.PROCESS, 0, pid=4242, command="kill -INT 7"),
    ):
        d = _decide(_situation(Reason.SIGINT, partial=partial, sender=sender))
        assert d.rule == "sigint_with_checkpoint", sender


def test_sigint_without_a_checkpoint_restarts_the_full_task() -> None:
    unusable = Checkpoint("task-agent-5030", "t1", next_actions=("write fake3.md",))
    partial = PartialWork(deliverables_missing=FILES, checkpoint=unusable)
    d = _decide(_situation(Reason.SIGINT, partial=partial))
    assert d.rule == "sigint_without_checkpoint"
    assert d.strategy is Strategy.RESTART
    assert d.work == full_plan(TASK)
    assert d.resume_session is None


def test_stale_git_lock_resumes_after_removing_it() -> None:
    evidence = (
        Evidence(
            "log",
            Reason.GIT_ERROR,
            0.8,
            "fatal: Unable to create '/w/.git/index.lock': File exists.",
        ),
    )
    d = _decide(_situation(Reason.GIT_ERROR, partial=PARTIAL, evidence=evidence))
    assert d.rule == "stale_git_lock"  # before partial_files
    assert d.strategy is Strategy.RESUME
    assert d.remedies == (REMEDY_STALE_INDEX_LOCK,)


def test_other_git_errors_are_not_a_lock() -> None:
    evidence = (Evidence("log", Reason.GIT_ERROR, 0.8, "error: failed to push some refs"),)
    d = _decide(_situation(Reason.GIT_ERROR, partial=PARTIAL, evidence=evidence))
    assert d.rule == "partial_files"
    assert d.remedies == ()


def test_partial_files_resume_without_waiting() -> None:
    d = _decide(_situation(Reason.UNKNOWN, partial=PARTIAL))
    assert d.rule == "partial_files"
    assert d.strategy is Strategy.RESUME
    assert d.delay == 0.0
    assert "1 of 3 files exist" in d.why
    assert [w.path for w in d.work if w.kind is W.WRITE] == list(FILES[1:])


@pytest.mark.parametrize(
    "partial",
    [
        PartialWork(deliverables_missing=FILES, uncommitted=("notes.txt",)),
        PartialWork(deliverables_missing=FILES, commits_ahead=1),
        PartialWork(deliverables_present=FILES),
        PartialWork(deliverables_missing=FILES, checkpoint=Checkpoint("a", "t1", session_id="s-2")),
    ],
)
def test_progress_worth_keeping_resumes(partial: PartialWork) -> None:
    d = _decide(_situation(Reason.KILLED, partial=partial))
    assert d.rule == "progress_worth_keeping"
    assert d.strategy is Strategy.RESUME
    assert d.work == missing_work(TASK, partial)


def test_nothing_to_keep_restarts() -> None:
    d = _decide(_situation(Reason.TIMEOUT))
    assert d.rule == "nothing_to_keep"
    assert d.strategy is Strategy.RESTART
    assert d.work == full_plan(TASK)
    assert d.agent_type == "claude-code"


def test_decisions_carry_why_and_lesson() -> None:
    rule_by_name = {r.name: r for r in DEFAULT_RULES}
    for reason in Reason:
        for partial in (FRESH, PARTIAL, CODE_DONE, PUSHED_NO_PR):
            d = _decide(_situation(reason, partial=partial))
            assert d.why.strip() and d.lesson.strip()
            assert d.lesson == rule_by_name[d.rule].lesson
            assert d.strategy is rule_by_name[d.rule].strategy


def test_decisions_are_reproducible_from_the_seed() -> None:
    s = _situation(Reason.API_ERROR)
    assert [Policy(seed=7).decide(s) for _ in range(3)] == [Policy(seed=7).decide(s)] * 3
    delays = {Policy(seed=n).decide(s).delay for n in range(10)}
    assert len(delays) > 1  # jitter


# --------------------------------------------------------------------------- user tables


def test_a_rule_inserted_first_wins() -> None:
    hold = Rule(
        "hold_everything",
        lambda s: s.reason is Reason.SIGINT,
        Strategy.ESCALATE,
        lambda s: "operator freeze",
        lesson="freeze",
    )
    policy = Policy(rules=(hold, *DEFAULT_RULES))
    d = policy.decide(_situation(Reason.SIGINT))
    assert (d.rule, d.strategy, d.why) == ("hold_everything", Strategy.ESCALATE, "operator freeze")
    # Other situations still go through the default table.
    assert policy.decide(_situation(Reason.TIMEOUT)).rule == "nothing_to_keep"


def test_a_user_rule_with_its_own_work() -> None:
    only_pr = Rule(
        "only_pr",
        lambda s: True,
        Strategy.RESUME,
        lambda s: "just the PR",
        work=lambda s: (WorkItem(W.OPEN_PR),),
    )
    d = Policy(rules=(only_pr,)).decide(_situation())
    assert d.work == (WorkItem(W.OPEN_PR),)


def test_a_table_without_a_catch_all_raises_lookup_error() -> None:
    policy = Policy(rules=DEFAULT_RULES[:-1])
    with pytest.raises(LookupError, match="catch-all"):
        policy.decide(_situation(Reason.TIMEOUT))
    with pytest.raises(LookupError):
        Policy(rules=()).decide(_situation())


def test_describe_rules_lists_every_rule_in_order() -> None:
    text = describe_rules()
    lines = text.splitlines()
    assert len(lines) == len(DEFAULT_RULES)
    for i, (line, rule) in enumerate(zip(lines, DEFAULT_RULES, strict=True), 1):
        assert line.lstrip().startswith(f"{i}. {rule.name} ")
        assert f"-> {rule.strategy}" in line
        assert ("(backoff)" in line) == rule.backoff
        assert ("(systematic)" in line) == rule.systematic


def test_describe_rules_of_a_user_table() -> None:
    rule = Rule("only", lambda s: True, Strategy.RESTART, lambda s: "x", backoff=True)
    assert describe_rules([rule]) == " 1. only  -> restart  (backoff)"


# --------------------------------------------------------------------------- backoff


@given(
    retry=st.integers(min_value=0, max_value=200),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0.0, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=3.0),
    cap=st.floats(min_value=0.0, max_value=600.0),
)
@settings(max_examples=200, deadline=None)
def test_backoff_bounds(retry: int, seed: int, base: float, factor: float, cap: float) -> None:
    b = Backoff(base=base, factor=factor, cap=cap)
    delay = b.delay(retry, random.Random(seed))
    assert 0.0 <= delay <= cap
    assert delay <= base * factor ** max(0, retry - 1)


@given(
    retry=st.integers(min_value=1, max_value=50),
    seed=st.integers(min_value=0, max_value=2**32),
    retry_after=st.floats(min_value=0.0, max_value=3600.0),
)
@settings(max_examples=150, deadline=None)
def test_backoff_honours_retry_after(retry: int, seed: int, retry_after: float) -> None:
    b = Backoff()
    delay = b.delay(retry, random.Random(seed), retry_after)
    assert delay >= retry_after
    assert delay == max(retry_after, b.delay(retry, random.Random(seed)))
    assert math.isfinite(delay)


@given(seed=st.integers(min_value=0, max_value=2**32))
@settings(max_examples=100, deadline=None)
def test_backoff_grows_with_the_streak_until_the_cap(seed: int) -> None:
    b = Backoff(base=2.0, factor=2.0, cap=120.0)
    delays = [b.delay(n, random.Random(seed)) for n in range(1, 12)]
    assert delays == sorted(delays)  # the same draw scaled by a growing ceiling
    assert delays[-1] <= 120.0


def test_backoff_retry_zero_is_like_the_first() -> None:
    b = Backoff()
    assert b.delay(0, random.Random(3)) == b.delay(1, random.Random(3))


def test_backoff_negative_retry_after_is_ignored() -> None:
    assert Backoff().delay(1, random.Random(0), -5.0) >= 0.0


def test_backoff_huge_retry_is_capped() -> None:
    assert 0.0 <= Backoff().delay(1100, random.Random(0)) <= 120.0


# --------------------------------------------------------------------------- circuit breaker


def test_breaker_opens_at_threshold_distinct_agents() -> None:
    cb = CircuitBreaker(threshold=3, window=600.0)
    assert not cb.record(Reason.PERMISSION, "task-agent-1813", 0.0)
    assert not cb.record(Reason.PERMISSION, "task-agent-3403", 10.0)
    assert not cb.is_open(Reason.PERMISSION)
    assert cb.record(Reason.PERMISSION, "task-agent-3532", 20.0)
    assert cb.is_open(Reason.PERMISSION)
    assert cb.cause(Reason.PERMISSION) == systematic_cause(Reason.PERMISSION)
    assert cb.open_causes() == {Reason.PERMISSION: systematic_cause(Reason.PERMISSION)}
    # Once open, every further failure with that reason is held.
    assert cb.record(Reason.PERMISSION, "task-agent-9999", 5000.0)


def test_breaker_ignores_the_same_agent_repeated() -> None:
    cb = CircuitBreaker(threshold=3)
    for t in range(10):
        assert not cb.record(Reason.API_ERROR, "task-agent-1", float(t))
    assert not cb.record(Reason.API_ERROR, "task-agent-2", 11.0)
    assert cb.record(Reason.API_ERROR, "task-agent-3", 12.0)


def test_breaker_forgets_failures_outside_the_window() -> None:
    cb = CircuitBreaker(threshold=3, window=600.0)
    cb.record(Reason.KILLED, "a1", 0.0)
    cb.record(Reason.KILLED, "a2", 0.0)
    assert not cb.record(Reason.KILLED, "a3", 600.5)
    assert not cb.is_open(Reason.KILLED)
    # ...but the later two still count with a fourth inside the window.
    cb.record(Reason.KILLED, "a4", 700.0)
    assert not cb.is_open(Reason.KILLED)
    assert cb.record(Reason.KILLED, "a5", 800.0)


def test_breaker_window_edge_is_inside() -> None:
    cb = CircuitBreaker(threshold=2, window=600.0)
    cb.record(Reason.TIMEOUT, "a1", 0.0)
    assert cb.record(Reason.TIMEOUT, "a2", 600.0)


def test_breaker_keeps_reasons_apart() -> None:
    cb = CircuitBreaker(threshold=2)
    cb.record(Reason.SIGINT, "a1", 0.0)
    assert not cb.record(Reason.TIMEOUT, "a2", 1.0)
    assert not cb.is_open(Reason.SIGINT) and not cb.is_open(Reason.TIMEOUT)


@pytest.mark.parametrize("reason", sorted(TASK_SPECIFIC_REASONS))
def test_breaker_ignores_task_specific_reasons(reason: Reason) -> None:
    cb = CircuitBreaker(threshold=2)
    for i in range(5):
        assert not cb.record(reason, f"a{i}", float(i))
    assert not cb.is_open(reason)
    assert cb.cause(reason) is None


def test_breaker_close_resets() -> None:
    cb = CircuitBreaker(threshold=2)
    cb.record(Reason.GITHUB_ERROR, "a1", 0.0)
    assert cb.record(Reason.GITHUB_ERROR, "a2", 1.0)
    cb.close(Reason.GITHUB_ERROR)
    assert not cb.is_open(Reason.GITHUB_ERROR)
    assert cb.cause(Reason.GITHUB_ERROR) is None
    assert cb.open_causes() == {}
    # The old failures are forgotten: one more agent does not reopen it.
    assert not cb.record(Reason.GITHUB_ERROR, "a3", 2.0)
    assert cb.record(Reason.GITHUB_ERROR, "a4", 3.0)
    cb.close(Reason.SIGINT)  # closing a reason that was never open is harmless


def test_open_causes_is_a_copy() -> None:
    cb = CircuitBreaker(threshold=1)
    cb.record(Reason.GIT_ERROR, "a1", 0.0)
    cb.open_causes().clear()
    assert cb.is_open(Reason.GIT_ERROR)


def test_systematic_cause_is_stable_and_named() -> None:
    for reason in Reason:
        text = systematic_cause(reason)
        assert text == systematic_cause(reason)
        assert text.startswith(f"systematic {reason}: ")


def test_seed_three_permission_failures_escalate_with_one_cause() -> None:
    policy = Policy()
    causes = set()
    for t, agent in enumerate(("task-agent-1813", "task-agent-3403", "task-agent-3532")):
        policy.breaker.record(Reason.PERMISSION, agent, float(t))
        s = _situation(Reason.PERMISSION, breaker_open=policy.breaker.is_open(Reason.PERMISSION))
        d = policy.decide(s)
        assert d.strategy is Strategy.ESCALATE
        causes.add(d.systematic_cause)
    assert causes == {systematic_cause(Reason.PERMISSION)}


# --------------------------------------------------------------------------- any situation


_rarely = st.sampled_from([False, False, False, False, True])


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    names = draw(st.lists(st.sampled_from("abcdef"), unique=True, max_size=6))
    deliverables = tuple(f"{n}.py" for n in names)
    flags = draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    task = Task(
        "t",
        "title",
        deliverables,
        tests=draw(st.sampled_from([None, "pytest"])),
        agent_type=draw(st.sampled_from(["claude-code", "sim"])),
        wants_pr=draw(st.booleans()),
    )
    checkpoint = draw(
        st.none()
        | st.builds(
            Checkpoint,
            agent=st.just("a"),
            task_id=st.just("t"),
            completed_subtasks=st.lists(st.just("x"), max_size=1).map(tuple),
            session_id=st.none() | st.just("s"),
        )
    )
    partial = PartialWork(
        deliverables_present=tuple(p for p, f in zip(deliverables, flags, strict=True) if f),
        deliverables_missing=tuple(p for p, f in zip(deliverables, flags, strict=True) if not f),
        uncommitted=tuple(draw(st.lists(st.sampled_from(("a.py", "z.txt")), max_size=2))),
        commits_ahead=draw(st.integers(min_value=0, max_value=2)),
        pushed=draw(st.booleans()),
        pr=draw(st.sampled_from([None, PR])),
        checkpoint=checkpoint,
        checkpoint_problem=draw(st.sampled_from([None, None, None, "torn"])),
        tests_passed=draw(st.sampled_from([None, False, True])),
    )
    reason = draw(st.sampled_from(Reason))
    detail = draw(st.sampled_from(["x", "Unable to create '.git/index.lock'"]))
    earlier = draw(
        st.lists(
            st.builds(
                PastAttempt,
                number=st.integers(min_value=1, max_value=9),
                agent_type=st.sampled_from([task.agent_type] * 3 + ["claude-code-fixer"]),
                reason=st.none() | st.sampled_from(Reason),
                strategy=st.none() | st.sampled_from(Strategy),
            ),
            max_size=3,
        )
    )
    history = (*earlier, PastAttempt(9, task.agent_type, reason, None))
    return Situation(
        task=task,
        agent="a",
        agent_type=task.agent_type,
        attribution=Attribution(
            reason,
            0.5,
            (Evidence("log", reason, 0.5, detail),),
            retry_after=draw(st.none() | st.floats(min_value=0.0, max_value=3600.0)),
            api_status=draw(st.none() | st.sampled_from([429, 500, 529])),
        ),
        partial=partial,
        missing=missing_work(task, partial),
        history=history,
        breaker_open=draw(_rarely),
        max_attempts=draw(st.sampled_from([4, 6, 8, 1, 2, 3])),
    )


@given(situations(), st.integers(min_value=0, max_value=1000))
@settings(max_examples=300, deadline=None)
def test_any_situation_gets_a_sane_decision(s: Situation, seed: int) -> None:
    d = Policy(seed=seed).decide(s)
    assert d.strategy in set(Strategy)
    assert d.rule in RULE_NAMES
    assert math.isfinite(d.delay) and d.delay >= 0.0
    assert d.why.strip() and d.lesson.strip()
    if d.strategy is Strategy.ESCALATE:
        assert d.work == ()
    if d.strategy is Strategy.RESTART:
        assert d.work == full_plan(s.task)
    if d.strategy is Strategy.REASSIGN:
        assert d.agent_type == f"{s.agent_type}-fixer"
        assert d.work[0] == WorkItem(W.FIX_TESTS)
    else:
        assert d.agent_type == s.agent_type
    # The top of the table always wins.
    if s.attempts >= s.max_attempts:
        assert d.rule == "attempt_budget_spent"
    elif s.breaker_open:
        assert d.rule == "circuit_breaker_open"
    elif s.reason is Reason.PERMISSION:
        assert d.rule == "missing_permissions"


def test_seed_sigint_with_files_but_no_checkpoint_resumes() -> None:
    # task-agent-5030: fake3.md written, then SIGINT; the seed recovered it with RESUME.
    decision = _decide(_situation(Reason.SIGINT, partial=PARTIAL))
    assert decision.strategy is Strategy.RESUME
    assert decision.rule == "sigint_with_partial_work"
    assert all(w.path != "fake3.md" for w in decision.work)


def test_sigint_with_nothing_in_the_workspace_restarts() -> None:
    decision = _decide(_situation(Reason.SIGINT, partial=FRESH))
    assert decision.strategy is Strategy.RESTART
