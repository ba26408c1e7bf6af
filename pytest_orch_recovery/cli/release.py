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
store the store's events are checked, and the request goes to the spool of the host whose
fleet file is named: run it on the host that holds the task (``status`` shows HOST). Exit 2 on
a usage error.
"""

from __future__ import annotations

import argparse

from pytest_orch_recovery.cli.fleet_output import fail, read_events, store_events
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
        if config.store is not None:  # every host's events; the request goes to this host
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
    Spool(config.spool).release(args.task, args.note)
    if isinstance(what, Incident):
        print(
            f"release of incident {what.incident_id} ({what.reason}) requested: "
            f"frees {', '.join(book.held(what))}"
        )
    else:
        print(f"release of {args.task} requested")
    return 0
