"""``orch-recovery reap --config fleet.toml``: remove the tmux server a dead supervisor left.

A supervisor keeps its tmux server running when it stops (its agents run on), and one killed
with SIGKILL leaves it running even when no agent is left. ``supervise`` reaps such an empty
server when it starts; this command does it without starting one. It touches only a server
this fleet's runtime started (the server's ``@orch-runtime`` option names the fleet's
state directory), with no session left, while no supervisor holds the fleet's journal.
Exit 0 when no such server is left running, 1 when sessions or someone else's server are
there (nothing touched), 2 on a usage error.
"""

from __future__ import annotations

import argparse

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.runtime.server import reap_empty_server
from pytest_orch_recovery.store.journal import Journal, JournalError

PROG = "orch-recovery reap"

_SAID = {
    "none": "no tmux server runs on socket {socket}",
    "reaped": "removed the empty tmux server on socket {socket}",
    "busy": "tmux server on socket {socket} still has sessions (agents of a stopped "
    "supervisor): left alone; 'orch-recovery supervise' adopts them",
    "foreign": "tmux server on socket {socket} was not started by this fleet's runtime: left alone",
}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Remove the tmux server a supervisor of this fleet left running with no "
        "session (after a SIGKILL). Only a server the fleet's runtime started, only while no "
        "supervisor runs on the fleet's journal.",
    )
    parser.add_argument(
        "--config", required=True, metavar="FLEET.toml", help="the fleet file (docs/production.md)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        config = load_fleet(args.config, check_base=False)
        if config.journal.exists():
            Journal(config.journal).close()  # the lock: no supervisor is running
    except FleetConfigError as exc:
        return fail(PROG, str(exc))
    except JournalError as exc:
        return fail(PROG, f"{exc}: a supervisor is running; stop it first")
    found = reap_empty_server(config.tmux_socket, str(config.state_dir.resolve()))
    print(f"{PROG}: {_SAID[found].format(socket=config.tmux_socket)}")
    return 0 if found in ("none", "reaped") else 1
