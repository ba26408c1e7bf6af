"""Each task's history, folded from journal events once for every reader.

The report's metrics, the fleet views (``status``, ``failures``, ``partial``), the timeline and
a chaos run's outcomes are all views of the same per-task story; :class:`History` folds the
events into it (:meth:`History.add`, one event at a time, so a reader can stream a journal or
resume from a snapshot) and the views read :class:`TaskHistory` without looking at events again.

Rules every view shares (docs/journal.md is the schema):

- A task exists from its first event (usually ``task_submitted``).
- A *failed attempt* is one ``failure_attributed``; the exit it judges is the last
  ``attempt_exited`` before it. An exit followed by anything other than an attribution, a
  success, an operator action or a workspace record was never judged: an *unattributed* exit.
- A task's outcome is its last terminal event; an ``operator_action`` naming an escalated task
  releases it (in progress again until its next terminal event).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    FailureAttributed,
    OperatorAction,
    PartialSummary,
    TaskEscalated,
    TaskSubmitted,
    TaskSucceeded,
    TmuxTarget,
    UsageLimited,
    WorkspaceCleaned,
    WorkspaceOrphaned,
)
from pytest_orch_recovery.engine.model import (
    Attribution,
    Complexity,
    Decision,
    ExitInfo,
    Phase,
    Strategy,
    WorkItem,
)

__all__ = [
    "AttemptRecord",
    "FailureRecord",
    "FollowUp",
    "History",
    "Mark",
    "TaskHistory",
    "TaskOutcome",
]


class TaskOutcome(enum.StrEnum):
    """A task's state at the end of the journal: its last terminal event, ``recovered`` when
    it succeeded after a failed attempt, ``in_progress`` while it has none (views word it
    their own way: the dashboard's Result column, the timeline's lanes)."""

    SUCCEEDED = "succeeded"
    RECOVERED = "recovered"
    ESCALATED = "escalated"
    IN_PROGRESS = "in_progress"


_TERMINAL_OUTCOMES = {
    EventKind.TASK_SUCCEEDED: TaskOutcome.SUCCEEDED,
    EventKind.TASK_ESCALATED: TaskOutcome.ESCALATED,
}


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A decision taken after an attempt: the strategy, why, and the backoff before acting."""

    time: float
    strategy: Strategy
    why: str
    rule: str
    delay: float


@dataclass(slots=True)
class AttemptRecord:
    """One attempt, from its launch to its exit (``end`` None: no exit recorded)."""

    number: int
    start: float
    launched_as: Strategy | None  # the strategy it carried out; None for a first attempt
    agent: str | None
    end: float | None = None
    exit: ExitInfo | None = None
    failure: FailureRecord | None = None
    succeeded: bool = False
    agent_type: str = ""  # the agent (CLI) it ran on: a fallback or fix agent shows here
    pr: int | None = None
    followups: list[FollowUp] = field(default_factory=list)


@dataclass(slots=True)
class FailureRecord:
    """One attributed failure, the exit it judged and the decision that followed."""

    time: float
    attempt: int | None
    agent: str
    attribution: Attribution
    exit: ExitInfo | None  # None: no exit was recorded before it
    partial: PartialSummary | None
    missing_work: tuple[WorkItem, ...]
    decision: Decision | None = None  # None while undecided

    @property
    def strongest_evidence(self) -> str:
        strongest = max(self.attribution.evidence, key=lambda e: e.weight, default=None)
        return "" if strongest is None else strongest.detail


@dataclass(frozen=True, slots=True)
class Mark:
    """A point on a task's lane: ``operator`` (an action that named it) or ``escalated``."""

    time: float
    kind: str
    text: str


@dataclass(slots=True)
class TaskHistory:
    """Everything the journal says about one task."""

    task_id: str
    first_time: float  # of the task's first event
    title: str = ""
    complexity: Complexity = Complexity.SIMPLE
    submitted: bool = False  # a task_succeeded without a submission is no first-try success
    submitted_at: float | None = None
    budget: int | None = None
    agent: str | None = None  # named at submission, else by the first launch
    current_agent: str | None = None  # named by the latest submission or launch
    launches: int = 0  # attempt_launched events (a launch journaled twice counts twice)
    attempts: list[AttemptRecord] = field(default_factory=list)  # one per attempt number
    agents_by_attempt: dict[int, str] = field(default_factory=dict)
    failures: list[FailureRecord] = field(default_factory=list)
    strategies: list[Strategy] = field(default_factory=list)  # every decision, in order
    decided: Strategy | None = None  # the decision the next launch carries out
    lesson: str = ""
    systematic: list[str] = field(default_factory=list)
    outcome: EventKind | None = None  # the last terminal event's kind, None while open
    ended_at: float | None = None  # of that terminal event
    released: list[str] = field(default_factory=list)  # operator actions that released it
    released_by: str | None = None  # the release it waits on (cleared by the next launch)
    recovery_time: float | None = None
    pr: int | None = None
    adopted_from: str | None = None  # ingest: the outside orchestrator that runs it
    phase: Phase = Phase.WAITING
    next_launch_at: float | None = None
    next_strategy: Strategy | None = None
    tmux: TmuxTarget | None = None  # where the current attempt runs
    exit_pending: bool = False  # an exit not judged yet
    last_exit: ExitInfo | None = None  # the exit of the latest attempt_exited
    # Seconds from the agent's own end to the supervisor journaling it, latest exit.
    detection_delay: float | None = None
    unattributed: int = 0  # exits the coordinator moved on from without judging
    updated_at: float = 0.0  # time of the task's last event
    last_time: float = 0.0  # the latest time on its lane (operator marks included)
    marks: list[Mark] = field(default_factory=list)

    @property
    def result(self) -> TaskOutcome:
        if self.outcome is None:
            return TaskOutcome.IN_PROGRESS
        if self.outcome is EventKind.TASK_SUCCEEDED and self.failures:
            return TaskOutcome.RECOVERED
        return _TERMINAL_OUTCOMES[self.outcome]

    @property
    def name(self) -> str:
        """The agent to show for the task: its own, else the task id."""
        return self.agent or self.task_id

    @property
    def pending_exit(self) -> ExitInfo | None:
        """The exit awaiting judgement (an unrecorded exit reads as ``ExitInfo(None)``)."""
        if not self.exit_pending:
            return None
        return self.last_exit or ExitInfo(None)

    def attempt(self, number: int | None) -> AttemptRecord | None:
        """The attempt ``number`` (the latest when None)."""
        for record in reversed(self.attempts):
            if number is None or record.number == number:
                return record
        return None

    def agent_for(self, event: Event) -> str:
        if event.agent:
            return event.agent
        if event.attempt is not None and event.attempt in self.agents_by_attempt:
            return self.agents_by_attempt[event.attempt]
        return self.agent or self.task_id


_RESOLVES_EXIT = frozenset(
    {
        EventKind.TASK_SUCCEEDED,
        EventKind.FAILURE_ATTRIBUTED,
        EventKind.OPERATOR_ACTION,
        EventKind.WORKSPACE_CLEANED,
        EventKind.WORKSPACE_ORPHANED,
    }
)


def _add_unique(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


class History:
    """Folds journal events (one journal, or several with unique task ids) into each task's
    history, plus the workspaces reported orphaned and not cleaned since.

    >>> from pytest_orch_recovery.engine.events import TaskSubmitted, TaskSucceeded
    >>> history = History([Event(TaskSubmitted(), 0.0, "t1"), Event(TaskSucceeded(), 2.0, "t1")])
    >>> task = history.tasks["t1"]
    >>> task.outcome, task.phase, task.ended_at
    (<EventKind.TASK_SUCCEEDED: 'task_succeeded'>, <Phase.SUCCEEDED: 'succeeded'>, 2.0)
    """

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self.tasks: dict[str, TaskHistory] = {}
        self.orphaned: dict[str, None] = {}  # workspace paths, in first-report order
        # Agent type -> the latest usage limit its account reported, and when it was journaled.
        self.usage_limits: dict[str, tuple[UsageLimited, float]] = {}
        for event in events:
            self.add(event)

    def add(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, WorkspaceOrphaned):
            self.orphaned[payload.path] = None
        elif isinstance(payload, WorkspaceCleaned):
            self.orphaned.pop(payload.path, None)
        elif isinstance(payload, UsageLimited):
            self.usage_limits[payload.agent_type] = (payload, event.time)
        if isinstance(payload, OperatorAction):
            self._operator_action(event, payload)
            return
        if event.task_id is None:
            return
        task = self.tasks.get(event.task_id)
        if task is None:
            task = self.tasks[event.task_id] = TaskHistory(event.task_id, event.time)
            task.current_agent = event.agent
            task.submitted_at = event.time
        task.updated_at = event.time
        task.last_time = max(task.last_time, event.time)
        if task.exit_pending and event.kind not in _RESOLVES_EXIT:
            # The coordinator moved on from an exit without attributing or accepting it.
            task.unattributed += 1
            task.exit_pending = False
        _FOLDS[type(payload)](task, event)

    def _operator_action(self, event: Event, action: OperatorAction) -> None:
        for task_id in action.tasks:
            task = self.tasks.get(task_id)
            if task is None:
                continue
            task.marks.append(Mark(event.time, "operator", action.action))
            task.last_time = max(task.last_time, event.time)
            if task.outcome is EventKind.TASK_ESCALATED:
                task.outcome = None
                task.released.append(action.action)
                task.released_by = action.action
                task.phase = Phase.WAITING
                task.ended_at = None
                task.updated_at = event.time

    @property
    def orphaned_paths(self) -> tuple[str, ...]:
        """Workspaces reported orphaned and not cleaned afterwards, in first-report order."""
        return tuple(self.orphaned)


def _submitted(task: TaskHistory, event: Event) -> None:
    submitted = event.payload
    assert isinstance(submitted, TaskSubmitted)
    task.submitted = True
    if submitted.task is not None:
        task.title = submitted.task.title
    task.complexity = submitted.complexity
    task.budget = submitted.budget
    task.adopted_from = submitted.adopted_from
    task.agent = event.agent or task.agent
    task.current_agent = event.agent or task.current_agent
    task.submitted_at = event.time
    task.next_launch_at = event.time


def _launched(task: TaskHistory, event: Event) -> None:
    launched = event.payload
    assert isinstance(launched, AttemptLaunched)
    task.launches += 1
    strategy = launched.strategy
    # A relaunch nobody journaled a decision for (an operator's release) still belongs in the
    # strategy sequence.
    if strategy is not None and strategy is not task.decided:
        task.strategies.append(strategy)
    task.decided = None
    task.phase = Phase.RUNNING
    task.next_launch_at = None
    task.next_strategy = None
    task.released_by = None
    task.exit_pending = False
    task.tmux = launched.tmux
    if event.agent:
        task.agent = task.agent or event.agent
        task.current_agent = event.agent
        if event.attempt is not None:
            task.agents_by_attempt[event.attempt] = event.agent
    if event.attempt is not None and any(a.number == event.attempt for a in task.attempts):
        return  # a launch journaled twice is one attempt
    task.attempts.append(
        AttemptRecord(
            number=event.attempt or len(task.attempts) + 1,
            start=event.time,
            launched_as=strategy,
            agent=event.agent,
            agent_type=launched.agent_type,
        )
    )


def _exited(task: TaskHistory, event: Event) -> None:
    exited = event.payload
    assert isinstance(exited, AttemptExited)
    task.exit_pending = True
    task.last_exit = exited.exit
    if exited.ended_at is not None:
        task.detection_delay = max(0.0, event.time - exited.ended_at)
    task.phase = Phase.EXITED
    task.tmux = None
    record = task.attempt(event.attempt)
    if record is not None:
        record.end = event.time
        record.exit = exited.exit


def _attributed(task: TaskHistory, event: Event) -> None:
    attributed = event.payload
    assert isinstance(attributed, FailureAttributed)
    failure = FailureRecord(
        time=event.time,
        attempt=event.attempt,
        agent=task.agent_for(event),
        attribution=attributed.attribution,
        exit=task.pending_exit,
        partial=attributed.partial,
        missing_work=attributed.missing_work,
    )
    task.failures.append(failure)
    task.exit_pending = False
    task.phase = Phase.ATTRIBUTED
    record = task.attempt(event.attempt)
    if record is not None:
        record.failure = failure


def _decided(task: TaskHistory, event: Event) -> None:
    decided = event.payload
    assert isinstance(decided, DecisionMade)
    decision = decided.decision
    if decision is None:
        return
    task.decided = decision.strategy
    task.strategies.append(decision.strategy)
    if decision.lesson:
        task.lesson = decision.lesson
    if decision.systematic_cause:
        _add_unique(task.systematic, decision.systematic_cause)
    if task.failures and task.failures[-1].decision is None:
        task.failures[-1].decision = decision
    record = task.attempt(event.attempt)
    if record is not None:
        record.followups.append(
            FollowUp(event.time, decision.strategy, decision.why, decision.rule, decision.delay)
        )
    if decision.strategy is Strategy.ESCALATE:
        return
    task.phase = Phase.WAITING
    task.next_strategy = decision.strategy
    launch = decided.launch
    if launch is not None and launch.not_before is not None:
        task.next_launch_at = launch.not_before
    else:
        task.next_launch_at = event.time + decision.delay


def _ended(task: TaskHistory, event: Event, phase: Phase) -> None:
    task.outcome = event.kind
    task.phase = phase
    task.ended_at = event.time
    task.next_launch_at = None
    task.next_strategy = None
    task.tmux = None
    task.exit_pending = False


def _succeeded(task: TaskHistory, event: Event) -> None:
    succeeded = event.payload
    assert isinstance(succeeded, TaskSucceeded)
    _ended(task, event, Phase.SUCCEEDED)
    if succeeded.recovery_time is not None:
        task.recovery_time = succeeded.recovery_time
    task.pr = succeeded.pr
    record = task.attempt(event.attempt)
    if record is not None:
        record.succeeded = True
        record.pr = succeeded.pr


def _escalated(task: TaskHistory, event: Event) -> None:
    escalated = event.payload
    assert isinstance(escalated, TaskEscalated)
    _ended(task, event, Phase.ESCALATED)
    if escalated.systematic_cause:
        _add_unique(task.systematic, escalated.systematic_cause)
    task.marks.append(Mark(event.time, "escalated", escalated.why))


def _nothing(task: TaskHistory, event: Event) -> None:
    """Workspace records and usage limits belong to the fleet, not to the task's story."""


_FOLDS = {
    TaskSubmitted: _submitted,
    AttemptLaunched: _launched,
    AttemptExited: _exited,
    FailureAttributed: _attributed,
    DecisionMade: _decided,
    TaskSucceeded: _succeeded,
    TaskEscalated: _escalated,
    WorkspaceCleaned: _nothing,
    WorkspaceOrphaned: _nothing,
    UsageLimited: _nothing,
}
