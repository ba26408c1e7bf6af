"""Each task's story on a clock: its attempts as spans, what followed each, and the marks
(operator actions, escalations) a timeline draws. Pure: journal events in, plain data out.

Only event fields that survive a chaos run's trip from an xdist worker are read (not the
output tails, prompts or result JSON), so a campaign's timeline and the one drawn from the
same events written to a journal are the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_orch_recovery.engine.model import Attribution, Event, EventKind, ExitInfo, Reason
from pytest_orch_recovery.report.metrics import describe_partial

GROUP_SEPARATOR = "/"  # a task id ``group/task`` is drawn in group ``group``'s panel


@dataclass(frozen=True)
class FollowUp:
    """A decision taken after an attempt: the strategy, why, and the backoff before acting."""

    time: float
    strategy: str
    why: str
    rule: str
    delay: float


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


@dataclass(frozen=True)
class Mark:
    """A point on a task's lane: ``operator`` (an action that named it), ``escalated`` or
    ``failed`` (a terminal event)."""

    time: float
    kind: str
    text: str


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
    outcome: str = "in progress"  # succeeded | recovered | escalated | failed | in progress
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


def _attribution(data: Mapping[str, Any]) -> Attribution:
    raw = data.get("attribution")
    return (
        Attribution.from_json(raw) if isinstance(raw, Mapping) else Attribution(Reason.UNKNOWN, 0.0)
    )


class _Builder:
    def __init__(self) -> None:
        self.lanes: dict[str, TaskLane] = {}

    def lane(self, task_id: str) -> TaskLane:
        lane = self.lanes.get(task_id)
        if lane is None:
            group, name = _split(task_id)
            lane = self.lanes[task_id] = TaskLane(task_id, group, name)
        return lane

    def attempt(self, lane: TaskLane, number: int | None) -> AttemptSpan | None:
        for span in reversed(lane.attempts):
            if number is None or span.number == number:
                return span
        return None

    def add(self, event: Event) -> None:
        if event.kind is EventKind.OPERATOR_ACTION:
            action = str(event.data.get("action", "operator action"))
            for task_id in event.data.get("tasks", ()) or ():
                if str(task_id) in self.lanes:
                    lane = self.lanes[str(task_id)]
                    lane.marks.append(Mark(event.time, "operator", action))
                    lane.last_time = max(lane.last_time, event.time)
                    if lane.outcome == "escalated":
                        lane.outcome = "in progress"
            return
        if event.task_id is None:
            return
        lane = self.lane(event.task_id)
        lane.last_time = max(lane.last_time, event.time)
        data = event.data
        kind = event.kind
        if kind is EventKind.TASK_SUBMITTED:
            task = data.get("task")
            if isinstance(task, Mapping):
                lane.title = str(task.get("title", ""))
            lane.agent = event.agent or lane.agent
            lane.submitted = event.time
        elif kind is EventKind.ATTEMPT_LAUNCHED:
            strategy = data.get("strategy")
            if event.attempt is not None and any(a.number == event.attempt for a in lane.attempts):
                return  # a launch journaled twice is one attempt
            lane.attempts.append(
                AttemptSpan(
                    number=event.attempt or len(lane.attempts) + 1,
                    start=event.time,
                    launched_as=None if strategy is None else str(strategy),
                    agent=event.agent,
                )
            )
            lane.agent = lane.agent or event.agent
        elif kind is EventKind.ATTEMPT_EXITED:
            span = self.attempt(lane, event.attempt)
            if span is not None:
                span.end = event.time
                raw = data.get("exit")
                span.exit = ExitInfo.from_json(raw) if isinstance(raw, Mapping) else None
        elif kind is EventKind.FAILURE_ATTRIBUTED:
            span = self.attempt(lane, event.attempt)
            if span is not None:
                attribution = _attribution(data)
                strongest = max(attribution.evidence, key=lambda e: e.weight, default=None)
                span.reason = attribution.reason
                span.confidence = attribution.confidence
                span.evidence = "" if strongest is None else strongest.detail
                partial = data.get("partial")
                span.partial = describe_partial(partial) if isinstance(partial, Mapping) else ()
        elif kind is EventKind.DECISION:
            decision = data.get("decision") or {}
            span = self.attempt(lane, event.attempt)
            if span is not None and "strategy" in decision:
                span.followups.append(
                    FollowUp(
                        event.time,
                        str(decision["strategy"]),
                        str(decision.get("why", "")),
                        str(decision.get("rule", "")),
                        float(decision.get("delay", 0.0) or 0.0),
                    )
                )
        elif kind is EventKind.TASK_SUCCEEDED:
            span = self.attempt(lane, event.attempt)
            if span is not None:
                span.succeeded = True
                span.pr = None if data.get("pr") is None else int(data["pr"])
            lane.outcome = "recovered" if lane.failed_attempts else "succeeded"
            if data.get("recovery_time") is not None:
                lane.recovery_time = float(data["recovery_time"])
        elif kind in (EventKind.TASK_ESCALATED, EventKind.TASK_FAILED):
            word = "escalated" if kind is EventKind.TASK_ESCALATED else "failed"
            lane.outcome = word
            lane.marks.append(Mark(event.time, word, str(data.get("why", ""))))


def task_lanes(events: Sequence[Event]) -> list[TaskLane]:
    """Every task the events name, in the order they first appear.

    >>> from pytest_orch_recovery.engine.model import Event, EventKind
    >>> lanes = task_lanes([
    ...     Event(EventKind.ATTEMPT_LAUNCHED, 10.0, "s/t1", attempt=1),
    ...     Event(EventKind.ATTEMPT_EXITED, 12.5, "s/t1", attempt=1),
    ...     Event(EventKind.TASK_SUCCEEDED, 12.5, "s/t1", attempt=1)])
    >>> lane = lanes[0]
    >>> (lane.group, lane.name, lane.outcome, lane.attempts[0].end)
    ('s', 't1', 'succeeded', 12.5)
    """
    builder = _Builder()
    for event in events:
        builder.add(event)
    return list(builder.lanes.values())


def grouped(lanes: Sequence[TaskLane]) -> list[tuple[str, list[TaskLane]]]:
    """Lanes by group, groups in order of first appearance."""
    out: dict[str, list[TaskLane]] = {}
    for lane in lanes:
        out.setdefault(lane.group, []).append(lane)
    return list(out.items())
