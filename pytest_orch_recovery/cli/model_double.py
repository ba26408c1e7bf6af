"""``orch-recovery model-double``: serve the scripted Messages API in the foreground.

Prints the base URL (one line, flushed) once it is listening, serves until SIGINT or SIGTERM,
then stops cleanly and exits 0. A plan file that cannot be used exits 2 with the file, line
and field named. Without ``--plan`` (and for any task the plan does not hold) each task is
served the standard plan of its own brief: write its deliverables, run its tests, commit, push,
open the pull request. The plan format: docs/model-double.md.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, PlanError, load_plan


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a scripted Anthropic Messages API (point ANTHROPIC_BASE_URL at the "
        "printed URL). A task the plan does not hold is served from its brief: its "
        "deliverables written, tests run, committed, pushed, PR opened. The plan format is in "
        "docs/model-double.md.",
    )
    parser.add_argument(
        "--plan",
        type=Path,
        help="plan file (.toml or JSON); without one every task is served from its brief",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--transcript",
        type=Path,
        default=None,
        help="append one JSON line per request to this file",
    )
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        plan = Plan() if args.plan is None else load_plan(args.plan)
    except PlanError as exc:
        print(f"orch-recovery model-double: error: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            double = ModelDouble(
                plan, host=args.host, port=args.port, transcript_path=args.transcript
            ).start()
        except OSError as exc:
            print(
                f"orch-recovery model-double: error: cannot listen on {args.host}:{args.port}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return 2
        try:
            print(double.url, flush=True)
            done.wait()
        finally:
            double.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
