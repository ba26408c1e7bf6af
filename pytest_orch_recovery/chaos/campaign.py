"""Run one chaos scenario on the tier asked for, with the scenario's own seed.

:func:`run_scenario` is the one entry point the pytest items, the ``orch_engine`` fixture and
the benchmarks share: it picks the tier (:func:`tier_named`), derives the scenario's seed from the
campaign's (:func:`scenario_seed`), and returns the tier's :class:`ScenarioRun` with what the
scenario itself says about its faults.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

from pytest_orch_recovery.chaos.record import ScenarioRun
from pytest_orch_recovery.chaos.scenario import Scenario, check_scenario
from pytest_orch_recovery.chaos.tiers import Tier, TierUnavailable, tier_problem, unusable
from pytest_orch_recovery.chaos.tiers.sim import SimTier

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.fleetdb import FleetDatabase
    from pytest_orch_recovery.chaos.fleetfile import ProductionSettings


def scenario_seed(seed: int, name: str) -> int:
    """The seed one scenario runs with: the campaign seed and the scenario's name, hashed, so a
    scenario behaves the same whichever worker runs it and whatever else is collected.

    >>> scenario_seed(1, "a") == scenario_seed(1, "a") != scenario_seed(2, "a")
    True
    """
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def tier_named(name: str, database: FleetDatabase | None = None) -> Tier:
    """The tier called ``name``, ready to run here, or :class:`TierUnavailable` saying why not
    (:func:`~pytest_orch_recovery.chaos.tiers.tier_problem`'s line). ``database``: where the
    tmux tier's host scenarios keep their fleet stores (``--orch-hosts``, ``--orch-store``)."""
    problem = tier_problem(name)
    if problem is not None:
        raise TierUnavailable(problem)
    if name == "sim":
        return SimTier()
    try:
        # Imported here: the tmux tier needs libtmux, which an installation may lack.
        from pytest_orch_recovery.chaos.tiers.tmuxhosts import HostsTmuxTier
    except ImportError as exc:
        raise TierUnavailable(unusable(name, f"its modules do not import ({exc})")) from None
    return HostsTmuxTier(database)


def run_scenario(
    scenario: Scenario,
    *,
    tier: str,
    seed: int,
    agent: str,
    fleet: ProductionSettings | None = None,
    hosts: int = 1,
    database: FleetDatabase | None = None,
) -> ScenarioRun:
    """Run ``scenario`` on ``tier`` (one of :data:`TIERS`) and collect what it produced; a
    scenario built in code meets the rules a file meets at load (:func:`check_scenario`).
    ``fleet``: run it under a production fleet file's settings (``--orch-fleet``).
    ``hosts``: over at least this many hosts sharing a fleet store (``--orch-hosts``);
    ``database``: that store's server on the tmux tier (see :func:`tier_named`)."""
    if scenario.source is None:
        check_scenario(scenario)
    if hosts > scenario.hosts:
        scenario = dataclasses.replace(scenario, hosts=hosts)
    own_seed = scenario_seed(seed, scenario.name)
    if fleet is None:
        run = tier_named(tier, database).run(scenario, seed=own_seed, agent=agent)
    else:
        run = tier_named(tier, database).run(
            fleet.applied_to(scenario), seed=own_seed, agent=agent, fleet=fleet
        )
        run.overrides = [o.to_json() for o in fleet.overrides(scenario)]
    run.generated = scenario.generated
    # The scenario's own word on a fault's ledger status travels with the run (--orch-strict).
    for fault_id, status in scenario.fault_expectations.items():
        if fault_id in run.ledger:
            run.ledger[fault_id]["expected_status"] = status
    return run
