"""The domain vocabulary every other module speaks: plain, immutable data, no I/O.

Reason codes, exit information, tasks, attempts, attribution with evidence, partial work,
decisions and journal events live here so that the classifier, analyzer, policy, coordinator,
runtimes, metrics and reports can exchange them without importing each other.
"""

from __future__ import annotations

import enum
import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Seed: "Simple tasks (< 5 files)", "Complex tasks (> 5 files)". The seed leaves exactly five
# files unassigned; we count five or more deliverables as complex (documented in README).
COMPLEX_TASK_MIN_FILES = 5


class Reason(enum.StrEnum):
    """Why an attempt failed. Fixed codes used by metrics, reports and the CLI."""

    SIGINT = "sigint"
    TIMEOUT = "timeout"
    API_ERROR = "api_error"
    PERMISSION = "permission"
    GITHUB_ERROR = "github_error"
    GIT_ERROR = "git_error"
    TEST_FAILURE = "test_failure"
    KILLED = "killed"
    INCOMPLETE = "incomplete"
    UNKNOWN = "unknown"


class Strategy(enum.StrEnum):
    """The seed's four recovery strategies."""

    RESUME = "resume"
    RESTART = "restart"
    REASSIGN = "reassign"
    ESCALATE = "escalate"


class Complexity(enum.StrEnum):
    SIMPLE = "simple"
    COMPLEX = "complex"


# --------------------------------------------------------------------------- exit information


def _signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def signal_number(name_or_number: str | int) -> int:
    """Parse ``INT``, ``SIGINT``, ``sigint`` or ``2`` into a signal number.

    >>> signal_number("sigint"), signal_number("KILL"), signal_number("15")
    (2, 9, 15)
    """
    if isinstance(name_or_number, int):
        return abs(name_or_number)
    text = name_or_number.strip()
    if text.lstrip("-").isdigit():
        return abs(int(text))
    upper = text.upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    if upper[3:].isdigit():  # "SIG40": how an unnamed (real-time) signal is written
        return int(upper[3:])
    try:
        return int(_signal.Signals[upper])
    except KeyError:
        raise ValueError(f"unknown signal name {name_or_number!r}") from None


# Every signal number the kernel can deliver, real-time ones (SIGRTMIN..SIGRTMAX) included.
_VALID_SIGNALS = frozenset(range(1, int(_signal.SIGRTMAX) + 1))

# coreutils timeout(1): "If the command times out, and --preserve-status is not set, then exit
# with status 124". 125-127 are its own failures / the shell's "not executable" / "not found".
TIMEOUT_EXIT_STATUS = 124


@dataclass(frozen=True)
class ExitInfo:
    """How a process ended, normalised across the ways the news arrives.

    ``status`` is the exit status when the process exited (None when a signal ended it),
    ``signal`` the signal that ended it (or that the shell reported as 128+N), ``timed_out``
    whether a supervisor says it killed the process for running too long, ``source`` where
    the raw figures came from.
    """

    status: int | None
    signal: int | None = None
    timed_out: bool = False
    source: str = "returncode"

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitInfo:
        """``subprocess`` style: ``-N`` means killed by signal N.

        >>> ExitInfo.from_returncode(-2).signal_name
        'SIGINT'
        """
        if returncode < 0:
            return cls(status=None, signal=-returncode, source="returncode")
        return cls.from_shell_status(returncode, source="returncode")

    @classmethod
    def from_shell_status(cls, status: int, *, source: str = "shell") -> ExitInfo:
        """Shell style: 128+N means the child died of signal N; 124 is coreutils timeout.

        >>> ExitInfo.from_shell_status(130).signal, ExitInfo.from_shell_status(124).timed_out
        (2, True)
        """
        if status > 128 and (status - 128) in _VALID_SIGNALS:
            return cls(status=status, signal=status - 128, source=source)
        if status == TIMEOUT_EXIT_STATUS:
            return cls(status=status, timed_out=True, source=source)
        return cls(status=status, source=source)

    @classmethod
    def from_tmux(
        cls, pane_dead_status: int | str | None, pane_dead_signal: int | str | None
    ) -> ExitInfo:
        """tmux ``remain-on-exit`` panes: ``pane_dead_signal`` is set when a signal killed
        the pane's process, otherwise ``pane_dead_status`` holds the exit status."""
        sig = _optional_signal(pane_dead_signal)
        if sig:
            return cls(status=None, signal=sig, source="tmux")
        status = _optional_int(pane_dead_status)
        if status is None:
            return cls(status=None, source="tmux")
        return cls.from_shell_status(status, source="tmux")

    def with_timeout(self) -> ExitInfo:
        return ExitInfo(self.status, self.signal, True, self.source)

    @property
    def signal_name(self) -> str | None:
        return None if self.signal is None else _signal_name(self.signal)

    @property
    def clean(self) -> bool:
        """Exited 0 with no signal: looks successful (which is not proof of success)."""
        return self.status == 0 and self.signal is None and not self.timed_out

    @property
    def display_code(self) -> int | None:
        """The code a person would see in a shell: 128+N for signals."""
        if self.status is not None:
            return self.status
        if self.signal is not None:
            return 128 + self.signal
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "signal": self.signal_name,
            "code": self.display_code,
            "timed_out": self.timed_out,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExitInfo:
        sig = data.get("signal")
        return cls(
            status=data.get("status"),
            signal=None if sig is None else signal_number(sig),
            timed_out=bool(data.get("timed_out", False)),
            source=str(data.get("source", "returncode")),
        )


def _optional_signal(value: int | str | None) -> int | None:
    """tmux reports ``pane_dead_signal`` as a number; accept a name too."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return signal_number(value)


def _optional_int(value: int | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = value.strip()
    if not text:
        return None
    return int(text)


# --------------------------------------------------------------------------- attribution


@dataclass(frozen=True)
class Evidence:
    """One signal that points at a reason: what was seen, and where."""

    kind: str  # "exit", "result", "log", "deliverables", "supervisor", "checkpoint"
    reason: Reason
    weight: float
    detail: str
    source: str | None = None  # file name, "stdin", "pane", ...
    line: int | None = None  # 1-based line number inside source

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "reason": str(self.reason),
            "weight": round(self.weight, 3),
            "detail": self.detail,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.line is not None:
            out["line"] = self.line
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        return cls(
            kind=str(data["kind"]),
            reason=Reason(data["reason"]),
            weight=float(data["weight"]),
            detail=str(data["detail"]),
            source=data.get("source"),
            line=data.get("line"),
        )


@dataclass(frozen=True)
class Attribution:
    """The classifier's verdict: a reason, how sure, and the evidence behind it."""

    reason: Reason
    confidence: float
    evidence: tuple[Evidence, ...] = ()
    retry_after: float | None = None  # seconds, when an API error said so
    api_status: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": str(self.reason),
            "confidence": round(self.confidence, 3),
            "evidence": [e.to_json() for e in self.evidence],
            "retry_after": self.retry_after,
            "api_status": self.api_status,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Attribution:
        return cls(
            reason=Reason(data["reason"]),
            confidence=float(data["confidence"]),
            evidence=tuple(Evidence.from_json(e) for e in data.get("evidence", ())),
            retry_after=data.get("retry_after"),
            api_status=data.get("api_status"),
        )


# --------------------------------------------------------------------------- tasks and work


@dataclass(frozen=True)
class Task:
    """What an agent is asked to do. Deliverables are paths relative to the workspace."""

    task_id: str
    title: str
    deliverables: tuple[str, ...] = ()
    tests: str | None = None  # shell command that must pass
    agent_type: str = "claude-code"
    wants_pr: bool = True
    prompt: str = ""

    @property
    def complexity(self) -> Complexity:
        if len(self.deliverables) >= COMPLEX_TASK_MIN_FILES:
            return Complexity.COMPLEX
        return Complexity.SIMPLE

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "title": self.title,
            "deliverables": list(self.deliverables),
            "tests": self.tests,
            "agent_type": self.agent_type,
            "wants_pr": self.wants_pr,
            "prompt": self.prompt,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        return cls(
            task_id=str(data["task_id"]),
            title=str(data["title"]),
            deliverables=tuple(data.get("deliverables", ())),
            tests=data.get("tests"),
            agent_type=str(data.get("agent_type", "claude-code")),
            wants_pr=bool(data.get("wants_pr", True)),
            prompt=str(data.get("prompt", "")),
        )


class WorkKind(enum.StrEnum):
    """One step of the work a task needs, in the order an agent does it."""

    WRITE = "write"  # create a deliverable file
    TEST = "test"  # run the task's tests
    FIX_TESTS = "fix_tests"  # make failing tests pass
    COMMIT = "commit"
    PUSH = "push"
    OPEN_PR = "open_pr"


@dataclass(frozen=True)
class WorkItem:
    kind: WorkKind
    path: str | None = None  # for WRITE

    def describe(self) -> str:
        if self.kind is WorkKind.WRITE:
            return f"write {self.path}"
        return _WORK_WORDS[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "path": self.path}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkItem:
        return cls(WorkKind(data["kind"]), data.get("path"))


_WORK_WORDS: Mapping[WorkKind, str] = {
    WorkKind.TEST: "run the tests",
    WorkKind.FIX_TESTS: "make the failing tests pass",
    WorkKind.COMMIT: "git commit",
    WorkKind.PUSH: "git push",
    WorkKind.OPEN_PR: "open the PR",
}


def full_plan(task: Task) -> tuple[WorkItem, ...]:
    """All the work a task needs from scratch."""
    items = [WorkItem(WorkKind.WRITE, p) for p in task.deliverables]
    if task.tests:
        items.append(WorkItem(WorkKind.TEST))
    items += [WorkItem(WorkKind.COMMIT), WorkItem(WorkKind.PUSH)]
    if task.wants_pr:
        items.append(WorkItem(WorkKind.OPEN_PR))
    return tuple(items)


@dataclass(frozen=True)
class PullRequest:
    number: int
    branch: str
    url: str
    title: str = ""
    state: str = "OPEN"


@dataclass(frozen=True)
class Checkpoint:
    """Schema v1 of an agent's progress file (see ``checkpoint.py`` for I/O and validation)."""

    agent: str
    task_id: str
    attempt: int = 1
    completed_subtasks: tuple[str, ...] = ()
    created_files: tuple[str, ...] = ()
    next_actions: tuple[str, ...] = ()
    updated_at: str = ""  # ISO 8601, UTC
    session_id: str | None = None

    @property
    def usable(self) -> bool:
        """Holds something a resumed agent can build on."""
        return bool(self.completed_subtasks or self.created_files or self.session_id)


@dataclass(frozen=True)
class PartialWork:
    """The workspace as it is after an attempt: what exists, what is recorded where."""

    deliverables_present: tuple[str, ...] = ()
    deliverables_missing: tuple[str, ...] = ()
    uncommitted: tuple[str, ...] = ()  # paths with uncommitted changes
    commits_ahead: int = 0  # commits on the branch ahead of the base
    pushed: bool = False  # the branch tip is on origin
    pr: PullRequest | None = None
    checkpoint: Checkpoint | None = None
    checkpoint_problem: str | None = None  # why a checkpoint file could not be used
    tests_passed: bool | None = None  # None: no tests, or not run
    test_output: str | None = None  # the end of a failing test run, for a fix-focused agent

    @property
    def code_complete(self) -> bool:
        return not self.deliverables_missing

    @property
    def any_progress(self) -> bool:
        return bool(
            self.deliverables_present or self.uncommitted or self.commits_ahead or self.pushed
        )

    @property
    def usable_checkpoint(self) -> bool:
        return self.checkpoint is not None and self.checkpoint.usable

    def to_json(self) -> dict[str, Any]:
        return {
            "deliverables_present": list(self.deliverables_present),
            "deliverables_missing": list(self.deliverables_missing),
            "uncommitted": list(self.uncommitted),
            "commits_ahead": self.commits_ahead,
            "pushed": self.pushed,
            "pr": None if self.pr is None else self.pr.number,
            "checkpoint": self.checkpoint is not None,
            "checkpoint_problem": self.checkpoint_problem,
            "tests_passed": self.tests_passed,
        }


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """What the policy chose, and why, in words a person can act on."""

    strategy: Strategy
    why: str
    rule: str  # name of the policy rule that fired
    delay: float = 0.0  # seconds to wait before acting (backoff)
    agent_type: str | None = None  # for REASSIGN (and to keep the type on the others)
    work: tuple[WorkItem, ...] = ()  # what the next attempt must do
    resume_session: str | None = None
    systematic_cause: str | None = None  # set when the circuit breaker escalates
    lesson: str = ""  # the prevention the seed's pattern names, for the dashboard
    remedies: tuple[str, ...] = ()  # runtime actions to take before the next attempt

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": str(self.strategy),
            "why": self.why,
            "rule": self.rule,
            "delay": round(self.delay, 3),
            "agent_type": self.agent_type,
            "work": [w.to_json() for w in self.work],
            "resume_session": self.resume_session,
            "systematic_cause": self.systematic_cause,
            "lesson": self.lesson,
            "remedies": list(self.remedies),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            strategy=Strategy(data["strategy"]),
            why=str(data["why"]),
            rule=str(data["rule"]),
            delay=float(data.get("delay", 0.0)),
            agent_type=data.get("agent_type"),
            work=tuple(WorkItem.from_json(w) for w in data.get("work", ())),
            resume_session=data.get("resume_session"),
            systematic_cause=data.get("systematic_cause"),
            lesson=str(data.get("lesson", "")),
            remedies=tuple(data.get("remedies", ())),
        )


# --------------------------------------------------------------------------- journal events


class EventKind(enum.StrEnum):
    TASK_SUBMITTED = "task_submitted"  # data: task
    ATTEMPT_LAUNCHED = "attempt_launched"  # data: agent_type, strategy, work, key
    ATTEMPT_EXITED = "attempt_exited"  # data: exit, duration, output_tail
    FAILURE_ATTRIBUTED = "failure_attributed"  # data: attribution, partial
    DECISION = "decision"  # data: decision
    TASK_SUCCEEDED = "task_succeeded"  # data: first_try, recovery_time
    TASK_ESCALATED = "task_escalated"  # data: why, systematic_cause
    TASK_FAILED = "task_failed"  # data: why
    OPERATOR_ACTION = "operator_action"  # data: action, tasks
    WORKSPACE_CLEANED = "workspace_cleaned"  # data: path, rescue_ref
    WORKSPACE_ORPHANED = "workspace_orphaned"  # data: path


@dataclass(frozen=True)
class Event:
    """One line of the journal. ``seq`` is assigned by the journal on append."""

    kind: EventKind
    time: float
    task_id: str | None = None
    agent: str | None = None
    attempt: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None  # idempotency key of a recovery action
    seq: int = 0

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
        if self.data:
            out["data"] = dict(self.data)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            kind=EventKind(data["kind"]),
            time=float(data["time"]),
            task_id=data.get("task_id"),
            agent=data.get("agent"),
            attempt=data.get("attempt"),
            data=data.get("data", {}),
            key=data.get("key"),
            seq=int(data.get("seq", 0)),
        )
