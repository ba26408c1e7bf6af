"""``orch-recovery classify``: attribute why an attempt ended; print one JSON object.

Exits 0 whatever the reason; 2 on a usage error (argparse style, naming the file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.model import ExitInfo, signal_number


def _exit_code(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid exit code {text!r}: not an integer") from None


def _signal(text: str) -> int:
    try:
        number = signal_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if number <= 0 or number > 64:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r}")
    return number


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Attribute why an agent attempt ended, weighing the exit, logs, the "
        "agent's result JSON and the deliverables present. Prints one JSON object "
        "(reason, confidence, evidence, retry_after, api_status) and exits 0.",
    )
    parser.add_argument(
        "--exit-code",
        type=_exit_code,
        metavar="N",
        help="exit status, shell convention (130 = SIGINT, 124 = timeout); -N means "
        "killed by signal N",
    )
    parser.add_argument(
        "--signal",
        type=_signal,
        metavar="NAME",
        help="signal that ended the process: INT, SIGINT or 2 (tmux pane_dead_signal)",
    )
    parser.add_argument(
        "--delivered",
        type=_signal,
        action="append",
        default=[],
        metavar="NAME",
        help="a signal the supervisor saw delivered to the agent's process group "
        "(repeatable, in order)",
    )
    parser.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="FILE",
        help="log or captured pane text to scan (repeatable); '-' reads standard input",
    )
    parser.add_argument(
        "--result",
        metavar="FILE",
        help="the agent's result JSON (Claude Code --output-format json, or the last "
        "'result' event of stream-json); an empty file means no result was printed",
    )
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        help="directory the deliverables are checked under",
    )
    parser.add_argument(
        "--deliverable",
        action="append",
        default=[],
        metavar="PATH",
        help="a file the task must produce, relative to --workspace (repeatable)",
    )
    parser.add_argument(
        "--timed-out",
        action="store_true",
        help="the supervisor killed the attempt for exceeding its timeout",
    )
    tests = parser.add_mutually_exclusive_group()
    tests.add_argument(
        "--tests-passed",
        dest="tests_passed",
        action="store_true",
        default=None,
        help="the task's tests were run and passed",
    )
    tests.add_argument(
        "--tests-failed",
        dest="tests_passed",
        action="store_false",
        help="the task's tests were run and failed",
    )
    return parser


class _UsageError(Exception):
    pass


def _read_log(name: str) -> LogText:
    if name == "-":
        return LogText("stdin", sys.stdin.read())
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise _UsageError(f"argument --log: cannot read {name}: {exc.strerror}") from None
    return LogText(name, data.decode("utf-8", errors="replace"))


def _parse_result(name: str) -> Mapping[str, Any] | None:
    try:
        text = Path(name).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise _UsageError(f"argument --result: cannot read {name}: {exc.strerror}") from None
    if not text.strip():
        return None  # the agent printed nothing (Claude Code interrupted while waiting)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as whole_error:
        return _parse_stream(name, text, whole_error)
    if not isinstance(data, dict):
        raise _UsageError(
            f"argument --result: {name}: line 1: expected a JSON object, "
            f"got {type(data).__name__}"
        )
    return data


def _parse_stream(name: str, text: str, whole_error: json.JSONDecodeError) -> Mapping[str, Any]:
    """stream-json: one event per line; the ``result`` event is the one we want. Text that
    is not JSON lines is reported with the position of the whole-document error."""
    found: dict[str, Any] | None = None
    parsed_any = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            bad = exc if parsed_any else whole_error
            line_no = number if parsed_any else whole_error.lineno
            col, msg = bad.colno, bad.msg
            raise _UsageError(
                f"argument --result: invalid JSON in {name}: line {line_no} column {col}: {msg}"
            ) from None
        parsed_any = True
        if isinstance(event, dict) and event.get("type") == "result":
            found = event
    if found is None:
        raise _UsageError(f"argument --result: {name}: no 'type': 'result' event found")
    return found


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


def _observation(args: argparse.Namespace) -> Observation:
    if args.deliverable and not args.workspace:
        raise _UsageError("argument --deliverable: needs --workspace DIR")
    if args.log.count("-") > 1:
        raise _UsageError("argument --log: '-' (standard input) given more than once")
    present: list[str] = []
    missing: list[str] = []
    if args.workspace:
        workspace = Path(args.workspace)
        if not workspace.is_dir():
            raise _UsageError(f"argument --workspace: not a directory: {args.workspace}")
        for rel in args.deliverable:
            (present if (workspace / rel).exists() else missing).append(rel)
    return Observation(
        exit=_exit_info(args),
        result=_parse_result(args.result) if args.result else None,
        logs=tuple(_read_log(name) for name in args.log),
        deliverables_present=tuple(present),
        deliverables_missing=tuple(missing),
        timed_out=bool(args.timed_out),
        signals_delivered=tuple(args.delivered),
        tests_passed=args.tests_passed,
    )


def run(args: argparse.Namespace) -> int:
    try:
        obs = _observation(args)
    except _UsageError as exc:
        # argparse's own format and exit status 2, like errors found while parsing
        build_parser("orch-recovery classify").error(str(exc))
    json.dump(classify(obs).to_json(), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0
