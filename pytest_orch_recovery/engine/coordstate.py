"""A coordinator's memory as plain data, so a restart need not fold the whole journal again.

:meth:`Coordinator.state` exports it and :meth:`Coordinator.recover` takes it back
(``state=``); the store writes it beside the journal (``store/restart.py``). It holds:

- the events that rebuild what is still open -- every event of each task that has not
  settled, and every escalation of an incident (its page lists them) -- folded again on
  restore through the same fold as a full replay, so an open task's state cannot drift
  from the journal's;
- tasks that succeeded and have nothing running (*settled*) as task id -> agent only: a
  succeeded task takes no more decisions, and its agent is all ``submit``, ``owners`` and
  the workspace sweep ask of it;
- tasks escalated and waiting for an operator as their :class:`TaskState` (*compact*, a
  :class:`CompactTask`): what a replay of their events holds, taken when they escalated, so a
  restart need not fold those events again; their events after it (an operator's release)
  are kept as an open task's;
- what every event folds into beyond one task: the circuit breaker's window, the accounts'
  usage limits, the attempts stopped by a planned stop, the incident book, and how many
  agent names the fold drew.

:data:`FINGERPRINT` covers the shape of this data and the code of the fold that makes it, so
a state written by another version is ignored (and rebuilt from the whole journal).
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from pytest_orch_recovery.engine.events import AttemptExited, AttemptLaunched, Event
from pytest_orch_recovery.engine.incidents import Incident
from pytest_orch_recovery.engine.model import (
    Attribution,
    ExitInfo,
    PartialWork,
    Phase,
    Reason,
    Strategy,
    Task,
    WorkItem,
)
from pytest_orch_recovery.engine.ports import LaunchSpec

__all__ = [
    "FOLD_SETTINGS",
    "AttemptState",
    "CompactTask",
    "CoordinatorState",
    "PendingLaunch",
    "TaskState",
    "code_fingerprint",
    "copy_task_state",
    "fingerprint",
    "launch_of",
    "shape_fingerprint",
    "spec_of",
]

# The settings the fold reads (CoordinatorConfig and the breaker's): a state made under
# other values would differ from a replay under these, so it is not used.
FOLD_SETTINGS = (
    "seed",
    "attempt_timeout",
    "default_agent_type",
    "breaker_threshold",
    "breaker_window",
)


@dataclass
class AttemptState:
    spec: LaunchSpec
    launched_at: float
    deadline: float | None
    reason: Reason | None = None
    exit: ExitInfo | None = None
    timed_out: bool = False  # the coordinator killed it for running past its timeout
    usage_limited: bool = False  # it ended on its account's usage limit
    host_lost: bool = False  # its host was lost; another host recorded its end

    @property
    def number(self) -> int:
        return self.spec.attempt

    @property
    def agent_type(self) -> str:
        return self.spec.agent_type

    @property
    def strategy(self) -> Strategy | None:
        return self.spec.strategy


@dataclass
class PendingLaunch:
    spec: LaunchSpec
    not_before: float
    remedies: tuple[str, ...] = ()


@dataclass
class TaskState:
    task: Task
    agent: str
    phase: Phase = Phase.WAITING
    attempts: list[AttemptState] = field(default_factory=list)
    pending: PendingLaunch | None = None
    exited: AttemptExited | None = None  # the last attempt_exited
    attribution: Attribution | None = None
    partial: PartialWork | None = None
    missing: tuple[WorkItem, ...] = ()
    first_failure_at: float | None = None
    escalation_cause: str | None = None
    released_by: str | None = None  # an operator released it; no decision recorded yet

    @property
    def current(self) -> AttemptState | None:
        return self.attempts[-1] if self.attempts else None


def spec_of(
    launched: AttemptLaunched, task: Task, agent: str, attempt: int, key: str
) -> LaunchSpec:
    """The launch an ``attempt_launched`` records, for ``task`` run by ``agent``."""
    return LaunchSpec(
        task=task,
        agent=agent,
        attempt=attempt,
        agent_type=launched.agent_type,
        strategy=launched.strategy,
        prompt=launched.prompt,
        work=launched.work,
        key=key,
        resume_session=launched.resume_session,
        timeout=launched.timeout,
    )


def launch_of(spec: LaunchSpec, **extra: typing.Any) -> AttemptLaunched:
    """What an ``attempt_launched`` records of ``spec`` (``extra``: what else it says)."""
    return AttemptLaunched(
        agent_type=spec.agent_type,
        strategy=spec.strategy,
        work=spec.work,
        resume_session=spec.resume_session,
        prompt=spec.prompt,
        timeout=spec.timeout,
        **extra,
    )


def copy_task_state(state: TaskState) -> TaskState:
    """A copy of ``state`` that shares nothing mutable with it (its attempts are copied)."""
    return dataclasses.replace(state, attempts=[dataclasses.replace(a) for a in state.attempts])


@dataclass(frozen=True)
class CompactTask:
    """A task escalated and waiting for an operator, as a replay of its events up to
    ``seq`` (its escalation) holds it: ``state`` (``partial`` None and ``pending`` None, as
    after any replay). ``submitted``: the seq of its submission (a restored coordinator
    keeps its tasks in submission order, as a replay does). ``keys``: every launch key its
    events set a timer for; a later event that sets one of them again would make a
    replay's old timer valid again (only a hand-edited journal), so such a state is not
    used (``state_unfit``)."""

    task_id: str
    submitted: int
    seq: int
    keys: tuple[str, ...]
    state: TaskState


@dataclass(frozen=True)
class CoordinatorState:
    """What a coordinator holds after the journal's first ``seq`` events (module doc)."""

    seq: int
    settings: tuple[tuple[str, str | int | float | None], ...]
    events: tuple[Event, ...]  # in seq order, each <= seq
    settled: Mapping[str, str]  # task id -> agent, in submission order
    breaker_open: tuple[tuple[Reason, str], ...]
    breaker_recent: tuple[tuple[Reason, tuple[tuple[float, str], ...]], ...]
    limits: tuple[tuple[str, float], ...]
    stopped_keys: tuple[str, ...]
    name_draws: int
    incidents: tuple[Incident, ...]
    open_incidents: tuple[tuple[str, str], ...]  # reason -> its open incident
    escalated: tuple[tuple[str, str | None], ...]  # task -> its incident (None: alone)
    # Agents several tasks were submitted under -> the task a replay maps them to (the last).
    shared_agents: tuple[tuple[str, str], ...] = ()
    # Tasks escalated and waiting, by the seq they were taken at; their events after it
    # are in ``events``.
    compact: tuple[CompactTask, ...] = ()


def shape_fingerprint(classes: Iterable[type]) -> str:
    """The field names and types of ``classes``, as text: a class that gains, loses,
    renames or retypes a field changes it."""
    parts = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        fields = ",".join(f"{f.name}:{hints[f.name]}" for f in dataclasses.fields(cls))
        parts.append(f"{cls.__module__}.{cls.__qualname__}({fields})")
    return "\n".join(parts)


def code_fingerprint(functions: Iterable[Callable[..., object]]) -> str:
    """What ``functions`` do, as text: their bytecode, names and constants, without line
    numbers or file names (a moved or reinstalled file is the same code)."""
    return "\n".join(
        b"|".join(_code_words(getattr(f, "__code__"))).hex()  # noqa: B009
        for f in functions
    )


def _code_words(code: types.CodeType) -> Iterator[bytes]:
    yield code.co_code
    yield repr(code.co_names).encode()
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_words(const)
        elif isinstance(const, frozenset):  # its repr's order changes with the hash seed
            yield repr(sorted(repr(c) for c in const)).encode()
        else:
            yield repr(const).encode()


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
