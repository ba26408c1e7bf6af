"""Each task's story on a clock: its attempts as spans, what followed each, and the marks
(operator actions, escalations) a timeline draws. Pure: journal events in, plain data out.

Only event fields that survive a chaos run's trip from an xdist worker are read (not the
output tails, prompts or result JSON), so a campaign's timeline and the one drawn from the
same events written to a journal are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import ExitInfo, Reason
from pytest_orch_recovery.store.history import AttemptRecord, FollowUp, History, Mark, TaskHistory

__all__ = ["AttemptSpan", "FollowUp", "Mark", "TaskLane", "grouped", "task_lanes"]

GROUP_SEPARATOR = "/"  # a task id ``group/task`` is drawn in group ``group``'s panel


@dataclass
class AttemptSpan:
    """One attempt, from its launch to its exit (``end`` None: no exit recorded)."""

    number: int
    start: float
    launched_as: str | None  # the strategy it carried out; None for a first attempt
    agent: str | None
    end: float | None = None
    exit: ExitInfo | None = None
    reason: Reason | None = None
    confidence: float | None = None
    evidence: str = ""
    partial: tuple[str, ...] = ()
    succeeded: bool = False
    pr: int | None = None
    followups: list[FollowUp] = field(default_factory=list)

    @property
    def exit_text(self) -> str:
        """``130 (SIGINT)``, ``0``, ``timed out``, or ``no exit recorded``."""
        if self.exit is None:
            return "no exit recorded"
        code = self.exit.display_code
        text = "unknown" if code is None else str(code)
        if self.exit.signal_name:
            text += f" ({self.exit.signal_name})"
        return text + (", timed out" if self.exit.timed_out else "")


@dataclass
class TaskLane:
    task_id: str
    group: str
    name: str  # the task id without its group
    title: str = ""
    agent: str | None = None
    submitted: float | None = None
    attempts: list[AttemptSpan] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    outcome: str = "in progress"  # succeeded | recovered | escalated | in progress
    recovery_time: float | None = None
    last_time: float = 0.0

    @property
    def failed_attempts(self) -> int:
        return sum(1 for a in self.attempts if a.reason is not None)

    @property
    def first_time(self) -> float:
        times = [a.start for a in self.attempts] + [m.time for m in self.marks]
        if self.submitted is not None:
            times.append(self.submitted)
        return min(times, default=self.last_time)


def _split(task_id: str) -> tuple[str, str]:
    group, sep, name = task_id.partition(GROUP_SEPARATOR)
    return (group, name) if sep and name else ("", task_id)


def _span(record: AttemptRecord) -> AttemptSpan:
    failure = record.failure
    return AttemptSpan(
        number=record.number,
        start=record.start,
        launched_as=None if record.launched_as is None else str(record.launched_as),
        agent=record.agent,
        end=record.end,
        exit=record.exit,
        reason=None if failure is None else failure.attribution.reason,
        confidence=None if failure is None else failure.attribution.confidence,
        evidence="" if failure is None else failure.strongest_evidence,
        partial=() if failure is None or failure.partial is None else failure.partial.describe(),
        succeeded=record.succeeded,
        pr=record.pr,
        followups=list(record.followups),
    )


def _lane(task: TaskHistory) -> TaskLane:
    group, name = _split(task.task_id)
    lane = TaskLane(
        task.task_id,
        group,
        name,
        title=task.title,
        agent=task.agent,
        submitted=task.submitted_at if task.submitted else None,
        attempts=[_span(a) for a in task.attempts],
        marks=list(task.marks),
        recovery_time=task.recovery_time,
        last_time=task.last_time,
        outcome=task.result.replace("_", " "),
    )
    return lane


def task_lanes(events: Iterable[Event] | History) -> list[TaskLane]:
    """Every task the events name, in the order they first appear.

    >>> from pytest_orch_recovery.engine.events import AttemptExited, AttemptLaunched, Event
    >>> from pytest_orch_recovery.engine.events import TaskSucceeded
    >>> lanes = task_lanes([
    ...     Event(AttemptLaunched(), 10.0, "s/t1", attempt=1),
    ...     Event(AttemptExited(), 12.5, "s/t1", attempt=1),
    ...     Event(TaskSucceeded(), 12.5, "s/t1", attempt=1)])
    >>> lane = lanes[0]
    >>> (lane.group, lane.name, lane.outcome, lane.attempts[0].end)
    ('s', 't1', 'succeeded', 12.5)
    """
    history = events if isinstance(events, History) else History(events)
    return [_lane(t) for t in history.tasks.values()]


def grouped(lanes: Sequence[TaskLane]) -> list[tuple[str, list[TaskLane]]]:
    """Lanes by group, groups in order of first appearance."""
    out: dict[str, list[TaskLane]] = {}
    for lane in lanes:
        out.setdefault(lane.group, []).append(lane)
    return list(out.items())
