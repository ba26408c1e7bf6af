"""Recovery metrics and success criteria: pure aggregation over journal events, no I/O.

:func:`compute` folds the events of one or several journals (task ids unique across them, each
journal's events in append order) into :class:`Metrics`, the figures of the recovery design's
"Recovery Metrics Dashboard". :func:`evaluate` judges them against the recovery design's success
criteria (:class:`Criteria`); the report renders both, and the pytest plugin's merge gate reuses
them.

Counting rules (docs/journal.md is the schema):

- A *failed attempt* is one the coordinator attributed (``failure_attributed``). An
  ``attempt_exited`` followed by ``task_succeeded`` is a success. An exit that is followed by
  anything else (a new launch, a decision, a terminal event) without an attribution is an
  *unattributed failure*, as is an unclean exit the journal ends on and an attribution to
  ``unknown``.
- A task's outcome is its last terminal event; an ``operator_action`` naming an escalated task
  releases it (it is in progress again until its next terminal event).
- *First try*: succeeded with no failed attempt. The first-try rates of simple and complex
  tasks count only *settled* tasks (succeeded, failed at least once, or ended), so tasks still
  on their first attempt neither help nor hurt.
- *Recovery rate*: of the tasks that required recovery and reached an outcome, the share that
  succeeded (after an operator's release too; those are also counted on their own).
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Literal

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import Event, EventKind, PartialSummary
from pytest_orch_recovery.engine.model import Complexity, Reason, Strategy
from pytest_orch_recovery.report.jsondoc import Rows
from pytest_orch_recovery.report.recent import Key, RecentEvents
from pytest_orch_recovery.report.rootcause import theory
from pytest_orch_recovery.report.stats import mean, percentile, wilson_interval
from pytest_orch_recovery.store.history import History, TaskHistory

__all__ = [
    "Criteria",
    "CriterionResult",
    "Metrics",
    "Outcome",
    "Totals",
    "compute",
    "evaluate",
]

# The reasons table lists at most this many agents per reason (the seed shows three).
COMMON_AGENTS_MAX = 3


class Outcome(enum.StrEnum):
    """A task's :class:`~pytest_orch_recovery.store.history.TaskOutcome` as the dashboard's Result
    column words it."""

    RECOVERED = "RECOVERED"  # succeeded after at least one failed attempt
    SUCCEEDED = "SUCCEEDED"  # succeeded on the first try
    ESCALATED = "ESCALATED"
    IN_PROGRESS = "IN PROGRESS"


@dataclass(frozen=True)
class ReasonRow:
    """One row of the "Recovery Reasons" table."""

    reason: Reason
    count: int  # attributed failures with this reason
    percentage: float  # of all attributed failures, 0..100
    common_agents: tuple[str, ...]  # most frequent first


@dataclass(frozen=True)
class RecoveryEvent:
    """One task that needed recovery, in the recovery design's "Recent Recovery Events" shape."""

    task_id: str
    time: float  # of the first failure
    date: str  # ISO date (UTC) of the first failure
    agent: str
    title: str
    reason: Reason  # of the first failure
    reasons: tuple[Reason, ...]  # of every failed attempt, in order
    exit_code: int | None  # as a shell shows it (128+N for signals)
    exit_signal: str | None
    partial_work: tuple[str, ...]  # what the first failure left behind, in words
    missing_work: tuple[str, ...]  # what it still needed, in words
    strategies: tuple[Strategy, ...]  # every decision, in order
    recovery_time: float | None  # seconds
    outcome: Outcome
    pr: int | None
    evidence: str  # the strongest evidence's detail
    lesson: str
    released_by_operator: tuple[str, ...]  # operator actions that released it
    # Which of the recovery design's root-cause hypotheses the signal's sender supports
    # (rootcause.py).
    theory: str = ""
    # The agent type of each attempt, in order: the last one finished the task (a fallback
    # agent while the primary's account was at its usage limit, a fix agent, ...).
    agent_types: tuple[str, ...] = ()

    @property
    def finished_by(self) -> str | None:
        """The agent type that finished the task, when another than the one that started."""
        if self.outcome is not Outcome.RECOVERED or len(set(self.agent_types)) < 2:
            return None
        return self.agent_types[-1]

    @property
    def root_cause(self) -> str:
        return f"{self.reason}: {self.evidence}" if self.evidence else str(self.reason)

    def to_json(self) -> dict[str, Any]:
        """The fields in their order (as ``asdict`` gives them, values JSON-ready), then the
        root cause. Written out: a report writes one for every task that ever failed."""
        return {
            "task_id": self.task_id,
            "time": self.time,
            "date": self.date,
            "agent": self.agent,
            "title": self.title,
            "reason": self.reason.value,
            "reasons": [r.value for r in self.reasons],
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "partial_work": list(self.partial_work),
            "missing_work": list(self.missing_work),
            "strategies": [s.value for s in self.strategies],
            "recovery_time": self.recovery_time,
            "outcome": self.outcome.value,
            "pr": self.pr,
            "evidence": self.evidence,
            "lesson": self.lesson,
            "released_by_operator": list(self.released_by_operator),
            "theory": self.theory,
            "agent_types": list(self.agent_types),
            "root_cause": self.root_cause,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecoveryEvent:
        """The event :meth:`to_json` wrote (the report keeps ended tasks' events so)."""
        return cls(
            task_id=data["task_id"],
            time=data["time"],
            date=data["date"],
            agent=data["agent"],
            title=data["title"],
            reason=Reason(data["reason"]),
            reasons=tuple(Reason(r) for r in data["reasons"]),
            exit_code=data["exit_code"],
            exit_signal=data["exit_signal"],
            partial_work=tuple(data["partial_work"]),
            missing_work=tuple(data["missing_work"]),
            strategies=tuple(Strategy(s) for s in data["strategies"]),
            recovery_time=data["recovery_time"],
            outcome=Outcome(data["outcome"]),
            pr=data["pr"],
            evidence=data["evidence"],
            lesson=data["lesson"],
            released_by_operator=tuple(data["released_by_operator"]),
            theory=data["theory"],
            agent_types=tuple(data["agent_types"]),
        )


@dataclass(frozen=True)
class SystematicCause:
    """A cause the circuit breaker saw across several agents, escalated once."""

    cause: str
    reason: Reason | None  # the most common attributed reason among the tasks
    date: str
    tasks: tuple[str, ...]
    agents: tuple[str, ...]
    operator_actions: tuple[str, ...]
    lesson: str


@dataclass(frozen=True)
class Metrics:
    total_tasks: int
    simple_tasks: int
    complex_tasks: int
    attempts: int  # attempt_launched events
    failures: int  # attributed failed attempts
    first_try: int
    first_try_agents: tuple[str, ...]
    first_try_simple: int
    settled_simple: int
    first_try_complex: int
    settled_complex: int
    unsettled: int  # no failed attempt and no success yet
    required_recovery: int  # tasks with at least one failed attempt
    required_recovery_by_reason: tuple[tuple[Reason, int], ...]  # first failure, most first
    recovered: int
    recovered_after_operator: int  # of ``recovered``: only after an operator's release
    escalated: int  # tasks escalated at the end of the journal
    recovering: int  # required recovery, no outcome yet
    recovery_times: tuple[float, ...]  # seconds, in journal order
    recovery_time_mean: float | None
    recovery_time_p50: float | None
    recovery_time_p95: float | None
    reasons: tuple[ReasonRow, ...]  # every Reason, in enum order
    recent: RecentEvents[RecoveryEvent]  # newest first
    orphaned_workspaces: int
    orphaned_paths: tuple[str, ...]
    unattributed_failures: int
    systematic_causes: tuple[SystematicCause, ...]

    @property
    def recovery_settled(self) -> int:
        """Tasks that required recovery and reached an outcome."""
        return self.required_recovery - self.recovering

    def to_json(self, *, stream: bool = False) -> dict[str, Any]:
        """Every field as JSON values; ``stream``: the recovery events as
        :class:`~pytest_orch_recovery.report.jsondoc.Rows`, each encoded as it is written."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "recent"}
        recent = self.recent
        out["recent"] = Rows(recent.json_rows()) if stream else [e.to_json() for e in recent]
        # In field order, as asdict() gives them.
        out = {f.name: out[f.name] for f in fields(self)}
        out["recovery_settled"] = self.recovery_settled
        return out


def _plain(value: Any) -> Any:
    """A field made JSON-ready as ``asdict`` and then this would: dataclasses to dicts,
    tuples to lists, enums to their values."""
    if isinstance(value, enum.Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if set(map(type, value)) <= _SCALARS:  # every recovery time, every name
            return list(value)
        return [_plain(v) for v in value]
    return value


_SCALARS = frozenset({str, int, float})


def _add_unique(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def describe_partial(partial: PartialSummary | None) -> tuple[str, ...]:
    """What an attempt left behind, in words (nothing when the workspace was not probed)."""
    return () if partial is None else partial.describe()


# --------------------------------------------------------------------------- aggregation


def _iso_date(time: float) -> str:
    return datetime.fromtimestamp(time, UTC).date().isoformat()


def _outcome(task: TaskHistory) -> Outcome:
    return Outcome[task.result.name]


def _recovery_event(task: TaskHistory) -> RecoveryEvent:
    first = task.failures[0]
    return RecoveryEvent(
        task_id=task.task_id,
        time=first.time,
        date=_iso_date(first.time),
        agent=first.agent,
        title=task.title or task.task_id,
        reason=first.attribution.reason,
        reasons=tuple(f.attribution.reason for f in task.failures),
        exit_code=None if first.exit is None else first.exit.display_code,
        exit_signal=None if first.exit is None else first.exit.signal_name,
        partial_work=describe_partial(first.partial),
        missing_work=tuple(w.describe() for w in first.missing_work),
        strategies=tuple(task.strategies),
        recovery_time=task.recovery_time,
        outcome=_outcome(task),
        pr=task.pr,
        evidence=first.strongest_evidence,
        lesson=task.lesson,
        released_by_operator=tuple(task.released),
        theory=theory(first.attribution),
        agent_types=tuple(a.agent_type for a in task.attempts if a.agent_type),
    )


def _unattributed(story: TaskHistory) -> int:
    count = story.unattributed + sum(
        1 for f in story.failures if f.attribution.reason is Reason.UNKNOWN
    )
    pending = story.pending_exit
    if pending is not None and not pending.clean:
        count += 1  # the journal ends on a failed exit nobody attributed
    return count


@dataclass(frozen=True, slots=True)
class Member:
    """A task with a systematic cause, as the causes' section reads it."""

    ordinal: int
    task_id: str
    causes: tuple[str, ...]
    reason: Reason | None  # of its last failure; None without one
    agent: str  # of its last failure, else its own
    released: tuple[str, ...]
    first_time: float  # of its first failure, else of its first event
    lesson: str

    @classmethod
    def of(cls, ordinal: int, story: TaskHistory) -> Member:
        last = story.failures[-1] if story.failures else None
        return cls(
            ordinal=ordinal,
            task_id=story.task_id,
            causes=tuple(story.systematic),
            reason=None if last is None else last.attribution.reason,
            agent=last.agent if last is not None else (story.agent or story.task_id),
            released=tuple(story.released),
            first_time=story.failures[0].time if story.failures else (story.first_time or 0.0),
            lesson=story.lesson,
        )


# Where an item first appeared: [task ordinal, its index within the task] (a list, as the
# kept file's JSON gives it back: places are compared with each other).
Place = list[int]


def _first(seen: dict[Any, list[Any]], key: Any, place: Any, count: int = 1) -> None:
    """Count ``key``, remembering the earliest place it was seen (Counter's insertion order)."""
    entry = seen.get(key)
    if entry is None:
        seen[key] = [count, place]
    else:
        entry[0] += count
        entry[1] = min(entry[1], place)


def _merged_counts(a: dict[Any, list[Any]], b: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
    """The counts of both, each key's first place the earlier one; neither is changed (the
    larger is copied whole, the smaller's keys added one by one)."""
    big, small = (a, b) if len(a) >= len(b) else (b, a)
    out = dict(big)
    for key, (count, first) in small.items():
        entry = out.get(key)
        out[key] = [count, first] if entry is None else [entry[0] + count, min(entry[1], first)]
    return out


def _rank(item: tuple[Any, list[Any]]) -> tuple[int, Any]:
    return -item[1][0], item[1][1]


def _ranked(seen: dict[Any, list[Any]], most: int | None = None) -> list[tuple[Any, int]]:
    """``Counter.most_common`` of the counts in ``seen``: ties in order of first appearance."""
    if most is None:
        ranked = sorted(seen.items(), key=_rank)
    else:  # the few most common of many (every agent that ever failed): no full sort
        ranked = heapq.nsmallest(most, seen.items(), key=_rank)
    return [(key, entry[0]) for key, entry in ranked]


@dataclass
class Totals:
    """The dashboard's figures over some of a journal's tasks, each at its place (ordinal) in
    the journal's task order, in a form that adds up: :meth:`merge` of the totals of two sets
    of tasks is the totals of both, so the tasks that ended long ago can be counted once and
    kept, and :meth:`metrics` gives exactly what :func:`compute` gives for all of them (the
    same values in the same orders: counts with where they first appeared, lists with their
    tasks' ordinals)."""

    tasks: int = 0
    simple: int = 0
    complex: int = 0
    attempts: int = 0
    failures: int = 0
    unattributed: int = 0
    first_try: list[tuple[int, str]] = field(default_factory=list)  # (ordinal, name)
    first_try_simple: int = 0
    first_try_complex: int = 0
    settled_simple: int = 0
    settled_complex: int = 0
    required_recovery: int = 0
    recovered: int = 0
    recovered_after_operator: int = 0
    escalated: int = 0
    recovering: int = 0
    times: list[tuple[int, float]] = field(default_factory=list)  # (ordinal, recovery time)
    # First failures' reasons: reason -> [count, ordinal of the first].
    first_reasons: dict[Reason, list[Any]] = field(default_factory=dict)
    # Every failure: reason -> agent -> [count, Place of the first].
    agents: dict[Reason, dict[str, list[Any]]] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)
    recent: RecentEvents[RecoveryEvent] = field(default_factory=RecentEvents)

    @classmethod
    def of(cls, stories: Iterable[tuple[int, TaskHistory]]) -> Totals:
        """The totals of ``stories``: (ordinal, story) with ascending ordinals."""
        totals = cls()
        recent: list[tuple[Key, RecoveryEvent]] = []
        for ordinal, story in stories:
            totals._add(ordinal, story, recent)
        totals.recent = RecentEvents(recent)
        return totals

    def _add(self, ordinal: int, s: TaskHistory, recent: list[tuple[Key, RecoveryEvent]]) -> None:
        self.tasks += 1
        self.attempts += s.launches
        self.failures += len(s.failures)
        self.unattributed += _unattributed(s)
        settled = bool(s.failures) or s.outcome is not None
        simple = s.complexity is Complexity.SIMPLE
        complex_ = s.complexity is Complexity.COMPLEX
        self.simple += simple
        self.complex += complex_
        self.settled_simple += simple and settled
        self.settled_complex += complex_ and settled
        self.escalated += s.outcome is EventKind.TASK_ESCALATED
        if s.outcome is EventKind.TASK_SUCCEEDED and s.submitted and not s.failures:
            self.first_try.append((ordinal, s.name))
            self.first_try_simple += simple
            self.first_try_complex += complex_
        for index, failure in enumerate(s.failures):
            by_agent = self.agents.setdefault(failure.attribution.reason, {})
            _first(by_agent, failure.agent, [ordinal, index])
        if s.systematic:
            self.members.append(Member.of(ordinal, s))
        if not s.failures:
            return
        self.required_recovery += 1
        outcome = _outcome(s)
        self.recovered += outcome is Outcome.RECOVERED
        self.recovered_after_operator += outcome is Outcome.RECOVERED and bool(s.released)
        self.recovering += outcome is Outcome.IN_PROGRESS
        if s.outcome is EventKind.TASK_SUCCEEDED and s.recovery_time is not None:
            self.times.append((ordinal, s.recovery_time))
        _first(self.first_reasons, s.failures[0].attribution.reason, ordinal)
        recent.append(((-s.failures[0].time, ordinal), _recovery_event(s)))

    def merge(self, other: Totals) -> Totals:
        """The totals of both sets of tasks (which share none)."""
        merged = Totals(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in fields(self)
                if f.type == "int"
            }
        )
        # Ordinals are unique: pairs sort by them alone, and two sorted runs merge in one pass.
        merged.first_try = sorted([*self.first_try, *other.first_try])
        merged.times = sorted([*self.times, *other.times])
        merged.first_reasons = _merged_counts(self.first_reasons, other.first_reasons)
        for reason in {*self.agents, *other.agents}:
            merged.agents[reason] = _merged_counts(
                self.agents.get(reason, {}), other.agents.get(reason, {})
            )
        merged.members = sorted([*self.members, *other.members], key=lambda m: m.ordinal)
        merged.recent = self.recent.merged(other.recent)
        return merged

    def to_json(self) -> dict[str, Any]:
        """Everything but the recovery events (which a keeper stores as rows of their own)."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.type == "int"
        }
        out["first_try"] = self.first_try
        out["times"] = self.times
        out["first_reasons"] = {r.value: entry for r, entry in self.first_reasons.items()}
        out["agents"] = {r.value: agents for r, agents in self.agents.items()}
        out["members"] = [_plain(m) for m in self.members]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], recent: RecentEvents[RecoveryEvent]) -> Totals:
        """The totals :meth:`to_json` wrote, with their ``recent`` events."""
        counts: dict[str, Any] = {f.name: int(data[f.name]) for f in fields(cls) if f.type == "int"}
        totals = cls(**counts)
        # The long lists and maps are taken as JSON gives them (a wrong type fails the
        # metrics with TypeError, which the keeper treats as a file not to use).
        totals.first_try = list(map(tuple, data["first_try"]))
        totals.times = list(map(tuple, data["times"]))
        totals.first_reasons = {
            Reason(r): [int(count), int(first)]
            for r, (count, first) in data["first_reasons"].items()
        }
        totals.agents = {Reason(r): dict(agents) for r, agents in data["agents"].items()}
        totals.members = [
            Member(
                ordinal=int(m["ordinal"]),
                task_id=str(m["task_id"]),
                causes=tuple(map(str, m["causes"])),
                reason=None if m["reason"] is None else Reason(m["reason"]),
                agent=str(m["agent"]),
                released=tuple(map(str, m["released"])),
                first_time=float(m["first_time"]),
                lesson=str(m["lesson"]),
            )
            for m in data["members"]
        ]
        totals.recent = recent
        return totals

    def metrics(
        self, orphaned_paths: tuple[str, ...], *, orphaned_workspaces: int | None = None
    ) -> Metrics:
        times = tuple(t for _, t in self.times)
        return Metrics(
            total_tasks=self.tasks,
            simple_tasks=self.simple,
            complex_tasks=self.complex,
            attempts=self.attempts,
            failures=self.failures,
            first_try=len(self.first_try),
            first_try_agents=tuple(name for _, name in self.first_try),
            first_try_simple=self.first_try_simple,
            settled_simple=self.settled_simple,
            first_try_complex=self.first_try_complex,
            settled_complex=self.settled_complex,
            unsettled=self.tasks - len(self.first_try) - self.required_recovery,
            required_recovery=self.required_recovery,
            required_recovery_by_reason=tuple(_ranked(self.first_reasons)),
            recovered=self.recovered,
            recovered_after_operator=self.recovered_after_operator,
            escalated=self.escalated,
            recovering=self.recovering,
            recovery_times=times,
            recovery_time_mean=mean(times) if times else None,
            recovery_time_p50=percentile(times, 50) if times else None,
            recovery_time_p95=percentile(times, 95) if times else None,
            reasons=self._reason_rows(),
            recent=self.recent,
            orphaned_workspaces=(
                len(orphaned_paths) if orphaned_workspaces is None else orphaned_workspaces
            ),
            orphaned_paths=orphaned_paths,
            unattributed_failures=self.unattributed,
            systematic_causes=_systematic_causes(self.members),
        )

    def _reason_rows(self) -> tuple[ReasonRow, ...]:
        rows = []
        for reason in Reason:
            by_agent = self.agents.get(reason, {})
            count = sum(entry[0] for entry in by_agent.values())
            rows.append(
                ReasonRow(
                    reason=reason,
                    count=count,
                    percentage=100.0 * count / self.failures if self.failures else 0.0,
                    common_agents=tuple(a for a, _ in _ranked(by_agent, COMMON_AGENTS_MAX)),
                )
            )
        return tuple(rows)


def _systematic_causes(members: Iterable[Member]) -> tuple[SystematicCause, ...]:
    grouped: dict[str, list[Member]] = {}
    for member in members:
        for cause in member.causes:
            grouped.setdefault(cause, []).append(member)
    causes = []
    for cause, group in grouped.items():
        reasons = Counter(m.reason for m in group if m.reason is not None)
        agents: list[str] = []
        actions: list[str] = []
        for m in group:
            _add_unique(agents, m.agent)
            for action in m.released:
                _add_unique(actions, action)
        causes.append(
            SystematicCause(
                cause=cause,
                reason=reasons.most_common(1)[0][0] if reasons else None,
                date=_iso_date(min(m.first_time for m in group)),
                tasks=tuple(m.task_id for m in group),
                agents=tuple(agents),
                operator_actions=tuple(actions),
                lesson=next((m.lesson for m in group if m.lesson), ""),
            )
        )
    return tuple(causes)


def compute(
    events: Iterable[Event] | History, *, orphaned_workspaces: int | None = None
) -> Metrics:
    """Aggregate journal events (or their folded :class:`History`) into dashboard figures.

    ``events`` may concatenate several journals; each task's events must keep their order.
    ``orphaned_workspaces``, when given, overrides the count from ``workspace_orphaned``
    events (for callers that scanned the disk themselves).

    >>> compute([]).total_tasks, compute([], orphaned_workspaces=2).orphaned_workspaces
    (0, 2)
    """
    history = events if isinstance(events, History) else History(events)
    totals = Totals.of(enumerate(history.tasks.values()))
    return totals.metrics(history.orphaned_paths, orphaned_workspaces=orphaned_workspaces)


# --------------------------------------------------------------------------- success criteria

Gate = Literal["point", "lower-bound"]
Verdict = Literal["pass", "fail", "insufficient samples"]


@dataclass(frozen=True)
class Criteria:
    """The recovery design's success criteria. Rates are fractions in [0, 1].

    ``min_recovery_rate`` is compared strictly (the seed says "> 90%"); the first-try rates
    inclusively ("95% first-try success" is met by exactly 95%); the counts must not exceed
    their maximum. ``gate="lower-bound"`` judges a rate by its Wilson 95% lower bound instead
    of the observed rate. A rate criterion with fewer than ``min_samples`` samples is neither
    passed nor failed but reported as "insufficient samples".
    """

    min_recovery_rate: float = 0.90
    min_first_try_simple: float = 0.95
    min_first_try_complex: float = 0.80
    max_orphans: int = 0
    max_unattributed: int = 0
    gate: Gate = "point"
    min_samples: int = 1

    def __post_init__(self) -> None:
        for name in ("min_recovery_rate", "min_first_try_simple", "min_first_try_complex"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                raise InvalidValue(f"Criteria.{name} must be within [0, 1], got {value}")
        for name in ("max_orphans", "max_unattributed", "min_samples"):
            if getattr(self, name) < 0:
                raise InvalidValue(f"Criteria.{name} must be >= 0, got {getattr(self, name)}")
        if self.gate not in ("point", "lower-bound"):
            raise InvalidValue(f"Criteria.gate must be 'point' or 'lower-bound', got {self.gate!r}")


@dataclass(frozen=True)
class CriterionResult:
    name: str
    comparison: Literal[">", ">=", "<="]
    threshold: float
    observed: float | None  # None when a rate has no samples
    successes: int | None  # None for count criteria
    n: int | None
    lower_bound: float | None  # Wilson 95%, rates only
    verdict: Verdict

    @property
    def is_rate(self) -> bool:
        return self.n is not None

    def describe(self) -> str:
        """One line, e.g. ``FAIL recovery_rate: observed 0.750 (3/4), 95% lower bound 0.301,
        threshold > 0.900``."""
        head = f"{self.verdict.upper()} {self.name}"
        if not self.is_rate:
            observed = "none" if self.observed is None else f"{self.observed:g}"
            return f"{head}: observed {observed}, threshold {self.comparison} {self.threshold:g}"
        threshold = f"threshold {self.comparison} {self.threshold:.3f}"
        if self.observed is None or self.lower_bound is None:
            return f"{head}: no samples (0/0), {threshold}"
        return (
            f"{head}: observed {self.observed:.3f} ({self.successes}/{self.n}), "
            f"95% lower bound {self.lower_bound:.3f}, {threshold}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "comparison": self.comparison,
            "threshold": self.threshold,
            "observed": self.observed,
            "successes": self.successes,
            "n": self.n,
            "lower_bound": self.lower_bound,
            "verdict": self.verdict,
            "line": self.describe(),
        }


def _meets(value: Fraction, comparison: str, threshold: float) -> bool:
    # Compare exactly against the threshold as written (0.95 means 95/100, not the nearest
    # binary float), so 19 of 20 meets a 95% criterion.
    limit = Fraction(repr(threshold))
    if comparison == ">":
        return value > limit
    if comparison == ">=":
        return value >= limit
    return value <= limit


def _rate(
    name: str,
    successes: int,
    n: int,
    comparison: Literal[">", ">="],
    threshold: float,
    criteria: Criteria,
) -> CriterionResult:
    low, _ = wilson_interval(successes, n)
    observed = successes / n if n else None
    verdict: Verdict
    if n < criteria.min_samples or n == 0:
        verdict = "insufficient samples"
    else:
        judged = Fraction(successes, n) if criteria.gate == "point" else Fraction(low)
        verdict = "pass" if _meets(judged, comparison, threshold) else "fail"
    return CriterionResult(
        name, comparison, threshold, observed, successes, n, low if n else None, verdict
    )


def _count(name: str, observed: int, maximum: int) -> CriterionResult:
    verdict: Verdict = "pass" if observed <= maximum else "fail"
    return CriterionResult(name, "<=", float(maximum), float(observed), None, None, None, verdict)


def evaluate(metrics: Metrics, criteria: Criteria | None = None) -> list[CriterionResult]:
    """Judge the metrics against the success criteria, one result per criterion.

    >>> [r.verdict for r in evaluate(compute([]))]
    ['insufficient samples', 'insufficient samples', 'insufficient samples', 'pass', 'pass']
    """
    c = Criteria() if criteria is None else criteria
    return [
        _rate(
            "recovery_rate",
            metrics.recovered,
            metrics.recovery_settled,
            ">",
            c.min_recovery_rate,
            c,
        ),
        _rate(
            "first_try_simple",
            metrics.first_try_simple,
            metrics.settled_simple,
            ">=",
            c.min_first_try_simple,
            c,
        ),
        _rate(
            "first_try_complex",
            metrics.first_try_complex,
            metrics.settled_complex,
            ">=",
            c.min_first_try_complex,
            c,
        ),
        _count("orphaned_workspaces", metrics.orphaned_workspaces, c.max_orphans),
        _count("unattributed_failures", metrics.unattributed_failures, c.max_unattributed),
    ]
