"""``orch-recovery supervise --config fleet.toml``: run the engine on the fleet, long-lived.

Idle is not exit: tasks arrive through ``orch-recovery submit`` while it runs. SIGTERM or
SIGINT stops the supervisor and leaves the agents running; started again (also after SIGKILL)
it replays its journal and re-adopts live attempts -- none is launched twice. docs/production.md
walks through it. Exit 0 after a stop, 2 on a usage error (the fleet file's ``file:line: key:
message``, a journal another supervisor holds, a tmux socket it did not start).
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.fleet.supervisor import DeliveryRecordError, FleetSupervisor
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
        "--stop-agents",
        action="store_true",
        help="on stop, also stop the agents this supervisor runs (journaled first: the next "
        "supervisor resumes them and does not count them as a fleet-wide failure)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        config = load_fleet(args.config)
        supervisor = FleetSupervisor(config)
    except (FleetConfigError, JournalError, TmuxError, DeliveryRecordError) as exc:
        return fail(PROG, str(exc))
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        then = "stopping the agents too" if args.stop_agents else "agents keep running"
        supervisor.say(f"{signal.Signals(signum).name}: stopping ({then})")
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor.say(
            f"supervising {config.repository} (journal {config.journal}, "
            f"tmux socket {config.tmux_socket}, spool {config.spool})"
        )
        supervisor.serve(stop.is_set)
    finally:
        supervisor.close(stop_agents=args.stop_agents)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    supervisor.say("stopped")
    return 0
