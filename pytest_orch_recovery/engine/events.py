"""The journal's events as types: one frozen dataclass per event kind, and the one place an
event becomes JSON and JSON becomes an event (schema in ``docs/journal.md``).

An :class:`Event` is the envelope every journal line has (``seq``, ``time``, ``task_id``,
``agent``, ``attempt``, ``key``) around a typed payload, whose class says the kind. Writers build
payloads, readers get them; nothing else turns an event into a dict or back. Adding a kind means
adding a member to :class:`EventKind` and one payload class here (and a row in the docs table,
which ``tests/test_events.py`` holds against these classes).

Reading is lenient where journals written before a field existed lack it (the default stands
in), and strict about values of the wrong type: a bad field is a :class:`EventFormatError`
naming the kind and the field, which the journal turns into a ``file:line:`` error.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.model import (
    Attribution,
    Complexity,
    Decision,
    ExitInfo,
    PartialWork,
    Reason,
    Strategy,
    Task,
    WorkItem,
)

__all__ = [
    "MAX_EVENT_TIME",
    "AdoptedRun",
    "AppliedRemedy",
    "AttemptExited",
    "AttemptLaunched",
    "DecisionMade",
    "Event",
    "EventFormatError",
    "EventKind",
    "FailureAttributed",
    "LaunchNotes",
    "LaunchOrder",
    "OperatorAction",
    "OrchestratorResult",
    "PartialSummary",
    "Payload",
    "TaskEscalated",
    "TaskSubmitted",
    "TaskSucceeded",
    "TmuxTarget",
    "UsageLimited",
    "WorkspaceCleaned",
    "WorkspaceOrphaned",
    "payload_class",
    "payload_classes",
]

MAX_EVENT_TIME = 1e11  # seconds since the epoch (year 5138) or of a virtual clock
MAX_PR_NUMBER = 10**12


class EventFormatError(OrchRecoveryError, ValueError):
    """A journal event whose payload does not have the shape its kind needs."""


class EventKind(enum.StrEnum):
    """The kinds of journal event; each has one payload class below (see :func:`payload_class`)."""

    TASK_SUBMITTED = "task_submitted"
    ATTEMPT_LAUNCHED = "attempt_launched"
    ATTEMPT_EXITED = "attempt_exited"
    FAILURE_ATTRIBUTED = "failure_attributed"
    DECISION = "decision"
    TASK_SUCCEEDED = "task_succeeded"
    TASK_ESCALATED = "task_escalated"
    OPERATOR_ACTION = "operator_action"
    WORKSPACE_CLEANED = "workspace_cleaned"
    WORKSPACE_ORPHANED = "workspace_orphaned"
    USAGE_LIMITED = "usage_limited"


# --------------------------------------------------------------------------- field readers


def _fail(name: str, message: str) -> EventFormatError:
    return EventFormatError(f"field {name!r}: {message}")


def json_type_word(value: object) -> str:
    """How a refusal names a JSON value's type: 'a list', 'an object', 'null', ..."""
    return {
        list: "a list",
        dict: "an object",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _opt_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or isinstance(value, str):
        return value
    raise _fail(name, f"must be a string or null, not {json_type_word(value)}")


def _str(data: Mapping[str, Any], name: str, default: str = "") -> str:
    value = _opt_str(data, name)
    return default if value is None else value


def _opt_number(
    data: Mapping[str, Any], name: str, *, maximum: float = MAX_EVENT_TIME
) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(name, f"must be a number, not {json_type_word(value)}")
    if not 0.0 <= value <= maximum:  # NaN fails both comparisons
        shown = value if math.isfinite(value) else str(value)
        raise _fail(name, f"must be a finite number within [0, {maximum:g}], got {shown}")
    return float(value)


def _opt_int(data: Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, f"must be an integer, not {json_type_word(value)}")
    if not minimum <= value <= maximum:
        raise _fail(name, f"must be within [{minimum}, {maximum}], got {value}")
    return value


def _opt_bool(data: Mapping[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise _fail(name, f"must be true, false or null, not {json_type_word(value)}")


def _strings(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _fail(name, f"must be a list, not {json_type_word(value)}")
    return tuple(str(v) for v in value)


def _signals(data: Mapping[str, Any], name: str) -> tuple[str | int, ...]:
    """Signal names or numbers, kept as written (a runtime reports either)."""
    value = data.get(name)
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        raise _fail(name, "must be a list of signal names or numbers")
    return tuple(value)


def _object(data: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = data.get(name)
    if value is None or isinstance(value, Mapping):
        return value
    raise _fail(name, f"must be an object or null, not {json_type_word(value)}")


def _work(data: Mapping[str, Any], name: str) -> tuple[WorkItem, ...]:
    value = data.get(name)
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise _fail(name, f"must be a list, not {json_type_word(value)}")
    return tuple(WorkItem.from_json(w) for w in value)


def _opt_strategy(data: Mapping[str, Any], name: str) -> Strategy | None:
    value = data.get(name)
    return None if value is None else Strategy(value)


def _opt_reason(data: Mapping[str, Any], name: str) -> Reason | None:
    value = data.get(name)
    return None if value is None else Reason(value)


# --------------------------------------------------------------------------- parts of payloads


@dataclass(frozen=True)
class TmuxTarget:
    """Where an attempt runs (a tmux socket and session), so ``status --live`` can look."""

    socket: str
    session: str

    def to_json(self) -> dict[str, Any]:
        return {"socket": self.socket, "session": self.session}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TmuxTarget | None:
        """None unless both names are non-empty strings: a target nobody can attach to is
        no target."""
        if data is None:
            return None
        socket, session = data.get("socket"), data.get("session")
        if isinstance(socket, str) and isinstance(session, str) and socket and session:
            return cls(socket, session)
        return None


@dataclass(frozen=True)
class LaunchNotes:
    """What a runtime adds to an attempt's launch so readers of the journal can find it."""

    tmux: TmuxTarget | None = None
    launch_record: str | None = None  # the launch wrapper's record file


@dataclass(frozen=True)
class AppliedRemedy:
    """A policy remedy carried out before a launch, and what the runtime said it did."""

    remedy: str
    result: str

    def to_json(self) -> dict[str, Any]:
        return {"remedy": self.remedy, "result": self.result}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppliedRemedy:
        return cls(_str(data, "remedy"), _str(data, "result"))


@dataclass(frozen=True)
class AdoptedRun:
    """An attempt ``ingest`` adopted from an outside orchestrator's files."""

    suffix: str
    results: str | None = None
    log: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"suffix": self.suffix, "results": self.results, "log": self.log}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AdoptedRun:
        return cls(_str(data, "suffix"), _opt_str(data, "results"), _opt_str(data, "log"))


@dataclass(frozen=True)
class OrchestratorResult:
    """The outside orchestrator's own word on a run (its results file)."""

    status: str
    exit_code: int | None
    cli: str | None
    cli_chain: tuple[str, ...] = ()
    rate_limited: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "cli": self.cli,
            "cli_chain": list(self.cli_chain),
            "rate_limited": self.rate_limited,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OrchestratorResult:
        return cls(
            status=_str(data, "status"),
            exit_code=_opt_int(data, "exit_code", minimum=-(2**31), maximum=2**31),
            cli=_opt_str(data, "cli"),
            cli_chain=_strings(data, "cli_chain"),
            rate_limited=bool(_opt_bool(data, "rate_limited")),
        )


@dataclass(frozen=True)
class PartialSummary:
    """What the journal keeps of a :class:`PartialWork`: the files and git state, whether a
    checkpoint was usable (its contents live in the checkpoint file)."""

    deliverables_present: tuple[str, ...] = ()
    deliverables_missing: tuple[str, ...] = ()
    uncommitted: tuple[str, ...] = ()
    commits_ahead: int = 0
    pushed: bool = False
    pr: int | None = None
    checkpoint: bool = False
    checkpoint_problem: str | None = None
    tests_passed: bool | None = None

    @classmethod
    def of(cls, partial: PartialWork) -> PartialSummary:
        return cls(
            deliverables_present=partial.deliverables_present,
            deliverables_missing=partial.deliverables_missing,
            uncommitted=partial.uncommitted,
            commits_ahead=partial.commits_ahead,
            pushed=partial.pushed,
            pr=None if partial.pr is None else partial.pr.number,
            checkpoint=partial.checkpoint is not None,
            checkpoint_problem=partial.checkpoint_problem,
            tests_passed=partial.tests_passed,
        )

    def describe(self) -> tuple[str, ...]:
        """In words, in the order the work is done.

        >>> PartialSummary(("fake3.md",), uncommitted=("fake3.md",)).describe()
        ('created fake3.md', 'uncommitted changes in fake3.md')
        """
        words = [f"created {p}" for p in self.deliverables_present]
        if self.uncommitted:
            words.append("uncommitted changes in " + ", ".join(self.uncommitted))
        ahead = self.commits_ahead
        if ahead:
            # "pushed" belongs to the commits: a branch on the remote with no commit of its
            # own is no progress, and "branch pushed" beside a missing "git push" reads as a lie.
            pushed = ", pushed" if self.pushed else ""
            words.append(f"{ahead} commit{'s' if ahead != 1 else ''} on the branch{pushed}")
        if self.pr is not None:
            words.append(f"PR #{self.pr} open")
        if self.tests_passed is True:
            words.append("tests passing")
        elif self.tests_passed is False:
            words.append("tests failing")
        if self.checkpoint:
            words.append("checkpoint saved")
        if self.checkpoint_problem:
            words.append(f"checkpoint unusable ({self.checkpoint_problem})")
        return tuple(words)

    def to_json(self) -> dict[str, Any]:
        return {
            "deliverables_present": list(self.deliverables_present),
            "deliverables_missing": list(self.deliverables_missing),
            "uncommitted": list(self.uncommitted),
            "commits_ahead": self.commits_ahead,
            "pushed": self.pushed,
            "pr": self.pr,
            "checkpoint": self.checkpoint,
            "checkpoint_problem": self.checkpoint_problem,
            "tests_passed": self.tests_passed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartialSummary:
        return cls(
            deliverables_present=_strings(data, "deliverables_present"),
            deliverables_missing=_strings(data, "deliverables_missing"),
            uncommitted=_strings(data, "uncommitted"),
            commits_ahead=_opt_int(data, "commits_ahead", maximum=2**31) or 0,
            pushed=bool(_opt_bool(data, "pushed")),
            pr=_opt_int(data, "pr", minimum=1, maximum=MAX_PR_NUMBER),
            checkpoint=bool(_opt_bool(data, "checkpoint")),
            checkpoint_problem=_opt_str(data, "checkpoint_problem"),
            tests_passed=_opt_bool(data, "tests_passed"),
        )


@dataclass(frozen=True)
class LaunchOrder:
    """The attempt a decision orders: what the coordinator will launch, and not before when."""

    attempt: int
    agent_type: str
    prompt: str
    work: tuple[WorkItem, ...]
    resume_session: str | None = None
    not_before: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "agent_type": self.agent_type,
            "prompt": self.prompt,
            "work": [w.to_json() for w in self.work],
            "resume_session": self.resume_session,
            "not_before": self.not_before,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LaunchOrder:
        return cls(
            attempt=_opt_int(data, "attempt", minimum=1, maximum=1_000_000) or 1,
            agent_type=_str(data, "agent_type"),
            prompt=_str(data, "prompt"),
            work=_work(data, "work"),
            resume_session=_opt_str(data, "resume_session"),
            not_before=_opt_number(data, "not_before"),
        )


# --------------------------------------------------------------------------- payloads


class Payload:
    """Base of the payload classes: each names its kind and has one JSON form."""

    KIND: ClassVar[EventKind]

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Payload:
        raise NotImplementedError


@dataclass(frozen=True)
class TaskSubmitted(Payload):
    """A task was accepted. ``task`` is None only in hand-written journals that omit it."""

    KIND: ClassVar[EventKind] = EventKind.TASK_SUBMITTED
    task: Task | None = None
    complexity: Complexity = Complexity.SIMPLE
    adopted_from: str | None = None  # ingest: which outside orchestrator ran it
    budget: int | None = None  # attempts allowed, shown by ``status``

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.task is not None:
            out["task"] = self.task.to_json()
        out["complexity"] = str(self.complexity)
        if self.adopted_from is not None:
            out["adopted_from"] = self.adopted_from
        if self.budget is not None:
            out["budget"] = self.budget
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSubmitted:
        raw = _object(data, "task")
        task = None if raw is None else Task.from_json(raw)
        complexity = data.get("complexity")
        if complexity is None:
            complexity = Complexity.SIMPLE if task is None else task.complexity
        # A budget is advisory (shown by ``status``): one that is not a positive whole
        # number is no budget, not a broken journal.
        budget = data.get("budget")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
            budget = None
        return cls(
            task=task,
            complexity=Complexity(complexity),
            adopted_from=_opt_str(data, "adopted_from"),
            budget=budget,
        )

    @classmethod
    def of(cls, task: Task, **extra: Any) -> TaskSubmitted:
        return cls(task, task.complexity, **extra)


@dataclass(frozen=True)
class AttemptLaunched(Payload):
    """An attempt started (``key`` is set on the envelope). ``strategy`` is None for a first
    attempt; ``remedies`` were carried out just before."""

    KIND: ClassVar[EventKind] = EventKind.ATTEMPT_LAUNCHED
    agent_type: str = ""
    strategy: Strategy | None = None
    work: tuple[WorkItem, ...] = ()
    resume_session: str | None = None
    prompt: str = ""
    timeout: float | None = None
    remedies: tuple[AppliedRemedy, ...] = ()
    tmux: TmuxTarget | None = None
    launch_record: str | None = None
    adopted: AdoptedRun | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "agent_type": self.agent_type,
            "strategy": None if self.strategy is None else str(self.strategy),
            "work": [w.to_json() for w in self.work],
            "resume_session": self.resume_session,
            "prompt": self.prompt,
            "timeout": self.timeout,
            "remedies": [r.to_json() for r in self.remedies],
        }
        if self.tmux is not None:
            out["tmux"] = self.tmux.to_json()
        if self.launch_record is not None:
            out["launch_record"] = self.launch_record
        if self.adopted is not None:
            out["adopted"] = self.adopted.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptLaunched:
        adopted = _object(data, "adopted")
        remedies = data.get("remedies") or ()
        return cls(
            agent_type=_str(data, "agent_type"),
            strategy=_opt_strategy(data, "strategy"),
            work=_work(data, "work"),
            resume_session=_opt_str(data, "resume_session"),
            prompt=_str(data, "prompt"),
            timeout=_opt_number(data, "timeout"),
            remedies=tuple(AppliedRemedy.from_json(r) for r in remedies),
            tmux=TmuxTarget.from_json(_object(data, "tmux")),
            launch_record=_opt_str(data, "launch_record"),
            adopted=None if adopted is None else AdoptedRun.from_json(adopted),
        )


@dataclass(frozen=True)
class AttemptExited(Payload):
    """An attempt ended. ``output_tail`` is the last 2 KiB it printed, ``result`` the result
    JSON it printed (opaque: the agent CLI's format), ``signals_delivered`` the signal names
    its launch wrapper saw. ``superseded`` is set on adopted runs only (``ingest``): true when
    the run never ended by itself and a later run started, with ``orchestrator_result`` the
    outside orchestrator's results file (None when it wrote none)."""

    KIND: ClassVar[EventKind] = EventKind.ATTEMPT_EXITED
    exit: ExitInfo | None = None
    started_at: float | None = None
    ended_at: float | None = None
    output_tail: str = ""
    result: Mapping[str, Any] | None = None
    session_id: str | None = None
    signals_delivered: tuple[str | int, ...] = ()  # as the runtime reported them
    orchestrator_result: OrchestratorResult | None = None
    superseded: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exit": None if self.exit is None else self.exit.to_json(),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "output_tail": self.output_tail,
            "result": None if self.result is None else dict(self.result),
            "session_id": self.session_id,
            "signals_delivered": list(self.signals_delivered),
        }
        if self.superseded is not None:
            orchestrator = self.orchestrator_result
            out["orchestrator_result"] = None if orchestrator is None else orchestrator.to_json()
            out["superseded"] = self.superseded
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptExited:
        exit_data = _object(data, "exit")
        orchestrator = _object(data, "orchestrator_result")
        return cls(
            exit=None if exit_data is None else ExitInfo.from_json(exit_data),
            started_at=_opt_number(data, "started_at"),
            ended_at=_opt_number(data, "ended_at"),
            output_tail=_str(data, "output_tail"),
            result=_object(data, "result"),
            session_id=_opt_str(data, "session_id"),
            signals_delivered=_signals(data, "signals_delivered"),
            orchestrator_result=(
                None if orchestrator is None else OrchestratorResult.from_json(orchestrator)
            ),
            superseded=_opt_bool(data, "superseded"),
        )


_UNKNOWN = Attribution(Reason.UNKNOWN, 0.0)


@dataclass(frozen=True)
class FailureAttributed(Payload):
    """The classifier's verdict on a failed attempt, what the workspace held (``partial``;
    None when nothing was probed) and the work still missing."""

    KIND: ClassVar[EventKind] = EventKind.FAILURE_ATTRIBUTED
    attribution: Attribution = _UNKNOWN
    partial: PartialSummary | None = None
    missing_work: tuple[WorkItem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "attribution": self.attribution.to_json(),
            "partial": None if self.partial is None else self.partial.to_json(),
            "missing_work": [w.to_json() for w in self.missing_work],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FailureAttributed:
        attribution = _object(data, "attribution")
        partial = _object(data, "partial")
        return cls(
            attribution=_UNKNOWN if attribution is None else Attribution.from_json(attribution),
            partial=None if partial is None else PartialSummary.from_json(partial),
            missing_work=_work(data, "missing_work"),
        )

    @property
    def strongest_evidence(self) -> str:
        """The detail of the heaviest evidence, or ``""``."""
        strongest = max(self.attribution.evidence, key=lambda e: e.weight, default=None)
        return "" if strongest is None else strongest.detail


@dataclass(frozen=True)
class DecisionMade(Payload):
    """What the policy chose after a failure (``key`` on the envelope is the idempotency key
    of the action it orders) and the launch it orders (None for an escalation)."""

    KIND: ClassVar[EventKind] = EventKind.DECISION
    decision: Decision | None = None
    launch: LaunchOrder | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.decision is not None:
            out["decision"] = self.decision.to_json()
        out["launch"] = None if self.launch is None else self.launch.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DecisionMade:
        decision = _object(data, "decision")
        launch = _object(data, "launch")
        return cls(
            decision=Decision.from_json(decision) if decision and "strategy" in decision else None,
            launch=None if launch is None else LaunchOrder.from_json(launch),
        )


@dataclass(frozen=True)
class TaskSucceeded(Payload):
    """The task's work is all done. ``recovery_time``: seconds from the first failed
    attempt's exit to success, None on a first try."""

    KIND: ClassVar[EventKind] = EventKind.TASK_SUCCEEDED
    first_try: bool | None = None
    attempts: int | None = None
    recovery_time: float | None = None
    pr: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "first_try": self.first_try,
            "attempts": self.attempts,
            "recovery_time": self.recovery_time,
            "pr": self.pr,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskSucceeded:
        return cls(
            first_try=_opt_bool(data, "first_try"),
            attempts=_opt_int(data, "attempts", maximum=1_000_000),
            recovery_time=_opt_number(data, "recovery_time"),
            pr=_opt_int(data, "pr", minimum=1, maximum=MAX_PR_NUMBER),
        )


@dataclass(frozen=True)
class TaskEscalated(Payload):
    """The task waits for a person. ``reason`` is the last attributed reason."""

    KIND: ClassVar[EventKind] = EventKind.TASK_ESCALATED
    why: str = ""
    systematic_cause: str | None = None
    reason: Reason | None = None
    # The systematic incident it joined (engine/incidents.py); None: escalated on its own.
    incident: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "why": self.why,
            "systematic_cause": self.systematic_cause,
            "reason": None if self.reason is None else str(self.reason),
        }
        if self.incident is not None:
            out["incident"] = self.incident
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskEscalated:
        return cls(
            why=_str(data, "why"),
            systematic_cause=_opt_str(data, "systematic_cause"),
            reason=_opt_reason(data, "reason"),
            incident=_opt_str(data, "incident"),
        )


@dataclass(frozen=True)
class OperatorAction(Payload):
    """An operator fixed something: ``tasks`` released, breaker ``reasons`` closed, the
    systematic ``incident`` released (engine/incidents.py). ``stopped``: the keys of the
    attempts a supervisor is stopping itself (``supervise --stop-agents``)."""

    KIND: ClassVar[EventKind] = EventKind.OPERATOR_ACTION
    action: str = "operator action"
    tasks: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()
    incident: str | None = None
    stopped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "tasks": list(self.tasks),
            "reasons": [str(r) for r in self.reasons],
        }
        if self.incident is not None:
            out["incident"] = self.incident
        if self.stopped:
            out["stopped"] = list(self.stopped)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OperatorAction:
        tasks = data.get("tasks")
        if tasks is not None and not isinstance(tasks, list):
            raise _fail("tasks", "must be a list of task ids")
        return cls(
            action=_str(data, "action", "operator action"),
            tasks=_strings(data, "tasks"),
            reasons=tuple(Reason(r) for r in _strings(data, "reasons")),
            incident=_opt_str(data, "incident"),
            stopped=_strings(data, "stopped"),
        )


@dataclass(frozen=True)
class WorkspaceCleaned(Payload):
    """An agent's workspace was removed; unpushed work was saved to ``rescue_ref`` first."""

    KIND: ClassVar[EventKind] = EventKind.WORKSPACE_CLEANED
    path: str = ""
    rescue_ref: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "rescue_ref": self.rescue_ref}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkspaceCleaned:
        return cls(path=_str(data, "path"), rescue_ref=_opt_str(data, "rescue_ref"))


@dataclass(frozen=True)
class WorkspaceOrphaned(Payload):
    """A workspace no live or waiting task owns (counted by the gate)."""

    KIND: ClassVar[EventKind] = EventKind.WORKSPACE_ORPHANED
    path: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkspaceOrphaned:
        return cls(path=_str(data, "path"))


@dataclass(frozen=True)
class UsageLimited(Payload):
    """An account's usage limit: launches of ``agent_type`` wait until ``until`` (its reset
    plus jitter). One event per condition, however many ``tasks`` it holds; ``said`` is the
    CLI's own words about the reset."""

    KIND: ClassVar[EventKind] = EventKind.USAGE_LIMITED
    agent_type: str = ""
    resets_at: float | None = None
    until: float | None = None
    tasks: tuple[str, ...] = ()
    said: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_type": self.agent_type,
            "resets_at": self.resets_at,
            "until": self.until,
            "tasks": list(self.tasks),
            "said": self.said,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UsageLimited:
        return cls(
            agent_type=_str(data, "agent_type"),
            resets_at=_opt_number(data, "resets_at"),
            until=_opt_number(data, "until"),
            tasks=_strings(data, "tasks"),
            said=_str(data, "said"),
        )


_PAYLOADS: dict[EventKind, type[Payload]] = {
    cls.KIND: cls
    for cls in (
        TaskSubmitted,
        AttemptLaunched,
        AttemptExited,
        FailureAttributed,
        DecisionMade,
        TaskSucceeded,
        TaskEscalated,
        OperatorAction,
        WorkspaceCleaned,
        WorkspaceOrphaned,
        UsageLimited,
    )
}
# Schema 1 had a ``task_failed`` kind (``why``, ``reason``) that the engine never wrote: every
# give-up is an escalation a person can release. A line of it, written by hand or by another
# tool, reads as the escalation it amounts to (and is written back as one).
_LEGACY_KINDS: Mapping[str, EventKind] = {"task_failed": EventKind.TASK_ESCALATED}
_KINDS: Mapping[str, EventKind] = {**{str(k): k for k in EventKind}, **_LEGACY_KINDS}


_BULKY: Mapping[EventKind, frozenset[str]] = {
    EventKind.ATTEMPT_EXITED: frozenset({"output_tail", "result"}),
    EventKind.ATTEMPT_LAUNCHED: frozenset({"prompt"}),
}


def payload_class(kind: EventKind) -> type[Payload]:
    """The payload class of ``kind``."""
    return _PAYLOADS[kind]


def payload_classes() -> Sequence[type[Payload]]:
    """Every payload class, in :class:`EventKind` order."""
    return [_PAYLOADS[k] for k in EventKind]


# --------------------------------------------------------------------------- the envelope


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the journal: the envelope and a typed payload. ``seq`` is assigned by the
    journal on append."""

    payload: Payload
    time: float
    task_id: str | None = None
    agent: str | None = None
    attempt: int | None = None
    key: str | None = None  # idempotency key of a recovery action
    seq: int = 0

    @property
    def kind(self) -> EventKind:
        return self.payload.KIND

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "kind": str(self.kind), "time": self.time}
        if self.task_id is not None:
            out["task_id"] = self.task_id
        if self.agent is not None:
            out["agent"] = self.agent
        if self.attempt is not None:
            out["attempt"] = self.attempt
        if self.key is not None:
            out["key"] = self.key
        data = self.payload.to_json()
        if data:
            out["data"] = data
        return out

    def to_compact_json(self) -> dict[str, Any]:
        """:meth:`to_json` without what no report reads (output tails, prompts, result JSON):
        how a chaos run's events travel between processes and into a campaign's journal.
        Reading it back gives those fields their defaults."""
        out = self.to_json()
        data = out.get("data")
        if data is not None and self.kind in _BULKY:
            out["data"] = {k: v for k, v in data.items() if k not in _BULKY[self.kind]}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        """Parse one journal object. Raises ``KeyError`` for a missing ``kind``/``time``/
        ``seq`` or an unknown kind (``KeyError('kind name')``), :class:`EventFormatError` (a
        ``ValueError``) for a payload field of the wrong shape."""
        kind = _KINDS[data["kind"]]
        raw = data.get("data")
        if raw is None:
            raw = {}
        elif not isinstance(raw, Mapping):
            raise EventFormatError(f"field 'data': must be an object, not {json_type_word(raw)}")
        try:
            payload = _PAYLOADS[kind].from_json(raw)
        except EventFormatError as exc:
            raise EventFormatError(f"{kind} event: {exc}") from None
        except KeyError as exc:
            raise EventFormatError(f"{kind} event: missing field {exc.args[0]!r}") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise EventFormatError(f"{kind} event: {exc}") from None
        return cls(
            payload,
            float(data["time"]),
            data.get("task_id"),
            data.get("agent"),
            data.get("attempt"),
            data.get("key"),
            data["seq"],
        )
