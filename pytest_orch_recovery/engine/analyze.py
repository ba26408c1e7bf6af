"""From partial work to the work that is left, and the prompt that asks for exactly that.

Pure functions over :class:`~pytest_orch_recovery.engine.model.PartialWork`; reading a real git
worktree into that form is ``workspace.py``'s job.
"""

from __future__ import annotations

from pytest_orch_recovery.engine.model import PartialWork, Task, WorkItem, WorkKind

# How much of a failing test run a fix-focused agent is shown in its prompt.
TEST_OUTPUT_LINES = 40


def missing_work(task: Task, partial: PartialWork) -> tuple[WorkItem, ...]:
    """The steps still needed, in the order an agent would take them.

    >>> from pytest_orch_recovery.engine.model import Task, PartialWork
    >>> t = Task("t1", "Create /fake3 command", ("fake3.md",))
    >>> [w.describe() for w in missing_work(t, PartialWork(deliverables_present=("fake3.md",),
    ...                                                   uncommitted=("fake3.md",)))]
    ['git commit', 'git push', 'open the PR']
    """
    items = [WorkItem(WorkKind.WRITE, path) for path in partial.deliverables_missing]
    if task.tests:
        if partial.tests_passed is False and partial.code_complete:
            items.append(WorkItem(WorkKind.FIX_TESTS))
        elif partial.tests_passed is not True or not partial.code_complete:
            # Files still to write have not been tested, whatever the last run said.
            items.append(WorkItem(WorkKind.TEST))
    needs_commit = bool(items) or bool(partial.uncommitted) or partial.commits_ahead == 0
    if needs_commit:
        items.append(WorkItem(WorkKind.COMMIT))
    if needs_commit or not partial.pushed:
        items.append(WorkItem(WorkKind.PUSH))
    if task.wants_pr and partial.pr is None:
        items.append(WorkItem(WorkKind.OPEN_PR))
    return tuple(items)


def done_work(task: Task, partial: PartialWork) -> tuple[str, ...]:
    """What the previous attempts achieved, in words."""
    done = [f"wrote {path}" for path in partial.deliverables_present]
    if partial.commits_ahead:
        plural = "s" if partial.commits_ahead != 1 else ""
        done.append(f"made {partial.commits_ahead} commit{plural} on the branch")
    if partial.pushed:
        done.append("pushed the branch")
    if partial.pr is not None:
        done.append(f"opened PR #{partial.pr.number}")
    if partial.checkpoint is not None:
        done += [f"(checkpoint) {s}" for s in partial.checkpoint.completed_subtasks]
    return tuple(done)


def continuation_prompt(task: Task, partial: PartialWork, work: tuple[WorkItem, ...]) -> str:
    """A prompt for the next attempt: what was done, what is left, what not to redo."""
    lines = [f"You are continuing the task: {task.title}"]
    if task.prompt and task.prompt != task.title:
        lines += ["", "Original instructions:", task.prompt]
    done = done_work(task, partial)
    lines += ["", "Already done (do NOT redo these):"]
    lines += [f"- {d}" for d in done] or ["- nothing yet"]
    if partial.uncommitted:
        lines += ["", "Uncommitted changes present: " + ", ".join(partial.uncommitted)]
    lines += ["", "Remaining steps, in order:"]
    lines += [f"{i}. {w.describe()}" for i, w in enumerate(work, 1)] or ["(none)"]
    keep = [p for p in partial.deliverables_present]
    if keep:
        lines += ["", "Do not rewrite these files unless a step above needs it: " + ", ".join(keep)]
    if task.tests and any(w.kind is WorkKind.FIX_TESTS for w in work):
        lines += ["", f"The tests fail. Run `{task.tests}`, read the failures and fix the code."]
        if partial.test_output:
            tail = partial.test_output.strip().splitlines()[-TEST_OUTPUT_LINES:]
            lines += ["", "The last test run ended with:", *(f"    {t}" for t in tail)]
    return "\n".join(lines) + "\n"


# The brief's fixed wording, written by initial_prompt and read back by read_brief.
_BRIEF_FILES = "Create these files:"
_BRIEF_PR = " and open a pull request."


def initial_prompt(task: Task) -> str:
    """The prompt for a fresh attempt with the whole task: the brief the engine always writes
    (title, deliverables, tests, pull request), then the task's own ``prompt``, if any, as
    further instructions. The deliverables are always named, so an agent on any tier knows
    what it will be judged on (docs/scenarios.md)."""
    lines = [task.title, "", _BRIEF_FILES]
    lines += [f"- {p}" for p in task.deliverables]
    if task.tests:
        lines += ["", f"Make `{task.tests}` pass."]
    lines += ["", "Then commit, push the branch"]
    lines[-1] += _BRIEF_PR if task.wants_pr else "."
    if task.prompt and task.prompt.strip() != task.title.strip():
        lines += ["", "Instructions:", task.prompt.rstrip("\n")]
    return "\n".join(lines) + "\n"


def read_brief(prompt: str) -> Task | None:
    """The task an :func:`initial_prompt` describes, read back from the prompt: its title,
    deliverables, tests and whether it wants a pull request (its ``task_id`` is the title:
    the brief does not name the id). None when ``prompt`` is not such a brief. The model
    double serves a task it has no plan for from this, so any submitted task can succeed.

    >>> t = read_brief(initial_prompt(Task("t1", "Add it", ("a.py", "b.md"), tests="make")))
    >>> t.title, t.deliverables, t.tests, t.wants_pr
    ('Add it', ('a.py', 'b.md'), 'make', True)
    >>> read_brief("Say hello") is None
    True
    """
    head, sep, rest = prompt.partition(f"\n\n{_BRIEF_FILES}\n")
    if not sep or not head.strip():
        return None
    lines = rest.split("\n")
    deliverables = []
    while lines and lines[0].startswith("- "):
        deliverables.append(lines.pop(0)[2:])
    if not deliverables:
        return None
    tests, wants_pr = None, False
    for line in lines:  # up to the closing line: what follows is the task's own prompt
        if line.startswith("Make `") and line.endswith("` pass."):
            tests = line[len("Make `") : -len("` pass.")]
        elif line.startswith("Then commit, push the branch"):
            wants_pr = line.endswith(_BRIEF_PR)
            break
    return Task(head, head, tuple(deliverables), tests=tests, wants_pr=wants_pr)
