"""Chaos scenarios: the TOML schema of ``scenarios/*.toml``, loaded into plain data.

A scenario is several tasks, a fault schedule keyed on events of the agents' runs, operator
actions between phases, and expectations per task (docs/scenarios.md is the reference). A
malformed file is reported with the file, the line and the field, e.g.
``scenarios/x.toml:12: faults[1].kind: unknown fault kind 'sigintt'``; the reading (and
the task table's parser) is :mod:`pytest_orch_recovery.infra.tomlread`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_orch_recovery.chaos.faults import (
    CATALOGUE,
    HONOURED_EVENTS,
    FaultSpec,
    FaultStatus,
    Trigger,
)
from pytest_orch_recovery.engine.model import Reason, Strategy, Task
from pytest_orch_recovery.engine.policy import PolicySettings
from pytest_orch_recovery.infra.tomlread import TASK_KEYS, Path_, TomlReader, parse_document
from pytest_orch_recovery.store import validation
from pytest_orch_recovery.store.validation import InputError, RuleError

OUTCOMES = ("succeeded", "recovered", "escalated")
FAULT_STATUSES = (FaultStatus.EXERCISED, FaultStatus.INEFFECTIVE, FaultStatus.NOT_EXERCISED)
# What a scenario's operator may do after an escalation, by name: the action's journal text and
# the reasons of the escalated tasks it releases. Both tiers carry the actions out.
OPERATOR_ACTIONS: Mapping[str, tuple[str, tuple[Reason, ...]]] = {
    "fix_permission_flag": (
        "fixed the dispatcher's config: added --dangerously-skip-permissions",
        (Reason.PERMISSION,),
    ),
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
    {
        "name",
        "description",
        "tasks",
        "faults",
        "operator_actions",
        "crash_after_event",
        "expect",
        "attempt_timeout",
        "stall_window",
        "policy",
        "max_live_agents",
        "max_attempts",
        "fallback_agents",
        "hosts",
    }
)
_TASK_KEYS = TASK_KEYS | {"expect"}
_FAULT_KEYS = frozenset({"kind", "task", "attempt", "params", "expect", *TRIGGER_KEYS})
_EXPECT_KEYS = frozenset(
    {"outcome", "reasons", "strategies", "max_attempts", "files", "pr", "pushed"}
)
MAX_SCENARIO_BYTES = 1024 * 1024
MAX_ATTEMPTS = 100  # attempt numbers and expected budgets
MAX_TASKS = 1_000
MAX_FAULTS = 1_000
PR_ERRORS = ("bad_credentials", "unreachable")
SIGINT_STYLES = ("claude",)
LIMIT_WORDINGS = ("claude", "codex")


@dataclass(frozen=True)
class _Param:
    """One ``params`` key a fault kind honours on both tiers."""

    kind: str  # "count", "seconds", "boolean" or "choice"
    choices: tuple[str, ...] = ()


_API_PARAMS: Mapping[str, _Param] = {"count": _Param("count")}
# The params each fault kind honours (docs/scenarios.md); any other key is refused at load.
FAULT_PARAMS: Mapping[str, Mapping[str, _Param]] = {
    "api_overloaded": _API_PARAMS,
    "api_server_error": _API_PARAMS,
    "api_rate_limit": {**_API_PARAMS, "retry_after": _Param("seconds")},
    "pr_create_fails": {"times": _Param("count"), "error": _Param("choice", PR_ERRORS)},
    "kill": {"oom": _Param("boolean")},
    "usage_limit": {
        "resets_in": _Param("seconds"),
        "wording": _Param("choice", LIMIT_WORDINGS),
    },
    "sigint": {"style": _Param("choice", SIGINT_STYLES)},
    "sigint_keys": {"style": _Param("choice", SIGINT_STYLES)},
    # How long the host stays frozen, and the database stopped (simhosts.py has the defaults).
    "host_partition": {"seconds": _Param("seconds")},
    "store_outage": {"seconds": _Param("seconds")},
}
MAX_HOSTS = 64


class ScenarioError(InputError):
    """A scenario file that cannot be used, with where and what."""

    def __init__(self, source: str, line: int, field_name: str, message: str) -> None:
        super().__init__(source, line, field_name, message)


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
                name: getattr(self, name)
                if getattr(self, name) is not None
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
    # tmux tier: seconds without output or CPU after which an attempt is a stall (None: off)
    stall_window: float | None = None
    # the engine's tunable numbers (backoff, breaker), as a fleet file's [policy] table
    policy: PolicySettings = field(default_factory=PolicySettings)
    max_live_agents: int | None = None  # as a fleet file's: at most this many at once
    max_attempts: int | None = None  # as a fleet file's: the attempt budget (None: the engine's)
    # as a fleet file's: agents a task moves to while its own agent's account is limited
    fallback_agents: tuple[str, ...] = ()
    # At least this many hosts over a fleet store (the campaign's --orch-hosts may add more);
    # a scenario with a host fault needs two.
    hosts: int = 1
    description: str = ""
    fault_expectations: Mapping[str, str] = field(default_factory=dict)  # fault id -> status
    source: str | None = None
    generated: bool = False  # drawn by --orch-campaign, not read from a file

    def budget(self) -> dict[str, int]:
        """The keyword that gives a policy this scenario's attempt budget: none when it sets
        none, so the engine's own default holds.

        >>> Scenario("s", ()).budget(), Scenario("s", (), max_attempts=2).budget()
        ({}, {'max_attempts': 2})
        """
        return {} if self.max_attempts is None else {"max_attempts": self.max_attempts}

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


# --------------------------------------------------------------------------- loading


class _Reader(TomlReader):
    """Validates one scenario, raising :class:`ScenarioError` with file and line."""

    error = ScenarioError

    def expectation(self, value: object, path: Path_) -> Expectation:
        raw = self.table(value, path, _EXPECT_KEYS)
        get = raw.get
        outcome = None
        if "outcome" in raw:
            outcome = self.string(raw["outcome"], (*path, "outcome"))
            if outcome not in OUTCOMES:
                raise self.fail(
                    (*path, "outcome"), f"{outcome!r} is not one of " + ", ".join(OUTCOMES)
                )
        return Expectation(
            outcome=outcome,
            reasons=None
            if get("reasons") is None
            else self.strings(raw["reasons"], (*path, "reasons"), [str(r) for r in Reason]),
            strategies=None
            if get("strategies") is None
            else self.strings(raw["strategies"], (*path, "strategies"), [str(s) for s in Strategy]),
            max_attempts=None
            if get("max_attempts") is None
            else self.integer(raw["max_attempts"], (*path, "max_attempts"), maximum=MAX_ATTEMPTS),
            files=None if get("files") is None else self.paths(raw["files"], (*path, "files")),
            pr=None if get("pr") is None else self.boolean(raw["pr"], (*path, "pr")),
            pushed=None
            if get("pushed") is None
            else self.boolean(raw["pushed"], (*path, "pushed")),
        )

    def task(self, value: object, path: Path_, defaults: Expectation) -> ScenarioTask:
        raw = self.table(value, path, _TASK_KEYS)
        task, agent = self.task_table(raw, path)
        expect = Expectation()
        if "expect" in raw:
            expect = self.expectation(raw["expect"], (*path, "expect"))
        return ScenarioTask(task, agent, expect.merged_over(defaults))

    def trigger(self, raw: Mapping[str, Any], path: Path_) -> Trigger | None:
        keys = [k for k in TRIGGER_KEYS if k in raw]
        if len(keys) > 1:
            raise self.fail(
                (*path, keys[1]), "a fault has one trigger; also given " + ", ".join(keys[:1])
            )
        if not keys:
            return None
        key = keys[0]
        value = raw[key]
        where = (*path, key)
        event = TRIGGER_KEYS[key]
        if key == "after_file" and isinstance(value, str):
            return Trigger(event, path=self.relative_path(value, where))
        if value is True:
            return Trigger(event)
        if isinstance(value, bool):
            raise self.fail(where, "false is not a trigger; leave the key out")
        what = (
            "a count >= 1, true or a file path" if key == "after_file" else "a count >= 1 or true"
        )
        if not isinstance(value, int):
            raise self.fail(where, f"must be {what}, not {value!r}")
        return Trigger(event, n=self.integer(value, where))

    def fault(
        self, value: object, path: Path_, index: int, task_ids: Sequence[str]
    ) -> tuple[FaultSpec, str | None]:
        raw = self.table(value, path, _FAULT_KEYS)
        if "kind" not in raw:
            raise self.fail(path, "missing required key 'kind'")
        kind = self.string(raw["kind"], (*path, "kind"))
        if kind not in CATALOGUE:
            raise self.fail(
                (*path, "kind"),
                f"unknown fault kind {kind!r}; known: " + ", ".join(sorted(CATALOGUE)),
            )
        task = self.string(raw.get("task", "*"), (*path, "task"))
        if task != "*" and CATALOGUE[kind].scope == "fleet":
            raise self.fail(
                (*path, "task"),
                f'{kind} is a fleet fault: it hits every task (leave task out or write "*")',
            )
        if task != "*" and task not in task_ids:
            raise self.fail(
                (*path, "task"),
                f"no task {task!r} in this scenario; tasks: "
                + ", ".join(task_ids)
                + ' (or "*" for all)',
            )
        attempt: int | None = 1
        if "attempt" in raw:
            if raw["attempt"] == "all":
                attempt = None
            elif isinstance(raw["attempt"], str):
                raise self.fail((*path, "attempt"), 'must be an attempt number or "all"')
            else:
                attempt = self.integer(raw["attempt"], (*path, "attempt"), maximum=MAX_ATTEMPTS)
        params = self.params(kind, raw.get("params", {}), (*path, "params"))
        status = None
        if "expect" in raw:
            status = self.string(raw["expect"], (*path, "expect"))
            if status not in FAULT_STATUSES:
                raise self.fail(
                    (*path, "expect"), f"{status!r} is not one of " + ", ".join(FAULT_STATUSES)
                )
        spec = FaultSpec(
            kind,
            self.trigger(raw, path),
            task=task,
            attempt=attempt,
            params=params,
            fault_id=f"f{index + 1}",
        )
        event = spec.effective_trigger.event
        honoured = HONOURED_EVENTS.get(kind, frozenset({CATALOGUE[kind].default_trigger}))
        if event not in honoured:
            keys = [k for k in TRIGGER_KEYS if k in raw]
            where = (*path, keys[0]) if keys else (*path, "kind")
            raise self.fail(
                where,
                f"{kind} cannot be keyed on the {event} event on every "
                "tier; use " + " or ".join(k for k, e in TRIGGER_KEYS.items() if e in honoured),
            )
        return spec, status

    def params(self, kind: str, value: object, path: Path_) -> dict[str, Any]:
        """The fault's ``params``: only the keys its kind honours, each checked."""
        allowed = FAULT_PARAMS.get(kind, {})
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a table, not {type(value).__name__}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            where = (*path, key)
            param = allowed.get(key)
            if param is None:
                known = ", ".join(sorted(allowed)) if allowed else "none"
                raise self.fail(where, f"{kind} takes no parameter {key!r}; it takes: {known}")
            if param.kind == "count":
                out[key] = self.integer(item, where, maximum=validation.MAX_COUNT)
            elif param.kind == "seconds":
                out[key] = self.seconds(item, where, zero=True)
            elif param.kind == "boolean":
                out[key] = self.boolean(item, where)
            else:
                out[key] = self.checked(
                    validation.choice, item, where, choices=param.choices, what=key
                )
        return out


def parse_scenario(text: str, *, source: str = "<scenario>", name: str | None = None) -> Scenario:
    """Parse and validate one scenario document.

    >>> s = parse_scenario('[[tasks]]\\nid = "t1"\\ntitle = "Docs"\\ndeliverables = ["a.md"]\\n'
    ...                    '[[faults]]\\nkind = "sigint"\\nafter_file = "a.md"\\n', name="demo")
    >>> s.name, s.task_ids, s.faults[0].effective_trigger.describe()
    ('demo', ('t1',), 'after a.md is written')
    """
    doc = parse_document(text, source, ScenarioError)
    reader = _Reader(source, text)
    raw = reader.table(doc, (), _TOP_KEYS)
    defaults = Expectation()
    if "expect" in raw:
        defaults = reader.expectation(raw["expect"], ("expect",))
    raw_tasks = raw.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise reader.fail(("tasks",), "a scenario needs at least one [[tasks]] table")
    if len(raw_tasks) > MAX_TASKS:
        raise reader.fail(("tasks",), f"{len(raw_tasks)} tasks; the limit is {MAX_TASKS}")
    tasks = []
    seen: dict[str, int] = {}
    agents: dict[str, int] = {}
    titles: dict[str, int] = {}
    for i, item in enumerate(raw_tasks):
        task = reader.task(item, ("tasks", i), defaults)
        if task.task.task_id in seen:
            raise reader.fail(
                ("tasks", i, "id"),
                f"task id {task.task.task_id!r} repeats tasks[{seen[task.task.task_id] + 1}]",
            )
        seen[task.task.task_id] = i
        # The agent each task runs as (the coordinator's default name when not given): one
        # agent, one session and one workspace per task.
        agent = task.agent or f"task-agent-{task.task.task_id}"
        if agent in agents:
            raise reader.fail(
                ("tasks", i, "agent"),
                f"agent {agent!r} already runs "
                f"tasks[{agents[agent] + 1}]; each task needs its own agent",
            )
        agents[agent] = i
        # The tmux tier's model double tells the tasks apart by title.
        if task.task.title in titles:
            raise reader.fail(
                ("tasks", i, "title"),
                f"title {task.task.title!r} repeats "
                f"tasks[{titles[task.task.title] + 1}]; titles must be unique",
            )
        titles[task.task.title] = i
        tasks.append(task)
    ids = [t.task.task_id for t in tasks]
    raw_faults = raw.get("faults", [])
    if not isinstance(raw_faults, list):
        raise reader.fail(("faults",), "must be an array of [[faults]] tables")
    if len(raw_faults) > MAX_FAULTS:
        raise reader.fail(("faults",), f"{len(raw_faults)} faults; the limit is {MAX_FAULTS}")
    faults: list[FaultSpec] = []
    statuses: dict[str, str] = {}
    for i, item in enumerate(raw_faults):
        spec, status = reader.fault(item, ("faults", i), i, ids)
        if spec.kind == "tests_fail":
            _check_testable(reader, ("faults", i, "task"), spec, tasks)
        faults.append(spec)
        if status is not None:
            statuses[spec.fault_id] = status
    actions = _operator_actions(reader, raw.get("operator_actions", []))
    crash = raw.get("crash_after_event")
    timeout = raw.get("attempt_timeout")
    stall = raw.get("stall_window")
    return Scenario(
        name=reader.checked(validation.line_text, raw.get("name", name or source), ("name",)),
        description=reader.string(
            raw.get("description", ""),
            ("description",),
            empty=True,
            limit=validation.MAX_PROMPT_BYTES,
        ),
        tasks=tuple(tasks),
        faults=tuple(faults),
        operator_actions=actions,
        crash_after_event=None if crash is None else reader.integer(crash, ("crash_after_event",)),
        fault_expectations=statuses,
        source=source,
        attempt_timeout=None if timeout is None else reader.seconds(timeout, ("attempt_timeout",)),
        stall_window=None if stall is None else reader.seconds(stall, ("stall_window",)),
        policy=reader.policy_settings(raw.get("policy", {}), ("policy",)),
        max_live_agents=(
            reader.integer(raw["max_live_agents"], ("max_live_agents",))
            if "max_live_agents" in raw
            else None
        ),
        max_attempts=(
            reader.integer(raw["max_attempts"], ("max_attempts",), maximum=MAX_ATTEMPTS)
            if "max_attempts" in raw
            else None
        ),
        fallback_agents=(
            reader.strings(raw["fallback_agents"], ("fallback_agents",))
            if "fallback_agents" in raw
            else ()
        ),
        hosts=_hosts(reader, raw, faults),
    )


def _hosts(reader: _Reader, raw: Mapping[str, Any], faults: Sequence[FaultSpec]) -> int:
    """The ``hosts`` key: how many hosts the scenario needs at least; two or more when a
    fault of the schedule takes a host (or the store) away."""
    hosts = reader.integer(raw["hosts"], ("hosts",), maximum=MAX_HOSTS) if "hosts" in raw else 1
    first = next((i for i, f in enumerate(faults) if f.entry.scope == "host"), None)
    if first is not None and hosts < 2:
        where = ("hosts",) if "hosts" in raw else ("faults", first, "kind")
        raise reader.fail(where, f"{faults[first].kind} needs several hosts: set hosts = 2 or more")
    return hosts


def check_scenario(scenario: Scenario) -> None:
    """The load-time rules, for a scenario built in code rather than read from a file (the
    generated runs, the ``orch_engine`` fixture): both tiers refuse the same scenarios, with
    a :class:`ScenarioError` naming the field."""
    where = scenario.source or f"<scenario {scenario.name}>"

    def check(field_name: str, rule: Any, value: object, **kwargs: Any) -> None:
        try:
            rule(value, **kwargs)
        except RuleError as exc:
            raise ScenarioError(where, 1, field_name, str(exc)) from None

    agents: dict[str, int] = {}
    titles: dict[str, int] = {}
    for i, entry in enumerate(scenario.tasks):
        task, at = entry.task, f"tasks[{i + 1}]"
        check(f"{at}.id", validation.name, task.task_id, what="task id")
        check(f"{at}.title", validation.text, task.title)
        check(f"{at}.prompt", validation.prompt, task.prompt)
        check(f"{at}.agent_type", validation.name, task.agent_type, what="agent type")
        for j, path in enumerate(task.deliverables):
            check(f"{at}.deliverables[{j + 1}]", validation.relative_path, path)
        agent = entry.agent or f"task-agent-{task.task_id}"
        check(f"{at}.agent", validation.agent_name, agent)
        for seen, key, what in ((agents, agent, "agent"), (titles, task.title, "title")):
            if key in seen:
                raise ScenarioError(
                    where, 1, f"{at}.{what}", f"{what} {key!r} repeats tasks[{seen[key] + 1}]"
                )
            seen[key] = i
    for i, spec in enumerate(scenario.faults):
        trigger = spec.effective_trigger
        honoured = HONOURED_EVENTS.get(spec.kind, frozenset())
        if trigger.event not in honoured:
            raise ScenarioError(
                where,
                1,
                f"faults[{i + 1}]",
                f"{spec.kind} cannot be keyed on the {trigger.event} event on every tier",
            )
        if trigger.path is not None:
            check(f"faults[{i + 1}].after_file", validation.relative_path, trigger.path)
    check("hosts", _check_hosts, scenario)
    if scenario.max_attempts is not None:
        check(
            "max_attempts",
            validation.integer,
            scenario.max_attempts,
            minimum=1,
            maximum=MAX_ATTEMPTS,
        )
    if scenario.max_live_agents is not None:
        check(
            "max_live_agents",
            validation.integer,
            scenario.max_live_agents,
            minimum=1,
            maximum=validation.MAX_COUNT,
        )
    settings = scenario.policy
    for key in ("backoff_base", "backoff_cap", "breaker_window", "usage_limit_horizon"):
        value = getattr(settings, key)
        if value is not None:
            check(f"policy.{key}", validation.number, value, exclusive_minimum=True)
    if settings.breaker_threshold is not None:
        check(
            "policy.breaker_threshold",
            validation.integer,
            settings.breaker_threshold,
            minimum=1,
            maximum=validation.MAX_COUNT,
        )


def _check_hosts(scenario: Scenario) -> None:
    validation.integer(scenario.hosts, minimum=1, maximum=MAX_HOSTS)
    host_faults = [f.kind for f in scenario.faults if f.entry.scope == "host"]
    if host_faults and scenario.hosts < 2:
        raise RuleError(f"{host_faults[0]} needs several hosts: set hosts = 2 or more")


def _check_testable(
    reader: _Reader, path: Path_, spec: FaultSpec, tasks: Sequence[ScenarioTask]
) -> None:
    """``tests_fail`` breaks a task's implementation against its tests: every task it targets
    needs a ``tests`` command, a test file (``test_*.py``) and another deliverable."""
    for entry in tasks:
        task = entry.task
        if spec.task not in ("*", task.task_id):
            continue
        tests = [p for p in task.deliverables if _is_test_file(p)]
        if not task.tests or not tests or len(tests) == len(task.deliverables):
            raise reader.fail(
                path,
                f"tests_fail needs task {task.task_id!r} to have a tests "
                "command, a test_*.py deliverable and an implementation file",
            )


def _is_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") and name.endswith(".py")


def _operator_actions(reader: _Reader, value: object) -> tuple[str, ...]:
    return reader.strings(value, ("operator_actions",), sorted(OPERATOR_ACTIONS))


def load_scenario(path: str | Path) -> Scenario:
    """Read ``path``; the scenario is named after the file unless it says ``name = ...``."""
    target = Path(path)
    try:
        raw = validation.read_bounded(target, MAX_SCENARIO_BYTES)
        text = raw.decode("utf-8")
    except RuleError as exc:
        raise ScenarioError(str(target), 1, "", str(exc)) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(str(target), line, "", "not UTF-8 text") from None
    return parse_scenario(text, source=str(target), name=target.stem)
