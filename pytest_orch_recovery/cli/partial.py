"""``orch-recovery partial``: what each task's last failed attempt left - deliverables present
and missing, uncommitted files, commits ahead, pushed, PR, tests, the work still missing, and
the next actions of the agent's checkpoint file. Exit 2 on a usage error."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from pytest_orch_recovery.cli import partialcache, partialrows
from pytest_orch_recovery.cli.fleet_output import (
    FleetSettings,
    add_journal_options,
    fail,
    fleet_settings,
    from_kept,
    history_keeping,
    json_chunks,
    table,
    write_chunks,
)
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.report.fleetview import FleetView, PartialReport
from pytest_orch_recovery.report.jsondoc import Rows
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import JournalError

PROG = "orch-recovery partial"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Partial work per task, as the journal recorded it after the last failed "
        "attempt, with the next actions of each agent's checkpoint file.",
    )
    add_journal_options(parser)
    parser.add_argument("--agent", metavar="NAME", help="only the tasks of this agent")
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        metavar="DIR",
        help="where agents' checkpoint files are (default: the --config fleet file's "
        "checkpoint_dir, else $ORCH_CHECKPOINT_DIR, else /tmp/orchestration_checkpoints)",
    )
    return parser


_Actions = list[partialrows.Actions]


def render(reports: list[PartialReport], actions: _Actions, fmt: str) -> str:
    return "".join(render_chunks(reports, actions, fmt))


def render_chunks(reports: list[PartialReport], actions: _Actions, fmt: str) -> Iterator[str]:
    """:func:`render`'s text in pieces, written as they are made."""
    if fmt == "json":
        rows = map(partialrows.json_row, reports, actions)
        return json_chunks("partial", {"tasks": Rows(rows)})
    return iter((_table(reports, actions),))


def _table(reports: list[PartialReport], actions: _Actions) -> str:
    rows = [
        [*partialrows.row_cells(r), partialrows.next_cell(a)]
        for r, a in zip(reports, actions, strict=True)
    ]
    return table(partialrows.HEADERS, rows, empty=partialrows.EMPTY)


def run(args: argparse.Namespace) -> int:
    try:
        settings = fleet_settings(args)
        chunks = _cached(args, settings)
        if chunks is not None:
            write_chunks(chunks)
            return 0
        view = FleetView(_history(settings))
    except (UsageError, JournalError) as exc:
        return fail(PROG, str(exc))
    reports = view.partial_work(agent=args.agent)
    read = partialrows.CheckpointReader(settings.checkpoint_dir)
    actions = [read(r.agent) for r in reports]
    write_chunks(render_chunks(reports, actions, args.format))
    return 0


def _cached(args: argparse.Namespace, settings: FleetSettings) -> Iterator[str] | None:
    """The output from the rows kept beside the one journal read (partialcache), when
    there are rows to use."""
    return from_kept(
        settings,
        lambda journal: partialcache.render_cached(
            journal, args.format, args.agent, settings.checkpoint_dir
        ),
    )


def _history(settings: FleetSettings) -> History:
    """The journal's history; one journal read whole past its size keeps its ended tasks'
    rows beside it for the next read."""
    return history_keeping(settings, partialcache.save, partialcache.CACHE_FROM)
