"""Scenario files: schema, triggers, and errors that name the file, line and field."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_orch_recovery.chaos import BUNDLED_HOST_SCENARIOS, BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.faults import Trigger
from pytest_orch_recovery.chaos.generate import scenario_toml
from pytest_orch_recovery.chaos.scenario import (
    ScenarioError,
    check_scenario,
    load_scenario,
    parse_scenario,
)
from pytest_orch_recovery.engine.policy import PolicySettings

REPO = Path(__file__).resolve().parent.parent

BASE = """name = "demo"
operator_actions = ["fix_permission_flag"]

[expect]
max_attempts = 3

[[tasks]]
id = "a"
title = "First"
deliverables = ["a.md"]

[[tasks]]
id = "b"
title = "Second"
deliverables = ["b1.py", "b2.py"]
tests = "pytest -q"
pr = false
agent = "task-agent-3403"

[tasks.expect]
outcome = "recovered"
reasons = ["sigint"]
strategies = ["resume"]
files = ["b1.py"]

[[faults]]
kind = "sigint"
task = "b"
after_file = "b1.py"
attempt = 2
params = { style = "claude" }
expect = "exercised"
"""


def test_a_full_scenario_loads() -> None:
    s = parse_scenario(BASE, source="demo.toml")
    assert s.name == "demo" and s.task_ids == ("a", "b")
    b = s.tasks[1]
    assert b.agent == "task-agent-3403" and b.task.tests == "pytest -q" and not b.task.wants_pr
    assert b.expect.outcome == "recovered" and b.expect.max_attempts == 3  # scenario default
    assert s.tasks[0].expect.outcome is None
    fault = s.faults[0]
    assert fault.trigger == Trigger("file_written", path="b1.py")
    assert (
        fault.attempt == 2 and fault.fault_id == "f1" and dict(fault.params) == {"style": "claude"}
    )
    assert s.fault_expectations == {"f1": "exercised"}
    assert s.faulted_tasks() == {"b"}


@pytest.mark.parametrize(
    ("key", "event", "n"),
    [
        ("at_start = true", "start", 1),
        ("at_api_request = 3", "api_request", 3),
        ("after_tool_call = 2", "tool_call", 2),
        ("after_file = 2", "file_written", 2),
        ("after_push = true", "push", 1),
        ("at_open_pr = true", "open_pr", 1),
        ("after_commit = 1", "commit", 1),
        ("at_test = true", "test", 1),
    ],
)
def test_every_trigger_key(key: str, event: str, n: int) -> None:
    text = BASE.replace('after_file = "b1.py"', key)
    if event == "api_request":  # the only event an API fault is keyed on (HONOURED_EVENTS)
        text = text.replace('kind = "sigint"', 'kind = "api_overloaded"').replace(
            'params = { style = "claude" }', ""
        )
    trigger = parse_scenario(text).faults[0].trigger
    assert trigger is not None and (trigger.event, trigger.n) == (event, n)


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "message"),
    [
        ('kind = "sigint"', 'kind = "sigint_"', 27, "faults[1].kind", "unknown fault kind"),
        ('task = "b"', 'task = "c"', 28, "faults[1].task", "no task 'c'"),
        ("attempt = 2", "attempt = 0", 30, "faults[1].attempt", "must be >= 1"),
        ("attempt = 2", 'attempt = "twice"', 30, "faults[1].attempt", "attempt number"),
        (
            'outcome = "recovered"',
            'outcome = "fine"',
            21,
            "tasks[2].expect.outcome",
            "is not one of",
        ),
        (
            'reasons = ["sigint"]',
            'reasons = ["sigint", "boom"]',
            22,
            "tasks[2].expect.reasons",
            "item 2 'boom'",
        ),
        (
            'deliverables = ["a.md"]',
            "deliverables = []",
            10,
            "tasks[1].deliverables",
            "at least one",
        ),
        ("pr = false", 'pr = "no"', 17, "tasks[2].pr", "true or false"),
        ("max_attempts = 3", "max_tries = 3", 5, "expect.max_tries", "unknown key"),
        ('id = "b"', 'id = "a"', 13, "tasks[2].id", "repeats tasks[1]"),
        (
            'after_file = "b1.py"',
            'after_file = "b1.py"\nat_start = true',
            29,
            "faults[1].after_file",
            "one trigger",
        ),
        ('["fix_permission_flag"]', '["reboot"]', 2, "operator_actions", "'reboot'"),
    ],
)
def test_schema_errors_name_file_line_and_field(
    old: str, new: str, line: int, field: str, message: str
) -> None:
    assert old in BASE
    with pytest.raises(ScenarioError) as info:
        parse_scenario(BASE.replace(old, new, 1), source="demo.toml")
    err = info.value
    assert (err.source, err.line, err.field) == ("demo.toml", line, field), str(err)
    assert message in err.message
    assert str(err).startswith(f"demo.toml:{line}: {field}: ")


def test_syntax_error_carries_tomllibs_line() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario('[[tasks]]\nid = "a"\ntitle = "x\n', source="bad.toml")
    assert info.value.line == 3 and "invalid TOML" in str(info.value)


def test_a_scenario_needs_tasks() -> None:
    with pytest.raises(ScenarioError, match=r"x.toml:1: tasks: a scenario needs"):
        parse_scenario('name = "x"\n', source="x.toml")


def test_every_bundled_scenario_loads_and_round_trips_through_toml() -> None:
    paths = sorted(BUNDLED_SCENARIOS.glob("*.toml"))
    assert len(paths) >= 14
    for path in paths:
        s = load_scenario(path)
        again = parse_scenario(scenario_toml(s), name=s.name)
        assert again.faults == s.faults and [t.task for t in again.tasks] == [
            t.task for t in s.tasks
        ]
        assert (again.policy, again.attempt_timeout, again.stall_window) == (
            s.policy,
            s.attempt_timeout,
            s.stall_window,
        )


def test_a_policy_table_is_the_fleet_files() -> None:
    # The same keys, rules and messages as a fleet file's [policy] (docs/production.md).
    s = parse_scenario(
        BASE.replace(
            "[expect]", "[policy]\nbackoff_base = 0.25\nbreaker_threshold = 5\n\n[expect]", 1
        )
    )
    assert s.policy == PolicySettings(backoff_base=0.25, breaker_threshold=5)
    policy = s.policy.policy(seed=1)
    assert policy.backoff.base == 0.25 and policy.breaker.threshold == 5
    for bad, field, message in (
        ("backoff_base = nan", "policy.backoff_base", "finite"),
        ("backoff_cap = -1", "policy.backoff_cap", "must be"),
        ("breaker_threshold = 0", "policy.breaker_threshold", ">= 1"),
        ("backof_base = 1", "policy.backof_base", "unknown key"),
    ):
        with pytest.raises(ScenarioError) as info:
            parse_scenario(
                BASE.replace("[expect]", f"[policy]\n{bad}\n\n[expect]", 1), source="demo.toml"
            )
        assert (info.value.line, info.value.field) == (5, field), str(info.value)
        assert message in info.value.message, str(info.value)
    with pytest.raises(ScenarioError, match=r"policy.backoff_base: must be a finite number"):
        check_scenario(replace(s, policy=PolicySettings(backoff_base=float("inf"))))


def test_bundled_scenarios_cover_the_issue_and_the_catalogue() -> None:
    from pytest_orch_recovery.chaos.faults import CATALOGUE

    names = {p.stem for p in BUNDLED_SCENARIOS.glob("*.toml")}
    assert {
        "task-agent-5030",
        "permission-systematic",
        "pr-creation-failure",
        "partial-files",
        "test-failures",
        "timeout",
        "api-529-burst",
        "api-429-retry-after",
        "stale-index-lock",
        "sigint-during-resume",
        "corrupt-checkpoint",
        "coordinator-crash",
        "permission-prompt",
        "control",
    } <= names
    kinds = {f.kind for p in BUNDLED_SCENARIOS.glob("*.toml") for f in load_scenario(p).faults}
    # The host faults need several hosts: their scenarios join with --orch-hosts N.
    hosts = {f.kind for p in BUNDLED_HOST_SCENARIOS.glob("*.toml") for f in load_scenario(p).faults}
    assert kinds == {k for k, entry in CATALOGUE.items() if entry.scope != "host"}
    assert hosts == {k for k, entry in CATALOGUE.items() if entry.scope == "host"}


def test_max_live_agents_is_the_fleet_files() -> None:
    s = parse_scenario(BASE.replace("[expect]", "max_live_agents = 1\n\n[expect]", 1))
    assert s.max_live_agents == 1
    assert parse_scenario(scenario_toml(s), name=s.name).max_live_agents == 1
    with pytest.raises(ScenarioError, match=r"demo.toml:4: max_live_agents: must be >= 1"):
        parse_scenario(
            BASE.replace("[expect]", "max_live_agents = 0\n\n[expect]", 1), source="demo.toml"
        )
    with pytest.raises(ScenarioError, match=r"max_live_agents: must be >= 1"):
        check_scenario(replace(s, max_live_agents=0))
