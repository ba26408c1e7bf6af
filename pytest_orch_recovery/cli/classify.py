"""``orch-recovery classify``: attribute why an attempt ended; print one JSON object.

Exits 0 whatever the reason; 2 on a usage error (argparse style, naming the file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.engine.model import ExitInfo, WorkItem, WorkKind, signal_number
from pytest_orch_recovery.infra.argtypes import exit_code, input_file, relative_path
from pytest_orch_recovery.ingest import results as seed
from pytest_orch_recovery.store import validation


def _signal(text: str) -> int:
    try:
        number = signal_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if number <= 0 or number > 64:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}")
    return number


def _add_exit_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("how the attempt ended")
    group.add_argument(
        "--exit-code",
        type=exit_code,
        metavar="N",
        help="exit status, shell convention (130 = SIGINT, 124 = timeout); -N means "
        "killed by signal N",
    )
    group.add_argument(
        "--signal",
        type=_signal,
        metavar="NAME",
        help="signal that ended the process: INT, SIGINT or 2 (tmux pane_dead_signal)",
    )
    group.add_argument(
        "--delivered",
        type=_signal,
        action="append",
        default=[],
        metavar="NAME",
        help="a signal the supervisor saw delivered to the agent's process group "
        "(repeatable, in order)",
    )
    group.add_argument(
        "--timed-out",
        action="store_true",
        help="the supervisor killed the attempt for exceeding its timeout",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what the attempt printed")
    group.add_argument(
        "--log",
        type=input_file,
        action="append",
        default=[],
        metavar="FILE",
        help="log or captured pane text to scan (repeatable); '-' reads standard input",
    )
    group.add_argument(
        "--result",
        type=input_file,
        metavar="FILE",
        help="the agent's result: Claude Code's --output-format json, a stream-json log (its "
        "last 'result' event; a log cut off mid-line is read as far as it goes), the seed "
        "orchestrator's <agent>_results_<suffix>.json (status, exit_code, rate_limited) or "
        "its <agent>_<suffix>.log; an empty file means no result was printed",
    )


def _add_workspace_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what the attempt left")
    group.add_argument(
        "--workspace",
        metavar="DIR",
        help="directory the deliverables are checked under",
    )
    group.add_argument(
        "--deliverable",
        type=relative_path,
        action="append",
        default=[],
        metavar="PATH",
        help="a file the task must produce, relative to --workspace (repeatable)",
    )
    _add_yes_no(
        group,
        "tests_passed",
        ("--tests-passed", "the task's tests were run and passed"),
        ("--tests-failed", "the task's tests were run and failed"),
    )
    _add_yes_no(
        group,
        "pushed",
        ("--pushed", "the branch is on the remote"),
        ("--not-pushed", "the branch was not pushed: 'git push' is still undone"),
    )
    _add_yes_no(
        group,
        "pr_open",
        ("--pr-open", "the task's pull request is open"),
        ("--no-pr", "no pull request is open: 'open the PR' is still undone"),
    )


def _add_yes_no(
    group: argparse._ArgumentGroup, dest: str, yes: tuple[str, str], no: tuple[str, str]
) -> None:
    """A pair of flags for a fact that is true, false, or (neither given) unknown."""
    pair = group.add_mutually_exclusive_group()
    pair.add_argument(
        yes[0],
        dest=dest,
        action="store_true",
        default=None,
        help=yes[1] + " (default: unknown, not weighed)",
    )
    pair.add_argument(no[0], dest=dest, action="store_false", help=no[1])


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Attribute why an agent attempt ended, weighing the exit, logs, the "
        "agent's result JSON and the deliverables present. Prints one JSON object "
        "(reason, confidence, evidence, retry_after, api_status) and exits 0.",
    )
    _add_exit_options(parser)
    _add_output_options(parser)
    _add_workspace_options(parser)
    return parser


def _read_log(name: str) -> LogText:
    if name == "-":
        try:
            data = validation.read_stream(sys.stdin, seed.MAX_FILE_BYTES)
        except validation.RuleError as exc:
            raise UsageError(f"argument --log: standard input {exc}") from None
        return LogText("stdin", data.decode("utf-8", errors="replace"))
    try:
        text = seed.read_text(Path(name))
    except seed.ResultsError as exc:
        raise UsageError(f"argument --log: {exc}") from None
    return LogText(name, text)


@dataclass(frozen=True)
class _ResultFile:
    """What ``--result`` gave: a result object, the seed orchestrator's facts, or a log."""

    result: Mapping[str, Any] | None = None
    run: seed.RunResult | None = None
    log: seed.RunLog | None = None


def _parse_result(name: str) -> _ResultFile:
    try:
        text = seed.read_text(Path(name))
    except seed.ResultsError as exc:
        raise UsageError(f"argument --result: {exc}") from None
    if not text.strip():
        return _ResultFile()  # the agent printed nothing (Claude Code interrupted while waiting)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole_error:
        return _parse_stream(name, text, whole_error)
    except RecursionError:
        raise UsageError(f"argument --result: {name}: JSON nested too deep") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise UsageError(
            f"argument --result: {name}: invalid JSON: {str(exc).splitlines()[0][:200]}"
        ) from None
    try:
        validation.check_document(data)
    except validation.DocumentError as exc:
        raise UsageError(f"argument --result: {name}: {exc.describe()}") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"argument --result: {name}: line 1: expected a JSON object, got {type(data).__name__}"
        )
    if seed.is_run_result(data):
        try:
            return _ResultFile(run=seed.run_result(Path(name), data))
        except seed.ResultsError as exc:
            raise UsageError(f"argument --result: {exc}") from None
    return _ResultFile(result=data)


def _parse_stream(name: str, text: str, whole_error: json.JSONDecodeError) -> _ResultFile:
    """stream-json or an orchestrator's log: one event per line, wrapper lines between; a
    line cut off by an interruption is skipped. Text that is neither is reported with the
    position of the whole-document error."""
    log = seed.parse_log(name, text)
    if not seed.looks_like_log(log):
        raise UsageError(
            f"argument --result: invalid JSON in {name}: line {whole_error.lineno} column "
            f"{whole_error.colno}: {whole_error.msg}"
        )
    return _ResultFile(result=log.result, log=log)


def _exit_info(args: argparse.Namespace) -> ExitInfo | None:
    code: int | None = args.exit_code
    sig: int | None = args.signal
    if code is None and sig is None:
        return None
    if code is None:
        return ExitInfo(status=None, signal=sig, source="signal")
    info = ExitInfo.from_returncode(code) if code < 0 else ExitInfo.from_shell_status(code)
    if sig is not None and info.signal is None:
        return ExitInfo(info.status, sig, info.timed_out, info.source)
    return info


def _undone(args: argparse.Namespace) -> tuple[str, ...]:
    undone = []
    if args.pushed is False:
        undone.append(WorkItem(WorkKind.PUSH).describe())
    if args.pr_open is False:
        undone.append(WorkItem(WorkKind.OPEN_PR).describe())
    return tuple(undone)


def _observation(args: argparse.Namespace) -> Observation:
    if args.deliverable and not args.workspace:
        raise UsageError("argument --deliverable: needs --workspace DIR")
    if args.log.count("-") > 1:
        raise UsageError("argument --log: '-' (standard input) given more than once")
    present: list[str] = []
    missing: list[str] = []
    if args.workspace:
        workspace = Path(args.workspace)
        if not workspace.is_dir():
            raise UsageError(f"argument --workspace: not a directory: {args.workspace}")
        for rel in args.deliverable:
            (present if (workspace / rel).exists() else missing).append(rel)
    given = _parse_result(args.result) if args.result else _ResultFile()
    found = seed.observation(given.run, given.log)  # what the result file itself says
    exit_info = _exit_info(args)
    return Observation(
        exit=exit_info if exit_info is not None else found.exit,
        result=given.result,
        logs=(*found.logs, *(_read_log(name) for name in args.log)),
        deliverables_present=tuple(present),
        deliverables_missing=tuple(missing),
        timed_out=bool(args.timed_out) or found.timed_out,
        signals_delivered=tuple(args.delivered),
        tests_passed=args.tests_passed,
        work_missing=_undone(args),
        rate_limited=found.rate_limited,
    )


def run(args: argparse.Namespace) -> int:
    try:
        obs = _observation(args)
    except UsageError as exc:
        # argparse's own format and exit status 2, like errors found while parsing
        build_parser("orch-recovery classify").error(str(exc))
    json.dump(classify(obs).to_json(), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0
