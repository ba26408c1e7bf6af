"""The bundled sim agent: a small agent loop that honours Claude Code's CLI contract.

Run it as ``python -m pytest_orch_recovery.doubles.simagent -p PROMPT ...`` or ``orch-sim-agent``.
It speaks the Anthropic Messages API at ``$ANTHROPIC_BASE_URL`` and behaves like
``claude -p`` for the flags, outputs, transcripts, permissions, hooks, retries and signals an
orchestrator relies on (see ``cli.py`` for the contract and its sources).

Importing the package imports nothing else: ``main`` (the ``orch-sim-agent`` console script)
and ``VERSION`` load their modules when first asked for.
"""

from __future__ import annotations

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


__all__ = ["VERSION", "main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from pytest_orch_recovery.doubles.simagent.cli import main

        return main
    if name == "VERSION":
        from pytest_orch_recovery.doubles.simagent.version import VERSION

        return VERSION
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
