"""One ``partial`` row as text: its table cells, and the next actions of the agent's
checkpoint file. Shared by the command and by the rows it keeps for ended tasks
(:mod:`.partialcache`), so both print the same."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pytest_orch_recovery.infra.checkpoint import checkpoint_dir, read_checkpoint_safely
from pytest_orch_recovery.report.fleetview import PartialReport
from pytest_orch_recovery.store import validation

__all__ = [
    "EMPTY",
    "HEADERS",
    "Actions",
    "CheckpointReader",
    "json_row",
    "next_actions",
    "next_cell",
    "plain_name",
    "row_cells",
]

HEADERS = (
    "TASK",
    "AGENT",
    "PHASE",
    "DELIVERABLES",
    "UNCOMMITTED",
    "AHEAD",
    "PUSHED",
    "PR",
    "TESTS",
    "MISSING WORK",
    "NEXT ACTIONS",
)
EMPTY = "no tasks in the journal"

# The next actions of an agent's checkpoint file, and why it could not be used (or None).
Actions = tuple[tuple[str, ...], str | None]


def next_actions(directory: Path | None, agent: str) -> Actions:
    checkpoint, problem = read_checkpoint_safely(directory, agent, None)
    return (() if checkpoint is None else checkpoint.next_actions), problem


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _deliverables(r: PartialReport) -> str:
    if str(r.phase) == "succeeded":
        return "succeeded" + ("" if r.attempt is None else f" at attempt {r.attempt}")
    if not r.probed:
        return "not probed (no failed attempt)"
    total = len(r.work.deliverables_present) + len(r.work.deliverables_missing)
    after = "" if r.attempt is None else f"after attempt {r.attempt}: "
    files = f"{after}{len(r.work.deliverables_present)}/{total}"
    if r.work.deliverables_missing:
        files += " missing " + ", ".join(r.work.deliverables_missing)
    return files


def row_cells(r: PartialReport) -> list[str]:
    """A row's cells under :data:`HEADERS` but the last (the checkpoint's, read live)."""
    return [
        r.task_id,
        r.agent,
        str(r.phase),
        _deliverables(r),
        str(len(r.work.uncommitted)) if r.probed else "-",
        str(r.work.commits_ahead) if r.probed else "-",
        _yes_no(r.work.pushed if r.probed else None),
        "-" if r.work.pr is None else f"#{r.work.pr}",
        _yes_no(r.work.tests_passed),
        "; ".join(r.missing_work) or "-",
    ]


def json_row(report: PartialReport, actions: Actions) -> dict[str, Any]:
    """A row of ``--format json``: the report and its checkpoint's fields."""
    data = report.to_json()
    data["next_actions"] = list(actions[0])
    data["checkpoint_file_problem"] = actions[1]
    return data


def next_cell(actions: Actions) -> str:
    """The NEXT ACTIONS cell."""
    steps, problem = actions
    return "; ".join(steps) or (f"checkpoint unusable: {problem}" if problem else "-")


class CheckpointReader:
    """Each agent's :data:`Actions`, as :func:`next_actions` reads them, with the checkpoint
    directory listed once: an agent whose file is not in it has none, without a look of its
    own (a quarter million of them in a large journal). Files that are there are read as
    they are now, each time: an agent writes its checkpoint while it works."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._names: frozenset[str] | None
        try:
            self._names = frozenset(os.listdir(checkpoint_dir(directory)))
        except (FileNotFoundError, NotADirectoryError):  # no directory: no checkpoint files
            self._names = frozenset()
        except (OSError, ValueError):  # unreadable: ask for each file
            self._names = None

    def __call__(self, agent: str, plain: bool | None = None) -> Actions:
        """``plain``: whether the name is one a checkpoint file can have, when known."""
        names = self._names
        if names is not None and f"{agent}.json" not in names:
            known = plain if plain is not None else plain_name(agent)
            if known:
                return (), None
        return next_actions(self._directory, agent)


def plain_name(agent: str) -> bool:
    """A name whose checkpoint file is ``<dir>/<agent>.json`` (any other is refused by name,
    and :func:`next_actions` says why)."""
    try:
        validation.agent_name(agent)
    except validation.RuleError:
        return False
    return True
