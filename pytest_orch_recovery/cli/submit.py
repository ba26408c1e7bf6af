"""``orch-recovery submit --config fleet.toml TASK.toml...``: hand tasks to the supervisor.

Each task file holds one task (top-level keys) or several (``[[tasks]]``) in the scenarios'
task schema. The tasks go into the fleet's spool, where the running supervisor (or the next
one started) takes them; with a fleet store (``store =`` in the fleet file), into its queue,
where a host with room claims them. Exit 2 on a usage error naming the file, line and key, 1
when the store cannot be reached.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.fleet.intake import Spool, Submission, TaskFileError, load_tasks

PROG = "orch-recovery submit"
STORE_PATIENCE = 30.0  # seconds an operator's submit retries an unreachable store


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
    if config.store is not None:
        return _submit_to_store(config.store, submissions)
    spool = Spool(config.spool)
    for submission in submissions:
        spool.submit(submission)
        print(f"submitted {submission.task.task_id}")
    return 0


def _submit_to_store(url: str, submissions: list[Submission]) -> int:
    """Queue the tasks in the fleet store, where a host with room claims each; a task id
    already there is left as it is (submitting twice is one task)."""
    try:  # psycopg is the optional 'postgres' extra
        from pytest_orch_recovery.store.postgres import PostgresStore, StoreError
        from pytest_orch_recovery.store.schema import SchemaError
    except ImportError as exc:
        return fail(PROG, f"the fleet store needs psycopg ({exc.name})")
    try:
        with PostgresStore(url, outage_limit=STORE_PATIENCE) as store:
            for submission in submissions:
                new = store.submit(submission.task, agent=submission.agent)
                print(f"{'submitted' if new else 'already submitted'} {submission.task.task_id}")
    except SchemaError as exc:
        return fail(PROG, str(exc))
    except StoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0
