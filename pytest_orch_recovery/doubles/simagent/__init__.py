"""The bundled sim agent: a small agent loop that honours Claude Code's CLI contract.

Run it as ``python -m pytest_orch_recovery.doubles.simagent -p PROMPT ...`` or ``orch-sim-agent``.
It speaks the Anthropic Messages API at ``$ANTHROPIC_BASE_URL`` and behaves like
``claude -p`` for the flags, outputs, transcripts, permissions, hooks, retries and signals an
orchestrator relies on (see ``cli.py`` for the contract and its sources).
"""

from __future__ import annotations

from pytest_orch_recovery.doubles.simagent.cli import main
from pytest_orch_recovery.doubles.simagent.version import VERSION

__all__ = ["VERSION", "main"]
