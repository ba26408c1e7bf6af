"""The plugin in a user's own repository: the bundled campaign (package data) beside or instead
of the project's scenarios, and ``--orch-fleet``: the campaign under a production fleet file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.campaign import run_scenario
from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.fleetfile import ProductionSettings, effective_policy
from pytest_orch_recovery.chaos.scenario import Scenario, ScenarioTask, load_scenario
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.policy import PolicySettings
from pytest_orch_recovery.fleet.config import FleetConfigError, load_fleet
from pytest_orch_recovery.infra.git import create_repo_with_origin

BUNDLED = sorted(BUNDLED_SCENARIOS.glob("*.toml"))

MINE = """
name = "my-docs-task"

[[tasks]]
id = "docs"
title = "Write the release notes"
deliverables = ["NOTES.md"]

[tasks.expect]
outcome = "recovered"

[[faults]]
kind = "sigint"
task = "docs"
after_file = "NOTES.md"
"""

# Settings that make recovery worse: one attempt per task, a breaker that opens on one failure.
WORSE = """
repository = "/srv/nowhere/project"   # production's checkout: absent on a CI runner
agent = "sim"
max_attempts = 1

[policy]
breaker_threshold = 1
"""


@pytest.fixture(autouse=True)
def _sim_tier(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # The in-process tier: these tests are about what runs and under which settings; the
    # real tier runs the same campaign in tests/test_wheel.py.
    monkeypatch.setenv("PYTEST_ADDOPTS", "--orch-tier=sim")


def _write(pytester: pytest.Pytester, relative: str, text: str) -> Path:
    path = pytester.path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _nodeids(result: pytest.RunResult) -> list[str]:
    return sorted(line for line in result.outlines if "::" in line and " " not in line)


def _attempts(events: list[dict[str, object]]) -> dict[str, int]:
    """Task -> its last attempt launched, from a campaign journal (``--orch-report=x.jsonl``)."""
    return {
        str(e["task_id"]): int(str(e["attempt"])) for e in events if e["kind"] == "attempt_launched"
    }


# --------------------------------------------------------------------------- scenario sets


def test_a_project_without_scenarios_runs_the_bundled_campaign(pytester: pytest.Pytester) -> None:
    listed = pytester.runpytest("--orch-chaos", "--collect-only", "-q")
    assert listed.ret == 0
    assert _nodeids(listed) == sorted(
        f"orch-bundled/{p.name}::{load_scenario(p).name}" for p in BUNDLED
    )
    result = pytester.runpytest("--orch-chaos", "--orch-seed=3")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=len(BUNDLED))
    result.stdout.fnmatch_lines(
        [
            f"orch-chaos scenarios: bundled {len(BUNDLED)} ({BUNDLED_SCENARIOS}); the project "
            f"has none in {pytester.path / 'scenarios'}",
            "PASS recovery_rate: *",
        ]
    )
    assert not (pytester.path / "scenarios").exists()  # nothing was created in the project


def test_project_scenarios_run_beside_the_bundled_ones_or_instead(
    pytester: pytest.Pytester,
) -> None:
    _write(pytester, "scenarios/mine.toml", MINE)
    beside = pytester.runpytest("--orch-chaos", "--collect-only", "-q")
    assert "scenarios/mine.toml::my-docs-task" in _nodeids(beside)
    assert len(_nodeids(beside)) == len(BUNDLED) + 1
    ran = pytester.runpytest("--orch-chaos", "--orch-seed=3")
    ran.assert_outcomes(passed=len(BUNDLED) + 1)
    ran.stdout.fnmatch_lines(
        [
            f"orch-chaos scenarios: bundled {len(BUNDLED)} (*) + project 1 "
            f"({pytester.path / 'scenarios'}) (--orch-project-scenarios=beside)",
            f"seed 3, tier sim: {len(BUNDLED) + 1} scenario runs, *",
        ]
    )
    # The ini key says the same as the option; the option wins over it.
    pytester.makeini("[pytest]\norch_project_scenarios = instead\n")
    instead = pytester.runpytest("--orch-chaos", "--collect-only", "-q")
    assert _nodeids(instead) == ["scenarios/mine.toml::my-docs-task"]
    again = pytester.runpytest(
        "--orch-chaos", "--collect-only", "-q", "--orch-project-scenarios=beside"
    )
    assert len(_nodeids(again)) == len(BUNDLED) + 1


def test_instead_with_no_project_scenarios_still_runs_the_bundled_ones(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "scenarios").mkdir()  # there, but empty
    result = pytester.runpytest(
        "--orch-chaos", "--orch-project-scenarios=instead", "--collect-only", "-q"
    )
    assert len(_nodeids(result)) == len(BUNDLED)


def test_a_project_scenario_named_like_a_bundled_one_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    _write(pytester, "scenarios/mine.toml", MINE.replace("my-docs-task", "timeout"))
    result = pytester.runpytest("--orch-chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert (
        "scenario name 'timeout' is used by " in err and "--orch-project-scenarios=instead" in err
    )


def test_a_named_scenarios_directory_that_is_missing_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--orch-chaos", "--orch-scenarios=chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--orch-scenarios: {pytester.path / 'chaos'} is not a directory" in result.stderr.str()


def test_help_names_the_new_options(pytester: pytest.Pytester) -> None:
    out = pytester.runpytest("--help").stdout.str()
    for option in ("--orch-project-scenarios=beside|instead", "--orch-fleet=FLEET.toml"):
        assert option in out
    assert "orch_fleet" in out and "orch_project_scenarios" in out


# --------------------------------------------------------------------------- --orch-fleet


def test_a_fleet_file_that_makes_recovery_worse_fails_the_gate(pytester: pytest.Pytester) -> None:
    _write(pytester, "fleet.toml", WORSE)
    baseline = pytester.runpytest("--orch-chaos", "--orch-seed=4")
    assert baseline.ret == 0
    result = pytester.runpytest(
        "--orch-chaos",
        "--orch-seed=4",
        "--orch-fleet",
        "fleet.toml",
        "--orch-report=r.json",
        "--orch-report=r.jsonl",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "orch-chaos fleet file fleet.toml: agent sim, skip_permissions true, max_attempts 1,"
            " * breaker_threshold 1, *",
            "FAIL recovery_rate: observed *, threshold > 0.900",
            "fleet file fleet.toml: agent sim, *",
            "  pinned by timeout: attempt_timeout = 15 (the scenario pins it; fleet file: 1800)",
            "replay: pytest --orch-chaos --orch-seed 4 --orch-tier sim --orch-fleet=fleet.toml",
        ]
    )
    campaign = json.loads((pytester.path / "r.json").read_text())["campaign"]
    assert "FAIL recovery_rate" in campaign["fail_lines"][0]
    fleet = campaign["fleet"]
    assert fleet["max_attempts"] == 1 and fleet["policy"]["breaker_threshold"] == 1
    pins = {(o["scenario"], o["key"]) for o in fleet["overrides"]}
    assert ("timeout", "attempt_timeout") in pins and (
        "attempt-budget",
        "policy.backoff_base",
    ) in pins
    # The budget of one attempt: task-5030, which recovers on its second attempt under the
    # engine's default budget, escalates after its first.
    events = [json.loads(line) for line in (pytester.path / "r.jsonl").read_text().splitlines()]
    assert _attempts(events)["task-agent-5030/task-5030"] == 1


def test_the_fleet_file_settings_reach_every_run(pytester: pytest.Pytester) -> None:
    _write(
        pytester,
        "fleet.toml",
        'repository = "/srv/project"\nagent = "my-agent --print {prompt_file}"\n'
        "skip_permissions = false\nmax_attempts = 2\n[policy]\nbackoff_base = 0.5\n"
        '[env]\nMY_TOKEN = "s3cret-value"\n',
    )
    result = pytester.runpytest(
        "--orch-chaos",
        "--orch-seed=5",
        "--orch-fleet=fleet.toml",
        "--orch-agent=sim",  # the template's program does not exist here: the sim agent runs
        "--orch-report=r.json",
        "--orch-report=r.html",
        "--orch-report=r.md",
        "--orch-report=r.jsonl",
    )
    result.stdout.fnmatch_lines(
        [
            "orch-chaos fleet file fleet.toml: agent my-agent --print {prompt_file}, "
            "skip_permissions false, max_attempts 2, *backoff_base 0.5, *",
            "orch-chaos agent sim (--orch-agent), not the fleet file's my-agent --print "
            "{prompt_file}",
        ]
    )
    # Without the permission flag every agent meets the permission wall, as production's
    # would: the campaign says so instead of passing.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    events = [json.loads(line) for line in (pytester.path / "r.jsonl").read_text().splitlines()]
    reasons = {
        e["data"]["attribution"]["reason"] for e in events if e["kind"] == "failure_attributed"
    }
    assert "permission" in reasons
    campaign = json.loads((pytester.path / "r.json").read_text())["campaign"]
    assert campaign["fleet"]["skip_permissions"] is False
    assert campaign["fleet"]["env"] == ["MY_TOKEN"]
    for report in ("r.json", "r.html", "r.md"):
        text = (pytester.path / report).read_text()
        assert "s3cret-value" not in text  # [env] values never reach a report
        assert "my-agent --print {prompt_file}" in text
    assert "backoff_base 0.5" in (pytester.path / "r.html").read_text()


def test_fleet_file_mistakes_are_supervise_s_one_line_errors(pytester: pytest.Pytester) -> None:
    # A checkout that exists here, so that supervise gets as far as the policy table too.
    create_repo_with_origin(pytester.path / "project")
    text = WORSE.replace("/srv/nowhere/project", "project/repo")
    path = _write(pytester, "fleet.toml", text.replace("threshold = 1", "threshold = 0"))
    with pytest.raises(FleetConfigError) as supervise_says:
        load_fleet(path)  # what `orch-recovery supervise --config` reads it with
    result = pytester.runpytest("--orch-chaos", "--orch-fleet=fleet.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = f"ERROR: {supervise_says.value}".replace(str(path), "fleet.toml")
    assert line.startswith("ERROR: fleet.toml:7: policy.breaker_threshold: ")
    assert line in result.stderr.lines
    missing = pytester.runpytest("--orch-chaos", "--orch-fleet=nope.toml")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: nope.toml:1: cannot read: " in missing.stderr.str()


def test_the_ini_key_names_the_fleet_file_relative_to_the_ini_file(
    pytester: pytest.Pytester,
) -> None:
    _write(pytester, "ci/fleet.toml", WORSE)
    pytester.makeini("[pytest]\norch_fleet = ci/fleet.toml\n")
    result = pytester.runpytest("--orch-chaos", "--collect-only")
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"orch-chaos fleet file {pytester.path}/ci/fleet.toml: *"])


# --------------------------------------------------------------------------- pure settings

_NUMBERS = st.one_of(st.none(), st.floats(0.01, 1000, allow_nan=False))


@given(
    fleet=st.builds(
        PolicySettings,
        backoff_base=_NUMBERS,
        backoff_cap=_NUMBERS,
        breaker_threshold=st.one_of(st.none(), st.integers(1, 10)),
        breaker_window=_NUMBERS,
    ),
    pinned=st.builds(
        PolicySettings,
        backoff_base=_NUMBERS,
        backoff_cap=_NUMBERS,
        breaker_threshold=st.one_of(st.none(), st.integers(1, 10)),
        breaker_window=_NUMBERS,
    ),
    timeout=st.one_of(st.none(), st.floats(1, 100)),
)
def test_a_scenario_keeps_what_it_pins_and_takes_the_rest_from_the_fleet_file(
    fleet: PolicySettings, pinned: PolicySettings, timeout: float | None
) -> None:
    settings = ProductionSettings("f.toml", "sim", policy=fleet, attempt_timeout=900.0)
    scenario = Scenario(
        "s", (ScenarioTask(Task("t", "T", ("a.md",))),), policy=pinned, attempt_timeout=timeout
    )
    applied = settings.applied_to(scenario)
    numbers, theirs, mine = (
        effective_policy(applied.policy),
        effective_policy(fleet),
        effective_policy(pinned),
    )
    pins = {o.key: o for o in settings.overrides(scenario)}
    for key, value in numbers.items():
        own = getattr(pinned, key)
        assert value == (mine[key] if own is not None else theirs[key])
        # Reported exactly where the scenario's value differs from the fleet file's.
        assert (f"policy.{key}" in pins) == (own is not None and own != theirs[key])
    assert applied.attempt_timeout == (900.0 if timeout is None else timeout)
    assert ("attempt_timeout" in pins) == (timeout is not None and timeout != 900.0)
    assert applied.name == scenario.name and applied.tasks == scenario.tasks


def test_every_bundled_scenario_loads_from_the_package_data() -> None:
    assert len(BUNDLED) >= 16 and all(load_scenario(p).tasks for p in BUNDLED)
    # The repository's top-level scenarios/ says what goes there and holds no scenario.
    top = BUNDLED_SCENARIOS.parents[2] / "scenarios"
    assert not list(top.glob("*.toml")) and (top / "README.md").is_file()


def test_the_fleet_file_s_budget_holds_unless_the_scenario_pins_its_own() -> None:
    fleet = ProductionSettings("f.toml", "sim", max_attempts=2)
    pinned = run_scenario(
        load_scenario(BUNDLED_SCENARIOS / "attempt-budget.toml"),
        tier="sim",
        seed=1,
        agent="sim",
        fleet=fleet,
    )
    assert {o["key"]: o["pinned"] for o in pinned.overrides} == {
        "max_attempts": 4,
        "policy.backoff_base": 0.25,
    }
    assert max(e.attempt or 0 for e in pinned.events) == 4
    hopeless = Scenario(
        "hopeless",
        (ScenarioTask(Task("t", "Migrate the schema", ("m.py",))),),
        faults=(FaultSpec("kill", Trigger("start"), task="t", attempt=None),),
    )
    run = run_scenario(hopeless, tier="sim", seed=1, agent="sim", fleet=fleet)
    assert run.outcomes == {"t": "escalated"} and run.overrides == []
    assert max(e.attempt or 0 for e in run.events) == 2  # the fleet file's budget, not 4
