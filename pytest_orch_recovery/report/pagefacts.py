"""What the HTML report draws beyond :class:`~pytest_orch_recovery.report.metrics.Metrics`:
the header's count and span of events, and the lanes of the first tasks the timeline shows.

:class:`PageFold` takes events one at a time and keeps only that: three numbers and the
history of the first :data:`LANES` tasks (a timeline orders its lanes by a task's first
event, so later tasks never move them). A task's history depends only on the events that name
it (its own, and operator actions listing it), so the kept tasks' histories are the whole
fold's; the page drawn from a fold is the page drawn from every event, at the cost of the
page, not of the journal. A fold's state can be kept and continued (``cli/pagecache.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_orch_recovery.engine.events import Event, OperatorAction
from pytest_orch_recovery.report.htmltimeline import MAX_TIMELINE_TASKS
from pytest_orch_recovery.report.timeline import TaskLane, task_lanes
from pytest_orch_recovery.store.history import History

__all__ = ["LANES", "PageFacts", "PageFold", "page_facts"]

LANES = MAX_TIMELINE_TASKS  # the tasks after them are counted, not drawn


@dataclass(frozen=True)
class PageFacts:
    """The events' count and span, and the first tasks' lanes in the order they appeared."""

    events: int
    first_time: float | None  # the earliest event's time (None: no events)
    last_time: float | None
    lanes: tuple[TaskLane, ...]


class PageFold:
    """Folds events into :class:`PageFacts`; ``history`` holds the first ``LANES`` tasks
    only, ``events``/``first_time``/``last_time`` count every event."""

    def __init__(
        self,
        history: History | None = None,
        events: int = 0,
        first_time: float | None = None,
        last_time: float | None = None,
    ) -> None:
        self.history = History() if history is None else history
        self.events = events
        self.first_time = first_time
        self.last_time = last_time

    def add(self, event: Event) -> None:
        time = event.time
        self.events += 1
        # As min() and max() over the times in order would pick them (ties keep the first).
        if self.first_time is None or time < self.first_time:
            self.first_time = time
        if self.last_time is None or time > self.last_time:
            self.last_time = time
        tasks = self.history.tasks
        if isinstance(event.payload, OperatorAction):
            if any(t in tasks for t in event.payload.tasks):
                self.history.add(event)  # it marks (or releases) only tasks already there
        elif event.task_id is not None and (
            event.task_id in tasks or len(tasks) < LANES
        ):  # a later task is never drawn; the fleet's own records are not drawn at all
            self.history.add(event)

    def add_all(self, events: Iterable[Event]) -> PageFold:
        for event in events:
            self.add(event)
        return self

    def facts(self) -> PageFacts:
        return PageFacts(
            self.events, self.first_time, self.last_time, tuple(task_lanes(self.history))
        )


def page_facts(events: Iterable[Event]) -> PageFacts:
    """The page's facts of ``events`` (one journal's, or several with unique task ids).

    >>> from pytest_orch_recovery.engine.events import TaskSubmitted, WorkspaceOrphaned
    >>> facts = page_facts([Event(TaskSubmitted(), 5.0, "t1"), Event(WorkspaceOrphaned("w"), 2.0)])
    >>> facts.events, facts.first_time, facts.last_time, [lane.task_id for lane in facts.lanes]
    (2, 2.0, 5.0, ['t1'])
    """
    return PageFold().add_all(events).facts()
