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

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pytest_orch_recovery.engine.events import Event, PartialSummary, TmuxTarget
from pytest_orch_recovery.engine.model import (
    TERMINAL,
    Attribution,
    Evidence,
    ExitInfo,
    Phase,
    Reason,
    Strategy,
)
from pytest_orch_recovery.store.history import FailureRecord, History, TaskHistory

# Bumped when a field of the views' JSON changes meaning or goes away.
SCHEMA_VERSION = 1


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
    releases: int = 0  # attempts operators granted beyond the budget (one per release)
    # Seconds between the latest attempt's own end and its journaled exit (a busy or a
    # stopped supervisor noticed it that late).
    detection_delay: float | None = None

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
            "releases": self.releases,
            "tmux": None if self.tmux is None else self.tmux.to_json(),
            "detection_delay": (
                None if self.detection_delay is None else round(self.detection_delay, 3)
            ),
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
    work: PartialSummary = field(default_factory=PartialSummary)  # what the probe found
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
            **self.work.to_json(),
            "missing_work": list(self.missing_work),
        }


# --------------------------------------------------------------------------- the views


def _ranked(attribution: Attribution) -> tuple[Evidence, ...]:
    """Evidence for the verdict first, strongest first; the rest after."""
    return tuple(
        sorted(attribution.evidence, key=lambda e: (e.reason is not attribution.reason, -e.weight))
    )


def _failed_attempt(task: TaskHistory, failure: FailureRecord) -> FailedAttempt:
    attribution = failure.attribution
    decision = failure.decision
    return FailedAttempt(
        task_id=task.task_id,
        agent=failure.agent,
        attempt=failure.attempt,
        time=failure.time,
        reason=attribution.reason,
        confidence=attribution.confidence,
        evidence=_ranked(attribution),
        exit=failure.exit,
        strategy=None if decision is None else decision.strategy,
        why="" if decision is None else decision.why,
    )


def _partial(task: TaskHistory, agent: str) -> PartialReport:
    """The last probe, or the success: every row is one moment, never an earlier attempt's
    state beside the final PR."""
    if task.phase is Phase.SUCCEEDED:
        attempt = task.launches or None
        return PartialReport(
            task.task_id, agent, attempt, None, task.phase, PartialSummary(pr=task.pr)
        )
    if not task.failures:
        return PartialReport(
            task.task_id, agent, None, None, task.phase, PartialSummary(pr=task.pr)
        )
    last = task.failures[-1]
    return PartialReport(
        task_id=task.task_id,
        agent=agent,
        attempt=last.attempt,
        time=last.time,
        phase=task.phase,
        work=last.partial or PartialSummary(),
        missing_work=tuple(w.describe() for w in last.missing_work),
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
    """The views over journal events (one journal, or several with unique task ids), or over
    their folded :class:`History`.

    >>> view = FleetView([])
    >>> view.statuses(now=0.0), view.failures(), view.partial_work()
    ([], [], [])
    """

    def __init__(self, events: Iterable[Event] | History, *, budget: int | None = None) -> None:
        self._budget = budget
        history = events if isinstance(events, History) else History(events)
        self._tasks = history.tasks
        self._history = history

    @staticmethod
    def _agent(task: TaskHistory) -> str:
        return task.current_agent or task.task_id

    # ------------------------------------------------------------------ views

    def statuses(self, *, now: float) -> list[TaskStatus]:
        """One row per task, in submission order. ``now`` closes the elapsed time of
        tasks still open (never below their last event's time)."""
        rows = []
        for task in self._tasks.values():
            end = (
                task.ended_at
                if task.phase in TERMINAL and task.ended_at is not None
                else max(now, task.updated_at)
            )
            if task.adopted_from is not None and task.phase is not Phase.RUNNING:
                # Another orchestrator runs it: its files tell when it last did something,
                # and the time since then is not this task's.
                end = task.updated_at
            last = task.failures[-1].attribution if task.failures else None
            submitted_at = task.first_time if task.submitted_at is None else task.submitted_at
            waiting = task.phase is Phase.WAITING
            rows.append(
                TaskStatus(
                    task_id=task.task_id,
                    agent=self._agent(task),
                    title=task.title or task.task_id,
                    phase=task.phase,
                    attempt=task.launches,
                    budget=task.budget if task.budget is not None else self._budget,
                    submitted_at=submitted_at,
                    updated_at=task.updated_at,
                    elapsed=max(0.0, end - submitted_at),
                    reason=None if last is None else last.reason,
                    confidence=None if last is None else last.confidence,
                    evidence=None if last is None else next(iter(_ranked(last)), None),
                    next_launch_at=task.next_launch_at if waiting else None,
                    next_strategy=task.next_strategy if waiting else None,
                    released_by=task.released_by,
                    tmux=task.tmux if task.phase is Phase.RUNNING else None,
                    releases=len(task.released),
                    detection_delay=task.detection_delay,
                )
            )
        return rows

    def usage_conditions(self, *, now: float) -> list[UsageCondition]:
        """The usage limits still holding at ``now``, with the tasks they still hold."""
        out = []
        for limited, time in self._history.usage_limits.values():
            until = time if limited.until is None else limited.until
            if until <= now:
                continue
            waiting = tuple(
                t
                for t in limited.tasks
                if t in self._tasks and self._tasks[t].phase not in TERMINAL
            )
            resets_at = time if limited.resets_at is None else limited.resets_at
            out.append(UsageCondition(limited.agent_type, resets_at, until, waiting))
        return out

    def failures(self) -> list[FailedAttempt]:
        """Every attributed failure, in journal order."""
        return sorted(
            (_failed_attempt(t, f) for t in self._tasks.values() for f in t.failures),
            key=lambda f: f.time,
        )

    def partial_work(self, *, agent: str | None = None) -> list[PartialReport]:
        """Per task (of ``agent`` when given): the last probe the journal holds, the success
        (its attempt and PR), or an unprobed row when no failure was attributed."""
        out = []
        for task in self._tasks.values():
            name = self._agent(task)
            if agent is None or name == agent:
                out.append(_partial(task, name))
        return out

    def agents(self) -> list[str]:
        return list(dict.fromkeys(self._agent(t) for t in self._tasks.values()))
