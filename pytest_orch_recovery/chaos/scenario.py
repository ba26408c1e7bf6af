"""Chaos scenarios: the TOML schema of ``scenarios/*.toml``, loaded into plain data.

A scenario is several tasks, a fault schedule keyed on events of the agents' runs, operator
actions between phases, and expectations per task (docs/scenarios.md is the reference). A
malformed file is reported with the file, the line and the field, e.g.
``scenarios/x.toml:12: faults[1].kind: unknown fault kind 'sigintt'``; ``tomllib`` gives the
position of syntax errors, and :func:`_key_lines` finds the line of each key for schema errors.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_orch_recovery.chaos.faults import CATALOGUE, FaultSpec, FaultStatus, Trigger
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.model import Reason, Strategy, Task

OUTCOMES = ("succeeded", "recovered", "escalated", "failed")
FAULT_STATUSES = (FaultStatus.EXERCISED, FaultStatus.INEFFECTIVE, FaultStatus.NOT_EXERCISED)
# What a scenario's operator may do after an escalation, by name: the action's journal text and
# the reasons of the escalated tasks it releases. Both tiers carry the actions out.
OPERATOR_ACTIONS: Mapping[str, tuple[str, tuple[Reason, ...]]] = {
    "fix_permission_flag": ("fixed the dispatcher's config: added --dangerously-skip-permissions",
                            (Reason.PERMISSION,)),
}

# Trigger keys of a [[faults]] table -> the catalogue's trigger event. A key holds a count
# (the Nth occurrence within the attempt) or ``true`` (the first); ``after_file`` also takes
# a deliverable path.
TRIGGER_KEYS: Mapping[str, str] = {
    "at_start": "start",
    "at_api_request": "api_request",
    "after_tool_call": "tool_call",
    "after_file": "file_written",
    "after_commit": "commit",
    "after_push": "push",
    "at_open_pr": "open_pr",
    "at_test": "test",
}

_TOP_KEYS = frozenset(
    {"name", "description", "tasks", "faults", "operator_actions", "crash_after_event", "expect",
     "attempt_timeout"}
)
_TASK_KEYS = frozenset(
    {"id", "title", "deliverables", "tests", "agent_type", "pr", "agent", "prompt", "expect"}
)
_FAULT_KEYS = frozenset({"kind", "task", "attempt", "params", "expect", *TRIGGER_KEYS})
_EXPECT_KEYS = frozenset(
    {"outcome", "reasons", "strategies", "max_attempts", "files", "pr", "pushed"}
)


class ScenarioError(OrchRecoveryError, ValueError):
    """A scenario file that cannot be used, with where and what."""

    def __init__(self, source: str, line: int, field_name: str, message: str) -> None:
        self.source = source
        self.line = line
        self.field = field_name
        self.message = message
        where = f"{source}:{line}"
        super().__init__(f"{where}: {field_name}: {message}" if field_name else
                         f"{where}: {message}")


@dataclass(frozen=True)
class Expectation:
    """What one task must look like at the end. ``None`` fields are not checked."""

    outcome: str | None = None  # one of OUTCOMES
    reasons: tuple[str, ...] | None = None  # attributed reasons, every failed attempt, in order
    strategies: tuple[str, ...] | None = None  # every decision, in order
    max_attempts: int | None = None
    files: tuple[str, ...] | None = None  # deliverables present in the final repository
    pr: bool | None = None  # a PR is open at the end
    pushed: bool | None = None  # the branch is on origin at the end

    def merged_over(self, defaults: Expectation) -> Expectation:
        """This expectation, with the scenario-wide ``defaults`` filling its gaps."""
        return Expectation(
            **{
                name: getattr(self, name) if getattr(self, name) is not None
                else getattr(defaults, name)
                for name in self.__dataclass_fields__
            }
        )


@dataclass(frozen=True)
class ScenarioTask:
    task: Task
    agent: str | None = None  # agent (session) name; None: the coordinator names it
    expect: Expectation = Expectation()


@dataclass(frozen=True)
class Scenario:
    name: str
    tasks: tuple[ScenarioTask, ...]
    faults: tuple[FaultSpec, ...] = ()
    operator_actions: tuple[str, ...] = ()
    crash_after_event: int | None = None
    attempt_timeout: float | None = None  # real seconds per attempt (tmux tier); None: default
    description: str = ""
    fault_expectations: Mapping[str, str] = field(default_factory=dict)  # fault id -> status
    source: str | None = None
    generated: bool = False  # drawn by --orch-campaign, not read from a file

    @property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(t.task.task_id for t in self.tasks)

    def faulted_tasks(self) -> frozenset[str]:
        """Tasks some fault of the schedule targets (``*`` targets them all)."""
        ids = set(self.task_ids)
        out: set[str] = set()
        for spec in self.faults:
            out |= ids if spec.task == "*" else {spec.task}
        return frozenset(out)


# --------------------------------------------------------------------------- key lines

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|"""
                  r"""[A-Za-z0-9_\-]+))*)\s*=""")

Path_ = tuple[str | int, ...]


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _key_lines(text: str) -> dict[Path_, int]:
    """The 1-based line of every table header and key, by path (array tables indexed).

    >>> lines = _key_lines('name = "x"\\n[[tasks]]\\nid = "a"\\n[[tasks]]\\nid = "b"\\n')
    >>> lines[("name",)], lines[("tasks", 1, "id")], lines[("tasks", 1)]
    (1, 5, 4)
    """
    out: dict[Path_, int] = {}
    arrays: dict[tuple[str, ...], int] = {}  # array-of-tables path -> current index
    current: Path_ = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), 1):
        if in_multiline:
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = False
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = _split_dotted(header.group(2))
            resolved: list[str | int] = []
            for i, name in enumerate(names):
                resolved.append(name)
                key = tuple(names[: i + 1])
                is_last = i == len(names) - 1
                if header.group(1) == "[[" and is_last:
                    arrays[key] = arrays.get(key, -1) + 1
                    # A new element of an array forgets the sub-arrays of the previous one.
                    for sub in [k for k in arrays if len(k) > len(key) and k[: len(key)] == key]:
                        del arrays[sub]
                    resolved.append(arrays[key])
                elif key in arrays:
                    resolved.append(arrays[key])
            current = tuple(resolved)
            out.setdefault(current, number)
            continue
        key_match = _KEY.match(line)
        if key_match:
            path = (*current, *_split_dotted(key_match.group(1)))
            out.setdefault(path, number)
            rest = line[key_match.end():]
            if rest.count('"""') == 1 or rest.count("'''") == 1:
                in_multiline = True
    return out


def _line_of(lines: Mapping[Path_, int], path: Path_) -> int:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def _field_name(path: Path_) -> str:
    """``("tasks", 1, "expect", "outcome")`` -> ``tasks[2].expect.outcome`` (1-based)."""
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --------------------------------------------------------------------------- loading


class _Reader:
    """Validates one parsed document, raising :class:`ScenarioError` with file and line."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = _key_lines(text)

    def fail(self, path: Path_, message: str) -> ScenarioError:
        return ScenarioError(self.source, _line_of(self.lines, path), _field_name(path), message)

    def table(self, value: object, path: Path_, allowed: frozenset[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a table, not {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), "unknown key; expected one of "
                                + ", ".join(sorted(allowed)))
        return value

    def string(self, value: object, path: Path_, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {type(value).__name__}")
        if not empty and not value.strip():
            raise self.fail(path, "must not be empty")
        return value

    def integer(self, value: object, path: Path_, *, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, not {type(value).__name__}")
        if value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def seconds(self, value: object, path: Path_) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"must be a number of seconds, not {type(value).__name__}")
        if not value > 0:
            raise self.fail(path, f"must be > 0, got {value}")
        return float(value)

    def boolean(self, value: object, path: Path_) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, not {value!r}")
        return value

    def strings(self, value: object, path: Path_, choices: Sequence[str] = ()) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list of strings, not {type(value).__name__}")
        out = []
        for i, item in enumerate(value):
            text = self.string(item, path)
            if choices and text not in choices:
                raise self.fail(path, f"item {i + 1} {text!r} is not one of "
                                + ", ".join(choices))
            out.append(text)
        return tuple(out)

    def expectation(self, value: object, path: Path_) -> Expectation:
        raw = self.table(value, path, _EXPECT_KEYS)
        get = raw.get
        outcome = None
        if "outcome" in raw:
            outcome = self.string(raw["outcome"], (*path, "outcome"))
            if outcome not in OUTCOMES:
                raise self.fail((*path, "outcome"), f"{outcome!r} is not one of "
                                + ", ".join(OUTCOMES))
        return Expectation(
            outcome=outcome,
            reasons=None if get("reasons") is None else self.strings(
                raw["reasons"], (*path, "reasons"), [str(r) for r in Reason]),
            strategies=None if get("strategies") is None else self.strings(
                raw["strategies"], (*path, "strategies"), [str(s) for s in Strategy]),
            max_attempts=None if get("max_attempts") is None else self.integer(
                raw["max_attempts"], (*path, "max_attempts")),
            files=None if get("files") is None else self.strings(raw["files"], (*path, "files")),
            pr=None if get("pr") is None else self.boolean(raw["pr"], (*path, "pr")),
            pushed=None if get("pushed") is None else self.boolean(raw["pushed"],
                                                                    (*path, "pushed")),
        )

    def task(self, value: object, path: Path_, defaults: Expectation) -> ScenarioTask:
        raw = self.table(value, path, _TASK_KEYS)
        for required in ("id", "title", "deliverables"):
            if required not in raw:
                raise self.fail(path, f"missing required key {required!r}")
        deliverables = self.strings(raw["deliverables"], (*path, "deliverables"))
        if not deliverables:
            raise self.fail((*path, "deliverables"), "must list at least one file")
        task = Task(
            task_id=self.string(raw["id"], (*path, "id")),
            title=self.string(raw["title"], (*path, "title")),
            deliverables=deliverables,
            tests=None if raw.get("tests") is None else self.string(raw["tests"],
                                                                     (*path, "tests")),
            agent_type=self.string(raw.get("agent_type", "claude-code"), (*path, "agent_type")),
            wants_pr=self.boolean(raw.get("pr", True), (*path, "pr")),
            prompt=self.string(raw.get("prompt", ""), (*path, "prompt"), empty=True),
        )
        agent = None if raw.get("agent") is None else self.string(raw["agent"], (*path, "agent"))
        expect = Expectation()
        if "expect" in raw:
            expect = self.expectation(raw["expect"], (*path, "expect"))
        return ScenarioTask(task, agent, expect.merged_over(defaults))

    def trigger(self, raw: Mapping[str, Any], path: Path_) -> Trigger | None:
        keys = [k for k in TRIGGER_KEYS if k in raw]
        if len(keys) > 1:
            raise self.fail((*path, keys[1]), "a fault has one trigger; also given "
                            + ", ".join(keys[:1]))
        if not keys:
            return None
        key = keys[0]
        value = raw[key]
        where = (*path, key)
        event = TRIGGER_KEYS[key]
        if key == "after_file" and isinstance(value, str):
            return Trigger(event, path=self.string(value, where))
        if value is True:
            return Trigger(event)
        if isinstance(value, bool):
            raise self.fail(where, "false is not a trigger; leave the key out")
        what = "a count >= 1, true or a file path" if key == "after_file" else \
            "a count >= 1 or true"
        if not isinstance(value, int):
            raise self.fail(where, f"must be {what}, not {value!r}")
        return Trigger(event, n=self.integer(value, where))

    def fault(self, value: object, path: Path_, index: int,
              task_ids: Sequence[str]) -> tuple[FaultSpec, str | None]:
        raw = self.table(value, path, _FAULT_KEYS)
        if "kind" not in raw:
            raise self.fail(path, "missing required key 'kind'")
        kind = self.string(raw["kind"], (*path, "kind"))
        if kind not in CATALOGUE:
            raise self.fail((*path, "kind"), f"unknown fault kind {kind!r}; known: "
                            + ", ".join(sorted(CATALOGUE)))
        task = self.string(raw.get("task", "*"), (*path, "task"))
        if task != "*" and CATALOGUE[kind].scope == "fleet":
            raise self.fail((*path, "task"), f"{kind} is a fleet fault: it hits every task "
                            "(leave task out or write \"*\")")
        if task != "*" and task not in task_ids:
            raise self.fail((*path, "task"), f"no task {task!r} in this scenario; tasks: "
                            + ", ".join(task_ids) + " (or \"*\" for all)")
        attempt: int | None = 1
        if "attempt" in raw:
            if raw["attempt"] == "all":
                attempt = None
            elif isinstance(raw["attempt"], str):
                raise self.fail((*path, "attempt"), "must be an attempt number or \"all\"")
            else:
                attempt = self.integer(raw["attempt"], (*path, "attempt"))
        params = raw.get("params", {})
        if not isinstance(params, Mapping):
            raise self.fail((*path, "params"), f"must be a table, not {type(params).__name__}")
        status = None
        if "expect" in raw:
            status = self.string(raw["expect"], (*path, "expect"))
            if status not in FAULT_STATUSES:
                raise self.fail((*path, "expect"), f"{status!r} is not one of "
                                + ", ".join(FAULT_STATUSES))
        spec = FaultSpec(kind, self.trigger(raw, path), task=task, attempt=attempt,
                         params=dict(params), fault_id=f"f{index + 1}")
        return spec, status


def parse_scenario(text: str, *, source: str = "<scenario>", name: str | None = None) -> Scenario:
    """Parse and validate one scenario document.

    >>> s = parse_scenario('[[tasks]]\\nid = "t1"\\ntitle = "Docs"\\ndeliverables = ["a.md"]\\n'
    ...                    '[[faults]]\\nkind = "sigint"\\nafter_file = "a.md"\\n', name="demo")
    >>> s.name, s.task_ids, s.faults[0].effective_trigger.describe()
    ('demo', ('t1',), 'after a.md is written')
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _lineno_from_message(str(exc))
        raise ScenarioError(source, line, "", f"invalid TOML: {exc}") from None
    reader = _Reader(source, text)
    raw = reader.table(doc, (), _TOP_KEYS)
    defaults = Expectation()
    if "expect" in raw:
        defaults = reader.expectation(raw["expect"], ("expect",))
    raw_tasks = raw.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise reader.fail(("tasks",), "a scenario needs at least one [[tasks]] table")
    tasks = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw_tasks):
        task = reader.task(item, ("tasks", i), defaults)
        if task.task.task_id in seen:
            raise reader.fail(("tasks", i, "id"), f"task id {task.task.task_id!r} repeats "
                              f"tasks[{seen[task.task.task_id] + 1}]")
        seen[task.task.task_id] = i
        tasks.append(task)
    ids = [t.task.task_id for t in tasks]
    raw_faults = raw.get("faults", [])
    if not isinstance(raw_faults, list):
        raise reader.fail(("faults",), "must be an array of [[faults]] tables")
    faults: list[FaultSpec] = []
    statuses: dict[str, str] = {}
    for i, item in enumerate(raw_faults):
        spec, status = reader.fault(item, ("faults", i), i, ids)
        faults.append(spec)
        if status is not None:
            statuses[spec.fault_id] = status
    actions = _operator_actions(reader, raw.get("operator_actions", []))
    crash = raw.get("crash_after_event")
    timeout = raw.get("attempt_timeout")
    return Scenario(
        name=reader.string(raw.get("name", name or source), ("name",)),
        description=reader.string(raw.get("description", ""), ("description",), empty=True),
        tasks=tuple(tasks),
        faults=tuple(faults),
        operator_actions=actions,
        crash_after_event=None if crash is None else reader.integer(crash,
                                                                    ("crash_after_event",)),
        fault_expectations=statuses,
        source=source,
        attempt_timeout=None if timeout is None else reader.seconds(timeout,
                                                                    ("attempt_timeout",)),
    )


def _operator_actions(reader: _Reader, value: object) -> tuple[str, ...]:
    return reader.strings(value, ("operator_actions",), sorted(OPERATOR_ACTIONS))


def _lineno_from_message(message: str) -> int:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else 1


def load_scenario(path: str | Path) -> Scenario:
    """Read ``path``; the scenario is named after the file unless it says ``name = ...``."""
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(target), 1, "", f"cannot read: {exc}") from None
    return parse_scenario(text, source=str(target), name=target.stem)
