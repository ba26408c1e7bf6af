"""The recovery coordinator: notice an exit -> classify -> analyze -> decide -> execute -> record.

State is event-sourced: every change is an :class:`~pytest_orch_recovery.engine.model.Event`
appended
to the journal first and then applied to memory by :meth:`Coordinator._apply`. A coordinator
that crashed is replaced by a new one on the same journal, whose :meth:`Coordinator.recover`
replays the journal through the same ``_apply`` and then finishes the step in flight: an exit not
yet attributed is attributed, a decision not yet carried out is carried out, and an attempt
already launched is re-launched with the same idempotency key, which every runtime treats as a
no-op — so no recovery action is ever launched twice.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo

from pytest_orch_recovery.engine.analyze import continuation_prompt, initial_prompt, missing_work
from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.coordstate import (
    FOLD_SETTINGS,
    AttemptState,
    CompactTask,
    CoordinatorState,
    PendingLaunch,
    TaskState,
    code_fingerprint,
    copy_task_state,
    fingerprint,
    launch_of,
    shape_fingerprint,
    spec_of,
)
from pytest_orch_recovery.engine.errors import InvalidState, InvalidValue
from pytest_orch_recovery.engine.events import (
    AppliedRemedy,
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    FailureAttributed,
    LaunchNotes,
    LaunchOrder,
    OperatorAction,
    PartialSummary,
    Payload,
    TaskEscalated,
    TaskSubmitted,
    TaskSucceeded,
    UsageLimited,
    WorkspaceCleaned,
    WorkspaceOrphaned,
)
from pytest_orch_recovery.engine.incidents import Incident, IncidentBook
from pytest_orch_recovery.engine.model import (
    HOST_LOST,
    TERMINAL,
    Attribution,
    Decision,
    ExitInfo,
    PartialWork,
    Phase,
    Reason,
    Strategy,
    Task,
    WorkKind,
    full_plan,
    signal_number,
)
from pytest_orch_recovery.engine.policy import CircuitBreaker, PastAttempt, Policy, Situation
from pytest_orch_recovery.engine.ports import AttemptExit, EventLog, LaunchSpec, Runtime
from pytest_orch_recovery.engine.resets import CLOCK_PRECISION

__all__ = [
    "STATE_FINGERPRINT",
    "AttemptState",
    "Coordinator",
    "CoordinatorConfig",
    "CoordinatorState",
    "TaskState",
    "fold_settings",
    "state_unfit",
]

OUTPUT_TAIL_BYTES = 2048


def _killed_past_deadline(current: AttemptState, exited: AttemptExit) -> bool:
    """Whether a signal death is the timeout kill of a coordinator that crashed before this
    exit was recorded: the ``timed_out`` mark lives in memory only, so a replacement infers
    it from what is durable, the deadline recorded at launch and how the attempt ended."""
    return (
        current.deadline is not None
        and exited.exit.signal in _TIMEOUT_SIGNALS
        and exited.ended_at >= current.deadline
    )


_TIMEOUT_SIGNALS = frozenset({15, 9})  # what Runtime.kill sends: SIGTERM, then SIGKILL


# Timer entries: (time, seq, task id, key); plain tuples compare fastest, and seq is unique so
# the comparison never reaches the strings.
_Timer = tuple[float, int, str, str]


class _Timers:
    """A min-heap of (time, task, key) entries with lazy deletion: an entry whose task has
    moved on is skipped when it reaches the top. Keeps the loop O(log n) per event."""

    def __init__(self) -> None:
        self._heap: list[_Timer] = []
        self._seq = itertools.count()

    def add(self, time: float, task_id: str, key: str) -> None:
        heapq.heappush(self._heap, (time, next(self._seq), task_id, key))

    def first(self, valid: Callable[[_Timer], object]) -> float | None:
        while self._heap and valid(self._heap[0]) is None:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[_Timer]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap))
        return out

    def put_back(self, entries: Iterable[_Timer]) -> None:
        """Entries taken by :meth:`due` and not acted on; they keep their place."""
        for entry in entries:
            heapq.heappush(self._heap, entry)


class AgentNames:
    """``task-agent-NNNN`` names, unique within a coordinator, deterministic from a seed.
    ``draws``: numbers drawn before (a coordinator restored from its state goes on where
    the fold that made the state stopped)."""

    def __init__(self, seed: int, *, draws: int = 0) -> None:
        self._rng = random.Random(f"agent-names:{seed}")
        self._used: set[str] = set()
        self.draws = 0
        for _ in range(draws):
            self._draw()

    def _draw(self) -> int:
        self.draws += 1
        return self._rng.randrange(1000, 10000)

    def reserve(self, name: str) -> None:
        self._used.add(name)

    def reserve_all(self, names: Iterable[str]) -> None:
        self._used.update(names)

    def next(self) -> str:
        while True:
            name = f"task-agent-{self._draw()}"
            if name not in self._used:
                self._used.add(name)
                return name


@dataclass
class CoordinatorConfig:
    attempt_timeout: float | None = 1800.0  # seconds per attempt; None = no limit
    default_agent_type: str = "claude-code"
    seed: int = 0
    # At most this many attempts run at once; the others wait their turn, in the order their
    # launches fell due (None: no limit). A fleet of 100 tasks need not start 100 agents.
    max_live: int | None = None
    # Agent types to run a task on, in order, while the task's own agent's account is at its
    # usage limit (the fleet file's ``fallback_agents``).
    fallback_agents: tuple[str, ...] = ()
    # The zone the agents' CLIs print clock times in ("resets 3pm"): the machine's.
    zone: tzinfo = UTC


class Coordinator:
    """Drives tasks to success or escalation over any :class:`Runtime`."""

    def __init__(
        self,
        runtime: Runtime,
        journal: EventLog,
        *,
        policy: Policy | None = None,
        config: CoordinatorConfig | None = None,
        classifier: Callable[[Observation], Attribution] = classify,
        on_event: Callable[[Event], None] | None = None,
        launch_notes: Callable[[LaunchSpec], LaunchNotes] | None = None,
    ) -> None:
        self.runtime = runtime
        self._on_event = on_event
        # Where the runtime will run an attempt (e.g. its tmux socket and session), added to
        # the attempt_launched event so readers of the journal can find it.
        self._launch_notes = launch_notes
        self.journal = journal
        self.config = config or CoordinatorConfig()
        self.policy = policy or Policy(seed=self.config.seed)
        self._classify = classifier
        self.tasks: dict[str, TaskState] = {}
        self._by_agent: dict[str, str] = {}  # agent -> task_id
        self._running: set[str] = set()  # task ids with an attempt launched, exit not seen
        self._launches = _Timers()  # when scheduled launches are due
        self._deadlines = _Timers()  # when live attempts time out
        self._names = AgentNames(self.config.seed)
        # Agent type -> until when its account's usage limit holds its launches.
        self._limits: dict[str, float] = {}
        self.incidents = IncidentBook()  # systematic escalations grouped (engine/incidents.py)
        # Attempts this coordinator's supervisor stopped itself (a planned stop): their end
        # says nothing about the fleet, so the circuit breaker does not count them.
        self._stopped_keys: set[str] = set()
        # Tasks that had succeeded, with nothing running, in the state it was restored from
        # (recover(state=...)): task id -> agent. Nothing about them changes any more.
        self.settled: dict[str, str] = {}
        # What state() exports: each unsettled task's folded events, incidents' escalations.
        self._history: dict[str, list[Event]] = {}
        # Tasks escalated and waiting as a replay holds them (their history is the events
        # after it): what state() exports for them instead of their events.
        self._compact: dict[str, CompactTask] = {}
        self._paged: list[Event] = []
        self._seq = 0  # the last event folded
        self._fold_draws = 0  # agent names the fold drew (for events that named no agent)

    # ------------------------------------------------------------------ construction

    def recover(
        self, *, lost: Mapping[str, str] | None = None, state: CoordinatorState | None = None
    ) -> Coordinator:
        """Take over from a coordinator that died: rebuild state from what the journal already
        holds, then finish the steps that were in flight. Call on a fresh coordinator whose
        journal was opened on the dead one's file; returns ``self``.

        ``lost``: task id -> why, for tasks whose running attempt was launched on another
        host that was lost (a takeover this coordinator's predecessor had not recorded yet):
        their attempts end as in :meth:`adopt` instead of being re-adopted here.

        ``state``: the memory a coordinator exported after the journal's first
        ``state.seq`` events (:meth:`state`); only the journal's events after it are folded
        (the journal may hold only those, opened from a snapshot). The result is the
        coordinator a whole replay builds, except that tasks settled in ``state`` are kept
        in :attr:`settled` only and not cleaned up again (their cleanup was done in the
        step that recorded their success, before the state was taken)."""
        if self.tasks or self.settled:
            raise InvalidState("recover() rebuilds a fresh coordinator; this one has state")
        if state is None:
            for event in self.journal.events():
                self._fold(event)
        else:
            self._restore(state)
            for event in self.journal.events():
                if event.seq > state.seq:
                    self._fold(event)
        self._finish_in_flight(lost or {})
        return self

    def state(self) -> CoordinatorState | None:
        """This coordinator's memory as data (``engine/coordstate.py``), for a later
        :meth:`recover`; None when a task's history is not whole here (a task that ran
        again after it succeeded, or one submitted without an agent name, whose name a
        replay draws in journal order)."""
        settled = dict(self.settled)
        kept = {event.seq: event for event in self._paged}
        compact: list[CompactTask] = []
        for task_id, state in self.tasks.items():
            if self._is_settled(task_id, state):
                settled[task_id] = state.agent
                continue
            history = self._history.get(task_id, [])
            taken = self._compact.get(task_id)
            if taken is not None:
                compact.append(taken)
            elif not _whole(history):
                return None
            kept.update((event.seq, event) for event in history)
        breaker_open, breaker_recent = self.policy.breaker.recorded()
        book = self.incidents
        return CoordinatorState(
            seq=self._seq,
            settings=fold_settings(self.config, self.policy),
            events=tuple(kept[seq] for seq in sorted(kept)),
            settled=settled,
            breaker_open=breaker_open,
            breaker_recent=breaker_recent,
            limits=tuple(self._limits.items()),
            stopped_keys=tuple(sorted(self._stopped_keys)),
            name_draws=self._fold_draws,
            incidents=tuple(_copy_incident(i) for i in book.incidents.values()),
            open_incidents=tuple(book.open_ids().items()),
            escalated=tuple(book.escalated.items()),
            shared_agents=self._shared_agents(settled),
            compact=tuple(compact),
        )

    def _shared_agents(self, settled: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
        seen: set[str] = set()
        shared: set[str] = set()
        open_agents = (s.agent for t, s in self.tasks.items() if t not in settled)
        for agent in itertools.chain(settled.values(), open_agents):
            (shared if agent in seen else seen).add(agent)
        return tuple((agent, self._by_agent[agent]) for agent in sorted(shared))

    def _is_settled(self, task_id: str, state: TaskState) -> bool:
        return state.phase is Phase.SUCCEEDED and task_id not in self._running

    def _restore(self, state: CoordinatorState) -> None:
        settings = fold_settings(self.config, self.policy)
        if state.settings != settings:
            raise InvalidState(
                f"state made under {dict(state.settings)}, not {dict(settings)}: replay instead"
            )
        self.settled = dict(state.settled)
        for task_id, agent in self.settled.items():
            self._by_agent[agent] = task_id
        # The open tasks, folded as a replay folds them; a compact task comes in where its
        # state was taken, so only its later events fold onto it.
        compact = sorted(state.compact, key=lambda c: c.seq)
        waiting = {c.task_id for c in compact}
        first = {c.task_id: c.submitted for c in compact}  # where each task came in
        taken = 0
        for event in state.events:
            while taken < len(compact) and compact[taken].seq < event.seq:
                self._take_in(compact[taken])
                waiting.discard(compact[taken].task_id)
                taken += 1
            owner = event.task_id
            if owner is None or (owner not in self.settled and owner not in waiting):
                new = owner is not None and owner not in self.tasks
                self._apply(event)
                if new and owner in self.tasks:
                    first[owner] = event.seq
            self._remember(event)
        for entry in compact[taken:]:
            self._take_in(entry)
        if compact:  # in submission order, as a replay made them
            self.tasks = dict(sorted(self.tasks.items(), key=lambda item: first[item[0]]))
        self._by_agent.update(state.shared_agents)
        # What every event folds into, as it was (the events above are only some of them).
        self.policy.breaker.restore(state.breaker_open, state.breaker_recent)
        self._limits = dict(state.limits)
        self._stopped_keys = set(state.stopped_keys)
        self._names = AgentNames(self.config.seed, draws=state.name_draws)
        self._names.reserve_all(self._by_agent)
        self._fold_draws = state.name_draws
        self.incidents.restore(
            (_copy_incident(i) for i in state.incidents),
            dict(state.open_incidents),
            dict(state.escalated),
        )
        self._seq = state.seq

    def _take_in(self, entry: CompactTask) -> None:
        """A compact task back as a replay holds it (a copy: the state may be used again)."""
        state = copy_task_state(entry.state)
        self.tasks[entry.task_id] = state
        self._by_agent[state.agent] = entry.task_id
        self._history[entry.task_id] = []
        self._compact[entry.task_id] = entry

    def adopt(self, events: Iterable[Event], *, lost: str) -> list[str]:
        """Take over tasks another host held until its lease ran out, from their history
        (``events``: the tasks' own events, in seq order); returns their ids.

        Their state is rebuilt as :meth:`recover` rebuilds it, then the step in flight is
        finished here -- except an attempt still running: it ran on the lost host, which
        this host cannot see or relaunch. Its end is journaled (``ExitInfo.source`` is
        ``host_lost``, ``lost`` says what happened), then judged: the workspace here holds
        what reached the origin, and the policy decides (rule ``host_lost``: reassign)."""
        adopted: list[str] = []
        for event in events:
            if event.task_id is None:
                continue  # the other host's fleet-wide records stay its own
            if event.kind is EventKind.TASK_SUBMITTED:
                if event.task_id in self.tasks:
                    raise InvalidState(f"adopt: task {event.task_id!r} is already this host's")
                adopted.append(event.task_id)
            elif event.task_id not in adopted:
                raise InvalidValue(f"adopt: history of {event.task_id!r} has no submission")
            self._fold(event)
        for task_id in adopted:
            state = self.tasks[task_id]
            if state.phase is Phase.RUNNING:
                self._lose_attempt(state, lost)
            self._finish_step(state)
        return adopted

    def let_go(self, task_id: str) -> TaskState | None:
        """Forget a task this coordinator no longer decides for (its lease went to another
        host); returns its last state, or None when it had no such task. Nothing is
        journaled: this host may no longer write about it. Its timers lapse, and a late
        report of its agent's exit is ignored. Stopping the agent is the caller's."""
        state = self.tasks.pop(task_id, None)
        self._history.pop(task_id, None)
        self._compact.pop(task_id, None)
        if state is not None:
            self._by_agent.pop(state.agent, None)
            self._running.discard(task_id)
        return state

    def _lose_attempt(self, state: TaskState, why: str) -> None:
        """Journal the end of a running attempt whose host was lost (``HOST_LOST``)."""
        current = state.current
        assert current is not None
        self._emit(
            AttemptExited(
                exit=ExitInfo(None, signal=9, source=HOST_LOST),
                started_at=current.launched_at,
                ended_at=self.runtime.clock.now(),
                output_tail=why,
            ),
            task_id=state.task.task_id,
            agent=state.agent,
            attempt=current.number,
        )

    def _finish_in_flight(self, lost: Mapping[str, str]) -> None:
        for state in list(self.tasks.values()):
            if state.phase is Phase.RUNNING and state.task.task_id in lost:
                self._lose_attempt(state, lost[state.task.task_id])
                self._finish_step(state)
            elif state.phase is Phase.RUNNING:
                current = state.current
                assert current is not None
                # Same key: the runtime ignores it if the attempt is (or was) running there.
                self.runtime.launch(current.spec)
            else:
                self._finish_step(state)

    def _finish_step(self, state: TaskState) -> None:
        """Carry out what a task's journaled state says comes next (not a running attempt)."""
        if state.phase is Phase.EXITED and state.exited is not None:
            self._judge(state, _exit_from_event(state, state.exited))
        elif state.phase is Phase.ATTRIBUTED:
            self._decide(state)
        elif state.phase is Phase.ESCALATED and state.released_by is not None:
            self._release(state, state.released_by)  # the operator's order, half done
        elif state.phase is Phase.SUCCEEDED:
            # The old coordinator may have died between recording success and cleaning
            # up; cleanup is idempotent, so do it again.
            self.runtime.cleanup(state.agent)

    # ------------------------------------------------------------------ public API

    def submit(self, task: Task, *, agent: str | None = None) -> str:
        """Accept a task; its first attempt launches on the next :meth:`run`."""
        if task.task_id in self.tasks or task.task_id in self.settled:
            raise InvalidValue(f"task {task.task_id!r} was already submitted")
        name = agent or self._names.next()
        if name in self._by_agent:
            raise InvalidValue(f"agent name {name!r} is already in use")
        self._emit(TaskSubmitted.of(task), task_id=task.task_id, agent=name)
        return name

    def run(self, *, until: float | None = None) -> None:
        """Run until every task is terminal (or escalated and waiting for an operator), or
        until clock time ``until``."""
        while True:
            now = self.runtime.clock.now()
            if until is not None and now >= until:
                return
            self._launch_due(now)
            wake = self._next_wakeup(until)
            if not self._running and wake is None:
                return
            exited = self.runtime.next_exit(wake)
            if exited is None:
                self._enforce_timeouts(self.runtime.clock.now())
                continue
            self._on_exit(exited)

    def release(
        self,
        action: str,
        *,
        reasons: Iterable[Reason] = (),
        tasks: Iterable[str] = (),
        incident: str | None = None,
    ) -> list[str]:
        """An operator fixed something: close the breaker for ``reasons`` and give escalated
        tasks (those named, or all escalated for those reasons) a fresh attempt. With
        ``incident``: every task it still holds, and its reason's breaker (the incident is
        closed; engine/incidents.py)."""
        reason_set = set(reasons)
        chosen = set(tasks)
        held = self.incidents.incidents.get(incident) if incident is not None else None
        if held is not None and not held.closed:
            chosen.update(self.incidents.held(held))
            reason_set.add(Reason(held.reason))
        released = [
            s.task.task_id
            for s in self.tasks.values()
            if s.phase is Phase.ESCALATED
            and (
                s.task.task_id in chosen
                or (s.attribution is not None and s.attribution.reason in reason_set)
            )
        ]
        self._emit(
            OperatorAction(action, tuple(released), tuple(sorted(reason_set)), incident=incident)
        )
        for task_id in released:
            self._release(self.tasks[task_id], action)
        return released

    def _release(self, state: TaskState, action: str) -> None:
        partial = self.runtime.partial_work(state.task, state.agent)
        missing = missing_work(state.task, partial)
        resume = partial.any_progress or partial.usable_checkpoint
        decision = Decision(
            strategy=Strategy.RESUME if resume else Strategy.RESTART,
            why=f"released by an operator ({action}); "
            + ("resuming with what is left." if resume else "restarting the full task."),
            rule="operator_release",
            agent_type=state.current.agent_type if state.current else None,
            work=missing if resume else full_plan(state.task),
        )
        self._record_decision(state, decision, partial, self.runtime.clock.now())

    def note_workspace_cleaned(self, agent: str, path: str, rescue_ref: str | None) -> None:
        """Journal that ``agent``'s workspace was removed (unpushed work saved to
        ``rescue_ref`` first, when there was any)."""
        task_id = self._by_agent.get(agent)
        self._emit(WorkspaceCleaned(path, rescue_ref), task_id=task_id, agent=agent)

    def note_agents_stopped(self, action: str) -> list[str]:
        """Journal that the supervisor is about to stop every running attempt itself (a
        planned stop, ``supervise --stop-agents``); returns their keys. When the next
        supervisor reads how they ended, their failures are judged as usual but not counted
        by the circuit breaker: the supervisor's own SIGTERM is no fleet-wide cause."""
        keys = sorted(
            s.current.spec.key
            for s in self.tasks.values()
            if s.phase is Phase.RUNNING and s.current is not None
        )
        if keys:
            self._emit(OperatorAction(action, stopped=tuple(keys)))
        return keys

    def note_workspace_orphaned(self, path: str, agent: str | None = None) -> None:
        """Journal a workspace no live or waiting task owns (counted by the gate)."""
        self._emit(WorkspaceOrphaned(path), task_id=self._by_agent.get(agent or ""), agent=agent)

    def owners(self) -> set[str]:
        """Agents whose workspace must be kept: tasks not finished, or escalated (a person
        will want to look at what the agent left)."""
        return {s.agent for s in self.tasks.values() if s.phase is not Phase.SUCCEEDED}

    def outcome(self, task_id: str) -> Phase:
        if task_id in self.settled:
            return Phase.SUCCEEDED
        return self.tasks[task_id].phase

    def knows(self, task_id: str) -> bool:
        """Whether ``task_id`` was submitted (it may have settled: :attr:`settled`)."""
        return task_id in self.tasks or task_id in self.settled

    def finished_agents(self) -> list[str]:
        """Agents of tasks that succeeded, settled ones first (their workspaces may go)."""
        owners = self.owners()
        agents = [*self.settled.values(), *(s.agent for s in self.tasks.values())]
        return [agent for agent in agents if agent not in owners]

    # ------------------------------------------------------------------ the loop's steps

    def _pending_of(self, entry: _Timer) -> TaskState | None:
        _, _, task_id, key = entry
        state = self.tasks.get(task_id)  # None: let go of (let_go)
        pending = None if state is None else state.pending
        if pending is None or pending.spec.key != key:
            return None  # superseded (launched, escalated, or rescheduled)
        return state

    def _deadline_of(self, entry: _Timer) -> TaskState | None:
        _, _, task_id, key = entry
        state = self.tasks.get(task_id)  # None: let go of (let_go)
        if state is None:
            return None
        current = state.current
        if (
            state.phase is not Phase.RUNNING
            or current is None
            or current.timed_out
            or current.spec.key != key
        ):
            return None
        return state

    def _full(self) -> bool:
        """Every slot taken (``config.max_live``): due launches wait for an exit."""
        cap = self.config.max_live
        return cap is not None and len(self._running) >= cap

    def _next_wakeup(self, until: float | None) -> float | None:
        # When full, the next exit is what frees a slot: no launch time wakes the loop.
        launch = None if self._full() else self._launches.first(self._pending_of)
        times = [t for t in (launch, self._deadlines.first(self._deadline_of)) if t is not None]
        if until is not None:
            times.append(until)
        return min(times) if times else None

    def _launch_due(self, now: float) -> None:
        due = self._launches.due(now)
        for i, entry in enumerate(due):
            if self._full():
                self._launches.put_back(due[i:])
                return
            state = self._pending_of(entry)
            if state is None or state.pending is None:
                continue
            pending = state.pending
            spec = self._past_usage_limit(state, pending.spec, now)
            if spec is None:
                continue
            applied = tuple(
                AppliedRemedy(r, self.runtime.apply_remedy(state.agent, r))
                for r in pending.remedies
            )
            notes = LaunchNotes() if self._launch_notes is None else self._launch_notes(spec)
            self._emit(
                launch_of(
                    spec, remedies=applied, tmux=notes.tmux, launch_record=notes.launch_record
                ),
                task_id=state.task.task_id,
                agent=state.agent,
                attempt=spec.attempt,
                key=spec.key,
                apply=functools.partial(self._apply_launched, spec=spec),
            )
            self.runtime.launch(spec)

    def _enforce_timeouts(self, now: float) -> None:
        for entry in self._deadlines.due(now):
            state = self._deadline_of(entry)
            if state is None or state.current is None:
                continue
            state.current.timed_out = True
            self.runtime.kill(state.agent)

    def _on_exit(self, exited: AttemptExit) -> None:
        task_id = self._by_agent.get(exited.agent)
        if task_id is None:
            return  # not ours (e.g. a stray session in a shared runtime)
        state = self.tasks[task_id]
        current = state.current
        if current is None or current.number != exited.attempt or state.phase is not Phase.RUNNING:
            return  # a late duplicate report of an attempt already judged
        timed_out = (
            current.timed_out or exited.exit.timed_out or _killed_past_deadline(current, exited)
        )
        exit_info = exited.exit.with_timeout() if timed_out else exited.exit
        self._emit(
            AttemptExited(
                exit=exit_info,
                started_at=exited.started_at,
                ended_at=exited.ended_at,
                output_tail=_tail(exited.output),
                result=None if exited.result is None else dict(exited.result),
                session_id=exited.session_id,
                signals_delivered=tuple(exited.extra.get("signals_delivered", ())),
            ),
            task_id=task_id,
            agent=exited.agent,
            attempt=exited.attempt,
        )
        if exit_info is not exited.exit:
            exited = dataclasses.replace(exited, exit=exit_info)
        self._judge(state, exited)

    def _judge(self, state: TaskState, exited: AttemptExit) -> None:
        """Success if nothing is missing; otherwise attribute the failure and decide."""
        partial = exited.partial
        if partial is None:
            partial = self.runtime.partial_work(state.task, state.agent)
        missing = missing_work(state.task, partial)
        now = self.runtime.clock.now()
        task_id = state.task.task_id
        if not missing:
            recovery_time = None
            if state.first_failure_at is not None:
                recovery_time = max(0.0, now - state.first_failure_at)
            self._emit(
                TaskSucceeded(
                    first_try=len(state.attempts) == 1,
                    attempts=len(state.attempts),
                    recovery_time=recovery_time,
                    pr=None if partial.pr is None else partial.pr.number,
                ),
                task_id=task_id,
                agent=state.agent,
                attempt=exited.attempt,
            )
            self.runtime.cleanup(state.agent)
            return
        observation = Observation(
            exit=exited.exit,
            result=exited.result,
            logs=(LogText("output", exited.output),) if exited.output else (),
            deliverables_present=partial.deliverables_present,
            deliverables_missing=partial.deliverables_missing,
            timed_out=exited.exit.timed_out,
            signals_delivered=tuple(
                signal_number(s) for s in exited.extra.get("signals_delivered", ())
            ),
            tests_passed=partial.tests_passed,
            work_missing=tuple(w.describe() for w in missing if w.kind is not WorkKind.WRITE),
            observed_at=exited.ended_at,
            zone=self.config.zone,
        )
        # As the journal stores it (confidence rounded): a coordinator rebuilt from the journal
        # must hold the very attribution the live one decided on.
        attribution = Attribution.from_json(self._classify(observation).to_json())
        self._emit(
            FailureAttributed(attribution, PartialSummary.of(partial), missing),
            task_id=task_id,
            agent=state.agent,
            attempt=exited.attempt,
        )
        state.partial = partial  # full object (the event holds a summary)
        self._decide(state)

    def _decide(self, state: TaskState) -> None:
        assert state.attribution is not None and state.current is not None
        partial = state.partial
        if partial is None:  # after a crash: read the workspace again
            partial = self.runtime.partial_work(state.task, state.agent)
        history = tuple(
            PastAttempt(a.number, a.agent_type, a.reason, a.strategy, a.usage_limited, a.host_lost)
            for a in state.attempts
        )
        now = self.runtime.clock.now()
        limited_until = self._note_usage_limit(state, now)
        situation = Situation(
            task=state.task,
            agent=state.agent,
            agent_type=state.current.agent_type,
            attribution=state.attribution,
            partial=partial,
            missing=state.missing,
            history=history,
            breaker_open=self.policy.breaker.is_open(state.attribution.reason),
            max_attempts=self.policy.max_attempts,
            now=now,
            limited_until=limited_until,
            fallback_agent=self._unlimited_agent(state.task, now, exclude=state.current.agent_type),
            usage_limit_horizon=self.policy.usage_limit_horizon,
            free_limit_waits=self.policy.free_limit_waits,
        )
        decision = self.policy.decide(situation)
        self._record_decision(state, decision, partial, now)

    # ------------------------------------------------------------------ usage limits

    def _chain(self, task: Task) -> tuple[str, ...]:
        """The agents a task may run on, its own first, then the fleet's fallbacks."""
        primary = task.agent_type or self.config.default_agent_type
        return (primary, *(a for a in self.config.fallback_agents if a != primary))

    def _limited(self, agent_type: str, now: float) -> bool:
        return self._limits.get(agent_type, -math.inf) > now

    def _unlimited_agent(self, task: Task, now: float, *, exclude: str | None = None) -> str | None:
        """The first agent of the task's chain whose account is not at its usage limit."""
        return next(
            (a for a in self._chain(task) if a != exclude and not self._limited(a, now)), None
        )

    def _note_usage_limit(self, state: TaskState, now: float) -> float | None:
        """The usage limit the attempt just hit, as one condition of its account: journaled the
        first time (one event however many agents hit it), and the time launches on that
        account wait for. None when the attempt did not end on a usage limit."""
        attribution, current = state.attribution, state.current
        assert attribution is not None and current is not None
        resets_at = attribution.resets_at
        if not (current.usage_limited and resets_at is not None):
            return None
        account = current.agent_type
        known = self._limits.get(account)
        if known is not None and known > now and resets_at <= known + CLOCK_PRECISION:
            return known  # the condition already recorded: the same reset, said again
        if resets_at <= now:
            # Said again after its reset came (a clock rounded to the minute, a late reset):
            # wait one more minute rather than relaunch into it at once.
            resets_at = now + CLOCK_PRECISION
        wait = resets_at - now
        if wait > self.policy.usage_limit_horizon:
            return None  # not waited for: the policy escalates
        # Jitter drawn from the seed and the reset, so a coordinator replaying the journal
        # draws the same, and the fleet's agents do not all knock at the reset's second.
        rng = random.Random(f"{self.config.seed}:usage-limit:{account}:{resets_at}")
        until = resets_at + rng.uniform(0.0, min(self.policy.usage_limit_jitter, 0.1 * wait))
        held = sorted(
            s.task.task_id
            for s in self.tasks.values()
            if s.phase not in TERMINAL and account in _agent_types_of(s)
        )
        reset_words = next((e.detail for e in attribution.evidence if e.kind == "reset"), "")
        self._emit(
            UsageLimited(account, resets_at, until, tuple(held), reset_words),
            task_id=state.task.task_id,
            agent=state.agent,
            attempt=current.number,
        )
        return until

    def _past_usage_limit(
        self, state: TaskState, spec: LaunchSpec, now: float
    ) -> LaunchSpec | None:
        """The launch to make now, given the accounts' usage limits: as planned, on the next
        agent of the chain, or None (held until the limit lifts; its timer is set again)."""
        if not self._limits or not self._limited(spec.agent_type, now):
            return spec
        other = self._unlimited_agent(state.task, now)
        if other is not None:
            # A session of one CLI cannot be resumed by another: the new agent starts from
            # the prompt (the continuation prompt, for a resumed attempt).
            return dataclasses.replace(spec, agent_type=other, resume_session=None)
        # Every agent it may run on is limited: it waits for the first of them to lift.
        lift = min(self._limits[a] for a in {spec.agent_type, *self._chain(state.task)})
        self._launches.add(lift, state.task.task_id, spec.key)
        return None

    def _record_decision(
        self, state: TaskState, decision: Decision, partial: PartialWork, now: float
    ) -> None:
        task_id = state.task.task_id
        number = len(state.attempts) + 1
        key = f"{task_id}:{number}:{decision.strategy}"
        launch: LaunchOrder | None = None
        pending: PendingLaunch | None = None
        if decision.strategy is not Strategy.ESCALATE:
            work = decision.work or missing_work(state.task, partial)
            if decision.strategy is Strategy.RESTART:
                prompt = initial_prompt(state.task)
            else:
                prompt = continuation_prompt(state.task, partial, work)
            pending = PendingLaunch(
                LaunchSpec(
                    task=state.task,
                    agent=state.agent,
                    attempt=number,
                    agent_type=decision.agent_type or self.config.default_agent_type,
                    strategy=decision.strategy,
                    prompt=prompt,
                    work=work,
                    key=key,
                    resume_session=decision.resume_session,
                    timeout=self.config.attempt_timeout,
                ),
                not_before=now + decision.delay,
                remedies=decision.remedies,
            )
            launch = LaunchOrder(
                attempt=number,
                agent_type=pending.spec.agent_type,
                prompt=prompt,
                work=work,
                resume_session=decision.resume_session,
                not_before=pending.not_before,
            )
        self._emit(
            DecisionMade(decision, launch),
            task_id=task_id,
            agent=state.agent,
            attempt=len(state.attempts),
            key=key,
            apply=functools.partial(self._apply_decision, pending=pending),
        )
        if decision.strategy is Strategy.ESCALATE:
            reason = state.attribution.reason if state.attribution else Reason.UNKNOWN
            incident = None
            if decision.systematic_cause is not None:
                # One cause, one incident: join the open one for this reason, or open it.
                joined = self.incidents.open_for(str(reason))
                incident = (
                    joined.incident_id
                    if joined is not None
                    else self.incidents.next_id(str(reason))
                )
            self._emit(
                TaskEscalated(decision.why, decision.systematic_cause, reason, incident),
                task_id=task_id,
                agent=state.agent,
                attempt=len(state.attempts),
            )

    # ------------------------------------------------------------------ event sourcing

    def _emit(
        self,
        payload: Payload,
        *,
        task_id: str | None = None,
        agent: str | None = None,
        attempt: int | None = None,
        key: str | None = None,
        apply: Callable[[Event], None] | None = None,
    ) -> Event:
        """Journal an event, fold it into memory, tell the observer. ``apply`` is the fold
        step of the event's kind given objects the event does not hold (the full launch
        spec), so a live event folds the same as a replayed one (:meth:`_apply`)."""
        event = self.journal.append(
            Event(
                payload,
                self.runtime.clock.now(),
                task_id,
                agent,
                attempt,
                key,
                len(self.journal) + 1,
            )
        )
        if apply is None:
            self._apply(event)
        else:
            apply(event)
        self.incidents.fold(event)
        self._remember(event)
        if self._on_event is not None:
            self._on_event(event)
        return event

    def _apply(self, event: Event) -> None:
        """Fold one event into memory. Used live and on replay: no I/O, no decisions."""
        step = _FOLD.get(event.kind)
        if step is not None:
            step(self, event)

    def _fold(self, event: Event) -> None:
        """A journaled event, replayed: what :meth:`_emit` does after writing one."""
        self._apply(event)
        self.incidents.fold(event)
        self._remember(event)

    def _remember(self, event: Event) -> None:
        """Keep what :meth:`state` exports: the folded events of each task not settled
        (dropped when it settles; for a task escalated and waiting, its state instead of
        the events before), and every incident's escalations."""
        self._seq = max(self._seq, event.seq)
        kind = event.kind
        if kind not in _FOLD:
            return
        payload = event.payload
        if isinstance(payload, OperatorAction):
            for task_id in payload.tasks:
                history = self._history.get(task_id)
                if history is not None:
                    history.append(event)
            return
        if isinstance(payload, TaskEscalated) and payload.incident is not None:
            self._paged.append(event)
        if event.task_id is None:
            return
        task_id = event.task_id
        state = self.tasks.get(task_id)
        if state is None:
            return
        if self._is_settled(task_id, state):
            self._history.pop(task_id, None)
            self._compact.pop(task_id, None)
            return
        history = self._history.setdefault(task_id, [])
        history.append(event)
        if (
            kind is EventKind.TASK_ESCALATED
            and state.phase is Phase.ESCALATED
            and state.released_by is None
            and state.pending is None
            and task_id not in self._running
        ):
            self._take_compact(task_id, state, history, event.seq)

    def _take_compact(self, task_id: str, state: TaskState, history: list[Event], seq: int) -> None:
        """An escalated task waits for an operator: keep it as a replay holds it now
        (``coordstate.CompactTask``) and only its events from here on."""
        before = self._compact.get(task_id)
        if before is not None:
            submitted, keys = before.submitted, list(before.keys)
        elif _whole(history):
            submitted, keys = history[0].seq, []
        else:
            return  # its history is not whole here: state() exports nothing
        keys.extend(key for key in map(_timer_key, history) if key is not None)
        # What a replay holds: the live coordinator also keeps the workspace it read
        # (``partial``); a replayed one never does.
        replayed = dataclasses.replace(copy_task_state(state), partial=None)
        self._compact[task_id] = CompactTask(
            task_id, submitted, seq, tuple(dict.fromkeys(keys)), replayed
        )
        history.clear()

    def _state_of(self, event: Event) -> TaskState | None:
        return None if event.task_id is None else self.tasks[event.task_id]

    def _apply_operator_action(self, event: Event) -> None:
        action = event.payload
        assert isinstance(action, OperatorAction)
        self._stopped_keys.update(action.stopped)
        for reason in action.reasons:
            self.policy.breaker.close(reason)
        for task_id in action.tasks:
            if task_id in self.tasks:
                self.tasks[task_id].released_by = action.action

    def _apply_submitted(self, event: Event) -> None:
        submitted = event.payload
        assert isinstance(submitted, TaskSubmitted)
        task = submitted.task
        if event.task_id is None or task is None:
            return
        agent = event.agent
        if agent is None:
            drawn = self._names.draws
            agent = self._names.next()
            self._fold_draws += self._names.draws - drawn
        self._names.reserve(agent)
        state = TaskState(task=task, agent=agent)
        self.tasks[task.task_id] = state
        self._by_agent[agent] = task.task_id
        key = f"{task.task_id}:1:initial"
        state.pending = PendingLaunch(
            LaunchSpec(
                task=task,
                agent=agent,
                attempt=1,
                agent_type=task.agent_type or self.config.default_agent_type,
                strategy=None,
                prompt=initial_prompt(task),
                work=full_plan(task),
                key=key,
                timeout=self.config.attempt_timeout,
            ),
            not_before=event.time,
        )
        self._launches.add(event.time, task.task_id, key)

    def _apply_launched(self, event: Event, spec: LaunchSpec | None = None) -> None:
        state = self._state_of(event)
        launched = event.payload
        assert isinstance(launched, AttemptLaunched)
        if state is None:
            return
        timeout = launched.timeout
        if spec is None:
            attempt = int(event.attempt or len(state.attempts) + 1)
            spec = spec_of(launched, state.task, state.agent, attempt, str(event.key))
        deadline = None if timeout is None else event.time + timeout
        state.attempts.append(AttemptState(spec=spec, launched_at=event.time, deadline=deadline))
        state.pending = None
        state.phase = Phase.RUNNING
        state.attribution = None
        state.partial = None
        self._running.add(state.task.task_id)
        if deadline is not None:
            self._deadlines.add(deadline, state.task.task_id, spec.key)

    def _apply_exited(self, event: Event) -> None:
        state = self._state_of(event)
        exited = event.payload
        assert isinstance(exited, AttemptExited)
        if state is None:
            return
        current = state.current
        if current is not None:
            current.exit = exited.exit or ExitInfo(None)
            current.timed_out = current.exit.timed_out
            current.host_lost = current.exit.source == HOST_LOST
        state.exited = exited
        state.phase = Phase.EXITED
        self._running.discard(state.task.task_id)

    def _apply_attributed(self, event: Event) -> None:
        state = self._state_of(event)
        attributed = event.payload
        assert isinstance(attributed, FailureAttributed)
        if state is None:
            return
        attribution = attributed.attribution
        state.attribution = attribution
        state.missing = attributed.missing_work
        limited = attribution.usage_limit and attribution.resets_at is not None
        if state.current is not None:
            state.current.reason = attribution.reason
            state.current.usage_limited = limited
        if state.first_failure_at is None:
            ended = state.exited.ended_at if state.exited else None
            state.first_failure_at = ended if ended is not None else event.time
        # An account's usage limit is a condition of its own, not a wall; an attempt the
        # supervisor stopped itself (a planned stop) says nothing about the fleet either.
        # A lost host's attempts neither: the machine failed, not the agents.
        stopped = state.current is not None and (
            state.current.spec.key in self._stopped_keys or state.current.host_lost
        )
        if not limited and not stopped:
            self.policy.breaker.record(attribution.reason, state.agent, event.time)
        state.phase = Phase.ATTRIBUTED

    def _apply_decision(self, event: Event, pending: PendingLaunch | None = None) -> None:
        state = self._state_of(event)
        decided = event.payload
        assert isinstance(decided, DecisionMade)
        if state is None:
            return
        state.released_by = None
        launch = decided.launch
        if launch is None:
            return
        if pending is None:
            decision = decided.decision
            assert decision is not None, "a decision that orders a launch names its strategy"
            pending = PendingLaunch(
                LaunchSpec(
                    task=state.task,
                    agent=state.agent,
                    attempt=launch.attempt,
                    agent_type=launch.agent_type,
                    strategy=decision.strategy,
                    prompt=launch.prompt,
                    work=launch.work,
                    key=str(event.key),
                    resume_session=launch.resume_session,
                    timeout=self.config.attempt_timeout,
                ),
                not_before=event.time if launch.not_before is None else launch.not_before,
                remedies=decision.remedies,
            )
        state.pending = pending
        state.phase = Phase.WAITING
        self._launches.add(pending.not_before, state.task.task_id, pending.spec.key)

    def _apply_usage_limited(self, event: Event) -> None:
        limited = event.payload
        assert isinstance(limited, UsageLimited)
        until = event.time if limited.until is None else limited.until
        account = limited.agent_type
        self._limits[account] = max(until, self._limits.get(account, until))

    def _apply_succeeded(self, event: Event) -> None:
        self._finish(event, Phase.SUCCEEDED)

    def _apply_escalated(self, event: Event) -> None:
        escalated = event.payload
        assert isinstance(escalated, TaskEscalated)
        state = self._finish(event, Phase.ESCALATED)
        if state is not None:
            state.escalation_cause = escalated.systematic_cause

    def _finish(self, event: Event, phase: Phase) -> TaskState | None:
        state = self._state_of(event)
        if state is not None:
            state.phase = phase
            state.pending = None
        return state


# How each kind of event folds into a coordinator's memory; kinds not here change nothing
# (workspace_cleaned, workspace_orphaned are records for the dashboard).
_FOLD: dict[EventKind, Callable[[Coordinator, Event], None]] = {
    EventKind.OPERATOR_ACTION: Coordinator._apply_operator_action,
    EventKind.TASK_SUBMITTED: Coordinator._apply_submitted,
    EventKind.ATTEMPT_LAUNCHED: Coordinator._apply_launched,
    EventKind.ATTEMPT_EXITED: Coordinator._apply_exited,
    EventKind.FAILURE_ATTRIBUTED: Coordinator._apply_attributed,
    EventKind.DECISION: Coordinator._apply_decision,
    EventKind.TASK_SUCCEEDED: Coordinator._apply_succeeded,
    EventKind.TASK_ESCALATED: Coordinator._apply_escalated,
    EventKind.USAGE_LIMITED: Coordinator._apply_usage_limited,
}


def fold_settings(
    config: CoordinatorConfig, policy: Policy
) -> tuple[tuple[str, str | int | float | None], ...]:
    """The settings a coordinator's fold depends on (``coordstate.FOLD_SETTINGS``)."""
    breaker = policy.breaker
    values: dict[str, str | int | float | None] = {
        "seed": config.seed,
        "attempt_timeout": config.attempt_timeout,
        "default_agent_type": config.default_agent_type,
        "breaker_threshold": breaker.threshold,
        "breaker_window": breaker.window,
    }
    return tuple((name, values[name]) for name in FOLD_SETTINGS)


def state_unfit(state: CoordinatorState, events: Iterable[Event]) -> str | None:
    """Why the journal's ``events`` after ``state.seq`` cannot be folded onto ``state``, or
    None. One that changes a settled task would reopen it in a whole replay, and its state
    was not kept: the journal is replayed whole instead."""
    settled = state.settled
    compact = {c.task_id: c for c in state.compact}
    for event in events:
        task_id = event.task_id
        if task_id is None:
            continue
        taken = compact.get(task_id)
        if taken is not None and event.seq > taken.seq and _timer_key(event) in taken.keys:
            return (
                f"event {event.seq} ({event.kind}) sets launch key {event.key!r} of task "
                f"{task_id!r} again"
            )
        if event.seq <= state.seq or task_id not in settled:
            continue
        if event.kind in _FOLD:
            return f"event {event.seq} ({event.kind}) changes task {task_id!r}, which had settled"
    return None


def _whole(history: list[Event]) -> bool:
    """Whether a task's history holds its submission, under an agent name (a name the
    fold drew is drawn in journal order: only a whole replay draws it again)."""
    return (
        bool(history)
        and history[0].kind is EventKind.TASK_SUBMITTED
        and history[0].agent is not None
    )


def _timer_key(event: Event) -> str | None:
    """The launch key an event sets a launch or deadline timer for, if any."""
    kind = event.kind
    if kind is EventKind.TASK_SUBMITTED:
        return f"{event.task_id}:1:initial"
    if kind is EventKind.ATTEMPT_LAUNCHED:
        return str(event.key)
    if kind is EventKind.DECISION:
        decided = event.payload
        assert isinstance(decided, DecisionMade)
        return None if decided.launch is None else str(event.key)
    return None


def _copy_incident(incident: Incident) -> Incident:
    return dataclasses.replace(incident, tasks=list(incident.tasks))


# A state exported by code whose fold, or whose state's shape, differs is not used.
STATE_FINGERPRINT = fingerprint(
    shape_fingerprint(
        (CoordinatorState, CompactTask, TaskState, AttemptState, Incident, CircuitBreaker)
    ),
    code_fingerprint(
        [
            *_FOLD.values(),
            Coordinator._apply,
            Coordinator._finish,
            Coordinator._state_of,
            Coordinator._remember,
            Coordinator._restore,
            Coordinator._take_in,
            Coordinator._take_compact,
            Coordinator.state,
            copy_task_state,
            spec_of,
            _whole,
            _timer_key,
            CircuitBreaker.record,
            CircuitBreaker.close,
            CircuitBreaker.recorded,
            CircuitBreaker.restore,
            IncidentBook.fold,
            IncidentBook.restore,
            AgentNames.__init__,
            AgentNames.next,
        ]
    ),
)


def _agent_types_of(state: TaskState) -> set[str]:
    """The agent types a task runs or waits to run on."""
    types = {state.task.agent_type}
    if state.pending is not None:
        types.add(state.pending.spec.agent_type)
    if state.current is not None:
        types.add(state.current.agent_type)
    return types


def _tail(text: str, limit: int = OUTPUT_TAIL_BYTES) -> str:
    if len(text) * 4 <= limit:  # short enough whatever its characters (UTF-8: 4 bytes at most)
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", "replace")


def _exit_from_event(state: TaskState, exited: AttemptExited) -> AttemptExit:
    current = state.current
    assert current is not None
    return AttemptExit(
        agent=state.agent,
        attempt=current.number,
        exit=exited.exit or ExitInfo(None),
        started_at=exited.started_at or 0.0,
        ended_at=exited.ended_at or 0.0,
        output=exited.output_tail,
        result=exited.result,
        session_id=exited.session_id,
        extra={"signals_delivered": exited.signals_delivered},
    )
