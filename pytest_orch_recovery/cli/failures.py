"""``orch-recovery failures``: every failed attempt a journal attributed - reason, confidence,
exit, the strategy decided next, and the evidence behind it. Exit 2 on a usage error."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from typing import Any

from pytest_orch_recovery.cli import failurerows, failurescache
from pytest_orch_recovery.cli.fleet_output import (
    FleetSettings,
    add_host_filter,
    add_journal_options,
    attempt_hosts,
    check_host_filter,
    fail,
    fleet_settings,
    from_kept,
    history_keeping,
    json_chunks,
    table,
    write_chunks,
)
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.report.fleetview import FailedAttempt, FleetView
from pytest_orch_recovery.report.jsondoc import Rows
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import JournalError

PROG = "orch-recovery failures"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="List every failed attempt of a journal with its attributed reason, "
        "confidence, exit, evidence and the recovery strategy chosen next.",
    )
    add_journal_options(parser)
    parser.add_argument("--agent", metavar="NAME", help="only the failures of this agent")
    add_host_filter(parser)
    parser.add_argument(
        "--evidence",
        type=int,
        default=1,
        choices=range(0, failurerows.MAX_EVIDENCE + 1),
        metavar="N",
        help="evidence lines shown per failure in the table, strongest first (0-10, default 1;"
        " json always has all)",
    )
    return parser


def _host(f: FailedAttempt, hosts: Mapping[tuple[str, int], str]) -> str | None:
    return None if f.attempt is None else hosts.get((f.task_id, f.attempt))


def render(
    failures: list[FailedAttempt],
    fmt: str,
    evidence: int,
    hosts: Mapping[tuple[str, int], str] | None = None,
) -> str:
    """``hosts`` ((task, attempt) -> host) comes from a fleet store: a HOST column / field."""
    return "".join(render_chunks(failures, fmt, evidence, hosts))


def _json_rows(
    failures: list[FailedAttempt], hosts: Mapping[tuple[str, int], str] | None
) -> Iterator[dict[str, Any]]:
    for f in failures:
        data = f.to_json()
        if hosts is not None:
            data["host"] = _host(f, hosts)
        yield data


def render_chunks(
    failures: list[FailedAttempt],
    fmt: str,
    evidence: int,
    hosts: Mapping[tuple[str, int], str] | None = None,
) -> Iterator[str]:
    """:func:`render`'s text in pieces, written as they are made."""
    if fmt == "json":
        return json_chunks("failures", {"failures": Rows(_json_rows(failures, hosts))})
    return iter((_table(failures, evidence, hosts),))


def _table(
    failures: list[FailedAttempt], evidence: int, hosts: Mapping[tuple[str, int], str] | None
) -> str:
    rows = []
    for f in failures:
        lines = failurerows.evidence_lines(f, evidence)
        row = [*failurerows.row_cells(f), lines[0]]
        if hosts is not None:
            row.insert(2, _host(f, hosts) or "-")
        rows.append(row)
        rows += [[""] * (len(row) - 1) + [line] for line in lines[1:]]
    headers = list(failurerows.HEADERS)
    if hosts is not None:
        headers.insert(2, "HOST")
    return table(headers, rows, empty=failurerows.EMPTY)


def run(args: argparse.Namespace) -> int:
    try:
        settings = fleet_settings(args)
        check_host_filter(args, settings)
        chunks = _cached(args, settings)
        if chunks is not None:
            write_chunks(chunks)
            return 0
        view = FleetView(_history(settings))
        hosts = attempt_hosts(settings)
    except (UsageError, JournalError) as exc:
        return fail(PROG, str(exc))
    failures = [
        f
        for f in view.failures()
        if (args.agent is None or f.agent == args.agent)
        and (args.host is None or (hosts is not None and _host(f, hosts) == args.host))
    ]
    write_chunks(render_chunks(failures, args.format, args.evidence, hosts))
    return 0


def _cached(args: argparse.Namespace, settings: FleetSettings) -> Iterator[str] | None:
    """The output from the rows kept beside the one journal read (failurescache), when
    there are rows to use."""
    return from_kept(
        settings,
        lambda journal: failurescache.render_cached(
            journal, args.format, args.evidence, args.agent
        ),
    )


def _history(settings: FleetSettings) -> History:
    """The journal's history; one journal read whole past its size keeps its ended tasks'
    rows beside it for the next read."""
    return history_keeping(settings, failurescache.save, failurescache.CACHE_FROM)
