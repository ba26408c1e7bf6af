"""``orch-recovery release --config fleet.toml TARGET [--note TEXT]``: after an operator fix.

TARGET is an escalated task, or a systematic incident's id (the ``incident`` of its
``task_escalated`` events, as ``status`` and the ``on_escalate`` page name it). A task escalated
in an open incident releases the whole incident: every task it holds gets a fresh attempt
(resuming what its workspace holds) and its reason's circuit breaker closes; the command says
which tasks it frees. A task escalated on its own frees only itself. The supervisor reads the
fleet file again first, so a fix made there (``skip_permissions = true``) applies to the new
attempts. The note is journalled as the operator's action.

The journal is read (without its lock) to check the target first: a task that is not escalated
(running, succeeded, unknown) is one error line, exit 2, and nothing is spooled. With a fleet
store the store's events are checked, and the request goes through the store to the host that
holds the task (an incident: every host holding one of its tasks), from any machine with the
fleet file; its supervisor takes it at its next pass. A task nobody holds (its host's lease
ran out and no host claimed it yet) is refused: release it once a host has. Exit 2 on a usage
error.
"""

from __future__ import annotations

import argparse

from pytest_orch_recovery.cli.fleet_output import (
    fail,
    read_events,
    request_release,
    store_events,
)
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.incidents import Incident, IncidentBook
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.fleet.intake import Spool

PROG = "orch-recovery release"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Release an escalated task, or a systematic incident, after a fix."
    )
    parser.add_argument("--config", required=True, metavar="FLEET.toml", help="the fleet file")
    parser.add_argument(
        "task",
        metavar="TARGET",
        help="an escalated task id, or an incident id (releases every task it holds)",
    )
    parser.add_argument("--note", metavar="TEXT", help="what the operator fixed (journalled)")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        config = load_fleet(args.config)
    except FleetConfigError as exc:
        return fail(PROG, str(exc))
    if not args.task.strip() or "\0" in args.task:
        return fail(PROG, "TARGET: must be a task or incident id")
    book = IncidentBook()
    tasks: set[str] = set()
    try:
        if config.store is not None:  # every host's events; the request goes to the holder
            events = store_events(config.store)
        else:
            events = read_events([config.journal]) if config.journal.exists() else []
    except UsageError as exc:
        return fail(PROG, str(exc))
    for event in events:
        book.fold(event)
        if event.kind is EventKind.TASK_SUBMITTED and event.task_id is not None:
            tasks.add(event.task_id)
    what = book.release_target(args.task, tasks)
    if isinstance(what, str):
        return fail(PROG, f"{args.task}: {what}")
    where = ""
    if config.store is None:
        Spool(config.spool).release(args.task, args.note)
    else:
        concerned = book.held(what) if isinstance(what, Incident) else [args.task]
        try:
            hosts = request_release(config.store, args.task, concerned, args.note)
        except UsageError as exc:
            return fail(PROG, str(exc))
        if not hosts:
            return fail(
                PROG,
                f"{args.task}: no host holds it now (its lease ran out); release it again "
                "once a host has claimed it",
            )
        where = f" from host {', '.join(hosts)}"
    if isinstance(what, Incident):
        print(
            f"release of incident {what.incident_id} ({what.reason}) requested{where}: "
            f"frees {', '.join(book.held(what))}"
        )
    else:
        print(f"release of {args.task} requested{where}")
    return 0
