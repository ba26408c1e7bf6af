"""Where a scenario runs: the tiers' names, the one protocol every tier implements, and the two
ways a tier declines a run.

The tiers are ``sim`` (:class:`pytest_orch_recovery.chaos.simulation.SimTier`: the real
coordinator over the in-process simulation) and ``tmux``
(:class:`pytest_orch_recovery.chaos.harness.TmuxTier`: real agents in tmux sessions on git
worktrees); :func:`pytest_orch_recovery.chaos.campaign.tier_named` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pytest_orch_recovery.engine.errors import OrchRecoveryError

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.record import ScenarioRun
    from pytest_orch_recovery.chaos.scenario import Scenario

TIERS = ("sim", "tmux")


class TierUnsupported(OrchRecoveryError, RuntimeError):
    """The tier runs, but cannot inject one of this scenario's faults: the item is skipped
    with the reason, never silently passed."""


class TierUnavailable(OrchRecoveryError, RuntimeError):
    """The requested tier cannot run here (e.g. the tmux harness is not installed)."""


class Tier(Protocol):
    """One way to run a scenario; every tier returns the same :class:`ScenarioRun`."""

    name: str

    def problem(self) -> str | None:
        """Why this tier cannot run here (a missing tool, say), or None when it can."""
        ...

    def run(self, scenario: Scenario, *, seed: int, agent: str) -> ScenarioRun:
        """Run ``scenario`` with ``seed`` (already the scenario's own) and ``agent``; raise
        :class:`TierUnsupported` when one of its faults cannot be injected here."""
        ...
