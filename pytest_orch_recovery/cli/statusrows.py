"""One ``status`` row as text: its table cells and the notes above the table. Shared by the
command and by the rows it keeps for ended tasks (:mod:`.statuscache`), so both print the
same."""

from __future__ import annotations

from pytest_orch_recovery.cli.fleet_output import clock, duration
from pytest_orch_recovery.report.fleetview import TaskStatus, UsageCondition

__all__ = [
    "ATTEMPT_COLUMN",
    "DETECTION_DELAY_SHOWN",
    "EMPTY",
    "HEADERS",
    "attempt_cell",
    "condition_note",
    "delay_note",
    "row_cells",
]


def attempt_cell(attempt: int, budget: int | None, releases: int) -> str:
    """``2/4``; ``5/4+1`` when an operator's release granted one attempt past the budget."""
    if budget is None:
        return str(attempt)
    extra = f"+{releases}" if releases and attempt > budget else ""
    return f"{attempt}/{budget}{extra}"


# A detection delay worth a line of its own: past the supervisor's usual second.
DETECTION_DELAY_SHOWN = 5.0


def _reason(row: TaskStatus) -> str:
    if row.reason is None:
        return "-"
    return f"{row.reason} ({row.confidence:.2f})" if row.confidence is not None else str(row.reason)


def _evidence(row: TaskStatus) -> str:
    ev = row.evidence
    if ev is None:
        return "-"
    where = "" if ev.source is None else f" [{ev.source}{'' if ev.line is None else f':{ev.line}'}]"
    return ev.detail + where


def _next(row: TaskStatus) -> str:
    if row.next_launch_at is None:
        return "-"
    strategy = "" if row.next_strategy is None else f" {row.next_strategy}"
    return clock(row.next_launch_at) + strategy


HEADERS = ("TASK", "AGENT", "PHASE", "ATTEMPT", "ELAPSED", "REASON", "NEXT", "EVIDENCE")
ATTEMPT_COLUMN = HEADERS.index("ATTEMPT")
EMPTY = "no tasks in the journal"


def row_cells(row: TaskStatus) -> list[str]:
    """A row's cells under :data:`HEADERS`."""
    return [
        row.task_id,
        row.agent,
        str(row.phase),
        attempt_cell(row.attempt, row.budget, row.releases),
        duration(row.elapsed),
        _reason(row),
        _next(row),
        _evidence(row),
    ]


def condition_note(condition: UsageCondition) -> str:
    count = len(condition.tasks)
    return (
        f"waiting for the quota reset at {clock(condition.until)} UTC ({condition.agent_type}), "
        f"{count} task{'s' if count != 1 else ''}\n"
    )


def delay_note(row: TaskStatus) -> str | None:
    """The line above the table for a task whose last exit was noticed late."""
    if row.detection_delay is None or row.detection_delay < DETECTION_DELAY_SHOWN:
        return None
    return (
        f"{row.task_id}: its last exit was noticed {duration(row.detection_delay)} after the "
        "agent ended (the supervisor was busy or not running)\n"
    )
