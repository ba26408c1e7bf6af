"""The dashboard's figures add up: the totals of the tasks that had ended at any point of a
journal, kept, merged with the totals of the others (the tasks still open there, folded on
to the end, and those submitted since) are exactly what a fold of the whole journal gives,
down to the order of ties and the last bit of a float."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from events import interleaved_journal, seed_incident
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.engine.events import Event, EventKind
from pytest_orch_recovery.engine.model import TERMINAL, Complexity, Reason
from pytest_orch_recovery.report import metrics
from pytest_orch_recovery.report.dashboard import render_json, render_markdown
from pytest_orch_recovery.report.jsondoc import dumps
from pytest_orch_recovery.report.metrics import Metrics, Totals, compute, evaluate
from pytest_orch_recovery.report.stats import mean, percentile
from pytest_orch_recovery.store.history import History, TaskHistory


def _reference(events: list[Event]) -> dict[str, Any]:
    """What the report's aggregation computed before it was made of totals (its code, kept
    here as the oracle), as JSON."""
    stories = list(History(events).tasks.values())
    outcome = metrics._outcome
    first_try = [
        s
        for s in stories
        if s.outcome is EventKind.TASK_SUCCEEDED and s.submitted and not s.failures
    ]
    recovering = [s for s in stories if s.failures]
    times = [
        s.recovery_time
        for s in recovering
        if s.outcome is EventKind.TASK_SUCCEEDED and s.recovery_time is not None
    ]
    failures = [f for s in stories for f in s.failures]
    reasons = []
    for reason in Reason:
        agents = Counter(f.agent for f in failures if f.attribution.reason is reason)
        count = sum(agents.values())
        reasons.append(
            {
                "reason": reason.value,
                "count": count,
                "percentage": 100.0 * count / len(failures) if failures else 0.0,
                "common_agents": [a for a, _ in agents.most_common(3)],
            }
        )
    recent = sorted((metrics._recovery_event(s) for s in recovering), key=lambda r: -r.time)
    grouped: dict[str, list[TaskHistory]] = {}
    for s in stories:
        for cause in s.systematic:
            grouped.setdefault(cause, []).append(s)
    causes = []
    for cause, members in grouped.items():
        last = Counter(m.failures[-1].attribution.reason for m in members if m.failures)
        shown: list[str] = []
        actions: list[str] = []
        for m in members:
            name = m.failures[-1].agent if m.failures else (m.agent or m.task_id)
            shown += [] if name in shown else [name]
            for action in m.released:
                actions += [] if action in actions else [action]
        causes.append(
            [
                cause,
                last.most_common(1)[0][0] if last else None,
                metrics._iso_date(
                    min(m.failures[0].time if m.failures else m.first_time for m in members)
                ),
                [m.task_id for m in members],
                shown,
                actions,
                next((m.lesson for m in members if m.lesson), ""),
            ]
        )
    return {
        "counts": [
            len(stories),
            sum(s.complexity is Complexity.SIMPLE for s in stories),
            sum(s.launches for s in stories),
            len(failures),
            sum(s.complexity is Complexity.SIMPLE for s in first_try),
            sum(
                s.complexity is Complexity.COMPLEX and bool(s.failures or s.outcome)
                for s in stories
            ),
            sum(outcome(s) is metrics.Outcome.RECOVERED and bool(s.released) for s in recovering),
            sum(s.outcome is EventKind.TASK_ESCALATED for s in stories),
            Counter(outcome(s) for s in recovering)[metrics.Outcome.IN_PROGRESS],
        ],
        "first_try": [s.name for s in first_try],
        "times": times,
        "mean": mean(times) if times else None,
        "p50": percentile(times, 50) if times else None,
        "p95": percentile(times, 95) if times else None,
        "by_reason": [
            [r.value, n]
            for r, n in Counter(s.failures[0].attribution.reason for s in recovering).most_common()
        ],
        "reasons": reasons,
        "recent": [e.to_json() for e in recent],
        "causes": causes,
    }


def _as_reference(m: Metrics) -> dict[str, Any]:
    return {
        "counts": [
            m.total_tasks,
            m.simple_tasks,
            m.attempts,
            m.failures,
            m.first_try_simple,
            m.settled_complex,
            m.recovered_after_operator,
            m.escalated,
            m.recovering,
        ],
        "first_try": list(m.first_try_agents),
        "times": list(m.recovery_times),
        "mean": m.recovery_time_mean,
        "p50": m.recovery_time_p50,
        "p95": m.recovery_time_p95,
        "by_reason": [[r.value, n] for r, n in m.required_recovery_by_reason],
        "reasons": [
            {
                "reason": r.reason.value,
                "count": r.count,
                "percentage": r.percentage,
                "common_agents": list(r.common_agents),
            }
            for r in m.reasons
        ],
        "recent": [e.to_json() for e in m.recent],
        "causes": [
            [
                c.cause,
                c.reason,
                c.date,
                list(c.tasks),
                list(c.agents),
                list(c.operator_actions),
                c.lesson,
            ]
            for c in m.systematic_causes
        ],
    }


def _same(a: Metrics, b: Metrics) -> None:
    assert a == b
    results = evaluate(a)
    assert dumps(render_json(a, results)) == dumps(render_json(b, evaluate(b)))
    for most in (0, 1, 20):
        text = render_markdown(a, results, max_events=most)
        assert text == render_markdown(b, evaluate(b), max_events=most)


def _ended(task: TaskHistory) -> bool:
    return task.phase in TERMINAL and task.ended_at is not None


@given(events=interleaved_journal(), cut=st.floats(0.0, 1.0))
@settings(max_examples=300, deadline=None)
def test_totals_kept_at_a_cut_merged_with_the_rest_are_the_whole_journals(
    events: list[Event], cut: float
) -> None:
    whole = History(events)
    at = int(len(events) * cut)
    early = History(events[:at])
    named_later = {e.task_id for e in events[at:]} | {
        t for e in events[at:] for t in getattr(e.payload, "tasks", ())
    }
    # The tasks that had ended at the cut and that no later event names: what is kept.
    kept = {
        ordinal
        for ordinal, task in enumerate(early.tasks.values())
        if _ended(task) and task.task_id not in named_later
    }
    stories = list(whole.tasks.values())
    part = Totals.of((o, t) for o, t in enumerate(early.tasks.values()) if o in kept)
    rest = Totals.of((o, t) for o, t in enumerate(stories) if o not in kept)
    expected = compute(events)
    for merged in (part.merge(rest), rest.merge(part)):
        _same(merged.metrics(whole.orphaned_paths), expected)
    # ... and compute() itself is what the report computed before it was made of totals.
    assert _as_reference(expected) == _reference(events)


@given(events=interleaved_journal(), data=st.data())
@settings(max_examples=100, deadline=None)
def test_totals_of_any_split_of_the_tasks_add_up(events: list[Event], data: st.DataObject) -> None:
    whole = History(events)
    stories = list(enumerate(whole.tasks.values()))
    mask = data.draw(st.lists(st.booleans(), min_size=len(stories), max_size=len(stories)))
    left = Totals.of(s for s, m in zip(stories, mask, strict=True) if m)
    right = Totals.of(s for s, m in zip(stories, mask, strict=True) if not m)
    _same(left.merge(right).metrics(whole.orphaned_paths), compute(whole))


def test_the_seed_incident_from_two_halves() -> None:
    history = History(seed_incident().events)
    stories = list(enumerate(history.tasks.values()))
    halves = Totals.of(stories[::2]).merge(Totals.of(stories[1::2]))
    _same(halves.metrics(history.orphaned_paths), compute(history))


@given(events=interleaved_journal())
@settings(max_examples=50, deadline=None)
def test_a_recovery_events_json_is_its_fields_then_its_root_cause(events: list[Event]) -> None:
    for event in compute(events).recent:
        fields = metrics._plain(dataclasses.asdict(event))
        assert event.to_json() == {**fields, "root_cause": event.root_cause}
        assert list(event.to_json()) == [*fields, "root_cause"]
        assert metrics.RecoveryEvent.from_json(event.to_json()) == event
