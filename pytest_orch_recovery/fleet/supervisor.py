"""``orch-recovery supervise``: the engine, long-lived, on the operator's own repository.

One :class:`FleetSupervisor` holds the pieces the chaos tmux tier holds, built from the fleet
file instead of a sandbox: a :class:`~pytest_orch_recovery.runtime.host.RepositoryHost` (the
repository, its worktree root, the agents' environment from the allow-list, PR state from
``gh``), the :class:`~pytest_orch_recovery.runtime.dispatch.Dispatcher` (hook settings merged
into each worktree, prompt files, the agent's command line), the
:class:`~pytest_orch_recovery.runtime.tmux.TmuxRuntime` on its own tmux server, and the
journal. The coordinator's steps are :class:`~pytest_orch_recovery.fleet.steps.CoordinatorSteps`,
the same steps the chaos tiers drive.

The loop: take the spool's requests, then run the coordinator until ``intake_interval``
seconds from now (it wakes at once for an exit, and at its own timers). Idle is not exit.
:meth:`FleetSupervisor.close` after a stop leaves the agents, their sessions and the tmux
server running; a supervisor started again on the same fleet file replays the journal
(``Coordinator.recover``) and re-adopts every live attempt from what its launch recorded.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orch_recovery.engine.coordinator import (
    Coordinator,
    CoordinatorConfig,
    CoordinatorState,
    fold_settings,
)
from pytest_orch_recovery.engine.errors import OrchRecoveryError, UsageError
from pytest_orch_recovery.engine.events import (
    Event,
    EventKind,
    LaunchNotes,
    TaskEscalated,
    TmuxTarget,
    UsageLimited,
)
from pytest_orch_recovery.engine.incidents import Incident, IncidentBook
from pytest_orch_recovery.engine.model import Phase, Task
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.engine.ports import EventLog, LaunchSpec
from pytest_orch_recovery.fleet import rescue
from pytest_orch_recovery.fleet.config import FleetConfig, FleetConfigError, load_fleet
from pytest_orch_recovery.fleet.intake import Request, Spool
from pytest_orch_recovery.fleet.pushfence import PushFence, first_on_path, install_gh
from pytest_orch_recovery.fleet.steps import CoordinatorSteps, remove_finished_workspaces
from pytest_orch_recovery.infra.gh import GhPullRequests
from pytest_orch_recovery.infra.git import GitError
from pytest_orch_recovery.infra.processes import raise_priority
from pytest_orch_recovery.runtime.dispatch import Dispatcher
from pytest_orch_recovery.runtime.host import RepositoryHost, allowed_env
from pytest_orch_recovery.runtime.tmux import TmuxRuntime
from pytest_orch_recovery.store import atomic, restart, validation
from pytest_orch_recovery.store.journal import Journal

if TYPE_CHECKING:
    from pytest_orch_recovery.store.postgres import HostJournal, PostgresStore

_LOG = logging.getLogger(__name__)

ESCALATE_TIMEOUT = 60.0  # seconds the on_escalate command may take
DELIVERED = "on_escalate.delivered"  # in the state directory (EscalationDeliveries)


class LeaseLostError(OrchRecoveryError):
    """This host no longer holds the lease of a task it was running: it stops deciding."""


class DeliveryRecordError(OrchRecoveryError, ValueError):
    """``on_escalate.delivered`` cannot be read (one line naming it)."""


class EscalationDeliveries:
    """Which escalations ``on_escalate`` has been run for: ``<state_dir>/on_escalate.delivered``,
    one journal seq a line, appended after each run.

    A supervisor that died after journaling an escalation and before running ``on_escalate``
    runs it when the next supervisor starts: at least once, never lost (a death between the
    run and the mark repeats it). The file is made by the first supervisor on a journal;
    escalations the journal held before it existed count as delivered.
    """

    def __init__(self, path: Path, journal: EventLog) -> None:
        self.path = path
        if not path.exists():
            atomic.write_text(
                path,
                "".join(
                    f"{e.seq}\n" for e in journal.events() if e.kind is EventKind.TASK_ESCALATED
                ),
            )
        try:  # a regular file of bounded size: a FIFO here would hang the start
            text = validation.read_bounded(path, validation.MAX_JOURNAL_BYTES).decode(
                "utf-8", errors="replace"
            )
        except validation.RuleError as exc:
            raise DeliveryRecordError(f"{path}: {exc}") from None
        self._done = {
            int(line) for line in text.split() if line.isdigit()
        }  # a torn last line is not a delivery

    def __contains__(self, seq: object) -> bool:
        return seq in self._done

    def missed(self, events: Iterable[Event]) -> list[Event]:
        return [e for e in events if e.kind is EventKind.TASK_ESCALATED and e.seq not in self._done]

    def mark(self, event: Event) -> None:
        atomic.append_line(self.path, str(event.seq))
        self._done.add(event.seq)


def build_policy(config: FleetConfig) -> Policy:
    return config.policy.policy(max_attempts=config.max_attempts)


class FleetSupervisor:
    """The production supervisor over one fleet file (see the module doc)."""

    def __init__(self, config: FleetConfig, *, host_name: str | None = None) -> None:
        self.config = config
        # With a fleet store (config.store), this host's name in it; None without one.
        self.host_name = host_name
        refused = raise_priority(config.supervisor_nice)
        if refused is not None:
            self.say(
                f"supervisor_nice: {refused}; running at normal priority",
                logging.WARNING if config.supervisor_nice_set else logging.INFO,
            )
        for d in (config.state_dir, config.results, config.logs):
            d.mkdir(parents=True, exist_ok=True)
        # Over several hosts, an agent pushes only while this host holds its task's lease.
        self.fence = None if config.store is None else PushFence(config.state_dir)
        agent_env = dict(config.env)
        own_env = allowed_env(os.environ, config.env_allow) | agent_env
        if self.fence is not None:
            agent_env |= self.fence.env(own_env)
        else:  # the agents' gh without the lease: it still says when it changed a PR
            install_gh(config.state_dir / "agent-bin", fenced=False)
            agent_env["PATH"] = first_on_path(config.state_dir / "agent-bin", own_env)
        self.host = RepositoryHost(
            config.repository,
            config.worktree_root,
            config.state_dir,
            tmux_socket=config.tmux_socket,
            branch_pattern=config.branch_pattern,
            base=config.base,
            env_allow=config.env_allow,
            agent_env=agent_env,
            checkpoints=config.checkpoint_dir,
        )
        # The supervisor's own gh calls skip the agents' wrapper: nothing to fence or tell.
        gh_env = self.host.env("gh")
        gh_env["PATH"] = own_env.get("PATH", os.defpath)
        self.host.set_prs(GhPullRequests(config.repository, env=gh_env, batch=config.workers > 1))
        self.dispatcher = Dispatcher(
            self.host,
            config.driver,
            config.agent_config(),
            fault_plan=config.fault_plan,
            driver_of_type=config.fallback_driver,
        )
        self.fleet_store: PostgresStore | None = None
        # What the store raises for a write whose lease ran out (none without a store).
        self._stale_errors: tuple[type[Exception], ...] = ()
        # The coordinator's state from the snapshot beside the journal (store/restart.py):
        # a restart folds only the journal's events after it. None: replay it whole.
        self.resumed_from: CoordinatorState | None = None
        # Events since the last coordinator snapshot that make the loop write one.
        self.snapshot_every = restart.SNAPSHOT_EVERY
        self._snapshot_seq = 0
        self._served = False
        self.journal = self._open_journal()
        # Over several hosts, work in progress goes to the origin at each checkpoint.
        self.rescues = (
            None if self.fleet_store is None else rescue.RescuePusher(self.host.checkpoints)
        )
        self._rescues_dropped: set[str] | None = None if self.rescues is None else set()
        try:
            self.deliveries = EscalationDeliveries(config.state_dir / DELIVERED, self.journal)
            self.runtime = TmuxRuntime(
                self.host,
                self.dispatcher.command_for,
                base=config.base,
                agent_nice=config.agent_nice,
                stall_window=config.stall_window,
                workers=config.workers,
                control=True,  # one tmux client for the fleet's commands (runtime/control.py)
            )
        except BaseException:
            self.journal.close()
            raise
        if config.supervisor_nice and refused is None:
            # The pane-died hooks run from the tmux server: on the path of every exit.
            raise_priority(config.supervisor_nice, self.runtime.server_pid)
        self.spool = Spool(config.spool)
        self._fleet_stamp = atomic.file_stamp(config.source)
        # Incidents whose page waits for joiners: incident id -> monotonic time it is due.
        self._pages_due: dict[str, float] = {}
        self.steps = CoordinatorSteps(self._start, recover=len(self.journal) > 0)
        for event in self.deliveries.missed(self.journal.events()):
            incident = _incident_of(event)
            if incident is not None:
                self._pages_due.setdefault(incident, 0.0)  # paged below, once, all listed
                continue
            self.say(
                f"on_escalate for {event.task_id}: not run before the last supervisor "
                "stopped; running it now"
            )
            self._escalated(event)
        if self._pages_due:
            self.say(
                f"on_escalate for incident(s) {', '.join(sorted(self._pages_due))}: not run "
                "before the last supervisor stopped; running it now"
            )
            self.deliver_pages(force=True)

    def _open_journal(self) -> Journal | HostJournal:
        """The journal file (locked: one supervisor per journal), or this host's view of the
        fleet store: registered with its capacity, its leases taken back at new epochs."""
        if self.config.store is None:
            if not (self.config.state_dir / DELIVERED).exists():
                # Which escalations were paged is read from the whole journal the first time.
                return Journal(self.config.journal)
            settings = fold_settings(self._coordinator_config(), build_policy(self.config))
            journal, self.resumed_from = restart.open_journal(self.config.journal, settings)
            if self.resumed_from is not None:
                self._snapshot_seq = self.resumed_from.seq
            return journal
        if self.host_name is None:
            raise UsageError("a fleet store needs this host's name (--host NAME)")
        # psycopg is an optional dependency: imported only by a supervisor that uses a store.
        from pytest_orch_recovery.store.postgres import HostJournal, PostgresStore, StaleLeaseError

        self._stale_errors = (StaleLeaseError,)
        store = PostgresStore(self.config.store, host=self.host_name, lease=self.config.lease)
        try:
            store.register(self.config.max_live_agents)
            held = store.resume_leases()
        except BaseException:
            store.close()
            raise
        if held:
            self.say(f"host {self.host_name}: took back {len(held)} task(s) at new epochs")
        self.fleet_store = store
        return HostJournal(store)

    def take_claims(self) -> int:
        """With a fleet store: renew this host's leases, then claim queued tasks while it has
        room and hand them to the coordinator; returns how many.

        A lease lost (it ran out while this supervisor was frozen or cut off) ends this
        host's part in that task: its agent is stopped and no decision is made for it again
        (:meth:`_let_go`); the other tasks go on."""
        store = self.fleet_store
        if store is None:
            return 0
        held = store.heartbeat()
        tasks = self.steps.coordinator.tasks
        mine = {t for t, state in tasks.items() if state.phase is not Phase.SUCCEEDED}
        lost = sorted(mine - set(held))
        if lost:
            self._let_go(store, lost)
        claims = store.claim()
        taken = store.taken_over() if any(c.epoch > 1 for c in claims) else {}
        for claim in claims:
            task_id = claim.task.task_id
            # Claimed before (a lease ran out): its history, if any, is another host's.
            history = store.events([task_id]) if claim.epoch > 1 else ()
            if not history:
                self.steps.submit(claim.task, agent=claim.agent)
                continue
            agent, by = taken.get(task_id, (claim.agent or "", None))
            self.say(
                f"taking over {task_id} at epoch {claim.epoch}"
                + (f" from host {by}" if by else "")
                + f" ({len(history)} events)"
            )
            self._take_up_work(agent)
            self.steps.adopt(history, lost=self._lost_note(task_id, by))
        self._fence_pushes(store)
        return len(claims)

    def _fence_pushes(self, store: PostgresStore) -> None:
        """Let each agent push until its lease, as renewed just now, runs out."""
        if self.fence is None:
            return
        until = store.held_until()
        for task_id, state in self.steps.coordinator.tasks.items():
            if state.phase is not Phase.SUCCEEDED and store.holds(task_id):
                self.fence.grant(state.agent, until, lease=store.lease)
            else:
                self.fence.revoke(state.agent)

    def _let_go(self, store: PostgresStore, lost: list[str]) -> None:
        """Stop deciding for tasks whose lease ran out: another host holds them now, or may
        claim them any moment, and a task never has two live attempts, so each one's agent
        is stopped and its session removed (its worktree stays) and the coordinator forgets
        it; this supervisor goes on with its other tasks. If a newer supervisor of this same
        host took them back, this process is the stale one: it leaves those agents to that
        supervisor and stops (``LeaseLostError``)."""
        holders = store.holders(lost)
        tasks = self.steps.coordinator.tasks
        if any(holders.get(task_id) == self.host_name for task_id in lost):
            raise LeaseLostError(
                f"host {self.host_name} lost the lease of {', '.join(lost)} to a newer "
                "supervisor of this host: decisions for them are that one's"
            )
        live = self.runtime.live()
        for task_id in lost:
            agent = tasks[task_id].agent
            if self.fence is not None:
                self.fence.revoke(agent)
            stopped = agent in live
            self.runtime.cleanup(agent)
            self.steps.coordinator.let_go(task_id)
            self.say(
                f"host {self.host_name} lost the lease of {task_id}"
                + (f" and stopped {agent}" if stopped else "")
                + f": decisions for it belong to {holders.get(task_id) or 'the next claimer'}",
                logging.WARNING,
            )

    def _refused(self, exc: Exception) -> None:
        """The store refused a write for a task whose lease ran out while this process was
        frozen or cut off (it woke up and went on where it stopped): nothing was recorded or
        launched for it. The next heartbeat finds the loss and lets that task go; the other
        tasks go on. A refusal the heartbeat does not explain is not this case: it stops."""
        task_id = getattr(exc, "task_id", None)
        self.say(f"host {self.host_name}: the store refused a write: {exc}", logging.WARNING)
        self.take_claims()
        if task_id in self.steps.coordinator.tasks:
            raise exc

    def _lost_note(self, task_id: str, by: str | None) -> str:
        return (
            f"host {by or '?'} was lost: its lease of {task_id} ran out and host "
            f"{self.host_name} took the task over"
        )

    def _take_up_work(self, agent: str) -> None:
        """A task taken over from another host goes on from what reached the origin: its
        branch is fetched here before its workspace is made. Work that never left the lost
        host is lost with it; the probe then finds less done, and that is redone."""
        if not agent or self.host.workspace(agent).exists():
            return
        branch = self.host.branch(agent)
        try:
            taken = rescue.take_up(self.host.repo, branch)
            worktree = self.host.add_workspace(agent)
            if taken is not None and taken[1]:
                rescue.restore(worktree, taken[0])
        except (GitError, OSError) as exc:
            self.say(f"taking over {agent}: {branch} not taken from origin: {exc}", logging.WARNING)
            return
        if taken is not None:
            what = rescue.rescue_ref(branch) if taken[1] else branch
            self.say(f"taking over {agent}: {what} at {taken[0][:12]} from origin")

    def _holds(self, task_id: str) -> bool:
        return self.fleet_store is None or self.fleet_store.holds(task_id)

    def _drop_rescue(self, agent: str) -> None:
        """A finished task's rescue ref is deleted from the origin, once per supervisor."""
        if self._rescues_dropped is None or agent in self._rescues_dropped:
            return
        self._rescues_dropped.add(agent)
        branch = self.host.branch(agent)
        try:
            if rescue.drop(self.host.repo, branch):
                self.say(f"{agent} finished: {rescue.rescue_ref(branch)} deleted from origin")
        except GitError as exc:
            self.say(f"{agent} finished: rescue ref not deleted: {exc}", logging.WARNING)

    def push_rescues(self) -> int:
        """With a fleet store: push the work in progress of each running agent whose
        checkpoint changed to the origin's rescue ref (fleet/rescue.py); returns how many."""
        if self.rescues is None:
            return 0
        pushed = 0
        for state in self.steps.coordinator.tasks.values():
            if state.phase is Phase.SUCCEEDED:
                self._drop_rescue(state.agent)
            if state.phase is not Phase.RUNNING:
                continue
            if not self._holds(state.task.task_id):
                continue  # its lease may have run out: only the next heartbeat can tell
            agent = state.agent
            commit = self.rescues.push_if_checkpointed(
                agent, self.host.workspace(agent), self.host.branch(agent)
            )
            if commit is not None:
                pushed += 1
                self.say(
                    f"checkpoint of {agent}: work in progress at {commit[:12]} pushed to "
                    f"{rescue.rescue_ref(self.host.branch(agent))}"
                )
        return pushed

    # ------------------------------------------------------------------ coordinator

    def _coordinator_config(self) -> CoordinatorConfig:
        return CoordinatorConfig(
            attempt_timeout=self.config.attempt_timeout,
            max_live=self.config.max_live_agents,
            fallback_agents=self.config.fallback_agents,
            # The agents run on this machine: their CLIs print clock times in its zone.
            zone=datetime.now().astimezone().tzinfo or UTC,
        )

    def _start(self, recover: bool) -> Coordinator:
        coordinator = Coordinator(
            self.runtime,
            self.journal,
            policy=build_policy(self.config),
            config=self._coordinator_config(),
            on_event=self._observe,
            launch_notes=self._launch_notes,
        )
        if recover:
            where = "the fleet store" if self.config.store else self.config.journal
            state = self.resumed_from
            since = "" if state is None else f", {len(self.journal) - state.seq} after its snapshot"
            self.say(f"recovering from {where} ({len(self.journal)} events{since})")
            lost: dict[str, str] = {}
            if self.fleet_store is not None:
                for task_id, (agent, by) in self.fleet_store.taken_over().items():
                    self._take_up_work(agent)
                    lost[task_id] = self._lost_note(task_id, by)
            coordinator.recover(lost=lost, state=state)
        return coordinator

    def save_snapshot(self, *, every: int | None = None) -> bool:
        """Write the coordinator's state beside the journal (store/restart.py) when at least
        ``every`` events (default :attr:`snapshot_every`) came since the last one; True
        when written. Only between the loop's steps: the state then covers every event."""
        journal = self.journal
        if not isinstance(journal, Journal) or journal.path is None:
            return False  # a fleet store keeps its own state
        if len(journal) - self._snapshot_seq < (self.snapshot_every if every is None else every):
            return False
        state = self.steps.coordinator.state()
        if state is None:
            self.say("coordinator snapshot not written: a task's history is not whole here")
            self._snapshot_seq = len(journal)  # not again before as many events more
            return False
        if not restart.save_state(journal, state):
            return False
        self._snapshot_seq = state.seq
        return True

    def _launch_notes(self, spec: LaunchSpec) -> LaunchNotes:
        record = self.host.results / f"{spec.agent}.{spec.attempt}.pane.json"
        return LaunchNotes(TmuxTarget(self.host.tmux_socket, spec.agent), str(record))

    def _observe(self, event: Event) -> None:
        self.dispatcher.observe(event)
        what = f"{event.kind.value} {event.task_id or ''} {event.agent or ''}".rstrip()
        if event.attempt is not None:
            what += f" attempt {event.attempt}"
        incident = _incident_of(event)
        if incident is not None:
            what += f" incident {incident}"
            if incident in self._pages_due or self._paged(incident):
                what += " (joined)"
                if self._paged(incident):
                    self.deliveries.mark(event)  # its incident was paged: no page of its own
            else:
                # The first escalation of a systematic cause: page once, after the others
                # the same cause is failing right now have joined (incident_settle).
                self._pages_due[incident] = time.monotonic() + self.config.incident_settle
        elif event.kind is EventKind.TASK_ESCALATED:
            self._escalated(event)  # before the log line: whoever reads the log sees it done
        limited = event.payload
        if isinstance(limited, UsageLimited):
            # The one notice of an account's limit, however many agents ran into it.
            until = datetime.fromtimestamp(
                event.time if limited.until is None else limited.until, UTC
            )
            what += (
                f": {limited.agent_type} is at its usage limit; waiting for the quota "
                f"reset at {until:%H:%M} UTC, {len(limited.tasks)} tasks"
            )
        self.say(what)

    def _paged(self, incident: str) -> bool:
        found = self.steps.coordinator.incidents.incidents.get(incident)
        return found is not None and found.opened_by in self.deliveries

    def deliver_pages(self, *, force: bool = False) -> None:
        """Run ``on_escalate`` once for each incident whose settle time has passed, listing
        the tasks it holds; every escalation in it counts as delivered."""
        now = time.monotonic()
        book = self.steps.coordinator.incidents
        for incident_id, due in sorted(self._pages_due.items()):
            if due > now and not force:
                continue
            del self._pages_due[incident_id]
            incident = book.incidents.get(incident_id)
            if incident is None:
                continue
            escalations = [e for e in self.journal.events() if _incident_of(e) == incident_id]
            if self.config.on_escalate and escalations:
                self._notify(escalations[0], incident=_incident_json(incident, book))
            for event in escalations:
                self.deliveries.mark(event)
            self.say(
                f"on_escalate ran for incident {incident_id}: "
                f"{', '.join(book.held(incident)) or 'no task held'}"
            )

    def _escalated(self, event: Event) -> None:
        if self.config.on_escalate:
            self._notify(event)
        self.deliveries.mark(event)

    def _notify(self, event: Event, *, incident: dict[str, Any] | None = None) -> None:
        """Run ``on_escalate`` with the event as JSON on stdin (and, for a systematic
        incident, the incident: its id, reason, cause and tasks); its failure is logged."""
        body = event.to_json()
        if incident is not None:
            body["incident"] = incident
        payload = json.dumps(body, ensure_ascii=False) + "\n"
        try:
            proc = subprocess.run(
                list(self.config.on_escalate), input=payload, text=True, capture_output=True,
                timeout=ESCALATE_TIMEOUT, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.say(f"on_escalate failed: {exc}", logging.WARNING)
            return
        if proc.returncode != 0:
            self.say(
                f"on_escalate exited {proc.returncode}: {proc.stderr.strip()[:500]}",
                logging.WARNING,
            )

    # ------------------------------------------------------------------ intake

    def take_requests(self) -> int:
        """Carry out the spool's waiting requests, oldest first; returns how many. The fleet
        file is re-read first when it changed, so an edit reaches the next launch."""
        self._reload_if_edited()
        done = 0
        for request in self.spool.pending():
            try:
                ok = self._carry_out(request)
            except (ValueError, KeyError) as exc:
                self.say(f"request {request.path.name} refused: {exc}", logging.WARNING)
                ok = False
            self.spool.finish(request.path, suffix="" if ok else ".rejected")
            done += 1
        return done + self._take_store_requests()

    def _take_store_requests(self) -> int:
        """With a fleet store: the releases operators sent this host through it (from any
        machine: ``release`` routes them to the holder), oldest first; each is marked done
        once carried out."""
        store = self.fleet_store
        if store is None:
            return 0
        waiting = store.requests()
        for request_id, kind, body in waiting:
            request = Request(Path(f"store-request-{request_id}"), kind, body)
            try:
                self._carry_out(request)
            except (ValueError, KeyError) as exc:
                self.say(f"request {request_id} from the store refused: {exc}", logging.WARNING)
            store.finish_request(request_id)
        return len(waiting)

    def _carry_out(self, request: Request) -> bool:
        if request.kind == "submit":
            task = Task.from_json(request.data["task"])
            agent = request.data.get("agent")
            self.steps.submit(task, agent=agent if isinstance(agent, str) else None)
            return True
        target = str(request.data["task_id"])
        coordinator = self.steps.coordinator
        submitted = {*coordinator.tasks, *coordinator.settled}  # a release is rare
        what = coordinator.incidents.release_target(target, submitted)
        if isinstance(what, str):
            self.say(f"release {target}: refused: {what}", logging.WARNING)
            return False
        self._reload_agent_config()
        note = str(request.data.get("note") or "released by an operator")
        if isinstance(what, Incident):
            freed = coordinator.incidents.held(what)
            self.steps.release(note, incident=what.incident_id)
            self.say(f"release of incident {what.incident_id} frees {', '.join(freed)}")
        else:
            self.steps.release(note, tasks=(target,))
        return True

    def _reload_if_edited(self) -> None:
        stamp = atomic.file_stamp(self.config.source)
        if stamp != self._fleet_stamp:
            self._fleet_stamp = stamp
            self._reload_agent_config()

    def _reload_agent_config(self) -> None:
        """An operator fixes the fleet file before ``release``: take its agent settings."""
        try:
            fresh = load_fleet(self.config.source)
        except FleetConfigError as exc:
            self.say(f"fleet file not reloaded: {exc}", logging.WARNING)
            return
        if fresh.agent_config() != self.dispatcher.config:
            self.dispatcher.configure(fresh.agent_config())
            self.say("agent configuration reloaded from the fleet file")

    # ------------------------------------------------------------------ the loop

    def serve(self, stopping: Callable[[], bool]) -> None:
        """Take requests and run the coordinator until ``stopping()`` says so."""
        interval = self.config.intake_interval
        self._served = False
        while not stopping():
            self.take_requests()
            self.take_claims()
            if stopping():
                break
            try:
                self.steps.run(until=self.runtime.clock.now() + interval)
            except self._stale_errors as exc:
                self._refused(exc)
                continue
            self.push_rescues()
            self.deliver_pages()
            if self.config.remove_finished_worktrees:
                remove_finished_workspaces(self.steps.coordinator, self.host)
            self.save_snapshot()
        self._served = True  # stopped between steps: close() may take a last snapshot

    def say(self, text: str, level: int = logging.INFO) -> None:
        """Log one line about the fleet; ``orch-recovery supervise`` decides where it goes and
        in which format (text or JSON lines)."""
        _LOG.log(level, text)

    def close(self, *, stop_agents: bool = False) -> None:
        """Let go: agents keep running for the next supervisor unless ``stop_agents``; then
        the stop is journaled first, so the next supervisor does not count the agents it
        stopped as a fleet-wide failure (the circuit breaker)."""
        try:
            if stop_agents:
                stopped = self.steps.coordinator.note_agents_stopped(
                    "supervisor stopped with --stop-agents"
                )
                if stopped:
                    self.say(f"stopping {len(stopped)} running agent(s)")
                self.runtime.close()
            else:
                self.runtime.detach()
            if self._served:  # not after a step that died: its cleanup may not be done
                self.save_snapshot(every=1)  # the next start then folds nothing again
        finally:
            self.journal.close()


def _incident_of(event: Event) -> str | None:
    payload = event.payload
    return payload.incident if isinstance(payload, TaskEscalated) else None


def _incident_json(incident: Incident, book: IncidentBook) -> dict[str, Any]:
    return {
        "id": incident.incident_id,
        "reason": incident.reason,
        "systematic_cause": incident.cause,
        "opened_at": incident.opened_at,
        "tasks": book.held(incident),
    }
