"""Several hosts on the simulation: one fleet store with leases and fencing, one coordinator
and one simulated machine per host, on virtual clocks kept in step.

The model follows the PostgreSQL fleet store (store/postgres.py) and the supervisor's loop
(fleet/supervisor.py), so the host faults mean on the simulation what they mean on real
hosts:

- Tasks wait in the store's queue. Every ``TICK`` each host that is up renews its leases
  (heartbeat), lets go of the tasks whose lease it lost (stopping their agents), claims what
  it has room for -- one task per host in turn, as concurrent ``SKIP LOCKED`` claims
  interleave -- and runs its coordinator to the end of the tick. A task whose lease ran
  out is claimed again at the next epoch and taken over from its history
  (``Coordinator.adopt``); its workspace comes along as the rescue ref would bring it.
- Every append is fenced: a write about a task from a host that does not hold a live lease
  of it is refused (:class:`StaleLease`), as the database's trigger refuses it.
- ``host_down``: the host's machine is gone (:meth:`SimRuntime.power_off`) and its
  coordinator with it. ``host_partition``: the host stops (frozen) for ``seconds`` while its
  agents run on; thawed, it first finishes what it was doing, which the store refuses, then
  its heartbeat finds the leases lost. ``store_outage``: every store operation begun in the
  window waits until it ends (the host's loop blocks; its agents do not).

Hosts interact only through the store, at tick boundaries and through fenced appends, so
running each host's coordinator to the tick's end in turn is exact for what the engine sees.
Simplified: a usage limit is per host (the account is shared in reality), and PR numbers are
per host (offset so they never collide).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_orch_recovery.chaos.faults import FaultLedger, FaultSpec, FaultStatus
from pytest_orch_recovery.chaos.scenario import OPERATOR_ACTIONS
from pytest_orch_recovery.chaos.tiers.simruntime import SIM_EPOCH, HostFault, SimRuntime
from pytest_orch_recovery.engine.coordinator import Coordinator, CoordinatorConfig
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.events import Event, EventKind
from pytest_orch_recovery.engine.model import Phase, Task
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.fleet.steps import CoordinatorSteps, submit_task
from pytest_orch_recovery.store.journal import Journal

LEASE = 30.0  # a fleet file's default lease, in virtual seconds
TICK = 5.0  # the loop pass: heartbeat and claims; under half the lease, as the fleet file wants
FREEZE = 2 * LEASE  # host_partition's default: frozen well past the lease
OUTAGE = 10.0  # store_outage's default
HORIZON = 14 * 24 * 3600.0  # virtual seconds after which an unsettled fleet is a violation
_SETTLED = (Phase.SUCCEEDED, Phase.ESCALATED)


class StaleLease(OrchRecoveryError):
    """The store refused a write about a task whose lease the writer does not hold."""

    def __init__(self, host: str, task_id: str) -> None:
        super().__init__(f"host {host} holds no live lease of {task_id}: write refused")
        self.task_id = task_id


class SimulatedCrash(OrchRecoveryError):
    """Kills the coordinator mid-step after the Nth journal append (``coordinator_crash``):
    raised by sim.py's ``CrashingJournal``, and by :class:`HostLog` counting fleet-wide."""


@dataclass
class _Lease:
    host: str
    epoch: int
    until: float
    done: bool = False


@dataclass
class FleetStore:
    """The fleet store on the virtual clock: queue, leases, fenced journal, outages."""

    lease: float = LEASE
    journal: Journal = field(default_factory=lambda: Journal(None, validate=False))
    queue: list[tuple[Task, str | None]] = field(default_factory=list)
    leases: dict[str, _Lease] = field(default_factory=dict)
    holders: dict[str, list[str]] = field(default_factory=dict)  # task -> hosts, in order
    writers: dict[int, str] = field(default_factory=dict)  # event seq -> the host that wrote it
    down_until: float = -float("inf")
    waits: int = 0  # operations that waited for the store to come back
    refused: int = 0  # appends refused by the fence
    crash_after: int | None = None
    crashed: bool = False

    def answer_at(self, now: float) -> float:
        """When an operation begun at ``now`` gets its answer: at once, or when the
        database is back (the store's client retries until then)."""
        if now < self.down_until:
            self.waits += 1
            return self.down_until
        return now

    def append(self, host: str, event: Event, now: float) -> Event:
        task_id = event.task_id
        if task_id is not None:
            lease = self.leases.get(task_id)
            if lease is None or lease.host != host or (not lease.done and lease.until <= now):
                self.refused += 1
                raise StaleLease(host, task_id)
            if event.kind is EventKind.TASK_SUCCEEDED:
                lease.done = True
        stored = self.journal.append(event)
        self.writers[stored.seq] = host
        return stored

    def heartbeat(self, host: str, now: float) -> set[str]:
        """Renew ``host``'s live leases; returns the tasks it still holds (done ones too)."""
        held = set()
        for task_id, lease in self.leases.items():
            if lease.host != host:
                continue
            if lease.done:
                held.add(task_id)
            elif lease.until > now:
                lease.until = now + self.lease
                held.add(task_id)
        return held

    def claimable(self, now: float) -> list[tuple[str, Task, str | None]]:
        out = []
        for task, agent in self.queue:
            lease = self.leases.get(task.task_id)
            if lease is None or (not lease.done and lease.until <= now):
                out.append((task.task_id, task, agent))
        return out

    def claim(self, host: str, task_id: str, now: float) -> int:
        lease = self.leases.get(task_id)
        epoch = 1 if lease is None else lease.epoch + 1
        self.leases[task_id] = _Lease(host, epoch, now + self.lease)
        self.holders.setdefault(task_id, []).append(host)
        return epoch

    def history(self, task_id: str) -> list[Event]:
        return [e for e in self.journal.events() if e.task_id == task_id]


class HostLog:
    """One host's :class:`~pytest_orch_recovery.engine.ports.EventLog` over the fleet store:
    its appends are fenced and wait out an outage; its events are those of the tasks it
    holds (what a coordinator rebuilt on this host takes up)."""

    def __init__(self, store: FleetStore, host: str, runtime: SimRuntime) -> None:
        self.store = store
        self.host = host
        self.runtime = runtime

    def append(self, event: Event) -> Event:
        clock = self.runtime.clock
        clock.advance_to(self.store.answer_at(clock.now()))  # the loop blocks, agents run
        stored = self.store.append(self.host, event, clock.now())
        store = self.store
        due = store.crash_after is not None and len(store.journal) >= store.crash_after
        if due and not store.crashed:
            store.crashed = True
            raise SimulatedCrash(f"coordinator of {self.host} killed after event {stored.seq}")
        return stored

    def events(self) -> list[Event]:
        mine = {t for t, lease in self.store.leases.items() if lease.host == self.host}
        return [e for e in self.store.journal.events() if e.task_id in mine]

    def __len__(self) -> int:
        return len(self.store.journal)


@dataclass
class SimHost:
    name: str
    runtime: SimRuntime
    steps: CoordinatorSteps
    capacity: int | None
    state: str = "up"  # up, down, frozen
    thaw_at: float = 0.0

    @property
    def coordinator(self) -> Coordinator:
        return self.steps.coordinator

    def active(self) -> int:
        return sum(1 for s in self.coordinator.tasks.values() if s.phase not in _SETTLED)


@dataclass
class FleetOutcome:
    store: FleetStore
    hosts: list[SimHost]
    ledger: FaultLedger
    crashes: int
    violations: list[str]

    @property
    def events(self) -> list[Event]:
        return list(self.store.journal.events())

    def holder(self, task_id: str) -> SimHost | None:
        """The host that held the task last."""
        names = self.store.holders.get(task_id)
        return None if not names else next(h for h in self.hosts if h.name == names[-1])


class SimFleet:
    """Drives ``hosts`` simulated hosts over one :class:`FleetStore` to quiescence."""

    def __init__(
        self,
        hosts: int,
        faults: Sequence[FaultSpec],
        *,
        seed: int,
        new_policy: Callable[[], Policy],
        config: CoordinatorConfig,
        capacity: int | None = None,
        permission_flag: bool = True,
        tests_broken: Sequence[str] = (),
        crash_after_event: int | None = None,
    ) -> None:
        self.faults = list(faults)
        self.ledger = FaultLedger()
        self.store = FleetStore(crash_after=crash_after_event)
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.hosts = [
            self._host(
                f"host{n + 1}",
                seed=seed,
                new_policy=new_policy,
                config=config,
                capacity=capacity,
                permission_flag=permission_flag,
                tests_broken=tests_broken,
                pr_start=1 + 1000 * n,
            )
            for n in range(hosts)
        ]
        self.now = SIM_EPOCH

    def _host(
        self,
        name: str,
        *,
        seed: int,
        new_policy: Callable[[], Policy],
        config: CoordinatorConfig,
        capacity: int | None,
        permission_flag: bool,
        tests_broken: Sequence[str],
        pr_start: int,
    ) -> SimHost:
        runtime = SimRuntime(
            seed=seed,
            faults=self.faults,
            ledger=self.ledger,
            permission_flag=permission_flag,
            tests_broken=tests_broken,
            pr_start=pr_start,
        )
        log = HostLog(self.store, name, runtime)

        def start(rebuild: bool) -> Coordinator:
            coordinator = Coordinator(runtime, log, policy=new_policy(), config=config)
            return coordinator.recover() if rebuild else coordinator

        steps = CoordinatorSteps(start, deaths=(SimulatedCrash,))
        return SimHost(name, runtime, steps, capacity)

    # ------------------------------------------------------------------ the run

    def run(
        self,
        tasks: Sequence[Task],
        agents: Sequence[str | None],
        operator_actions: Sequence[str],
    ) -> FleetOutcome:
        self.store.queue = list(zip(tasks, agents, strict=True))
        actions = list(operator_actions)
        while True:
            self._pass()
            if self._settled():
                if not actions:
                    break
                self._operator(actions.pop(0))
            elif self.now - SIM_EPOCH > HORIZON:
                self.violations.append(f"the fleet did not settle in {HORIZON:.0f} s")
                break
            self.now += TICK
        for host in self.hosts:
            self.violations += host.runtime.violations
        keys = [k for h in self.hosts for _, k in h.runtime.launch_log]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        self.violations += [f"{key}: launched on two hosts" for key in twice]
        self._mark_store_faults()
        return FleetOutcome(
            self.store,
            self.hosts,
            self.ledger,
            sum(h.steps.crashes for h in self.hosts),
            self.violations,
        )

    def _pass(self) -> None:
        """One tick: thaw, heartbeat and let go, claim, run every host to the tick's end."""
        for host in self.hosts:
            if host.state == "frozen" and self.now >= host.thaw_at:
                # Thawed: its loop's wait is long over, so its next pass begins with the
                # heartbeat, which finds its leases lost (the supervisor's order).
                host.state = "up"
        up = [h for h in self.hosts if h.state == "up"]
        for host in up:
            self._heartbeat(host)
        self._claims(up)
        for host in up:
            if host.state == "up":
                self._run(host, until=self.now + TICK)

    def _advance(self, host: SimHost, to: float) -> None:
        host.runtime.clock.advance_to(to)

    def _heartbeat(self, host: SimHost) -> None:
        self._advance(host, self.now)
        at = self.store.answer_at(host.runtime.clock.now())
        self._advance(host, at)
        held = self.store.heartbeat(host.name, at)
        coordinator = host.coordinator
        for task_id, state in list(coordinator.tasks.items()):
            if task_id in held or state.phase is Phase.SUCCEEDED:
                continue
            stopped = state.agent in host.runtime.live()
            host.runtime.kill(state.agent)
            host.runtime.cleanup(state.agent)
            coordinator.let_go(task_id)
            lease = self.store.leases.get(task_id)
            self.notes.append(
                f"{host.name} lost the lease of {task_id}"
                + (f" and stopped {state.agent}" if stopped else "")
                + f"; held by {lease.host if lease and lease.host != host.name else 'nobody'}"
            )

    def _claims(self, up: list[SimHost]) -> None:
        """Claim one task per host in turn while some host has room and a task waits."""
        while True:
            claimed = False
            for host in up:
                if host.state != "up":
                    continue
                waiting = self.store.claimable(host.runtime.clock.now())
                if not waiting:
                    return
                if host.capacity is not None and host.active() >= host.capacity:
                    continue
                task_id, task, agent = waiting[0]
                self._take(host, task_id, task, agent)
                claimed = True
            if not claimed:
                return

    def _take(self, host: SimHost, task_id: str, task: Task, agent: str | None) -> None:
        previous = self.store.holders.get(task_id, [])
        epoch = self.store.claim(host.name, task_id, host.runtime.clock.now())
        history = self.store.history(task_id) if epoch > 1 else []
        if not history:
            host.steps.step(functools.partial(submit_task, task=task, agent=agent))
            return
        lost = previous[-1]
        name = next((e.agent for e in history if e.agent), None)
        if name is not None:
            self._rescue(lost, host, name)
        note = (
            f"host {lost} was lost: its lease of {task_id} ran out and host {host.name} "
            "took the task over"
        )
        self._guarded(host, lambda: host.steps.adopt(history, lost=note))

    def _rescue(self, lost: str, host: SimHost, agent: str) -> None:
        """The lost host's work comes along as its rescue ref brings it: everything up to the
        last checkpoint (the sim agent checkpoints after each step); the CLI session does not."""
        old = next(h for h in self.hosts if h.name == lost).runtime.workspaces.get(agent)
        if old is not None:
            taken = copy.deepcopy(old)
            taken.session_id = None
            host.runtime.workspaces[agent] = taken

    def _run(self, host: SimHost, *, until: float) -> None:
        while host.state == "up":
            done = self._guarded(host, lambda: host.steps.run(until=until))
            if done:
                return

    def _guarded(self, host: SimHost, step: Callable[[], None]) -> bool:
        """Carry out ``step`` on ``host``; False when a fault or the fence interrupted it
        (the host may go on, if it is still up)."""
        try:
            step()
        except HostFault as fault:
            self._host_fault(host, fault)
            return False
        except StaleLease as refused:
            self.notes.append(f"{host.name}: {refused}")
            self._heartbeat(host)
            if refused.task_id in host.coordinator.tasks:
                raise
            return False
        return True

    def _host_fault(self, host: SimHost, fault: HostFault) -> None:
        spec, now = fault.spec, host.runtime.clock.now()
        # The attempts the fault takes along: every one running on the host (for an outage,
        # the one whose step fired it).
        hit = [
            (state.task.task_id, state.current.number)
            for state in host.coordinator.tasks.values()
            if state.current is not None
            and state.phase is Phase.RUNNING
            and (spec.kind != "store_outage" or state.agent == fault.agent)
        ]
        if spec.kind == "host_down":
            stopped = host.runtime.power_off()
            host.state = "down"
            detail = f"{host.name} down with {len(stopped)} agent(s)"
        elif spec.kind == "host_partition":
            seconds = float(spec.params.get("seconds", FREEZE))
            host.state, host.thaw_at = "frozen", now + seconds
            detail = f"{host.name} frozen {seconds:g} s"
        else:
            seconds = float(spec.params.get("seconds", OUTAGE))
            self.store.down_until = max(self.store.down_until, now + seconds)
            detail = f"store stopped {seconds:g} s"
        self.notes.append(detail)
        for task_id, attempt in hit or [("*", 0)]:
            self.ledger.mark(
                spec, FaultStatus.EXERCISED, task=task_id, attempt=attempt, detail=detail
            )

    def _mark_store_faults(self) -> None:
        for spec in self.faults:
            entry = self.ledger.entries.get(spec.fault_id)
            if spec.kind == "store_outage" and entry is not None and entry["hits"]:
                entry["hits"][-1]["detail"] += f"; {self.store.waits} store operation(s) waited"

    def _settled(self) -> bool:
        """Every task is held by a host that is up and has it finished or escalated."""
        if self.store.claimable(self.now):
            return False
        for task, _ in self.store.queue:
            lease = self.store.leases.get(task.task_id)
            host = None if lease is None else next(h for h in self.hosts if h.name == lease.host)
            if host is None or host.state != "up":
                return False
            state = host.coordinator.tasks.get(task.task_id)
            if state is None or state.phase not in _SETTLED:
                return False
        return True

    def _operator(self, action: str) -> None:
        text, reasons = OPERATOR_ACTIONS[action]
        for host in self.hosts:
            if host.state != "up":
                continue
            if action == "fix_permission_flag":
                host.runtime.fix_permission_flag()
            release = functools.partial(Coordinator.release, action=text, reasons=reasons)
            self._guarded(host, functools.partial(host.steps.step, release))
