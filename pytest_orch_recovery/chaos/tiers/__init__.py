"""Where a scenario runs: the tiers' names, the one protocol every tier implements, and the two
ways a tier declines a run.

The tiers are ``sim`` (:class:`pytest_orch_recovery.chaos.tiers.sim.SimTier`: the real
coordinator over the in-process simulation) and ``tmux``
(:class:`pytest_orch_recovery.chaos.tiers.tmux.TmuxTier`: real agents in tmux sessions on git
worktrees); :func:`pytest_orch_recovery.chaos.campaign.tier_named` picks one.
:func:`tier_problem` says whether a tier can run here without importing it: the controller of
an xdist run checks before it starts its workers and never runs a scenario itself.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from typing import TYPE_CHECKING, Protocol

from pytest_orch_recovery.engine.errors import InvalidValue, OrchRecoveryError

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.fleetfile import ProductionSettings
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

    def run(
        self, scenario: Scenario, *, seed: int, agent: str, fleet: ProductionSettings | None = None
    ) -> ScenarioRun:
        """Run ``scenario`` with ``seed`` (already the scenario's own) and ``agent``; raise
        :class:`TierUnsupported` when one of its faults cannot be injected here. ``fleet``:
        a production fleet file's settings, already applied to ``scenario`` where it pins
        none; the tier applies the rest (budget, permission flag, environment)."""
        ...


def environment_ready() -> str | None:
    """Why real runs cannot happen here, or None when tmux and git are available."""
    for tool in ("tmux", "git"):
        if not any(
            os.access(os.path.join(d, tool), os.X_OK)
            for d in os.environ.get("PATH", "").split(os.pathsep)
        ):
            return f"{tool} is not on PATH"
    return None


def unusable(name: str, why: str) -> str:
    """The one line saying tier ``name`` cannot run here.

    >>> unusable("tmux", "git is not on PATH")
    'the tmux tier cannot run here: git is not on PATH; use --orch-tier sim'
    """
    return f"the {name} tier cannot run here: {why}; use --orch-tier sim"


def tier_problem(name: str) -> str | None:
    """Why tier ``name`` cannot run here (:func:`unusable`'s line), or None when it can,
    found without importing the tier; ValueError for a name that is not a tier."""
    if name not in TIERS:
        raise InvalidValue(f"unknown tier {name!r}; expected one of {', '.join(TIERS)}")
    if name == "sim":
        return None
    if find_spec("libtmux") is None:
        return unusable(name, "libtmux is not installed")
    problem = environment_ready()
    return None if problem is None else unusable(name, problem)
