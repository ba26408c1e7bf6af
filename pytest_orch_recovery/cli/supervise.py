"""``orch-recovery supervise --config fleet.toml``: run the engine on the fleet, long-lived.

Idle is not exit: tasks arrive through ``orch-recovery submit`` while it runs. SIGTERM or
SIGINT stops the supervisor and leaves the agents running; started again (also after SIGKILL)
it replays its journal and re-adopts live attempts -- none is launched twice. docs/production.md
walks through it. With a fleet store (``--host NAME``, docs/multi-host.md) the journal and the
intake are the store's. Exit 0 after a stop, 2 on a usage error (the fleet file's ``file:line:
key: message``, a journal another supervisor holds, a tmux socket it did not start, a store
without a host name), 1 when this host lost a task's lease or the store stayed unreachable.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from types import FrameType

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.cli.logsetup import add_log_options, configure
from pytest_orch_recovery.engine.errors import UsageError
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.fleet.supervisor import (
    DeliveryRecordError,
    FleetSupervisor,
    LeaseLostError,
)
from pytest_orch_recovery.infra import argtypes
from pytest_orch_recovery.runtime.tmux import TmuxError
from pytest_orch_recovery.store.journal import JournalError

PROG = "orch-recovery supervise"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Supervise a fleet of agents on your repository: launch, watch, attribute "
        "failures, recover. Runs until SIGTERM/SIGINT; the agents keep running after it stops.",
    )
    parser.add_argument(
        "--config", required=True, metavar="FLEET.toml", help="the fleet file (docs/production.md)"
    )
    parser.add_argument(
        "--host",
        type=argtypes.host_name,
        metavar="NAME",
        help="this machine's name in the fleet store (letters, digits, '-', '_'); required "
        "with a store: each host runs its own supervisor (docs/multi-host.md)",
    )
    parser.add_argument(
        "--store",
        type=argtypes.store_url,
        metavar="URL",
        help="the fleet store several hosts share, postgresql://USER@HOST:PORT/DB; overrides "
        "the fleet file's 'store' (default: the fleet file's journal, one host)",
    )
    parser.add_argument(
        "--stop-agents",
        action="store_true",
        help="on stop, also stop the agents this supervisor runs (journaled first: the next "
        "supervisor resumes them and does not count them as a fleet-wide failure)",
    )
    add_log_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    configure("supervise", args.log_format, args.log_level)
    try:
        config = load_fleet(args.config)
    except FleetConfigError as exc:
        return fail(PROG, str(exc))
    if args.store is not None:
        config = dataclasses.replace(config, store=args.store)
    stopping_errors: tuple[type[BaseException], ...] = (LeaseLostError,)
    if config.store is not None:
        if args.host is None:
            return fail(PROG, "--host NAME is required with a fleet store")
        try:  # psycopg is the optional 'postgres' extra
            from pytest_orch_recovery.store.postgres import StoreError
        except ImportError as exc:
            return fail(
                PROG,
                f"the fleet store needs psycopg ({exc.name}): "
                "pip install 'pytest-orch-recovery[postgres]'",
            )
        stopping_errors = (LeaseLostError, StoreError)
    try:
        supervisor = FleetSupervisor(config, host_name=args.host)
    except (JournalError, TmuxError, DeliveryRecordError, UsageError) as exc:
        return fail(PROG, str(exc))
    except stopping_errors as exc:  # the store unreachable past its outage limit
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        then = "stopping the agents too" if args.stop_agents else "agents keep running"
        supervisor.say(f"{signal.Signals(signum).name}: stopping ({then})")
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    journal = f"journal {config.journal}" if config.store is None else f"host {args.host}"
    code = 0
    try:
        supervisor.say(
            f"supervising {config.repository} ({journal}, "
            f"tmux socket {config.tmux_socket}, spool {config.spool})"
        )
        supervisor.serve(stop.is_set)
    except stopping_errors as exc:
        # A lost lease or an unreachable store: no more decisions from this process. The
        # agents keep running; a supervisor started again takes back what this host holds.
        supervisor.say(f"stopping: {exc}", logging.ERROR)
        code = 1
    finally:
        supervisor.close(stop_agents=args.stop_agents)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    supervisor.say("stopped")
    return code
