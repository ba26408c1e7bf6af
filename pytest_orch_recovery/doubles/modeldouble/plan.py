"""The script the model double follows: tasks, each an ordered list of tool-call steps.

docs/model-double.md is the plan file's reference; in short (``--plan FILE``; ``.toml`` is
read as TOML, anything else as JSON)::

    [[tasks]]
    match = "Create /fake3 command"   # substring of the first user message (the task title)
    final = "All done."               # optional: the closing text reply

    [[tasks.steps]]
    write = "fake3.md"                # Write tool; path relative to the agent's cwd, or absolute
    content = "# /fake3\\n"

    [[tasks.steps]]
    edit = "README.md"                # Edit tool
    old = "TODO"
    new = "done"

    [[tasks.steps]]
    bash = "pytest -q"                # Bash tool
    kind = "test"                     # test | commit | push | open_pr | fix_tests | free
    description = "Run the tests"     # optional

Faults to inject (see ``faults.py`` for the fields) may follow::

    [[faults]]
    kind = "overloaded"
    at_step = 2
    times = 1

The JSON form is the same tree: ``{"tasks": [{"match": ..., "steps": [{"write": ...}]}]}``.
Every step may carry ``kind`` (defaults: ``write``, ``edit``, ``free``); a continuation prompt
("Remaining steps, in order: ...") is mapped onto steps by these kinds (see ``continuation.py``).

Relative paths are joined to the working directory the request names (Claude Code's
``<env>`` block: ``Working directory: /path``); when the request names none, the relative path
is sent as is.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_orch_recovery.doubles.modeldouble.faults import ApiFaultSpec
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.model import Task

STEP_TOOLS = ("write", "edit", "bash")
BASH_KINDS = frozenset({"test", "commit", "push", "open_pr", "fix_tests", "free"})
_DEFAULT_KIND = {"write": "write", "edit": "edit", "bash": "free"}
_TOOL_NAMES = {"write": "Write", "edit": "Edit", "bash": "Bash"}


class PlanError(OrchRecoveryError, ValueError):
    """A plan file that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class Step:
    """One tool call the scripted model makes.

    ``tool`` is ``write``, ``edit`` or ``bash``; ``target`` is the path (write/edit) or the
    command (bash); ``kind`` labels the step for continuation prompts and faults.
    """

    tool: str
    target: str
    kind: str
    content: str = ""  # write
    old: str = ""  # edit
    new: str = ""  # edit
    description: str = ""  # bash

    @property
    def tool_name(self) -> str:
        """Claude Code's name for the tool."""
        return _TOOL_NAMES[self.tool]

    def tool_input(self, cwd: str | None) -> dict[str, Any]:
        """The tool input in Claude Code's schema (Write/Edit/Bash).

        >>> Step("write", "a.md", "write", content="x").tool_input("/w")
        {'file_path': '/w/a.md', 'content': 'x'}
        """
        if self.tool == "write":
            return {"file_path": resolve_path(self.target, cwd), "content": self.content}
        if self.tool == "edit":
            return {
                "file_path": resolve_path(self.target, cwd),
                "old_string": self.old,
                "new_string": self.new,
            }
        return {"command": self.target, "description": self.description or _describe(self)}

    def describe(self) -> str:
        """A short phrase for prose replies."""
        if self.tool == "write":
            return f"wrote {self.target}"
        if self.tool == "edit":
            return f"edited {self.target}"
        return {
            "test": "ran the tests",
            "fix_tests": "fixed the failing tests",
            "commit": "committed the work",
            "push": "pushed the branch",
            "open_pr": "opened the pull request",
        }.get(self.kind, f"ran `{self.target}`")


def _describe(step: Step) -> str:
    return {
        "test": "Run the tests",
        "fix_tests": "Fix the failing tests",
        "commit": "Commit the changes",
        "push": "Push the branch to origin",
        "open_pr": "Open a pull request",
    }.get(step.kind, "Run a command")


def resolve_path(path: str, cwd: str | None) -> str:
    """Join a relative plan path to the agent's working directory.

    >>> resolve_path("docs/a.md", "/repo"), resolve_path("/abs.md", "/repo")
    ('/repo/docs/a.md', '/abs.md')
    >>> resolve_path("a", None)
    'a'
    """
    if cwd is None or path.startswith("/"):
        return path
    return cwd.rstrip("/") + "/" + path


@dataclass(frozen=True)
class TaskPlan:
    """What the double does for one task: ``match`` picks the conversation, ``steps`` the calls."""

    match: str
    steps: tuple[Step, ...]
    final: str | None = None

    @property
    def tool_names(self) -> frozenset[str]:
        return frozenset(s.tool_name for s in self.steps)


@dataclass(frozen=True)
class Plan:
    tasks: tuple[TaskPlan, ...] = field(default=())
    faults: tuple[ApiFaultSpec, ...] = field(default=())

    def find(self, text: str) -> TaskPlan | None:
        """The task whose ``match`` occurs in ``text``; the longest match wins."""
        hits = [t for t in self.tasks if t.match and t.match in text]
        return max(hits, key=lambda t: len(t.match), default=None)


# --------------------------------------------------------------------------- plan from a Task


def plan_for_task(task: Task, *, contents: Mapping[str, str] | None = None) -> TaskPlan:
    """The standard plan: write each deliverable, run the tests, commit, push, open the PR.

    Titles may hold quotes, ``$()``, newlines and unicode; every shell word is quoted.

    >>> p = plan_for_task(Task("t1", "Fix 'it' $(rm -rf /)", ("a.md",)))
    >>> [s.kind for s in p.steps]
    ['write', 'commit', 'push', 'open_pr']
    >>> shlex.split(p.steps[1].target)[-1]
    "Fix 'it' $(rm -rf /)"
    """
    given = dict(contents or {})
    steps = [
        Step("write", path, "write", content=given.get(path, default_content(task, path)))
        for path in task.deliverables
    ]
    if task.tests:
        steps.append(Step("bash", task.tests, "test", description="Run the tests"))
    title = shlex.quote(task.title)
    steps.append(
        Step(
            "bash",
            f"git add -A && git commit -m {title}",
            "commit",
            description="Commit the changes",
        )
    )
    steps.append(
        Step("bash", "git push -u origin HEAD", "push", description="Push the branch to origin")
    )
    if task.wants_pr:
        body = shlex.quote(_pr_body(task))
        steps.append(
            Step(
                "bash",
                f"gh pr create --title {title} --body {body}",
                "open_pr",
                description="Open a pull request",
            )
        )
    return TaskPlan(match=task.title, steps=tuple(steps))


def _pr_body(task: Task) -> str:
    lines = [f"Task {task.task_id}: {task.title}", "", "Files:"]
    lines += [f"- {p}" for p in task.deliverables] or ["- (none)"]
    return "\n".join(lines)


_HASH_COMMENT = (".py", ".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".txt", "")


def default_content(task: Task, path: str) -> str:
    """Plausible file content for a deliverable, valid for its language.

    >>> default_content(Task("t", "T"), "x.py")
    '# T\\n# Deliverable x.py of task t.\\n'
    """
    suffix = Path(path).suffix.lower()
    title_lines = task.title.splitlines() or [""]
    if suffix == ".md":
        return f"# {' '.join(title_lines)}\n\nDeliverable {path} of task {task.task_id}.\n"
    if suffix in _HASH_COMMENT:
        lines = [f"# {line}" for line in title_lines]
        lines.append(f"# Deliverable {path} of task {task.task_id}.")
        return "\n".join(lines) + "\n"
    return f"{' '.join(title_lines)}\nDeliverable {path} of task {task.task_id}.\n"


# --------------------------------------------------------------------------- loading


def load_plan(path: str | Path) -> Plan:
    """Read a plan file (TOML or JSON). Raises :class:`PlanError` naming file, line, field."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"{source}: cannot read plan: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PlanError(f"{source}: not UTF-8 text ({exc.reason})") from None
    return parse_plan(text, name=str(source), toml=source.suffix.lower() == ".toml")


def parse_plan(text: str, *, name: str = "<plan>", toml: bool = False) -> Plan:
    """Parse plan text.

    >>> parse_plan('{"tasks": [{"match": "T", "steps": [{"bash": "ls"}]}]}').tasks[0].steps[0].kind
    'free'
    """
    locate: _Locator
    if toml:
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PlanError(f"{name}: invalid TOML: {exc}") from None
        locate = _TomlLocator(text)
    else:
        try:
            data = _located_json(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{name}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        locate = _JsonLocator(text)
    return _build_plan(data, name, locate)


class _Locator:
    def line(self, obj: Any, task: int, step: int | None) -> int | None:
        raise NotImplementedError

    def fault_line(self, obj: Any, index: int) -> int | None:
        raise NotImplementedError


class _LocatedDict(dict[str, Any]):
    """A JSON object that remembers where in the text it started."""

    offset: int = 0


def _located_json(text: str) -> Any:
    """``json.loads``, each object a :class:`_LocatedDict` that knows its offset."""
    starts = iter(_object_starts(text))

    def located(pairs: list[tuple[str, Any]]) -> _LocatedDict:
        obj = _LocatedDict(pairs)
        obj.offset = next(starts, 0)
        return obj

    return json.loads(text, object_pairs_hook=located)


def _object_starts(text: str) -> list[int]:
    """The offset of each JSON object's ``{`` in ``text``, in the order the objects close,
    which is the order a decoder hands them to ``object_pairs_hook``.

    >>> _object_starts('{"a": {"b": "}{"}, "c": {}}')
    [6, 24, 0]
    """
    starts: list[int] = []
    opened: list[int] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':  # skip the string, escapes and all
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif char == "{":
            opened.append(i)
        elif char == "}" and opened:
            starts.append(opened.pop())
        i += 1
    return starts


class _JsonLocator(_Locator):
    def __init__(self, text: str) -> None:
        self._text = text

    def line(self, obj: Any, task: int, step: int | None) -> int | None:
        if isinstance(obj, _LocatedDict):
            return self._text.count("\n", 0, obj.offset) + 1
        return None

    def fault_line(self, obj: Any, index: int) -> int | None:
        return self.line(obj, 0, None)


class _TomlLocator(_Locator):
    """Lines of ``[[tasks]]`` / ``[[tasks.steps]]`` headers, in order."""

    def __init__(self, text: str) -> None:
        self._tasks: list[int] = []
        self._steps: list[list[int]] = []
        self._faults: list[int] = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if re.fullmatch(r"\[\[\s*faults\s*\]\]\s*(#.*)?", line):
                self._faults.append(number)
            if re.fullmatch(r"\[\[\s*tasks\s*\]\]\s*(#.*)?", line):
                self._tasks.append(number)
                self._steps.append([])
            elif re.fullmatch(r"\[\[\s*tasks\.steps\s*\]\]\s*(#.*)?", line) and self._steps:
                self._steps[-1].append(number)

    def line(self, obj: Any, task: int, step: int | None) -> int | None:
        if task >= len(self._tasks):
            return None
        if step is None:
            return self._tasks[task]
        steps = self._steps[task]
        return steps[step] if step < len(steps) else self._tasks[task]

    def fault_line(self, obj: Any, index: int) -> int | None:
        return self._faults[index] if index < len(self._faults) else None


def _build_plan(data: Any, name: str, locate: _Locator) -> Plan:
    if not isinstance(data, dict):
        raise PlanError(f"{name}:1: tasks: the plan must be an object with a 'tasks' list")
    tasks = data.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise PlanError(
            f"{name}:{locate.line(data, 0, None) or 1}: tasks: a non-empty list "
            "of tasks is required"
        )
    built = tuple(_build_task(t, i, name, locate) for i, t in enumerate(tasks))
    raw_faults = data.get("faults", [])
    if not isinstance(raw_faults, list):
        raise PlanError(f"{name}: faults: must be a list of fault tables")
    faults: list[ApiFaultSpec] = []
    for k, raw in enumerate(raw_faults):
        where = _where(name, locate.fault_line(raw, k))
        if not isinstance(raw, dict):
            raise PlanError(f"{where}: faults[{k}]: must be an object")
        try:
            faults.append(ApiFaultSpec.from_json(raw))
        except (TypeError, ValueError) as exc:
            raise PlanError(f"{where}: faults[{k}].{exc}") from None
    return Plan(built, tuple(faults))


def _where(name: str, line: int | None) -> str:
    return f"{name}:{line}" if line is not None else name


def _build_task(raw: Any, i: int, name: str, locate: _Locator) -> TaskPlan:
    where = _where(name, locate.line(raw, i, None))
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: tasks[{i}]: must be an object")
    match = raw.get("match")
    if not isinstance(match, str) or not match.strip():
        raise PlanError(f"{where}: tasks[{i}].match: a non-empty string is required")
    final = raw.get("final")
    if final is not None and not isinstance(final, str):
        raise PlanError(f"{where}: tasks[{i}].final: must be a string")
    steps = raw.get("steps", [])
    if not isinstance(steps, list):
        raise PlanError(f"{where}: tasks[{i}].steps: must be a list")
    built = tuple(_build_step(s, i, j, name, locate) for j, s in enumerate(steps))
    return TaskPlan(match=match, steps=built, final=final)


_STEP_FIELDS = {
    "write": {"write", "content", "kind"},
    "edit": {"edit", "old", "new", "kind"},
    "bash": {"bash", "kind", "description"},
}


def _build_step(raw: Any, i: int, j: int, name: str, locate: _Locator) -> Step:
    where = _where(name, locate.line(raw, i, j))
    label = f"tasks[{i}].steps[{j}]"
    if not isinstance(raw, dict):
        raise PlanError(f"{where}: {label}: must be an object")
    tools = [t for t in STEP_TOOLS if t in raw]
    if len(tools) != 1:
        raise PlanError(f"{where}: {label}: needs exactly one of 'write', 'edit', 'bash'")
    tool = tools[0]
    unknown = sorted(set(raw) - _STEP_FIELDS[tool])
    if unknown:
        raise PlanError(f"{where}: {label}.{unknown[0]}: unknown field for a {tool} step")
    strings: dict[str, str] = {}
    for key in _STEP_FIELDS[tool]:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise PlanError(f"{where}: {label}.{key}: must be a string")
        strings[key] = value or ""
    if not strings[tool].strip():
        raise PlanError(f"{where}: {label}.{tool}: must not be empty")
    kind = strings["kind"] or _DEFAULT_KIND[tool]
    if tool == "bash" and kind not in BASH_KINDS:
        raise PlanError(
            f"{where}: {label}.kind: {kind!r} is not one of {', '.join(sorted(BASH_KINDS))}"
        )
    if tool == "write" and "content" not in raw:
        raise PlanError(f"{where}: {label}.content: required for a write step")
    if tool == "edit" and ("old" not in raw or "new" not in raw):
        missing = "old" if "old" not in raw else "new"
        raise PlanError(f"{where}: {label}.{missing}: required for an edit step")
    return Step(
        tool=tool,
        target=strings[tool],
        kind=kind,
        content=strings.get("content", ""),
        old=strings.get("old", ""),
        new=strings.get("new", ""),
        description=strings.get("description", ""),
    )


def plan_to_json(plan: Plan | Sequence[TaskPlan]) -> dict[str, Any]:
    """The JSON form of a plan (round-trips through :func:`parse_plan`)."""
    tasks = plan.tasks if isinstance(plan, Plan) else tuple(plan)
    out: list[dict[str, Any]] = []
    for t in tasks:
        steps: list[dict[str, Any]] = []
        for s in t.steps:
            row: dict[str, Any] = {s.tool: s.target, "kind": s.kind}
            if s.tool == "write":
                row["content"] = s.content
            elif s.tool == "edit":
                row.update(old=s.old, new=s.new)
            elif s.description:
                row["description"] = s.description
            steps.append(row)
        entry: dict[str, Any] = {"match": t.match, "steps": steps}
        if t.final is not None:
            entry["final"] = t.final
        out.append(entry)
    faults = plan.faults if isinstance(plan, Plan) else ()
    return {"tasks": out, "faults": [f.to_json() for f in faults]}
