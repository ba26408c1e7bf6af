"""Reading a continuation prompt (``analyze.continuation_prompt``) back into plan steps.

A resumed or restarted attempt is told "Remaining steps, in order:" followed by numbered lines
(``write PATH``, ``run the tests``, ``make the failing tests pass``, ``git commit``,
``git push``, ``open the PR``). The double then plans only those steps, in that order, so a
resumed task writes only the missing files.
"""

from __future__ import annotations

import re

from pytest_orch_recovery.doubles.modeldouble.plan import Step, TaskPlan

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
