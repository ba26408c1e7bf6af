"""``orch-recovery ingest``: adopt an existing orchestrator's attempts into a journal.

Reads the seed orchestrator's results and logs (layout in :mod:`~pytest_orch_recovery.infra.
results`), probes each agent's worktree, attributes every ended attempt with the engine's
classifier and appends what the journal does not hold yet - so running it again appends
nothing. ``--follow`` keeps watching until SIGINT or SIGTERM (exit 0). Prints one summary line
per pass that appended something; files it cannot use are reported one line each on stderr and
skipped. Exit 2 on a usage error (a missing directory, a journal another process holds).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.infra.argtypes import branch_pattern, ref_name, seconds
from pytest_orch_recovery.infra.gh import GhPullRequests
from pytest_orch_recovery.ingest.adoption import (
    DEFAULT_BRANCH_PATTERN,
    AdoptionReport,
    AdoptionSource,
    adopt,
)
from pytest_orch_recovery.ingest.results import ResultsError
from pytest_orch_recovery.report.safetext import terminal
from pytest_orch_recovery.store.journal import Journal, JournalError

PROG = "orch-recovery ingest"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Adopt an existing orchestrator's attempts: read its results files "
        "(<agent>_results_<suffix>.json) and logs (<agent>_<suffix>.log), probe each agent's "
        "worktree, attribute every ended attempt and append it to the journal exactly once.",
    )
    parser.add_argument(
        "--results",
        type=Path,
        required=True,
        metavar="DIR",
        help="the orchestrator's results directory",
    )
    parser.add_argument(
        "--logs",
        type=Path,
        metavar="DIR",
        help="the orchestrator's log directory (<agent>_<suffix>.log)",
    )
    parser.add_argument(
        "--worktrees",
        type=Path,
        metavar="DIR",
        help="directory holding one git worktree per agent, named after it; "
        "without it nothing is probed",
    )
    parser.add_argument(
        "--branch",
        type=branch_pattern,
        default=DEFAULT_BRANCH_PATTERN,
        metavar="PATTERN",
        help="each agent's branch, with {agent} for its name (default "
        f"{DEFAULT_BRANCH_PATTERN!r}); a worktree on another branch is reported",
    )
    parser.add_argument(
        "--base",
        type=ref_name,
        default="main",
        metavar="REF",
        help="the branch agents' work is counted from (default main)",
    )
    parser.add_argument(
        "--gh-repo",
        type=Path,
        metavar="DIR",
        help="a checkout of the repository: look up each agent's pull request "
        "with `gh pr view <branch>` run there (gh's own credentials); without "
        "it a PR is unknown, so a pushed branch with no PR is not reported",
    )
    parser.add_argument(
        "--journal",
        type=Path,
        required=True,
        metavar="PATH",
        help="the journal to append to (created if absent; one writer at a time)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep watching for new and ending attempts until SIGINT/SIGTERM",
    )
    parser.add_argument(
        "--interval",
        type=seconds(0.05, 3600),
        default=2.0,
        metavar="SECONDS",
        help="with --follow: seconds between passes (default 2)",
    )
    return parser


def _summary(report: AdoptionReport) -> str:
    return (
        f"{PROG}: appended {report.appended} event(s): {report.tasks} task(s), "
        f"{report.launched} attempt(s) launched, {report.exited} ended "
        f"({report.succeeded} succeeded, {report.failed} failed attributed); "
        f"{report.running} still running"
    )


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _pass(journal: Journal, source: AdoptionSource, seen: set[str]) -> AdoptionReport:
    report = adopt(journal, source)
    for problem in report.problems:
        if problem not in seen:  # --follow: say each problem once
            seen.add(problem)
            print(f"{PROG}: warning: {terminal(problem)}", file=sys.stderr)
    if report.appended:
        print(_summary(report), flush=True)
    return report


def run(args: argparse.Namespace) -> int:
    if args.gh_repo is not None and not args.gh_repo.is_dir():
        print(f"{PROG}: error: {args.gh_repo}: not a directory (--gh-repo)", file=sys.stderr)
        return 2
    source = AdoptionSource(
        results=args.results,
        logs=args.logs,
        worktrees=args.worktrees,
        branch=args.branch,
        base=args.base,
        prs=None if args.gh_repo is None else GhPullRequests(args.gh_repo),
    )
    seen: set[str] = set()
    try:
        with Journal(args.journal) as journal:
            if not args.follow:
                report = _pass(journal, source, seen)
                if not report.appended:
                    print(f"{PROG}: nothing new ({report.running} still running)")
                return 0
            stop = threading.Event()
            with _stop_on_signals(stop):  # from the first pass on: a signal ends it cleanly
                _pass(journal, source, seen)
                while not stop.wait(args.interval):
                    _pass(journal, source, seen)
            return 0
    except (JournalError, ResultsError) as exc:
        return fail(PROG, str(exc))
