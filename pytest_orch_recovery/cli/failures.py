"""``orch-recovery failures``: every failed attempt a journal attributed - reason, confidence,
exit, the strategy decided next, and the evidence behind it. Exit 2 on a usage error."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from typing import Any

from pytest_orch_recovery.cli.fleet_output import (
    add_host_filter,
    add_journal_options,
    attempt_hosts,
    check_host_filter,
    clock,
    fail,
    fleet_history,
    fleet_settings,
    json_chunks,
    table,
    write_chunks,
)
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.report.fleetview import FailedAttempt, FleetView
from pytest_orch_recovery.report.jsondoc import Rows

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
        choices=range(0, 11),
        metavar="N",
        help="evidence lines shown per failure in the table, strongest first (0-10, default 1;"
        " json always has all)",
    )
    return parser


def _exit(f: FailedAttempt) -> str:
    if f.exit is None:
        return "-"
    code = "-" if f.exit.display_code is None else str(f.exit.display_code)
    name = f.exit.signal_name
    timed = " timeout" if f.exit.timed_out else ""
    return code + (f" ({name})" if name else "") + timed


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
        lines = [e.detail for e in f.evidence[:evidence]] or ["-"]
        row = [
            clock(f.time),
            f.task_id,
            f.agent,
            "-" if f.attempt is None else str(f.attempt),
            str(f.reason),
            f"{f.confidence:.2f}",
            _exit(f),
            "undecided" if f.strategy is None else str(f.strategy),
            lines[0],
        ]
        if hosts is not None:
            row.insert(2, _host(f, hosts) or "-")
        rows.append(row)
        rows += [[""] * (len(row) - 1) + [line] for line in lines[1:]]
    headers = ["TIME", "TASK", "AGENT", "ATTEMPT", "REASON", "CONF", "EXIT", "STRATEGY", "EVIDENCE"]
    if hosts is not None:
        headers.insert(2, "HOST")
    return table(headers, rows, empty="no failed attempts in the journal")


def run(args: argparse.Namespace) -> int:
    try:
        settings = fleet_settings(args)
        check_host_filter(args, settings)
        view = FleetView(fleet_history(settings))
        hosts = attempt_hosts(settings)
    except UsageError as exc:
        return fail(PROG, str(exc))
    failures = [
        f
        for f in view.failures()
        if (args.agent is None or f.agent == args.agent)
        and (args.host is None or (hosts is not None and _host(f, hosts) == args.host))
    ]
    write_chunks(render_chunks(failures, args.format, args.evidence, hosts))
    return 0
