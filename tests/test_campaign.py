"""Scenario runs on the sim tier, the attribution oracle, generated campaigns and shrinking."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.campaign import run_scenario, tier_named
from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.generate import (
    HOSTILE_KINDS,
    draw_plans,
    generated_scenarios,
    run_name,
    shrink,
)
from pytest_orch_recovery.chaos.oracle import attribution_checks, invariant_violations, mismatches
from pytest_orch_recovery.chaos.record import ScenarioRun
from pytest_orch_recovery.chaos.scenario import Expectation, Scenario, ScenarioTask, parse_scenario
from pytest_orch_recovery.chaos.tiers import TIERS, TierUnavailable
from pytest_orch_recovery.engine.events import AttemptExited, AttemptLaunched
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.policy import PolicySettings

FAKE3 = Task("task-5030", "Create /fake3 command", ("fake3.md",))
FOUR = Task("four", "Add four modules", ("a.py", "b.py", "c.py", "d.py"))


NO_EXPECTATION = Expectation()


def _scenario(
    *faults: FaultSpec, tasks: tuple[Task, ...] = (FAKE3,), expect: Expectation = NO_EXPECTATION
) -> Scenario:
    return Scenario("s", tuple(ScenarioTask(t, expect=expect) for t in tasks), faults)


def test_sim_run_collects_events_ledger_outcomes_and_repository_state() -> None:
    s = _scenario(
        FaultSpec(
            "sigint", Trigger("file_written", path="fake3.md"), task="task-5030", fault_id="f1"
        )
    )
    run = run_scenario(s, tier="sim", seed=1, agent="sim")
    assert run.outcomes == {"task-5030": "recovered"}
    repo = run.repos["task-5030"]
    assert repo.files == ("fake3.md",) and repo.pushed and repo.pr is not None
    assert run.ledger["f1"]["status"] == "exercised"
    assert run.orphans == [] and run.violations == []
    again = ScenarioRun.from_json(json.loads(json.dumps(run.to_json())))
    assert again.outcomes == run.outcomes and again.repos == run.repos
    assert [e.kind for e in again.events] == [e.kind for e in run.events]
    # Compact on the wire: no output tails, prompts or result JSON.
    exits = [e.payload for e in again.events if isinstance(e.payload, AttemptExited)]
    assert exits and all(x.output_tail == "" and x.result is None for x in exits)
    launches = [e.payload for e in again.events if isinstance(e.payload, AttemptLaunched)]
    assert launches and all(x.prompt == "" for x in launches)


def test_same_seed_same_run_different_scenario_names_differ() -> None:
    s = _scenario(FaultSpec("kill", Trigger("file_written", n=2), task="four"), tasks=(FOUR,))
    a = run_scenario(s, tier="sim", seed=3, agent="sim")
    b = run_scenario(s, tier="sim", seed=3, agent="sim")
    assert a.to_json() == b.to_json()
    c = run_scenario(dataclasses.replace(s, name="other"), tier="sim", seed=3, agent="sim")
    assert c.seed != a.seed


def test_mismatches_read_as_a_diff() -> None:
    expect = Expectation(
        outcome="escalated",
        reasons=("timeout",),
        strategies=("restart",),
        max_attempts=1,
        files=("fake3.md", "x.py"),
        pr=False,
    )
    s = _scenario(
        FaultSpec("sigint", Trigger("file_written", n=1), task="task-5030"), expect=expect
    )
    run = run_scenario(s, tier="sim", seed=1, agent="sim")
    lines = mismatches(s, run)
    assert "task-5030: outcome: expected escalated, got recovered" in lines
    assert "task-5030: reasons: expected timeout, got sigint" in lines
    assert "task-5030: strategies: expected restart, got resume" in lines
    assert "task-5030: pr: expected False, got True" in lines
    assert "task-5030: attempts: expected at most 1, got 2" in lines
    assert any(line.startswith("task-5030: files:") and "missing x.py" in line for line in lines)


def test_fleet_faults_are_ledgered_when_they_take_effect() -> None:
    text = """
    operator_actions = ["fix_permission_flag"]
    crash_after_event = 6
    [[tasks]]
    id = "a"
    title = "A"
    deliverables = ["a.md"]
    [[faults]]
    kind = "missing_permission_flag"
    [[faults]]
    kind = "coordinator_crash"
    """
    s = parse_scenario("\n".join(line.strip() for line in text.splitlines()), name="fleet")
    run = run_scenario(s, tier="sim", seed=2, agent="sim")
    assert run.ledger["f1"]["status"] == "exercised"
    assert run.ledger["f1"]["hits"][0]["task"] == "a"
    assert run.ledger["f2"]["status"] == "exercised" and run.crashes == 1
    assert [c.verdict for c in attribution_checks(run)] == ["correct"]


def test_oracle_flags_a_wrong_attribution_and_a_missing_one() -> None:
    s = _scenario(
        FaultSpec("kill", Trigger("file_written", n=1), task="four", fault_id="f1"), tasks=(FOUR,)
    )
    run = run_scenario(s, tier="sim", seed=4, agent="sim")
    assert [c.verdict for c in attribution_checks(run)] == ["correct"]
    # Pretend the ledger had injected a SIGINT there: the engine's "killed" is then wrong.
    run.ledger["f1"]["kind"] = "sigint"
    (check,) = attribution_checks(run)
    assert (check.injected, check.attributed, check.verdict) == (("sigint",), "killed", "wrong")
    assert any("wrong attribution" in line for line in invariant_violations(run))
    run.events = [e for e in run.events if e.kind.value != "failure_attributed"]
    assert attribution_checks(run)[0].verdict == "unattributed"


def test_tmux_tier_unavailable_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no tmux, no git
    with pytest.raises(TierUnavailable, match="tmux is not on PATH; use --orch-tier sim"):
        tier_named("tmux")


def test_tier_named_gives_the_tier_of_that_name() -> None:
    for name in TIERS:
        try:
            assert tier_named(name).name == name
        except TierUnavailable:
            assert name != "sim"  # the sim tier runs anywhere
    with pytest.raises(ValueError, match="unknown tier 'moon'; expected one of sim, tmux"):
        tier_named("moon")


def test_generated_campaigns_are_deterministic_per_seed_and_hostile() -> None:
    a = generated_scenarios(5, 12)
    b = generated_scenarios(5, 12)
    assert [(s.name, s.faults, [t.task for t in s.tasks]) for s in a] == [
        (s.name, s.faults, [t.task for t in s.tasks]) for s in b
    ]
    assert [s.faults for s in generated_scenarios(6, 12)] != [s.faults for s in a]
    plans = draw_plans(1, 60)
    hostile = {HOSTILE_KINDS[shape[3]] for p in plans for shape in p.tasks}
    assert hostile == set(HOSTILE_KINDS)
    assert len({f.kind for p in plans for f in p.faults}) >= 8  # swarm subsets vary
    assert run_name(7, 12) == "gen-0007" and run_name(7, 20000) == "gen-00007"


def test_generated_runs_keep_the_invariants() -> None:
    broken = []
    for s in generated_scenarios(11, 40):
        problems = invariant_violations(run_scenario(s, tier="sim", seed=11, agent="sim"))
        if problems:
            broken.append((s.name, problems))
    assert broken == []


def test_a_crash_right_after_a_success_still_cleans_that_workspace() -> None:
    # Found by a generated campaign (seed 7, gen-0051): the replacement coordinator must
    # finish the cleanup the crashed one had not done yet.
    from pytest_orch_recovery.chaos.tiers.sim import simulate
    from pytest_orch_recovery.engine.events import EventKind
    from pytest_orch_recovery.engine.model import Task

    task = Task("t", "Task", ("a.md",))
    clean = simulate([task], seed=3)
    success = next(e.seq for e in clean.events if e.kind is EventKind.TASK_SUCCEEDED)
    out = simulate([task], seed=3, crash_after_event=success)
    assert out.crashes == 1
    assert not [e for e in out.events if e.kind is EventKind.WORKSPACE_ORPHANED]


def test_shrink_removes_every_fault_the_failure_does_not_need() -> None:
    faults = tuple(
        FaultSpec(kind, Trigger("tool_call", n=3), task="four", fault_id=f"f{i}")
        for i, kind in enumerate(["sigint", "kill", "stall", "quit_early"], 1)
    )
    s = _scenario(*faults, tasks=(FOUR,))
    calls: list[int] = []

    def fails(candidate: Scenario) -> bool:
        calls.append(len(candidate.faults))
        return any(f.kind == "kill" for f in candidate.faults)

    minimal = shrink(s, fails)
    assert [f.kind for f in minimal.faults] == ["kill"]
    assert minimal.faults[0].trigger == Trigger("tool_call", n=1)  # simplified too
    assert calls  # it really searched


def _delays(run: ScenarioRun) -> list[float]:
    return [
        e.payload.to_json()["decision"]["delay"] for e in run.events if e.kind.value == "decision"
    ]


@pytest.mark.parametrize(
    "tier",
    [
        "sim",
        pytest.param("tmux", marks=pytest.mark.slow),
    ],
)
def test_both_tiers_decide_with_the_scenarios_policy(tier: str) -> None:
    # attempt-budget: killed at start four times, restarted with backoff, then escalated.
    path = BUNDLED_SCENARIOS / "attempt-budget.toml"
    base = parse_scenario(path.read_text(), source=str(path))
    tuned = dataclasses.replace(base, policy=PolicySettings(backoff_base=0.001))
    slow = dataclasses.replace(base, policy=PolicySettings(backoff_base=1000.0, backoff_cap=0.5))
    seed = 7
    quick = _delays(run_scenario(tuned, tier=tier, seed=seed, agent="sim"))
    capped = _delays(run_scenario(slow, tier=tier, seed=seed, agent="sim"))
    backed_off = [d for d in quick if d > 0]
    assert backed_off and all(d <= 0.001 * 2**4 for d in quick), quick
    # The cap holds whatever the base: the same rng draws, scaled to at most 0.5 s.
    assert capped and all(d <= 0.5 for d in capped) and max(capped) > 0.001 * 2**4, capped


def _most_live(run: ScenarioRun) -> int:
    live = most = 0
    for event in run.events:
        live += {"attempt_launched": 1, "attempt_exited": -1}.get(event.kind.value, 0)
        most = max(most, live)
    return most


@pytest.mark.parametrize(
    "tier",
    [
        "sim",
        pytest.param("tmux", marks=pytest.mark.slow),
    ],
)
def test_both_tiers_run_at_most_the_scenarios_live_agents(tier: str) -> None:
    four = tuple(ScenarioTask(Task(f"w{i}", f"Write part {i}", (f"part{i}.md",))) for i in range(4))
    free = Scenario("four", four)
    capped = dataclasses.replace(free, max_live_agents=2)
    assert _most_live(run_scenario(free, tier=tier, seed=5, agent="sim")) == 4
    run = run_scenario(capped, tier=tier, seed=5, agent="sim")
    assert _most_live(run) == 2
    assert set(run.outcomes.values()) == {"succeeded"}, run.outcomes
