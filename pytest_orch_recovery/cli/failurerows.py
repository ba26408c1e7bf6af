"""One ``failures`` row as text: its table cells. Shared by the command and by the rows it
keeps for ended tasks (:mod:`.failurescache`), so both print the same."""

from __future__ import annotations

from pytest_orch_recovery.cli.fleet_output import clock
from pytest_orch_recovery.report.fleetview import FailedAttempt

__all__ = ["EMPTY", "HEADERS", "MAX_EVIDENCE", "TIME_COLUMN", "evidence_lines", "row_cells"]

HEADERS = ("TIME", "TASK", "AGENT", "ATTEMPT", "REASON", "CONF", "EXIT", "STRATEGY", "EVIDENCE")
TIME_COLUMN = HEADERS.index("TIME")
EMPTY = "no failed attempts in the journal"
MAX_EVIDENCE = 10  # evidence lines a table row may show (--evidence)


def _exit(f: FailedAttempt) -> str:
    if f.exit is None:
        return "-"
    code = "-" if f.exit.display_code is None else str(f.exit.display_code)
    name = f.exit.signal_name
    timed = " timeout" if f.exit.timed_out else ""
    return code + (f" ({name})" if name else "") + timed


def evidence_lines(f: FailedAttempt, evidence: int) -> list[str]:
    """The EVIDENCE cells of a row: its ``evidence`` strongest, ``-`` when none."""
    return [e.detail for e in f.evidence[:evidence]] or ["-"]


def row_cells(f: FailedAttempt) -> list[str]:
    """A row's cells under :data:`HEADERS` but the last (its evidence lines)."""
    return [
        clock(f.time),
        f.task_id,
        f.agent,
        "-" if f.attempt is None else str(f.attempt),
        str(f.reason),
        f"{f.confidence:.2f}",
        _exit(f),
        "undecided" if f.strategy is None else str(f.strategy),
    ]
