"""``orch-recovery submit --config fleet.toml TASK.toml...``: hand tasks to the supervisor.

Each task file holds one task (top-level keys) or several (``[[tasks]]``) in the scenarios'
task schema. The tasks go into the fleet's spool, where the running supervisor (or the next
one started) takes them. Exit 2 on a usage error naming the file, line and key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.fleet.intake import Spool, Submission, TaskFileError, load_tasks

PROG = "orch-recovery submit"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Submit tasks to a supervised fleet.")
    parser.add_argument("--config", required=True, metavar="FLEET.toml", help="the fleet file")
    parser.add_argument(
        "tasks",
        nargs="+",
        type=Path,
        metavar="TASK.toml",
        help="task files (id, title, deliverables, ...)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        config = load_fleet(args.config)
        submissions: list[Submission] = []
        for path in args.tasks:
            submissions.extend(load_tasks(path))  # all valid before any is spooled
    except (FleetConfigError, TaskFileError) as exc:
        return fail(PROG, str(exc))
    spool = Spool(config.spool)
    for submission in submissions:
        spool.submit(submission)
        print(f"submitted {submission.task.task_id}")
    return 0
