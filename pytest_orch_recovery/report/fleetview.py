"""Fleet views over journal events: what each task is doing, which attempts failed and why,
and what partial work each left. Pure folds, no I/O: the ``status``, ``failures`` and
``partial`` commands render them, and a live check (tmux, checkpoint files) is the caller's.

What the journal records and what it does not (docs/journal.md is the schema):

- The attempt budget is the policy's, not an event field. A ``task_submitted`` whose data
  carries ``budget`` (an int) wins; otherwise the caller's ``budget`` is shown, or none.
- Partial work is what the last ``failure_attributed`` recorded (``partial`` and
  ``missing_work``). A checkpoint is journaled only as present / unusable: its next actions
  live in the checkpoint file, which the caller reads.
- Where an attempt runs: an ``attempt_launched`` may carry ``tmux`` = ``{"socket": S,
  "session": N}``; when it does not, the view leaves the target unknown.
- Counts agree with :mod:`.metrics` where they overlap: one failed attempt per
  ``failure_attributed``, one attempt per ``attempt_launched``, and an ``operator_action``
  naming an escalated task releases it (it waits for its next attempt).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_orch_recovery.engine.coordinator import TERMINAL, Phase
from pytest_orch_recovery.engine.model import (
    Attribution,
    Event,
    EventKind,
    Evidence,
    ExitInfo,
    Reason,
    Strategy,
    WorkItem,
)

# Bumped when a field of the views' JSON changes meaning or goes away.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TmuxTarget:
    """Where an attempt runs, as its launch recorded it."""

    socket: str
    session: str


@dataclass(frozen=True)
class TaskStatus:
    """One row of ``status``: where a task stands at the end of the journal."""

    task_id: str
    agent: str
    title: str
    phase: Phase
    attempt: int  # attempts launched so far
    budget: int | None  # attempts allowed, when known
    submitted_at: float
    updated_at: float  # time of the task's last event
    elapsed: float  # seconds from submission to its outcome, or to ``now`` while open
    reason: Reason | None  # of the last attributed failure
    confidence: float | None
    evidence: Evidence | None  # the strongest evidence behind ``reason``
    next_launch_at: float | None  # when the next attempt may start (after a backoff)
    next_strategy: Strategy | None
    released_by: str | None  # the operator action that released it, while it waits
    tmux: TmuxTarget | None  # of the current attempt, when recorded

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "agent": self.agent,
            "title": self.title,
            "phase": str(self.phase),
            "attempt": self.attempt,
            "budget": self.budget,
            "submitted_at": self.submitted_at,
            "updated_at": self.updated_at,
            "elapsed": round(self.elapsed, 3),
            "reason": None if self.reason is None else str(self.reason),
            "confidence": self.confidence,
            "evidence": None if self.evidence is None else self.evidence.to_json(),
            "next_launch_at": self.next_launch_at,
            "next_strategy": None if self.next_strategy is None else str(self.next_strategy),
            "released_by": self.released_by,
            "tmux": None
            if self.tmux is None
            else {"socket": self.tmux.socket, "session": self.tmux.session},
        }


@dataclass(frozen=True)
class FailedAttempt:
    """One attributed failure and what was decided about it."""

    task_id: str
    agent: str
    attempt: int | None
    time: float
    reason: Reason
    confidence: float
    evidence: tuple[Evidence, ...]  # strongest first
    exit: ExitInfo | None
    strategy: Strategy | None  # the decision that followed, None while undecided
    why: str  # the decision's words, empty while undecided

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "agent": self.agent,
            "attempt": self.attempt,
            "time": self.time,
            "reason": str(self.reason),
            "confidence": self.confidence,
            "evidence": [e.to_json() for e in self.evidence],
            "exit": None if self.exit is None else self.exit.to_json(),
            "strategy": None if self.strategy is None else str(self.strategy),
            "why": self.why,
        }


@dataclass(frozen=True)
class PartialReport:
    """What a task's last failed attempt left behind, as the journal recorded it."""

    task_id: str
    agent: str
    attempt: int | None
    time: float | None  # of the probe; None when no failure was attributed yet
    phase: Phase
    deliverables_present: tuple[str, ...] = ()
    deliverables_missing: tuple[str, ...] = ()
    uncommitted: tuple[str, ...] = ()
    commits_ahead: int = 0
    pushed: bool = False
    pr: int | None = None
    checkpoint: bool = False
    checkpoint_problem: str | None = None
    tests_passed: bool | None = None
    missing_work: tuple[str, ...] = ()  # in words, in the order the work is done

    @property
    def probed(self) -> bool:
        return self.time is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "agent": self.agent,
            "attempt": self.attempt,
            "time": self.time,
            "phase": str(self.phase),
            "probed": self.probed,
            "deliverables_present": list(self.deliverables_present),
            "deliverables_missing": list(self.deliverables_missing),
            "uncommitted": list(self.uncommitted),
            "commits_ahead": self.commits_ahead,
            "pushed": self.pushed,
            "pr": self.pr,
            "checkpoint": self.checkpoint,
            "checkpoint_problem": self.checkpoint_problem,
            "tests_passed": self.tests_passed,
            "missing_work": list(self.missing_work),
        }


# --------------------------------------------------------------------------- the fold


@dataclass
class _Task:
    task_id: str
    agent: str
    title: str
    submitted_at: float
    updated_at: float
    budget: int | None = None
    phase: Phase = Phase.WAITING
    attempt: int = 0
    pending_exit: ExitInfo | None = None
    last: Attribution | None = None
    failures: list[FailedAttempt] = field(default_factory=list)
    undecided: int | None = None  # index in ``failures`` awaiting its decision
    next_launch_at: float | None = None
    next_strategy: Strategy | None = None
    released_by: str | None = None
    tmux: TmuxTarget | None = None
    partial: PartialReport | None = None
    ended_at: float | None = None
    pr: int | None = None


def _ranked(attribution: Attribution) -> tuple[Evidence, ...]:
    """Evidence for the verdict first, strongest first; the rest after."""
    return tuple(
        sorted(attribution.evidence, key=lambda e: (e.reason is not attribution.reason, -e.weight))
    )


def _tmux(data: Mapping[str, Any]) -> TmuxTarget | None:
    raw = data.get("tmux")
    if isinstance(raw, Mapping):
        socket, session = raw.get("socket"), raw.get("session")
        if isinstance(socket, str) and isinstance(session, str) and socket and session:
            return TmuxTarget(socket, session)
    return None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _words(items: Iterable[Any]) -> tuple[str, ...]:
    out = []
    for raw in items:
        if isinstance(raw, Mapping):
            try:
                out.append(WorkItem.from_json(raw).describe())
            except (KeyError, ValueError):
                continue
    return tuple(out)


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def _partial(state: _Task, event: Event) -> PartialReport:
    raw = event.data.get("partial")
    part: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return PartialReport(
        task_id=state.task_id,
        agent=state.agent,
        attempt=event.attempt,
        time=event.time,
        phase=state.phase,
        deliverables_present=_strings(part.get("deliverables_present")),
        deliverables_missing=_strings(part.get("deliverables_missing")),
        uncommitted=_strings(part.get("uncommitted")),
        commits_ahead=_int_or_none(part.get("commits_ahead")) or 0,
        pushed=bool(part.get("pushed", False)),
        pr=_int_or_none(part.get("pr")),
        checkpoint=bool(part.get("checkpoint", False)),
        checkpoint_problem=(
            None if part.get("checkpoint_problem") is None else str(part["checkpoint_problem"])
        ),
        tests_passed=part.get("tests_passed")
        if isinstance(part.get("tests_passed"), bool)
        else None,
        missing_work=_words(event.data.get("missing_work", ()) or ()),
    )


@dataclass(frozen=True)
class UsageCondition:
    """An account's usage limit in force: its agent type, when launches resume, and the
    tasks still waiting on it."""

    agent_type: str
    resets_at: float
    until: float
    tasks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "agent_type": self.agent_type,
            "resets_at": self.resets_at,
            "until": self.until,
            "tasks": list(self.tasks),
        }


class FleetView:
    """Folds journal events (one journal, or several with unique task ids) into the views.

    >>> view = FleetView([])
    >>> view.statuses(now=0.0), view.failures(), view.partial_work()
    ([], [], [])
    """

    def __init__(self, events: Iterable[Event], *, budget: int | None = None) -> None:
        self._budget = budget
        self._tasks: dict[str, _Task] = {}
        self._limits: dict[str, UsageCondition] = {}  # agent type -> its latest condition
        for event in events:
            self._fold(event)

    # ------------------------------------------------------------------ folding

    def _state(self, event: Event) -> _Task:
        assert event.task_id is not None
        state = self._tasks.get(event.task_id)
        if state is None:
            state = _Task(
                event.task_id, event.agent or event.task_id, event.task_id, event.time, event.time
            )
            self._tasks[event.task_id] = state
        return state

    def _fold(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.USAGE_LIMITED:
            data = event.data
            account = str(data.get("agent_type", "?"))
            self._limits[account] = UsageCondition(
                account,
                float(data.get("resets_at", event.time)),
                float(data.get("until", event.time)),
                tuple(str(t) for t in data.get("tasks", ()) or ()),
            )
        if kind is EventKind.OPERATOR_ACTION:
            for task_id in event.data.get("tasks", ()) or ():
                state = self._tasks.get(str(task_id))
                if state is not None and state.phase is Phase.ESCALATED:
                    state.phase = Phase.WAITING
                    state.released_by = str(event.data.get("action", "operator action"))
                    state.ended_at = None
                    state.updated_at = event.time
            return
        if event.task_id is None:
            return
        state = self._state(event)
        state.updated_at = event.time
        data = event.data
        if kind is EventKind.TASK_SUBMITTED:
            task = data.get("task")
            if isinstance(task, Mapping):
                state.title = str(task.get("title") or state.task_id)
            budget = _int_or_none(data.get("budget"))
            state.budget = budget if budget is not None and budget > 0 else None
            state.agent = event.agent or state.agent
            state.submitted_at = event.time
            state.next_launch_at = event.time
        elif kind is EventKind.ATTEMPT_LAUNCHED:
            state.attempt += 1
            state.phase = Phase.RUNNING
            state.next_launch_at = None
            state.next_strategy = None
            state.released_by = None
            state.pending_exit = None
            state.tmux = _tmux(data)
            state.agent = event.agent or state.agent
        elif kind is EventKind.ATTEMPT_EXITED:
            raw = data.get("exit")
            state.pending_exit = ExitInfo.from_json(raw) if isinstance(raw, Mapping) else None
            state.phase = Phase.EXITED
            state.tmux = None
        elif kind is EventKind.FAILURE_ATTRIBUTED:
            self._attributed(state, event)
        elif kind is EventKind.DECISION:
            self._decided(state, event)
        elif kind is EventKind.TASK_SUCCEEDED:
            state.phase = Phase.SUCCEEDED
            state.pr = _int_or_none(data.get("pr"))
            self._ended(state, event)
        elif kind is EventKind.TASK_ESCALATED:
            state.phase = Phase.ESCALATED
            self._ended(state, event)
        elif kind is EventKind.TASK_FAILED:
            state.phase = Phase.FAILED
            self._ended(state, event)

    def _attributed(self, state: _Task, event: Event) -> None:
        raw = event.data.get("attribution")
        attribution = (
            Attribution.from_json(raw)
            if isinstance(raw, Mapping)
            else Attribution(Reason.UNKNOWN, 0.0)
        )
        state.last = attribution
        state.phase = Phase.ATTRIBUTED
        state.undecided = len(state.failures)
        state.failures.append(
            FailedAttempt(
                task_id=state.task_id,
                agent=event.agent or state.agent,
                attempt=event.attempt,
                time=event.time,
                reason=attribution.reason,
                confidence=attribution.confidence,
                evidence=_ranked(attribution),
                exit=state.pending_exit,
                strategy=None,
                why="",
            )
        )
        state.pending_exit = None
        state.partial = _partial(state, event)

    def _decided(self, state: _Task, event: Event) -> None:
        decision = event.data.get("decision")
        if not isinstance(decision, Mapping) or "strategy" not in decision:
            return
        strategy = Strategy(decision["strategy"])
        if state.undecided is not None:
            state.failures[state.undecided] = replace(
                state.failures[state.undecided], strategy=strategy, why=str(decision.get("why", ""))
            )
            state.undecided = None
        if strategy is Strategy.ESCALATE:
            return
        state.phase = Phase.WAITING
        state.next_strategy = strategy
        launch = event.data.get("launch")
        not_before = launch.get("not_before") if isinstance(launch, Mapping) else None
        if isinstance(not_before, int | float) and not isinstance(not_before, bool):
            state.next_launch_at = float(not_before)
        else:
            delay = decision.get("delay", 0.0)
            state.next_launch_at = event.time + (
                float(delay) if isinstance(delay, int | float) else 0.0
            )

    @staticmethod
    def _ended(state: _Task, event: Event) -> None:
        state.ended_at = event.time
        state.next_launch_at = None
        state.next_strategy = None
        state.tmux = None
        state.pending_exit = None

    # ------------------------------------------------------------------ views

    def statuses(self, *, now: float) -> list[TaskStatus]:
        """One row per task, in submission order. ``now`` closes the elapsed time of
        tasks still open (never below their last event's time)."""
        rows = []
        for state in self._tasks.values():
            end = (
                state.ended_at
                if state.phase in TERMINAL and state.ended_at is not None
                else max(now, state.updated_at)
            )
            last = state.last
            rows.append(
                TaskStatus(
                    task_id=state.task_id,
                    agent=state.agent,
                    title=state.title,
                    phase=state.phase,
                    attempt=state.attempt,
                    budget=state.budget if state.budget is not None else self._budget,
                    submitted_at=state.submitted_at,
                    updated_at=state.updated_at,
                    elapsed=max(0.0, end - state.submitted_at),
                    reason=None if last is None else last.reason,
                    confidence=None if last is None else last.confidence,
                    evidence=None if last is None else next(iter(_ranked(last)), None),
                    next_launch_at=state.next_launch_at if state.phase is Phase.WAITING else None,
                    next_strategy=state.next_strategy if state.phase is Phase.WAITING else None,
                    released_by=state.released_by,
                    tmux=state.tmux if state.phase is Phase.RUNNING else None,
                )
            )
        return rows

    def usage_conditions(self, *, now: float) -> list[UsageCondition]:
        """The usage limits still holding at ``now``, with the tasks they still hold."""
        out = []
        for condition in self._limits.values():
            if condition.until <= now:
                continue
            waiting = tuple(
                t
                for t in condition.tasks
                if t in self._tasks and self._tasks[t].phase not in TERMINAL
            )
            out.append(replace(condition, tasks=waiting))
        return out

    def failures(self) -> list[FailedAttempt]:
        """Every attributed failure, in journal order."""
        return sorted((f for s in self._tasks.values() for f in s.failures), key=lambda f: f.time)

    def partial_work(self, *, agent: str | None = None) -> list[PartialReport]:
        """Per task (of ``agent`` when given): the last probe the journal holds, or an
        unprobed row (with the PR of a success) when no failure was attributed."""
        out = []
        for state in self._tasks.values():
            if agent is not None and state.agent != agent:
                continue
            if state.partial is not None:
                part = state.partial
                out.append(
                    replace(
                        part,
                        agent=state.agent,
                        phase=state.phase,
                        pr=state.pr if state.pr is not None else part.pr,
                        missing_work=() if state.phase is Phase.SUCCEEDED else part.missing_work,
                    )
                )
            else:
                out.append(
                    PartialReport(state.task_id, state.agent, None, None, state.phase, pr=state.pr)
                )
        return out

    def agents(self) -> list[str]:
        return list(dict.fromkeys(s.agent for s in self._tasks.values()))
