"""Reading the engine's prompts back into plans: a continuation prompt
(``analyze.continuation_prompt``) into the steps still to take, and any prompt of a task the
plan does not hold into a plan of its own (:func:`plan_from_prompt`).

A resumed or restarted attempt is told "Remaining steps, in order:" followed by numbered lines
(``write PATH``, ``run the tests``, ``make the failing tests pass``, ``git commit``,
``git push``, ``open the PR``). The double then plans only those steps, in that order, so a
resumed task writes only the missing files.
"""

from __future__ import annotations

import re

from pytest_orch_recovery.doubles.modeldouble.plan import Step, TaskPlan, plan_for_task
from pytest_orch_recovery.engine.analyze import read_brief
from pytest_orch_recovery.engine.model import Task

CONTINUATION_PREFIX = "You are continuing the task: "
_HEADER = "Remaining steps, in order:"
_ITEM = re.compile(r"^\s*\d+\.\s+(?P<text>.+?)\s*$")
_PHRASES = {
    "run the tests": "test",
    "make the failing tests pass": "fix_tests",
    "git commit": "commit",
    "git push": "push",
    "open the PR": "open_pr",
}


def remaining_items(prompt: str) -> list[str] | None:
    """The numbered items under "Remaining steps, in order:", or None for a fresh prompt.

    >>> remaining_items("You are continuing the task: T\\n\\nRemaining steps, in order:\\n"
    ...                 "1. write a.md\\n2. git commit\\n\\nDo not rewrite ...")
    ['write a.md', 'git commit']
    >>> remaining_items("You are continuing the task: T\\nRemaining steps, in order:\\n(none)\\n")
    []
    >>> remaining_items("Create a.md") is None
    True
    """
    if CONTINUATION_PREFIX not in prompt or _HEADER not in prompt:
        return None
    tail = prompt.split(_HEADER, 1)[1].splitlines()[1:]
    items: list[str] = []
    for line in tail:
        hit = _ITEM.match(line)
        if hit is None:
            break
        items.append(hit.group("text"))
    return items


def indexed_steps(task: TaskPlan, prompt: str) -> list[tuple[int, Step]]:
    """The steps to carry out, each with its 1-based index in the task's full plan.

    A fresh prompt gets every step. A continuation prompt gets, per remaining item in order:
    the write/edit steps for that path (a path the plan lacks gets an empty-content write,
    index 0), or the steps whose ``kind`` names that phrase; "make the failing tests pass"
    brings the ``fix_tests`` steps followed by the ``test`` steps again.
    """
    numbered = list(enumerate(task.steps, 1))
    items = remaining_items(prompt)
    if items is None:
        return numbered
    chosen: list[tuple[int, Step]] = []
    for item in items:
        if item.startswith("write "):
            path = item[len("write ") :]
            hits = [(i, s) for i, s in numbered if s.tool in ("write", "edit") and s.target == path]
            chosen += hits or [(0, Step("write", path, "write"))]
            continue
        kind = _PHRASES.get(item)
        if kind is None:
            continue  # an instruction this plan has no step for
        chosen += [(i, s) for i, s in numbered if s.kind == kind]
        if kind == "fix_tests":
            chosen += [(i, s) for i, s in numbered if s.kind == "test"]
    return chosen


def plan_from_prompt(prompt: str) -> TaskPlan | None:
    """The standard plan (:func:`plan_for_task`) of the task ``prompt`` briefs, for a task
    the plan does not hold: its deliverables from the brief (``analyze.initial_prompt``),
    or, from a continuation prompt, the files still to write. None for anything else.

    >>> p = plan_from_prompt("Add x\\n\\nCreate these files:\\n- x.py\\n\\nThen commit, push "
    ...                      "the branch and open a pull request.\\n")
    >>> p.match, [s.kind for s in p.steps]
    ('Add x', ['write', 'commit', 'push', 'open_pr'])
    """
    task = read_brief(prompt)
    if task is None and CONTINUATION_PREFIX in prompt:
        title = prompt.split(CONTINUATION_PREFIX, 1)[1].split("\n\n", 1)[0]
        writes = [
            i[len("write ") :] for i in remaining_items(prompt) or () if i.startswith("write ")
        ]
        task = Task(title, title, tuple(writes)) if title.strip() else None
    return None if task is None else plan_for_task(task)
