"""Run the real coordinator over the in-process simulation runtime, start to finish.

This is what Hypothesis properties and benchmarks call (tasks and a fault schedule in, a
finished journal out), and the campaign's ``sim`` tier (:class:`SimTier`). It also plays the
operator (fixing the dispatcher's configuration after an escalation) and can crash the
coordinator itself at a chosen journal event, replacing it with one rebuilt from the journal
— the way a production supervisor restarts a dead coordinator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_orch_recovery.chaos.faults import FaultLedger, FaultSpec
from pytest_orch_recovery.chaos.record import RepoState, ScenarioRun, journal_orphans, task_outcomes
from pytest_orch_recovery.chaos.scenario import OPERATOR_ACTIONS, Scenario
from pytest_orch_recovery.chaos.tiers.simhosts import SimFleet, SimulatedCrash
from pytest_orch_recovery.chaos.tiers.simruntime import SimRuntime, SimWorkspace
from pytest_orch_recovery.engine.coordinator import Coordinator, CoordinatorConfig
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import Phase, Task
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.fleet.steps import CoordinatorSteps, submit_task
from pytest_orch_recovery.store.journal import Journal

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.fleetfile import ProductionSettings


class CrashingJournal(Journal):
    """A journal that crashes its writer right after the Nth append is durable."""

    def __init__(self, crash_after: int, path: Path | None = None) -> None:
        super().__init__(path, validate=False)
        self.crash_after = crash_after
        self.crashed = False

    def append(self, event: Event) -> Event:
        stored = super().append(event)
        if not self.crashed and len(self) >= self.crash_after:
            self.crashed = True
            raise SimulatedCrash(f"coordinator killed after journal event {stored.seq}")
        return stored


@dataclass
class SimOutcome:
    events: list[Event]
    runtime: SimRuntime
    coordinator: Coordinator
    crashes: int = 0
    outcomes: dict[str, Phase] = field(default_factory=dict)

    @property
    def ledger(self) -> FaultLedger:
        return self.runtime.ledger


class Supervisor(CoordinatorSteps):
    """Plays the process supervisor of a production coordinator with the production steps
    (:class:`~pytest_orch_recovery.fleet.steps.CoordinatorSteps`): when a step dies of
    :class:`SimulatedCrash`, a replacement on the same journal (``start(True)``) finishes it.
    Used by both tiers."""

    def __init__(self, start: Callable[[bool], Coordinator]) -> None:
        super().__init__(start, deaths=(SimulatedCrash,))

    def drive(
        self,
        tasks: Sequence[Task],
        agents: Sequence[str] | None,
        operator_actions: Sequence[str],
        operator: Callable[[str], None],
        after_submit: Callable[[Coordinator], None] | None = None,
    ) -> None:
        """Submit the tasks, run to quiescence, then for each operator action: let
        ``operator`` fix the world, release the tasks it concerns, and run again."""
        names: list[str | None] = list(agents) if agents is not None else [None] * len(tasks)
        for task, name in zip(tasks, names, strict=True):
            self.step(functools.partial(submit_task, task=task, agent=name))
        if after_submit is not None:
            after_submit(self.coordinator)
        self.step(Coordinator.run)
        for action in operator_actions:
            text, reasons = OPERATOR_ACTIONS[action]
            operator(action)
            self.step(functools.partial(Coordinator.release, action=text, reasons=reasons))
            self.step(Coordinator.run)


def simulate(
    tasks: Sequence[Task],
    faults: Sequence[FaultSpec] = (),
    *,
    seed: int = 0,
    agents: Sequence[str] | None = None,
    operator_actions: Sequence[str] = (),
    crash_after_event: int | None = None,
    policy_factory: Callable[[int], Policy] | None = None,
    config: CoordinatorConfig | None = None,
    journal: Journal | None = None,
    tests_broken: Sequence[str] = (),
    permission_flag: bool = True,
) -> SimOutcome:
    """Submit ``tasks``, run to quiescence, apply ``operator_actions`` (each followed by
    another run), and return the journal's events. ``permission_flag=False``: the dispatcher
    leaves out ``--dangerously-skip-permissions`` (a fleet file's ``skip_permissions = false``)
    until an operator action fixes it."""
    runtime = SimRuntime(
        seed=seed, faults=faults, tests_broken=tests_broken, permission_flag=permission_flag
    )
    if any(f.entry.scope == "host" for f in faults):
        raise InvalidValue("host faults need several hosts: run the scenario with hosts >= 2")
    crash_after_event = _crash_after(faults, crash_after_event)
    if crash_after_event is not None:
        journal = CrashingJournal(crash_after_event)
    if journal is None:
        journal = Journal(None, validate=False)
    cfg = config or CoordinatorConfig(seed=seed, attempt_timeout=1800.0)

    def new_policy() -> Policy:
        return policy_factory(seed) if policy_factory else Policy(seed=seed)

    def start(rebuild: bool) -> Coordinator:
        coordinator = Coordinator(runtime, journal, policy=new_policy(), config=cfg)
        return coordinator.recover() if rebuild else coordinator

    def operator(action: str) -> None:
        if action == "fix_permission_flag":
            runtime.fix_permission_flag()

    supervisor = Supervisor(start)
    supervisor.drive(tasks, agents, operator_actions, operator)
    coordinator, crashes = supervisor.coordinator, supervisor.crashes
    # Workspaces nobody owns any more and nobody cleaned up are orphans.
    owners = coordinator.owners()
    for agent in sorted(runtime.workspaces):
        if agent not in owners and agent not in runtime.cleaned:
            coordinator.note_workspace_orphaned(f"sim://{agent}", agent)
    runtime.ledger.mark_fleet_faults(faults, journal.events(), crashes)
    outcome = SimOutcome(list(journal.events()), runtime, coordinator, crashes)
    outcome.outcomes = {tid: s.phase for tid, s in coordinator.tasks.items()}
    return outcome


class SimTier:
    """The campaign's ``sim`` tier: the real coordinator over the in-process simulation, on a
    virtual clock. Runs anywhere, injects every fault of the catalogue."""

    name = "sim"

    def run(
        self, scenario: Scenario, *, seed: int, agent: str, fleet: ProductionSettings | None = None
    ) -> ScenarioRun:
        tasks = [t.task for t in scenario.tasks]
        agents = [t.agent or f"task-agent-{t.task.task_id}" for t in scenario.tasks]
        # A scenario's ``attempt_timeout`` is in real seconds for real runs; the simulation's
        # agents work on a virtual clock whose steps take 2-20 s, so it keeps the production
        # default, or a fleet file's production value.
        config = CoordinatorConfig(
            seed=seed,
            attempt_timeout=1800.0 if fleet is None else fleet.attempt_timeout,
            max_live=scenario.max_live_agents,
            fallback_agents=scenario.fallback_agents,
        )
        permission_flag = True if fleet is None else fleet.skip_permissions
        if scenario.hosts > 1:
            return self._run_hosts(scenario, seed, agent, config, permission_flag)
        out = simulate(
            tasks,
            scenario.faults,
            seed=seed,
            agents=agents,
            operator_actions=scenario.operator_actions,
            crash_after_event=scenario.crash_after_event,
            policy_factory=lambda s: scenario.policy.policy(seed=s, **scenario.budget()),
            config=config,
            permission_flag=permission_flag,
        )
        runtime = out.runtime
        repos: dict[str, RepoState] = {}
        for task, name in zip(tasks, agents, strict=True):
            repos[task.task_id] = _repo_state(task, runtime.workspaces.get(name))
        # The simulation journals unowned, uncleaned workspaces itself ("sim://<agent>"); an
        # attempt still running after the run is left behind as well.
        orphans = sorted(
            set(journal_orphans(out.events)) | {f"sim://{name}" for name in runtime.live()}
        )
        return ScenarioRun(
            scenario=scenario.name,
            events=list(out.events),
            ledger=out.ledger.entries,
            outcomes=task_outcomes(out.events),
            repos=repos,
            orphans=orphans,
            tier=self.name,
            seed=seed,
            agent=agent,
            violations=list(runtime.violations),
            crashes=out.crashes,
        )

    def _run_hosts(
        self,
        scenario: Scenario,
        seed: int,
        agent: str,
        config: CoordinatorConfig,
        permission_flag: bool,
    ) -> ScenarioRun:
        """The scenario over ``scenario.hosts`` simulated hosts sharing one fleet store."""
        tasks = [t.task for t in scenario.tasks]
        agents = [t.agent or f"task-agent-{t.task.task_id}" for t in scenario.tasks]
        out = SimFleet(
            scenario.hosts,
            scenario.faults,
            seed=seed,
            new_policy=lambda: scenario.policy.policy(seed=seed, **scenario.budget()),
            config=config,
            capacity=scenario.max_live_agents,
            permission_flag=permission_flag,
            crash_after_event=_crash_after(scenario.faults, scenario.crash_after_event),
        ).run(tasks, agents, scenario.operator_actions)
        events = out.events
        out.ledger.mark_fleet_faults(scenario.faults, events, out.crashes)
        repos: dict[str, RepoState] = {}
        orphans = set(journal_orphans(events))
        for task, name in zip(tasks, agents, strict=True):
            holder = out.holder(task.task_id)
            ws = None if holder is None else holder.runtime.workspaces.get(name)
            repos[task.task_id] = _repo_state(task, ws)
        for host in out.hosts:
            if host.state == "down":
                continue  # its machine is gone, and everything on it
            owners = host.coordinator.owners()
            for name in host.runtime.live():
                orphans.add(f"sim://{host.name}/{name}")
            for name in host.runtime.workspaces:
                if name not in owners and name not in host.runtime.cleaned:
                    orphans.add(f"sim://{host.name}/{name}")
        return ScenarioRun(
            scenario=scenario.name,
            events=events,
            ledger=out.ledger.entries,
            outcomes=task_outcomes(events),
            repos=repos,
            orphans=sorted(orphans),
            tier=self.name,
            seed=seed,
            agent=agent,
            violations=out.violations,
            crashes=out.crashes,
        )


def _crash_after(faults: Sequence[FaultSpec], crash_after_event: int | None) -> int | None:
    """The journal event after which a ``coordinator_crash`` kills the coordinator."""
    if crash_after_event is None and any(f.kind == "coordinator_crash" for f in faults):
        return next(f.effective_trigger.n for f in faults if f.kind == "coordinator_crash") * 4
    return crash_after_event


def _repo_state(task: Task, ws: SimWorkspace | None) -> RepoState:
    if ws is None:
        return RepoState()
    return RepoState(
        files=tuple(p for p in task.deliverables if p in ws.files),
        commits=ws.commits,
        pushed=ws.commits > 0 and ws.pushed_commits == ws.commits,
        pr=None if ws.pr is None else ws.pr.number,
    )
