"""``orch-recovery release --config fleet.toml TASK [--note TEXT]``: after an operator fix.

An escalated task gets a fresh attempt (resuming what its workspace holds). The supervisor
reads the fleet file again first, so a fix made there (``skip_permissions = true``) applies to
the new attempt, and closes the circuit breaker of the task's reason. The note is journalled
as the operator's action. Exit 2 on a usage error.
"""

from __future__ import annotations

import argparse

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.fleet.intake import Spool

PROG = "orch-recovery release"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Release an escalated task after a fix."
    )
    parser.add_argument("--config", required=True, metavar="FLEET.toml", help="the fleet file")
    parser.add_argument("task", metavar="TASK", help="the task id")
    parser.add_argument("--note", metavar="TEXT", help="what the operator fixed (journalled)")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        config = load_fleet(args.config)
    except FleetConfigError as exc:
        return fail(PROG, str(exc))
    if not args.task.strip() or "\0" in args.task:
        return fail(PROG, "TASK: must be a task id")
    Spool(config.spool).release(args.task, args.note)
    print(f"release of {args.task} requested")
    return 0
