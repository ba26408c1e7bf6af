"""Several hosts on the tmux tier: a host scenario over N real ``orch-recovery supervise --host``
processes on this machine, sharing one PostgreSQL fleet store, under real host faults.

Each host is what a machine of the fleet is (docs/multi-host.md): its own clone of the
sandbox's bare origin, tmux server, state directory, worktrees, checkpoints and capacity
(``max_live_agents``), and its own fleet file naming the store. The tasks go into the store's
queue; each host claims what it has room for. The agents are the bundled sim agent behind a
start counter (one line per process start in the host's ``results/starts.log``), talking to
the model double on loopback, with the fault hook as their ``PostToolUse`` hook.

The host faults are carried out for real, keyed on the agent's events like every hook fault:
the hook of the attempt the fault names leaves a request (:mod:`..faulthook`) and parks the
agent mid-attempt; this harness, watching the requests, then

- ``host_down``: SIGKILLs that host's supervisor, every process of its agents and its tmux
  server at once (a machine lost);
- ``host_partition``: SIGSTOPs that host's supervisor past its lease, then SIGCONTs it (a
  host cut off and back); its agents run on meanwhile, as a cut-off machine's do;
- ``store_outage``: stops the database for the fault's seconds, then starts it and lets the
  agent go on (only the campaign's own server can be stopped: with ``--orch-store`` such a
  scenario is skipped, saying why).

The run is judged from the store (every host's events), the database's launches against the
agents' start logs (nothing launched twice), the origin (what each task pushed), and what is
left on the hosts that survived (agent processes and sessions: orphans).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orch_recovery.chaos.drill import SupervisorProcess
from pytest_orch_recovery.chaos.drillworld import fleet_file
from pytest_orch_recovery.chaos.faulthook import host_request_path
from pytest_orch_recovery.chaos.faults import HOST_FAULTS, FaultLedger, FaultSpec, FaultStatus
from pytest_orch_recovery.chaos.record import RepoState, ScenarioRun, journal_orphans, task_outcomes
from pytest_orch_recovery.chaos.tiers import TierUnsupported
from pytest_orch_recovery.chaos.tiers.simhosts import LEASE as SIM_LEASE
from pytest_orch_recovery.chaos.tiers.tmux import (
    HOOK_FAULTS,
    SCENARIO_ATTEMPT_TIMEOUT,
    TmuxTier,
    double_env,
    start_model_double,
    write_fault_plan,
)
from pytest_orch_recovery.doubles.sandbox import Sandbox, default_base_dir
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.events import AttemptLaunched, Event
from pytest_orch_recovery.infra.git import rev_count, run_git
from pytest_orch_recovery.infra.lean_python import lean_python_argv
from pytest_orch_recovery.infra.processes import (
    command_line,
    env_value,
    freeze,
    kill_with_env,
    pids_with_env,
    process_start_time,
    wait_gone,
)
from pytest_orch_recovery.runtime.server import kill_tmux_server, session_names

if TYPE_CHECKING:
    from pytest_orch_recovery.chaos.fleetdb import FleetDatabase
    from pytest_orch_recovery.chaos.fleetfile import ProductionSettings
    from pytest_orch_recovery.chaos.scenario import Scenario
    from pytest_orch_recovery.engine.model import Task
    from pytest_orch_recovery.store.postgres import PostgresStore

log = logging.getLogger(__name__)

# The hosts' lease: short, so a lost host's tasks move on soon, yet long enough that a loaded
# machine's supervisor renews it in time. A store outage's scenario gets its outage plus
# OUTAGE_MARGIN (the store client's backoff reaches 5 s): the hosts keep their leases.
LEASE = 10.0
OUTAGE_MARGIN = 10.0
TICK = 0.25  # seconds between the harness's looks at the requests, the store and the logs
_BOUND = 120.0  # seconds a supervisor, a freeze or a stop may take
_SETTLE_BOUND = 600.0  # seconds for every task to reach its outcome

# What the agent runs: the sim agent (in a lean interpreter, as the tier's own sim driver
# starts it), one line per process start: the agents' own account of their launches, held
# against the database's.
COUNTING_AGENT = """#!/bin/sh
echo "start $ORCH_AGENT attempt $ORCH_ATTEMPT" >> "$ORCH_RESULTS_DIR/starts.log"
exec {sim_agent} < "$1"
"""


def counting_agent() -> str:
    """The start-counting sim agent's script."""
    argv = lean_python_argv(
        "pytest_orch_recovery.doubles.simagent",
        "-p",
        "--output-format",
        "json",
        "--dangerously-skip-permissions",
    )
    return COUNTING_AGENT.replace("{sim_agent}", shlex.join(argv))


def unsupported(scenario: Scenario, agent: str, database: FleetDatabase) -> str | None:
    """Why this tier cannot run ``scenario`` over several hosts, or None."""
    if agent != "sim":
        return f"several hosts on the tmux tier run the sim agent, not {agent!r}"
    other = sorted({f.kind for f in scenario.faults} - HOOK_FAULTS - HOST_FAULTS)
    if other:
        return (
            f"fault(s) {', '.join(other)} are injected by the one-host harness; over several "
            "hosts this tier injects the agents' hook faults and the host faults"
        )
    if any(f.effective_trigger.event == "start" for f in scenario.faults):
        return "a fault keyed on an attempt's start is the one-host harness's"
    if scenario.operator_actions or scenario.crash_after_event is not None:
        return "operator actions and coordinator crashes are the one-host harness's"
    if not database.own_server and any(f.kind == "store_outage" for f in scenario.faults):
        return "store_outage stops the database: only the campaign's own server (no --orch-store)"
    return None


def lease_for(faults: Sequence[FaultSpec]) -> float:
    """The hosts' lease: :data:`LEASE`, or longer than the longest store outage."""
    outages = [float(f.params.get("seconds", 10)) for f in faults if f.kind == "store_outage"]
    return max([LEASE, *(o + OUTAGE_MARGIN for o in outages)])


def freeze_seconds(spec: FaultSpec, lease: float) -> float:
    """How long ``host_partition`` freezes the host: the scenario's seconds count in leases
    of the simulation's length (a fleet file's default), so the host stays frozen as many of
    this tier's leases as it would of the simulation's."""
    seconds = float(spec.params.get("seconds", 2 * SIM_LEASE))
    return seconds * lease / SIM_LEASE


class HostsRunError(OrchRecoveryError, RuntimeError):
    """The fleet could not start (a supervisor exited, or never said it was supervising)."""


@dataclass
class FleetHost:
    """One machine of the fleet on this one."""

    name: str
    root: Path  # its folder in the sandbox
    config: Path  # its fleet file
    socket: str  # its tmux server
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)
    proc: SupervisorProcess | None = None
    state: str = "up"  # up, down, frozen
    thaw_at: float = 0.0
    lost: list[str] = field(default_factory=list)  # tasks it held when a fault took it

    @property
    def results(self) -> Path:
        return self.root / "state" / "results"

    def drain(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.seen.append(line)


@dataclass
class _Outage:
    spec: FaultSpec
    until: float
    done: Path


class HostsRun:
    """One scenario over several real supervisors; :meth:`run` returns the run's record and
    always tears everything down."""

    def __init__(
        self, scenario: Scenario, *, seed: int, database: FleetDatabase, base_dir: Path
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.database = database
        self.base_dir = base_dir
        self.tasks: list[Task] = [t.task for t in scenario.tasks]
        self.agents = {
            t.task.task_id: t.agent or f"task-agent-{t.task.task_id}" for t in scenario.tasks
        }
        self.faults = [
            s if s.fault_id else _with_id(s, f"f{i + 1}") for i, s in enumerate(scenario.faults)
        ]
        self.ledger = FaultLedger()
        for spec in self.faults:
            self.ledger.register(spec)
        self.lease = lease_for(self.faults)
        self.hosts: list[FleetHost] = []
        self.outage: _Outage | None = None
        self.handled: set[str] = set()
        self.violations: list[str] = []
        self.root = base_dir  # the sandbox's, once made
        self.since: int | None = None  # clock ticks: the harness's start, for /proc searches

    # ------------------------------------------------------------------ the run

    def run(self) -> ScenarioRun:
        box = Sandbox.create(base_dir=self.base_dir, name="hosts", unwind_on_sigterm=True)
        double = None
        self.root = box.root
        self.since = process_start_time(box.ledger.owner_pid)
        try:
            double = start_model_double(box, self.tasks, self.faults)
            with self.database.fresh() as url:
                from pytest_orch_recovery.store.postgres import PostgresStore

                self._build(box, url, double_env(double.url))
                with PostgresStore(url, outage_limit=_BOUND) as store:
                    for task in self.tasks:
                        store.submit(task, agent=self.agents[task.task_id])
                    self._settle(store)
                    events = list(store.events())
                    launches = store.launches()
                    orphans = self._orphans()
                    self._stop_supervisors()
            double.stop()  # releases stalled requests, so the transcript is complete
            self._fill_ledger(box, events)
            self._check_launches(launches, events)
            repos = {t.task_id: self._repo_state(box, t) for t in self.tasks}
        finally:
            self._teardown(box)
            if double is not None:
                double.stop()
        orphans += box.leftovers()
        orphans += journal_orphans(events)
        return ScenarioRun(
            scenario=self.scenario.name,
            events=events,
            ledger=self.ledger.entries,
            outcomes=task_outcomes(events),
            repos=repos,
            orphans=sorted(set(orphans)),
            tier="tmux",
            seed=self.seed,
            agent="sim",
            violations=self.violations,
        )

    def _build(self, box: Sandbox, url: str, agent_env: dict[str, str]) -> None:
        """Each host's clone, fault plan and fleet file; then its supervisor, started."""
        agent_script = box.root / "counting-agent.sh"
        agent_script.write_text(counting_agent())
        agent_script.chmod(0o755)
        # As the one-host tier's sandbox gives its agents: the marker its teardown finds
        # them by, and no pytest plugin autoloaded in the tasks' tests (this one included).
        agent_env = {
            **agent_env,
            "ORCH_SANDBOX_ID": box.sandbox_id,
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
        env = box.env("supervisor")
        env.pop("ORCH_AGENT", None)
        hook_faults = [f for f in self.faults if f.kind in HOOK_FAULTS | HOST_FAULTS]
        tests = [t.tests for t in self.tasks if t.tests]
        timeout = self.scenario.attempt_timeout or SCENARIO_ATTEMPT_TIMEOUT["sim"]
        for n in range(self.scenario.hosts):
            name = f"host{n + 1}"
            root = box.root / name
            root.mkdir()
            run_git(["clone", "--quiet", str(box.origin), str(root / "repo")], cwd=box.root)
            host = FleetHost(name, root, box.root / f"{name}.toml", f"{box.tmux_socket}-{name}")
            plan = write_fault_plan(
                box,
                hook_faults,
                tests,
                name=f"faults-{name}.json",
                context={
                    "host": name,
                    "tmux_socket": host.socket,
                    "checkpoint_dir": str(root / "checkpoints"),
                },
            )
            settings: dict[str, object] = {
                "repository": f"{name}/repo",
                "state_dir": f"{name}/state",
                "worktree_root": f"{name}/worktrees",
                "checkpoint_dir": f"{name}/checkpoints",
                "tmux_socket": host.socket,
                "attempt_timeout": timeout,
                "store": url,
                "lease": self.lease,
            }
            if self.scenario.max_live_agents is not None:
                settings["max_live_agents"] = self.scenario.max_live_agents
            host.config.write_text(
                fleet_file(
                    box,
                    agent=f"{agent_script} {{prompt_file}}",
                    env=agent_env,
                    fault_plan=plan,
                    settings_over=settings,
                )
            )
            host.proc = SupervisorProcess(
                host.config, env, host.lines, "--host", name, log=root / "supervise.log"
            )
            box.record_pid(host.proc.proc.pid, what=f"supervisor of {name}")
            self.hosts.append(host)
        for host in self.hosts:
            self._wait_line(host, "supervise: supervising")

    def _wait_line(self, host: FleetHost, words: str) -> None:
        end = time.monotonic() + _BOUND
        while not any(words in line for line in host.seen):
            assert host.proc is not None
            if host.proc.proc.poll() is not None:
                host.drain()
                tail = "\n".join(host.seen[-8:])
                raise HostsRunError(f"the supervisor of {host.name} exited:\n{tail}")
            if time.monotonic() > end:
                raise HostsRunError(f"{host.name}: no {words!r} in {_BOUND:.0f} s")
            with contextlib.suppress(queue.Empty):
                line = host.lines.get(timeout=TICK)
                if line is not None:
                    host.seen.append(line)

    def _settle(self, store: PostgresStore) -> None:
        """Carry out the host faults as the hooks ask, until every task has its outcome and
        no host is frozen or the store stopped."""
        requests = host_request_path(self._fault_state(), "x").parent
        end = time.monotonic() + _SETTLE_BOUND
        while True:
            for host in self.hosts:
                host.drain()
            for path in sorted(requests.glob("*.json")):
                if path.stem not in self.handled:
                    self.handled.add(path.stem)
                    self._carry_out(store, json.loads(path.read_text()), path)
            now = time.monotonic()
            self._end_due_faults(now)
            if self.outage is None and self._settled(store):
                break
            self._check_alive()
            if now > end:
                self.violations.append(f"the fleet did not settle in {_SETTLE_BOUND:.0f} s")
                break
            time.sleep(TICK)
        # A thawed host lets go of what it lost: its agents stopped, nothing decided.
        for host in self.hosts:
            if host.state == "up" and host.lost:
                for task_id in host.lost:
                    if store.holders([task_id]).get(task_id) != host.name:
                        self._wait_line(host, f"lost the lease of {task_id}")

    def _end_due_faults(self, now: float) -> None:
        """The store back after its outage (and the parked agent let go); frozen hosts
        thawed once their time is up."""
        if self.outage is not None and now >= self.outage.until:
            self.database.start()
            self.outage.done.touch()
            self.outage = None
        for host in self.hosts:
            if host.state == "frozen" and now >= host.thaw_at:
                assert host.proc is not None
                host.proc.proc.send_signal(signal.SIGCONT)
                host.state = "up"
                log.info("%s thawed", host.name)

    def _check_alive(self) -> None:
        """A supervisor no fault took away must not exit while the fleet works."""
        for host in self.hosts:
            assert host.proc is not None
            if host.state == "up" and host.proc.proc.poll() is not None:
                self.violations.append(
                    f"the supervisor of {host.name} exited {host.proc.proc.returncode}"
                )
                host.state = "down"

    def _settled(self, store: PostgresStore) -> bool:
        if any(h.state == "frozen" for h in self.hosts):
            return False
        outcomes = task_outcomes(store.events())
        return all(
            outcomes.get(t.task_id) in ("succeeded", "recovered", "escalated") for t in self.tasks
        )

    def _fault_state(self) -> Path:
        return self.root / "fault-state"

    def _carry_out(self, store: PostgresStore, request: dict[str, Any], path: Path) -> None:
        spec = next(f for f in self.faults if f.fault_id == request["id"])
        host = next((h for h in self.hosts if h.name == request.get("host")), None)
        if host is None or host.proc is None:
            return
        held = sorted(t for t, h in store.holders(self.agents).items() if h == host.name)
        attempts = self._attempts(store)
        if spec.kind == "host_down":
            host.proc.proc.send_signal(signal.SIGKILL)
            host.proc.proc.wait(timeout=_BOUND)
            killed = kill_with_env(
                "ORCH_RESULTS_DIR",
                str(host.results.resolve()),
                started_since=self.since,
                timeout=_BOUND,
            )
            kill_tmux_server(host.socket)
            host.state = "down"
            detail = f"{host.name} down: supervisor, tmux server and {len(killed)} process(es)"
        elif spec.kind == "host_partition":
            seconds = freeze_seconds(spec, self.lease)
            if not freeze(host.proc.proc.pid, _BOUND):
                self.violations.append(f"{host.name} could not be frozen")
            host.state, host.thaw_at = "frozen", time.monotonic() + seconds
            host.lost = held
            detail = f"{host.name} frozen {seconds:g} s (lease {self.lease:g} s)"
        else:
            seconds = float(spec.params.get("seconds", 10))
            self.database.stop()
            self.outage = _Outage(spec, time.monotonic() + seconds, path.with_suffix(".done"))
            held = [t for t, a in self.agents.items() if a == request.get("agent")]
            detail = f"store stopped {seconds:g} s"
        log.info("%s: %s", spec.kind, detail)
        for task_id in held or ["*"]:
            self.ledger.mark(
                spec,
                FaultStatus.EXERCISED,
                task=task_id,
                attempt=attempts.get(task_id, 0),
                detail=detail,
            )

    def _attempts(self, store: PostgresStore) -> dict[str, int]:
        """Each task's latest launched attempt."""
        return {task_id: attempt for task_id, attempt, *_ in store.launches()}

    def _orphans(self) -> list[str]:
        """What the surviving hosts still run for tasks that are over: agent processes and
        agent sessions (a host's lost tasks' agents must be stopped too)."""
        found = []
        for host in self.hosts:
            if host.state == "down":
                continue  # its machine is gone, and everything on it
            results = str(host.results.resolve())
            pids = pids_with_env("ORCH_RESULTS_DIR", results, started_since=self.since)
            agents = set(self.agents.values())
            running = [p for p in pids if env_value(p, "ORCH_AGENT") in agents]
            for pid in wait_gone(running, _BOUND):
                found.append(
                    f"tmux://{host.name}/{env_value(pid, 'ORCH_AGENT')} "
                    f"(pid {pid}: {command_line(pid)[:120]})"
                )
            # A stopped agent's session goes once its supervisor has seen the pane die.
            end = time.monotonic() + _BOUND
            while (left := sorted(set(session_names(host.socket)) & agents)) and (
                time.monotonic() < end
            ):
                time.sleep(TICK)
            found += [f"tmux://{host.name}/{session}" for session in left]
        return found

    def _stop_supervisors(self) -> None:
        for host in self.hosts:
            if host.proc is None or host.state == "down":
                continue
            code = host.proc.stop(signal.SIGTERM)
            if code != 0:
                self.violations.append(f"the supervisor of {host.name} exited {code} on SIGTERM")

    def _fill_ledger(self, box: Sandbox, events: Sequence[Event]) -> None:
        """The agents' hook faults, from the hooks' fired records (the host faults were
        marked when carried out)."""
        fired = box.root / "fault-state" / "fired.jsonl"
        by_id = {f.fault_id: f for f in self.faults}
        if fired.exists():
            for line in fired.read_text().splitlines():
                record = json.loads(line)
                spec = by_id.get(record["id"])
                if spec is not None and spec.kind not in HOST_FAULTS:
                    self.ledger.mark(
                        spec,
                        FaultStatus.EXERCISED,
                        task=record["task"],
                        attempt=int(record["attempt"]),
                        detail=f"at {record['event']}",
                    )
        self.ledger.mark_fleet_faults(self.faults, events, 0)

    def _check_launches(
        self, launches: Sequence[tuple[str, int, str, str, int]], events: Sequence[Event]
    ) -> None:
        """Nothing launched twice: the database's launches, the journal's and the agents' own
        start logs name the same (task, attempt)s, each once."""
        by_agent = {a: t for t, a in self.agents.items()}
        starts: Counter[tuple[str, int]] = Counter()
        for host in self.hosts:
            log_file = host.results / "starts.log"
            for line in log_file.read_text().splitlines() if log_file.exists() else ():
                words = line.split()  # start AGENT attempt N
                starts[(by_agent.get(words[1], words[1]), int(words[3]))] += 1
        database = Counter((t, a) for t, a, *_ in launches)
        journal = Counter(
            (str(e.task_id), int(e.attempt or 0))
            for e in events
            if isinstance(e.payload, AttemptLaunched)
        )
        twice = sorted(
            k
            for k in set(starts) | set(journal) | set(database)
            if max(starts[k], journal[k], database[k]) > 1
        )
        if twice:
            self.violations.append(f"launched more than once: {twice}")
        if set(starts) != set(database) or set(journal) != set(database):
            self.violations.append(
                "the agents' start logs, the journal and the database's launches disagree: "
                f"agents {sorted(starts)}, journal {sorted(journal)}, database {sorted(database)}"
            )

    def _repo_state(self, box: Sandbox, task: Task) -> RepoState:
        """What reached the origin: the task's branch, its files, its pull request."""
        branch = f"{self.agents[task.task_id]}-work"
        try:
            commits = rev_count(box.origin, "main", branch)
        except Exception:
            return RepoState()  # the branch never reached origin
        files = tuple(
            p
            for p in task.deliverables
            if run_git(["cat-file", "-e", f"{branch}:{p}"], cwd=box.origin, check=False).returncode
            == 0
        )
        pr = box.forge.pull_request_for(branch) if box.forge is not None else None
        return RepoState(
            files=files,
            commits=commits,
            pushed=commits > 0,
            pr=None if pr is None else pr.number,
        )

    def _teardown(self, box: Sandbox) -> None:
        """Thaw, stop and remove everything, whatever state the run ended in."""
        for host in self.hosts:
            if host.proc is None:
                continue
            if host.state == "frozen":
                host.proc.proc.send_signal(signal.SIGCONT)
            with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
                if host.proc.proc.poll() is None:
                    host.proc.stop(signal.SIGKILL)
        self.database.start()
        for host in self.hosts:
            kill_tmux_server(host.socket)
        box.teardown()


def _with_id(spec: FaultSpec, fault_id: str) -> FaultSpec:
    from dataclasses import replace

    return replace(spec, fault_id=fault_id)


class HostsTmuxTier(TmuxTier):
    """The campaign's ``tmux`` tier: a scenario with a host fault over ``scenario.hosts``
    real supervisors sharing a fleet store in ``database`` (a private server for this tier
    alone when None); every other scenario on one host in this process, as
    :class:`TmuxTier` runs it, whatever ``--orch-hosts`` says: its faults are injected by
    that harness around its coordinator."""

    def __init__(self, database: FleetDatabase | None = None) -> None:
        self.database = database

    def run(
        self, scenario: Scenario, *, seed: int, agent: str, fleet: ProductionSettings | None = None
    ) -> ScenarioRun:
        if not any(f.kind in HOST_FAULTS for f in scenario.faults):
            return super().run(scenario, seed=seed, agent=agent, fleet=fleet)
        if self.database is not None:
            return run_hosts(
                scenario,
                seed=seed,
                agent=agent,
                database=self.database,
                base_dir=default_base_dir(),
            )
        from pytest_orch_recovery.chaos.fleetdb import FleetDatabase

        own = FleetDatabase()
        try:
            return run_hosts(
                scenario, seed=seed, agent=agent, database=own, base_dir=default_base_dir()
            )
        finally:
            own.close()


def run_hosts(
    scenario: Scenario, *, seed: int, agent: str, database: FleetDatabase, base_dir: Path
) -> ScenarioRun:
    """Run a host scenario over ``scenario.hosts`` real supervisors; :class:`TierUnsupported`
    when one of its faults is the one-host harness's."""
    why = unsupported(scenario, agent, database)
    if why is not None:
        raise TierUnsupported(why)
    return HostsRun(scenario, seed=seed, database=database, base_dir=base_dir).run()
