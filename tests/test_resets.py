"""Usage limits: the reset read from the CLIs' words, and the account condition it becomes.

``tests/corpus/resets.jsonl`` holds real wording (one public source per row) with the time it
was seen, the zone the observer's clock reads bare times in, and the instant the limit lifts;
every row is parsed by :mod:`pytest_orch_recovery.engine.resets` and classified by the engine
with the reset in its attribution.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.scenario import load_scenario
from pytest_orch_recovery.chaos.tiers.sim import SimTier, simulate
from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.coordinator import CoordinatorConfig
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import ExitInfo, Reason, Task
from pytest_orch_recovery.engine.policy import Policy
from pytest_orch_recovery.engine.resets import read_reset

CORPUS = Path(__file__).parent / "corpus" / "resets.jsonl"
_FIELDS = {"text", "observed", "zone", "resets_at", "usage_limit", "reason", "tool", "source"}


def _rows() -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), 1):
        data = json.loads(line)
        assert set(data) == _FIELDS, f"{CORPUS.name}:{number}: fields {sorted(data)}"
        assert data["source"].strip(), f"{CORPUS.name}:{number}: no source"
        rows.append(data)
    return rows


ROWS = _rows()


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize("row", ROWS, ids=[f"row{i + 1}-{r['tool']}" for i, r in enumerate(ROWS)])
def test_corpus_row_reads_its_reset(row: dict[str, Any]) -> None:
    hint = read_reset(row["text"], _at(row["observed"]), ZoneInfo(row["zone"]))
    if row["resets_at"] is None:
        assert hint is None
        return
    assert hint is not None
    assert hint.at == pytest.approx(_at(row["resets_at"]), abs=1e-3)
    assert hint.usage_limit is row["usage_limit"]


@pytest.mark.parametrize("row", ROWS, ids=[f"row{i + 1}-{r['tool']}" for i, r in enumerate(ROWS)])
def test_corpus_row_attribution_carries_the_reset(row: dict[str, Any]) -> None:
    """The engine's attribution of the row: its reason, and the reset in the evidence."""
    obs = Observation(
        exit=ExitInfo(1),
        logs=(LogText("log", row["text"]),),
        observed_at=_at(row["observed"]),
        zone=ZoneInfo(row["zone"]),
    )
    attribution = classify(obs)
    assert attribution.reason is Reason(row["reason"])
    if row["resets_at"] is None:
        assert attribution.resets_at is None
        return
    assert attribution.resets_at == pytest.approx(_at(row["resets_at"]), abs=1e-3)
    assert attribution.usage_limit is row["usage_limit"]
    assert any(e.kind == "reset" and e.weight == 0.0 for e in attribution.evidence)
    assert "resets_at" in attribution.to_json()


BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def _wall(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=zone).timestamp()


# (text, observed at, the observer's zone, the reset it must read)
TABLE: list[tuple[str, float, ZoneInfo, float]] = [
    # the zone the CLI names wins over the observer's
    (
        "You've hit your limit · resets 3pm (Europe/Berlin)",
        _wall(TOKYO, 2026, 7, 19, 21, 0),  # 14:00 in Berlin
        TOKYO,
        _wall(BERLIN, 2026, 7, 19, 15, 0),
    ),
    # past 3pm in Berlin: tomorrow's 3pm
    (
        "You've hit your limit · resets 3pm (Europe/Berlin)",
        _wall(BERLIN, 2026, 7, 19, 16, 5),
        BERLIN,
        _wall(BERLIN, 2026, 7, 20, 15, 0),
    ),
    # no zone: the observer's; 3:30am seen before midnight is tomorrow's
    (
        "You've hit your limit · resets 3:30am",
        _wall(NEW_YORK, 2026, 7, 19, 23, 10),
        NEW_YORK,
        _wall(NEW_YORK, 2026, 7, 20, 3, 30),
    ),
    # ... and seen after midnight, today's
    (
        "You've hit your limit · resets 3:30am",
        _wall(NEW_YORK, 2026, 7, 20, 0, 10),
        NEW_YORK,
        _wall(NEW_YORK, 2026, 7, 20, 3, 30),
    ),
    # tomorrow across a month and a year end
    (
        "resets 1am (UTC)",
        _wall(ZoneInfo("UTC"), 2026, 12, 31, 23, 0),
        BERLIN,
        _wall(ZoneInfo("UTC"), 2027, 1, 1, 1, 0),
    ),
    # tomorrow across the spring daylight-saving change: 23 hours, not 24
    (
        "You've hit your session limit · resets 3pm (Europe/Berlin)",
        _wall(BERLIN, 2026, 3, 28, 16, 0),
        BERLIN,
        _wall(BERLIN, 2026, 3, 29, 15, 0),
    ),
    # the minute the CLI rounds to has come: now, not tomorrow
    (
        "You've hit your session limit · resets 5:40pm (Europe/Berlin)",
        _wall(BERLIN, 2026, 7, 19, 17, 40) + 30,
        BERLIN,
        _wall(BERLIN, 2026, 7, 19, 17, 40),
    ),
    # a dated reset without a year, seen in December: next year's
    (
        "You've hit your limit · resets Jan 2, 9am (Asia/Tokyo)",
        _wall(TOKYO, 2026, 12, 30, 12, 0),
        BERLIN,
        _wall(TOKYO, 2027, 1, 2, 9, 0),
    ),
    # relative wordings
    ("resets in 2h 13m", 1000.0, BERLIN, 1000.0 + 2 * 3600 + 13 * 60),
    ("try again in 2 days 3 hours", 1000.0, BERLIN, 1000.0 + 2 * 86400 + 3 * 3600),
    ("Try again in 11 seconds.", 1000.0, BERLIN, 1011.0),
    # headers a log carries
    ("retry-after: 30", 1000.0, BERLIN, 1030.0),
    ("retry-after-ms: 1500", 1000.0, BERLIN, 1001.5),
    ("anthropic-ratelimit-unified-reset: 1753284600", 1753280000.0, BERLIN, 1753284600.0),
    (
        "anthropic-ratelimit-tokens-reset: 2025-07-23T15:30:00Z",
        1753280000.0,
        BERLIN,
        _wall(ZoneInfo("UTC"), 2025, 7, 23, 15, 30),
    ),
    (
        "retry-after: Wed, 23 Jul 2025 15:30:00 GMT",
        1753280000.0,
        BERLIN,
        _wall(ZoneInfo("UTC"), 2025, 7, 23, 15, 30),
    ),
]


@pytest.mark.parametrize(("text", "observed", "zone", "expected"), TABLE)
def test_each_wording_reads_the_right_instant(
    text: str, observed: float, zone: ZoneInfo, expected: float
) -> None:
    hint = read_reset(text, observed, zone)
    assert hint is not None, text
    assert hint.at == pytest.approx(expected, abs=1e-3)
    assert hint.seconds == pytest.approx(max(0.0, expected - observed), abs=1e-3)


@pytest.mark.parametrize(
    "text",
    [
        "API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again "
        "in a moment.",
        "API Error: Request rejected (429) · This request would exceed your account's rate "
        "limit. Please try again later.",
        "Retrying in 3 seconds… (attempt 1/10)",
        "resets 13pm (Europe/Berlin)",
        "resets 3pm (Not/AZone) in the year 99999",
        "try again in 90 days",  # beyond any plan's window: not believed
    ],
)
def test_text_without_a_believable_reset_reads_none(text: str) -> None:
    hint = read_reset(text, _wall(BERLIN, 2026, 7, 19, 12, 0), BERLIN)
    if "Not/AZone" in text:  # an unknown zone falls back to the observer's, and still reads
        assert hint is not None and hint.at == _wall(BERLIN, 2026, 7, 19, 15, 0)
        return
    assert hint is None


def test_text_without_a_reset_keeps_todays_backoff() -> None:
    text = (
        "API Error: Request rejected (429) · This request would exceed your account's rate "
        "limit. Please try again later."
    )
    obs = Observation(exit=ExitInfo(1), logs=(LogText("out", text),), observed_at=1000.0)
    attribution = classify(obs)
    assert attribution.reason is Reason.API_ERROR
    assert (attribution.resets_at, attribution.usage_limit, attribution.retry_after) == (
        None,
        False,
        None,
    )
    # The attribution a journal already holds is unchanged: no new keys.
    assert "resets_at" not in attribution.to_json()
    assert "usage_limit" not in attribution.to_json()
    out = simulate(
        [Task("t", "T", ("a.md",))],
        [FaultSpec("api_rate_limit", Trigger("api_request"), task="t")],
        seed=3,
    )
    decisions = [
        e.payload.to_json()["decision"] for e in out.events if e.kind is EventKind.DECISION
    ]
    assert decisions[0]["rule"] == "api_error_retry"
    assert 0 < decisions[0]["delay"] <= Policy().backoff.cap
    assert not any(e.kind is EventKind.USAGE_LIMITED for e in out.events)


def _run(name: str, seed: int = 1234) -> Any:
    return SimTier().run(load_scenario(BUNDLED_SCENARIOS / f"{name}.toml"), seed=seed, agent="sim")


@pytest.mark.parametrize("seed", [1, 1234, 99])
def test_agents_hitting_the_limit_together_make_one_condition(seed: int) -> None:
    run = _run("usage-limit", seed)
    events = run.events
    conditions = [e for e in events if e.kind is EventKind.USAGE_LIMITED]
    assert len(conditions) == 1
    condition = conditions[0]
    assert sorted(condition.payload.to_json()["tasks"]) == sorted(run.outcomes)
    assert condition.payload.to_json()["until"] >= condition.payload.to_json()["resets_at"]
    assert not any(e.kind is EventKind.TASK_ESCALATED for e in events)
    assert set(run.outcomes.values()) == {"recovered"}
    # Every task's second attempt launched after the reset, none before it.
    relaunches = [e for e in events if e.kind is EventKind.ATTEMPT_LAUNCHED and e.attempt == 2]
    assert len(relaunches) == len(run.outcomes)
    assert all(e.time >= condition.payload.to_json()["until"] for e in relaunches)
    # The decisions waited for the reset, not a backoff, and charged nothing.
    rules = {
        e.payload.to_json()["decision"]["rule"] for e in events if e.kind is EventKind.DECISION
    }
    assert rules == {"usage_limit_wait"}


def test_a_fallback_agent_finishes_before_the_reset() -> None:
    run = _run("usage-limit-fallback")
    events = run.events
    condition = next(e for e in events if e.kind is EventKind.USAGE_LIMITED)
    done = [e for e in events if e.kind is EventKind.TASK_SUCCEEDED]
    assert len(done) == len(run.outcomes)
    assert all(e.time < condition.payload.to_json()["resets_at"] for e in done)
    finishers = {
        e.task_id: e.payload.to_json()["agent_type"]
        for e in events
        if e.kind is EventKind.ATTEMPT_LAUNCHED and e.attempt == 2
    }
    assert set(finishers.values()) == {"codex"}
    decisions = [e.payload.to_json()["decision"] for e in events if e.kind is EventKind.DECISION]
    assert {d["rule"] for d in decisions} == {"usage_limit_fallback"}
    assert all(d["strategy"] == "reassign" for d in decisions)


def test_new_tasks_start_on_the_fallback_while_the_primary_is_limited() -> None:
    """A task whose first launch falls inside the condition starts on the fallback agent."""
    tasks = [Task(f"t{i}", f"T{i}", (f"f{i}.md",)) for i in range(3)]
    faults = [FaultSpec("usage_limit", Trigger("api_request", n=1), task="t0")]
    out = simulate(
        tasks,
        faults,
        seed=5,
        config=CoordinatorConfig(seed=5, max_live=1, fallback_agents=("codex",)),
    )
    first = {
        e.task_id: e.payload.to_json()["agent_type"]
        for e in out.events
        if e.kind is EventKind.ATTEMPT_LAUNCHED and e.attempt == 1
    }
    assert first["t0"] == "claude-code"
    assert first["t1"] == first["t2"] == "codex"
    assert all(p.value == "succeeded" or p.value == "succeeded" for p in out.outcomes.values())


def test_a_reset_beyond_the_horizon_escalates() -> None:
    tasks = [Task("t", "T", ("a.md",))]
    faults = [
        FaultSpec("usage_limit", Trigger("api_request"), task="t", params={"resets_in": 3600})
    ]
    out = simulate(
        tasks, faults, seed=2, policy_factory=lambda s: Policy(seed=s, usage_limit_horizon=600.0)
    )
    escalated = [e for e in out.events if e.kind is EventKind.TASK_ESCALATED]
    assert len(escalated) == 1
    assert "beyond the horizon" in escalated[0].payload.to_json()["systematic_cause"]
    assert not any(e.kind is EventKind.USAGE_LIMITED for e in out.events)


def test_a_limit_that_never_lifts_ends_on_the_budget() -> None:
    """Free waits are bounded: a limit hit on every attempt costs attempts past them."""
    faults = [FaultSpec("usage_limit", Trigger("api_request"), task="t", attempt=None)]
    policy = Policy(seed=1, max_attempts=2)
    out = simulate([Task("t", "T", ("a.md",))], faults, seed=1, policy_factory=lambda s: policy)
    launched = [e for e in out.events if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert len(launched) == policy.max_attempts + policy.free_limit_waits
    assert out.outcomes["t"].value == "escalated"


def test_a_coordinator_rebuilt_from_the_journal_keeps_the_condition() -> None:
    tasks = [Task(f"t{i}", f"T{i}", (f"f{i}.md",)) for i in range(3)]
    faults = [FaultSpec("usage_limit", Trigger("api_request", n=2), task="*")]
    whole = simulate(tasks, faults, seed=7)
    limited_at = next(e.seq for e in whole.events if e.kind is EventKind.USAGE_LIMITED)
    for crash_after in (limited_at, limited_at + 1, limited_at + 3):
        crashed = simulate(tasks, faults, seed=7, crash_after_event=crash_after)
        assert crashed.crashes == 1
        kinds = [e.kind for e in crashed.events]
        assert kinds.count(EventKind.USAGE_LIMITED) == 1, crash_after
        assert {p.value for p in crashed.outcomes.values()} == {"succeeded"}


def test_status_says_what_the_fleet_waits_for() -> None:
    from pytest_orch_recovery.cli.status import render
    from pytest_orch_recovery.report.fleetview import FleetView

    run = _run("usage-limit")
    condition = next(e for e in run.events if e.kind is EventKind.USAGE_LIMITED)
    # Mid-wait: the journal up to the last decision before the reset.
    before = [e for e in run.events if e.time < condition.payload.to_json()["until"]]
    view = FleetView(before)
    now = condition.time + 60.0
    conditions = view.usage_conditions(now=now)
    assert [(c.agent_type, len(c.tasks)) for c in conditions] == [("claude-code", 4)]
    text = render(view.statuses(now=now), None, "table", now, conditions)
    until = datetime.fromtimestamp(condition.payload.to_json()["until"], ZoneInfo("UTC"))
    assert text.startswith(
        f"waiting for the quota reset at {until:%H:%M:%S} UTC (claude-code), 4 tasks\n"
    ) or text.startswith(
        f"waiting for the quota reset at {until:%Y-%m-%d %H:%M:%S} UTC (claude-code), 4 tasks\n"
    )
    doc = json.loads(render(view.statuses(now=now), None, "json", now, conditions))
    assert doc["usage_limits"][0]["tasks"] == sorted(run.outcomes)
    # After the reset nothing waits any more.
    assert FleetView(run.events).usage_conditions(now=run.events[-1].time) == []


def test_the_dashboard_says_which_agent_finished_each_task() -> None:
    from pytest_orch_recovery.report.dashboard import render_markdown
    from pytest_orch_recovery.report.metrics import compute

    metrics = compute(_run("usage-limit-fallback").events)
    finishers = {e.task_id: e.finished_by for e in metrics.recent}
    assert finishers == {"fallback-parser": "codex", "fallback-report": "codex"}
    assert all(e["agent_types"] == ["claude-code", "codex"] for e in metrics.to_json()["recent"])
    text = render_markdown(metrics, [])
    assert text.count("created successfully by codex") == 2
    # A task that waited for the reset finished on the agent it started on: nothing to say.
    waited = compute(_run("usage-limit").events)
    assert {e.finished_by for e in waited.recent} == {None}


@pytest.mark.parametrize("name", ["usage-limit", "usage-limit-fallback"])
def test_every_attempt_the_limit_refused_is_explained_by_it(name: str) -> None:
    """The oracle sees the fault on each attempt the account refused, not only the one whose
    request started the limit: no failure is left unexplained."""
    from pytest_orch_recovery.chaos.oracle import attribution_checks

    checks = attribution_checks(_run(name))
    assert checks and {c.verdict for c in checks} == {"correct"}
