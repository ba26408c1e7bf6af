"""``orch-recovery partial``: what each task's last failed attempt left - deliverables present
and missing, uncommitted files, commits ahead, pushed, PR, tests, the work still missing, and
the next actions of the agent's checkpoint file. Exit 2 on a usage error."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_orch_recovery.cli.fleet_output import (
    add_journal_options,
    fail,
    fleet_history,
    fleet_settings,
    json_chunks,
    table,
    write_chunks,
)
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.infra.checkpoint import read_checkpoint_safely
from pytest_orch_recovery.report.fleetview import FleetView, PartialReport
from pytest_orch_recovery.report.jsondoc import Rows

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


def _next_actions(directory: Path | None, agent: str) -> tuple[tuple[str, ...], str | None]:
    checkpoint, problem = read_checkpoint_safely(directory, agent, None)
    return (() if checkpoint is None else checkpoint.next_actions), problem


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


_Actions = list[tuple[tuple[str, ...], str | None]]


def render(reports: list[PartialReport], actions: _Actions, fmt: str) -> str:
    return "".join(render_chunks(reports, actions, fmt))


def _json_rows(reports: list[PartialReport], actions: _Actions) -> Iterator[dict[str, Any]]:
    for report, (next_actions, problem) in zip(reports, actions, strict=True):
        data = report.to_json()
        data["next_actions"] = list(next_actions)
        data["checkpoint_file_problem"] = problem
        yield data


def render_chunks(reports: list[PartialReport], actions: _Actions, fmt: str) -> Iterator[str]:
    """:func:`render`'s text in pieces, written as they are made."""
    if fmt == "json":
        return json_chunks("partial", {"tasks": Rows(_json_rows(reports, actions))})
    return iter((_table(reports, actions),))


def _table(reports: list[PartialReport], actions: _Actions) -> str:
    rows = []
    for r, (next_actions, problem) in zip(reports, actions, strict=True):
        if str(r.phase) == "succeeded":
            files = "succeeded" + ("" if r.attempt is None else f" at attempt {r.attempt}")
        elif not r.probed:
            files = "not probed (no failed attempt)"
        else:
            total = len(r.work.deliverables_present) + len(r.work.deliverables_missing)
            after = "" if r.attempt is None else f"after attempt {r.attempt}: "
            files = f"{after}{len(r.work.deliverables_present)}/{total}"
            if r.work.deliverables_missing:
                files += " missing " + ", ".join(r.work.deliverables_missing)
        todo = "; ".join(r.missing_work) or "-"
        nexts = "; ".join(next_actions) or (f"checkpoint unusable: {problem}" if problem else "-")
        rows.append(
            [
                r.task_id,
                r.agent,
                str(r.phase),
                files,
                str(len(r.work.uncommitted)) if r.probed else "-",
                str(r.work.commits_ahead) if r.probed else "-",
                _yes_no(r.work.pushed if r.probed else None),
                "-" if r.work.pr is None else f"#{r.work.pr}",
                _yes_no(r.work.tests_passed),
                todo,
                nexts,
            ]
        )
    return table(
        [
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
        ],
        rows,
        empty="no tasks in the journal",
    )


def run(args: argparse.Namespace) -> int:
    try:
        settings = fleet_settings(args)
        view = FleetView(fleet_history(settings))
    except UsageError as exc:
        return fail(PROG, str(exc))
    reports = view.partial_work(agent=args.agent)
    actions = [_next_actions(settings.checkpoint_dir, r.agent) for r in reports]
    write_chunks(render_chunks(reports, actions, args.format))
    return 0
