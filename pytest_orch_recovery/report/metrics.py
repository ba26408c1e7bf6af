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
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, Literal

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import Event, EventKind, PartialSummary
from pytest_orch_recovery.engine.model import Complexity, Reason, Strategy
from pytest_orch_recovery.report.rootcause import theory
from pytest_orch_recovery.report.stats import mean, percentile, wilson_interval
from pytest_orch_recovery.store.history import FailureRecord, History, TaskHistory

__all__ = [
    "Criteria",
    "CriterionResult",
    "Metrics",
    "Outcome",
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
    recent: tuple[RecoveryEvent, ...]  # newest first
    orphaned_workspaces: int
    orphaned_paths: tuple[str, ...]
    unattributed_failures: int
    systematic_causes: tuple[SystematicCause, ...]

    @property
    def recovery_settled(self) -> int:
        """Tasks that required recovery and reached an outcome."""
        return self.required_recovery - self.recovering

    def to_json(self) -> dict[str, Any]:
        out = _plain(asdict(self))
        assert isinstance(out, dict)
        out["recovery_settled"] = self.recovery_settled
        for event, data in zip(self.recent, out["recent"], strict=True):
            data["root_cause"] = event.root_cause
        return out


def _plain(value: Any) -> Any:
    """``asdict`` output made JSON-ready: tuples to lists, enums to their values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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


def _reason_rows(failures: Sequence[FailureRecord]) -> tuple[ReasonRow, ...]:
    total = len(failures)
    rows = []
    for reason in Reason:
        agents = Counter(f.agent for f in failures if f.attribution.reason is reason)
        count = sum(agents.values())
        rows.append(
            ReasonRow(
                reason=reason,
                count=count,
                percentage=100.0 * count / total if total else 0.0,
                common_agents=tuple(a for a, _ in agents.most_common(COMMON_AGENTS_MAX)),
            )
        )
    return tuple(rows)


def _systematic_causes(stories: Iterable[TaskHistory]) -> tuple[SystematicCause, ...]:
    grouped: dict[str, list[TaskHistory]] = {}
    for story in stories:
        for cause in story.systematic:
            grouped.setdefault(cause, []).append(story)
    causes = []
    for cause, members in grouped.items():
        reasons = Counter(s.failures[-1].attribution.reason for s in members if s.failures)
        agents: list[str] = []
        actions: list[str] = []
        for s in members:
            _add_unique(agents, s.failures[-1].agent if s.failures else (s.agent or s.task_id))
            for action in s.released:
                _add_unique(actions, action)
        first_time = min(
            s.failures[0].time if s.failures else (s.first_time or 0.0) for s in members
        )
        causes.append(
            SystematicCause(
                cause=cause,
                reason=reasons.most_common(1)[0][0] if reasons else None,
                date=_iso_date(first_time),
                tasks=tuple(s.task_id for s in members),
                agents=tuple(agents),
                operator_actions=tuple(actions),
                lesson=next((s.lesson for s in members if s.lesson), ""),
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
    all_stories = list(history.tasks.values())
    unattributed = 0
    for story in all_stories:
        unattributed += story.unattributed
        pending = story.pending_exit
        if pending is not None and not pending.clean:
            unattributed += 1  # the journal ends on a failed exit nobody attributed
        unattributed += sum(1 for f in story.failures if f.attribution.reason is Reason.UNKNOWN)

    first_try = [
        s
        for s in all_stories
        if s.outcome is EventKind.TASK_SUCCEEDED and s.submitted and not s.failures
    ]
    recovering = [s for s in all_stories if s.failures]
    simple = [s for s in all_stories if s.complexity is Complexity.SIMPLE]
    complex_ = [s for s in all_stories if s.complexity is Complexity.COMPLEX]
    outcomes = Counter(_outcome(s) for s in recovering)
    times = tuple(
        s.recovery_time
        for s in recovering
        if s.outcome is EventKind.TASK_SUCCEEDED and s.recovery_time is not None
    )
    by_reason = Counter(s.failures[0].attribution.reason for s in recovering)
    failures = [f for s in all_stories for f in s.failures]
    recent = sorted((_recovery_event(s) for s in recovering), key=lambda r: -r.time)
    orphan_paths = history.orphaned_paths

    return Metrics(
        total_tasks=len(all_stories),
        simple_tasks=len(simple),
        complex_tasks=len(complex_),
        attempts=sum(s.launches for s in all_stories),
        failures=len(failures),
        first_try=len(first_try),
        first_try_agents=tuple(s.name for s in first_try),
        first_try_simple=sum(1 for s in first_try if s.complexity is Complexity.SIMPLE),
        settled_simple=sum(1 for s in simple if s.failures or s.outcome is not None),
        first_try_complex=sum(1 for s in first_try if s.complexity is Complexity.COMPLEX),
        settled_complex=sum(1 for s in complex_ if s.failures or s.outcome is not None),
        unsettled=len(all_stories) - len(first_try) - len(recovering),
        required_recovery=len(recovering),
        required_recovery_by_reason=tuple(by_reason.most_common()),
        recovered=outcomes[Outcome.RECOVERED],
        recovered_after_operator=sum(
            1 for s in recovering if _outcome(s) is Outcome.RECOVERED and s.released
        ),
        escalated=sum(1 for s in all_stories if s.outcome is EventKind.TASK_ESCALATED),
        recovering=outcomes[Outcome.IN_PROGRESS],
        recovery_times=times,
        recovery_time_mean=mean(times) if times else None,
        recovery_time_p50=percentile(times, 50) if times else None,
        recovery_time_p95=percentile(times, 95) if times else None,
        reasons=_reason_rows(failures),
        recent=tuple(recent),
        orphaned_workspaces=(
            len(orphan_paths) if orphaned_workspaces is None else orphaned_workspaces
        ),
        orphaned_paths=orphan_paths,
        unattributed_failures=unattributed,
        systematic_causes=_systematic_causes(all_stories),
    )


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
