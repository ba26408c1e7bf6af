"""``orch-recovery``: the command-line face of the engine.

Each subcommand lives in ``pytest_orch_recovery.cli.<module>`` and is imported only when
it is named, so ``orch-recovery --help`` and a hook calling ``orch-recovery checkpoint`` after
every tool call stay cheap. A command module provides ``build_parser(prog) -> ArgumentParser``
and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pytest_orch_recovery import __version__

# name -> (module under pytest_orch_recovery.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "classify": ("classify", "attribute why an agent attempt failed; prints one JSON object"),
    "checkpoint": ("checkpoint", "update an agent's checkpoint (also from a PostToolUse hook)"),
    "report": ("report", "render the recovery metrics dashboard from a journal"),
    "model-double": ("model_double", "serve the scripted Anthropic Messages API double"),
    "status": ("status", "one row per task: phase, attempt, last reason, next launch"),
    "failures": ("failures", "failed attempts with reason, evidence and strategy"),
    "partial": ("partial", "partial work per task: deliverables, commits, push, PR"),
    "ingest": ("ingest", "adopt an existing orchestrator's attempts into a journal"),
    "supervise": ("supervise", "run the engine on your repository's fleet, long-lived"),
    "submit": ("submit", "hand task files to a running supervisor"),
    "release": ("release", "give an escalated task a fresh attempt after an operator fix"),
    "forge": ("forge", "a local GitHub stand-in: create it and print the PATH line for its gh"),
    "drill": ("drill", "a supervised fleet under injected faults, in a throwaway world"),
    "reap": ("reap", "remove the empty tmux server a killed supervisor left running"),
    "store": ("store", "the PostgreSQL fleet store several hosts share: schema, hosts"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orch-recovery",
        description="Recovery engine for fleets of AI coding agents.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<14}{text}" for name, (_, text) in COMMANDS.items())
        + "\n\nRun 'orch-recovery COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not args or args[0].startswith("-"):
        top.parse_args(args)  # handles --help / --version, errors on anything else
        top.print_help()
        return 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        top.parse_args([name])  # argparse prints "invalid choice" and exits 2
        return 2
    module = importlib.import_module(f"pytest_orch_recovery.cli.{COMMANDS[name][0]}")
    parser: argparse.ArgumentParser = module.build_parser(f"orch-recovery {name}")
    ns = parser.parse_args(rest)
    code: int = module.run(ns)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
