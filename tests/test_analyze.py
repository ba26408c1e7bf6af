"""Missing work, continuation prompts and initial prompts, from partial work (no I/O)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.engine.analyze import (
    continuation_prompt,
    done_work,
    initial_prompt,
    missing_work,
)
from pytest_orch_recovery.engine.model import (
    Checkpoint,
    PartialWork,
    PullRequest,
    Task,
    WorkItem,
    WorkKind,
    full_plan,
)

W = WorkKind
PR = PullRequest(886, "agent/fake3", "https://example.invalid/pull/886", "Create /fake3")
FILES = ("fake3.md", "fake3.py", "fake3_runner.py")


def _task(*, tests: str | None = None, wants_pr: bool = True, **kw: Any) -> Task:
    return Task("t1", "Create /fake3 command", FILES, tests=tests, wants_pr=wants_pr, **kw)


def _kinds(items: tuple[WorkItem, ...]) -> list[WorkKind]:
    return [w.kind for w in items]


def _done(**kw: Any) -> PartialWork:
    """Everything delivered, committed, pushed and the PR open; override what differs."""
    base: dict[str, Any] = {
        "deliverables_present": FILES,
        "commits_ahead": 1,
        "pushed": True,
        "pr": PR,
    }
    base.update(kw)
    return PartialWork(**base)


# --------------------------------------------------------------------------- missing_work


def test_nothing_done_is_the_full_plan() -> None:
    for task in (_task(), _task(tests="pytest -q"), _task(wants_pr=False)):
        fresh = PartialWork(deliverables_missing=task.deliverables)
        assert missing_work(task, fresh) == full_plan(task)


def test_complete_work_needs_nothing() -> None:
    assert missing_work(_task(), _done()) == ()
    assert missing_work(_task(tests="pytest"), _done(tests_passed=True)) == ()
    assert missing_work(_task(wants_pr=False), _done(pr=None)) == ()


def test_files_missing_come_first_in_task_order() -> None:
    partial = PartialWork(
        deliverables_present=("fake3.md",), deliverables_missing=("fake3.py", "fake3_runner.py")
    )
    assert missing_work(_task(), partial) == (
        WorkItem(W.WRITE, "fake3.py"),
        WorkItem(W.WRITE, "fake3_runner.py"),
        WorkItem(W.COMMIT),
        WorkItem(W.PUSH),
        WorkItem(W.OPEN_PR),
    )


def test_files_missing_even_after_commits_needs_commit_and_push() -> None:
    partial = _done(
        deliverables_present=("fake3.md",),
        deliverables_missing=("fake3.py", "fake3_runner.py"),
        pr=None,
    )
    assert _kinds(missing_work(_task(), partial)) == [
        W.WRITE,
        W.WRITE,
        W.COMMIT,
        W.PUSH,
        W.OPEN_PR,
    ]


def test_the_seed_fake3_case_needs_commit_push_pr() -> None:
    partial = PartialWork(
        deliverables_present=FILES, uncommitted=FILES, commits_ahead=0, pushed=False
    )
    assert _kinds(missing_work(_task(), partial)) == [W.COMMIT, W.PUSH, W.OPEN_PR]


@pytest.mark.parametrize(
    ("tests_passed", "expected"),
    [(None, [W.TEST]), (False, [W.FIX_TESTS]), (True, [])],
)
def test_tests_state_when_code_is_complete(
    tests_passed: bool | None, expected: list[WorkKind]
) -> None:
    partial = _done(tests_passed=tests_passed)
    assert _kinds(missing_work(_task(tests="pytest -q"), partial)) == [
        *expected,
        *([W.COMMIT, W.PUSH] if expected else []),
    ]


def test_failing_tests_with_files_missing_ask_to_write_then_run_tests() -> None:
    partial = PartialWork(
        deliverables_present=("fake3.md",),
        deliverables_missing=("fake3.py", "fake3_runner.py"),
        tests_passed=False,
    )
    assert _kinds(missing_work(_task(tests="pytest"), partial)) == [
        W.WRITE,
        W.WRITE,
        W.TEST,
        W.COMMIT,
        W.PUSH,
        W.OPEN_PR,
    ]


def test_tests_already_passing_are_rerun_after_writing_missing_files() -> None:
    partial = PartialWork(
        deliverables_present=("fake3.md",),
        deliverables_missing=("fake3.py", "fake3_runner.py"),
        tests_passed=True,
    )
    assert _kinds(missing_work(_task(tests="pytest"), partial)) == [
        W.WRITE,
        W.WRITE,
        W.TEST,
        W.COMMIT,
        W.PUSH,
        W.OPEN_PR,
    ]


def test_tests_passed_is_ignored_for_a_task_without_tests() -> None:
    assert missing_work(_task(), _done(tests_passed=False)) == ()
    assert missing_work(_task(tests=""), _done(tests_passed=None)) == ()


def test_uncommitted_changes_need_commit_and_push_even_when_pushed() -> None:
    partial = _done(uncommitted=("fake3.md",))
    assert _kinds(missing_work(_task(), partial)) == [W.COMMIT, W.PUSH]


def test_no_commits_ahead_needs_a_commit() -> None:
    assert _kinds(missing_work(_task(), _done(commits_ahead=0))) == [W.COMMIT, W.PUSH]


def test_committed_but_not_pushed_needs_only_push() -> None:
    assert _kinds(missing_work(_task(), _done(pushed=False))) == [W.PUSH]
    assert _kinds(missing_work(_task(), _done(pushed=False, commits_ahead=3))) == [W.PUSH]


def test_pushed_without_pr_needs_only_the_pr() -> None:
    assert missing_work(_task(), _done(pr=None)) == (WorkItem(W.OPEN_PR),)


def test_no_pr_wanted_never_opens_one() -> None:
    partial = PartialWork(deliverables_missing=FILES)
    assert W.OPEN_PR not in _kinds(missing_work(_task(wants_pr=False), partial))


def test_pr_present_but_work_left() -> None:
    partial = _done(uncommitted=("fake3.py",), pushed=False)
    assert _kinds(missing_work(_task(), partial)) == [W.COMMIT, W.PUSH]


def test_fix_tests_comes_before_commit_and_push() -> None:
    partial = _done(tests_passed=False, pr=None, pushed=False, commits_ahead=0)
    assert _kinds(missing_work(_task(tests="make test"), partial)) == [
        W.FIX_TESTS,
        W.COMMIT,
        W.PUSH,
        W.OPEN_PR,
    ]


# --------------------------------------------------------------------------- properties


@st.composite
def situations(draw: st.DrawFn) -> tuple[Task, PartialWork]:
    names = draw(st.lists(st.sampled_from("abcdefgh"), unique=True, max_size=6))
    deliverables = tuple(f"{n}.py" for n in names)
    present_flags = draw(st.lists(st.booleans(), min_size=len(names), max_size=len(names)))
    present = tuple(p for p, f in zip(deliverables, present_flags, strict=True) if f)
    missing = tuple(p for p, f in zip(deliverables, present_flags, strict=True) if not f)
    task = Task(
        "t",
        "title",
        deliverables,
        tests=draw(st.sampled_from([None, "", "pytest -q"])),
        wants_pr=draw(st.booleans()),
    )
    partial = PartialWork(
        deliverables_present=present,
        deliverables_missing=missing,
        uncommitted=tuple(draw(st.lists(st.sampled_from(deliverables or ("x",)), max_size=2))),
        commits_ahead=draw(st.integers(min_value=0, max_value=3)),
        pushed=draw(st.booleans()),
        pr=draw(st.sampled_from([None, PR])),
        checkpoint=draw(st.sampled_from([None, Checkpoint("a", "t", session_id="s")])),
        tests_passed=draw(st.sampled_from([None, False, True])),
    )
    return task, partial


def _complete(task: Task, p: PartialWork) -> bool:
    return (
        not p.deliverables_missing
        and (not task.tests or p.tests_passed is True)
        and not p.uncommitted
        and p.commits_ahead > 0
        and p.pushed
        and (p.pr is not None or not task.wants_pr)
    )


@given(situations())
@settings(max_examples=300, deadline=None)
def test_missing_work_is_empty_iff_complete(case: tuple[Task, PartialWork]) -> None:
    task, partial = case
    assert (missing_work(task, partial) == ()) == _complete(task, partial)


@given(situations())
@settings(max_examples=200, deadline=None)
def test_missing_work_invariants(case: tuple[Task, PartialWork]) -> None:
    task, partial = case
    work = missing_work(task, partial)
    kinds = _kinds(work)
    writes = [w.path for w in work if w.kind is W.WRITE]
    # One WRITE per missing file, in order, never for a present file.
    assert writes == list(partial.deliverables_missing)
    assert not set(writes) & set(partial.deliverables_present)
    # The PR is opened last, and whenever it is wanted and absent.
    if task.wants_pr and partial.pr is None:
        assert kinds[-1] is W.OPEN_PR
    else:
        assert W.OPEN_PR not in kinds
    # Each step at most once (except WRITE), in the order of the full plan.
    order = [W.WRITE, W.TEST, W.FIX_TESTS, W.COMMIT, W.PUSH, W.OPEN_PR]
    assert kinds == sorted(kinds, key=order.index)
    assert all(kinds.count(k) <= 1 for k in order if k is not W.WRITE)
    assert not (W.TEST in kinds and W.FIX_TESTS in kinds)
    # A commit is always followed by a push; tests are only asked for when the task has them.
    if W.COMMIT in kinds:
        assert W.PUSH in kinds
    if not task.tests:
        assert W.TEST not in kinds and W.FIX_TESTS not in kinds
    # Missing work is always a sub-sequence of the full plan (plus the fix step).
    plan = [w for w in full_plan(task)]
    assert all(w in plan or w.kind is W.FIX_TESTS for w in work)


# --------------------------------------------------------------------------- done_work


def test_done_work_wording() -> None:
    partial = _done(
        commits_ahead=1,
        checkpoint=Checkpoint("a", "t1", completed_subtasks=("outlined the command",)),
    )
    assert done_work(_task(), partial) == (
        "wrote fake3.md",
        "wrote fake3.py",
        "wrote fake3_runner.py",
        "made 1 commit on the branch",
        "pushed the branch",
        "opened PR #886",
        "(checkpoint) outlined the command",
    )
    assert "made 2 commits on the branch" in done_work(_task(), _done(commits_ahead=2))
    assert done_work(_task(), PartialWork()) == ()


# --------------------------------------------------------------------------- continuation_prompt


def test_continuation_prompt_for_partial_files() -> None:
    task = _task(prompt="Create the /fake3 command as markdown and python.")
    partial = PartialWork(
        deliverables_present=("fake3.md",),
        deliverables_missing=("fake3.py", "fake3_runner.py"),
        uncommitted=("fake3.md",),
    )
    work = missing_work(task, partial)
    prompt = continuation_prompt(task, partial, work)
    assert prompt.startswith("You are continuing the task: Create /fake3 command\n")
    assert prompt.endswith("\n")
    assert "Original instructions:\nCreate the /fake3 command as markdown and python." in prompt
    assert "Already done (do NOT redo these):\n- wrote fake3.md\n" in prompt
    assert "Uncommitted changes present: fake3.md" in prompt
    assert (
        "Remaining steps, in order:\n"
        "1. write fake3.py\n"
        "2. write fake3_runner.py\n"
        "3. git commit\n"
        "4. git push\n"
        "5. open the PR\n"
    ) in prompt
    assert "Do not rewrite these files unless a step above needs it: fake3.md" in prompt
    assert "The tests fail" not in prompt
    # The sections come in the order a reader needs them.
    order = ["Original instructions", "Already done", "Uncommitted", "Remaining", "Do not rewrite"]
    positions = [prompt.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_continuation_prompt_with_nothing_done() -> None:
    task = _task()
    partial = PartialWork(deliverables_missing=FILES)
    prompt = continuation_prompt(task, partial, missing_work(task, partial))
    assert "Already done (do NOT redo these):\n- nothing yet\n" in prompt
    assert "Uncommitted" not in prompt
    assert "Do not rewrite" not in prompt
    assert "Original instructions" not in prompt  # no prompt beyond the title


def test_continuation_prompt_skips_instructions_equal_to_the_title() -> None:
    task = _task(prompt="Create /fake3 command")
    prompt = continuation_prompt(task, PartialWork(), ())
    assert "Original instructions" not in prompt


def test_continuation_prompt_with_no_work_left() -> None:
    prompt = continuation_prompt(_task(), _done(), ())
    assert "Remaining steps, in order:\n(none)\n" in prompt


def test_continuation_prompt_only_the_pr() -> None:
    task = _task()
    partial = _done(pr=None)
    prompt = continuation_prompt(task, partial, missing_work(task, partial))
    assert "Remaining steps, in order:\n1. open the PR\n" in prompt
    for line in ("- made 1 commit on the branch", "- pushed the branch", "- wrote fake3.py"):
        assert line in prompt


def test_continuation_prompt_fix_tests_hint() -> None:
    task = _task(tests="pytest -q tests/test_fake3.py")
    partial = _done(tests_passed=False, pr=None)
    work = missing_work(task, partial)
    assert work[0] == WorkItem(W.FIX_TESTS)
    prompt = continuation_prompt(task, partial, work)
    assert "1. make the failing tests pass\n" in prompt
    assert (
        "The tests fail. Run `pytest -q tests/test_fake3.py`, read the failures and fix the code."
    ) in prompt


def test_continuation_prompt_no_fix_hint_when_tests_only_need_running() -> None:
    task = _task(tests="pytest")
    partial = _done(tests_passed=None)
    prompt = continuation_prompt(task, partial, missing_work(task, partial))
    assert "1. run the tests\n" in prompt
    assert "The tests fail" not in prompt


def test_continuation_prompt_lists_checkpoint_subtasks_as_done() -> None:
    checkpoint = Checkpoint("a", "t1", completed_subtasks=("drafted the spec",))
    partial = PartialWork(deliverables_missing=FILES, checkpoint=checkpoint)
    prompt = continuation_prompt(_task(), partial, missing_work(_task(), partial))
    assert "- (checkpoint) drafted the spec\n" in prompt


@given(situations())
@settings(max_examples=100, deadline=None)
def test_continuation_prompt_numbers_every_remaining_step(case: tuple[Task, PartialWork]) -> None:
    task, partial = case
    work = missing_work(task, partial)
    prompt = continuation_prompt(task, partial, work)
    for i, item in enumerate(work, 1):
        assert f"\n{i}. {item.describe()}\n" in prompt
    assert f"\n{len(work) + 1}. " not in prompt
    for path in partial.deliverables_present:
        assert f"- wrote {path}\n" in prompt


# --------------------------------------------------------------------------- initial_prompt


def test_initial_prompt_names_the_deliverables_before_the_task_prompt() -> None:
    # Issue 10: a prompt that does not name the deliverables left the tmux tier's agents
    # writing nothing while the simulation delivered; the brief is always there.
    task = _task(prompt="Do exactly this.")
    text = initial_prompt(task)
    assert text.startswith(initial_prompt(_task()).rstrip("\n"))
    assert text.endswith("\n\nInstructions:\nDo exactly this.\n")
    assert all(p in text for p in task.deliverables)


def test_initial_prompt_built_from_the_task() -> None:
    assert initial_prompt(_task(tests="pytest -q")) == (
        "Create /fake3 command\n"
        "\n"
        "Create these files:\n"
        "- fake3.md\n"
        "- fake3.py\n"
        "- fake3_runner.py\n"
        "\n"
        "Make `pytest -q` pass.\n"
        "\n"
        "Then commit, push the branch and open a pull request.\n"
    )


def test_initial_prompt_without_tests_or_pr() -> None:
    prompt = initial_prompt(_task(wants_pr=False))
    assert "Make `" not in prompt
    assert prompt.endswith("Then commit, push the branch.\n")
    assert "pull request" not in prompt
