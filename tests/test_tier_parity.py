"""Tier parity (issue 10): one scenario means the same on the sim tier and the tmux tier.

Every fault kind is keyed only on events both tiers honour (anything else is refused at load,
whatever the tier), a task's own ``prompt`` never hides its deliverables, and generated fault
schedules end with the same outcome, attributed reasons, strategies and fault statuses on both.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.chaos.faults import CATALOGUE, HONOURED_EVENTS, TRIGGER_EVENTS
from pytest_orch_recovery.chaos.scenario import (
    TRIGGER_KEYS,
    Scenario,
    ScenarioError,
    parse_scenario,
)

TASK = (
    '[[tasks]]\nid = "t1"\ntitle = "Write the release notes"\n'
    'deliverables = ["notes.md", "extra.md"]\ntests = "python -c pass"\n'
)
_KEY_OF = {event: key for key, event in TRIGGER_KEYS.items()}


def _fault(kind: str, event: str, n: int, params: str = "") -> str:
    key = _KEY_OF[event]
    value = (
        "true" if n == 1 and event not in ("tool_call", "file_written", "api_request") else str(n)
    )
    return f'[[faults]]\nkind = "{kind}"\ntask = "t1"\n{key} = {value}\n{params}'


def test_every_kind_is_keyed_on_events_both_tiers_honour() -> None:
    assert set(HONOURED_EVENTS) == set(CATALOGUE)
    for kind, events in HONOURED_EVENTS.items():
        assert CATALOGUE[kind].default_trigger in events and events <= TRIGGER_EVENTS


@pytest.mark.parametrize("event", sorted(TRIGGER_EVENTS))
@pytest.mark.parametrize("kind", ["sigint", "api_overloaded", "tests_fail", "stall"])
def test_an_event_a_tier_cannot_honour_is_refused_at_load(kind: str, event: str) -> None:
    text = TASK + _fault(kind, event, 1)
    if event in HONOURED_EVENTS[kind]:
        if kind == "tests_fail":
            return  # needs a test file; covered by test_hostile_inputs
        assert parse_scenario(text).faults[0].effective_trigger.event == event
        return
    with pytest.raises(ScenarioError, match=f"{kind} cannot be keyed on the {event} event"):
        parse_scenario(text, source="x.toml")


# --------------------------------------------------------------------------- both tiers

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def _observed(scenario: Scenario, tier: str, seed: int) -> dict[str, Any]:
    from pytest_orch_recovery.chaos.campaign import run_scenario
    from pytest_orch_recovery.chaos.oracle import attributed_reasons, strategies

    run = run_scenario(scenario, tier=tier, seed=seed, agent="sim")
    return {
        "outcomes": run.outcomes,
        "reasons": {t: attributed_reasons(run.events, t) for t in scenario.task_ids},
        "strategies": {t: strategies(run.events, t) for t in scenario.task_ids},
        "faults": {f: entry.get("status") for f, entry in sorted(run.ledger.items())},
    }


def _same_on_both_tiers(text: str, seed: int = 3) -> dict[str, Any]:
    scenario = parse_scenario(text, name="parity")
    sim = _observed(scenario, "sim", seed)
    tmux = _observed(scenario, "tmux", seed)
    assert sim == tmux, f"sim: {sim}\ntmux: {tmux}\nscenario:\n{text}"
    return sim


@pytest.mark.slow
@needs_tmux
def test_sigint_at_open_pr_fires_on_both_tiers() -> None:
    seen = _same_on_both_tiers(TASK + _fault("sigint", "open_pr", 1))
    assert seen["faults"] == {"f1": "exercised"}


@pytest.mark.slow
@needs_tmux
def test_a_task_prompt_that_does_not_name_the_deliverables() -> None:
    seen = _same_on_both_tiers(TASK + 'prompt = "Be brief and friendly."\n')
    assert seen["outcomes"] == {"t1": "succeeded"}


# Kinds whose every honoured event was compared on both tiers; a schedule is one of them.
_PARITY_KINDS = {
    "sigint": "",
    "kill": "",
    "terminate": "",
    "stale_index_lock": "",
    "corrupt_checkpoint": "",
    "api_overloaded": "params = { count = 12 }\n",
    "api_server_error": "",
    "pr_create_fails": "params = { times = 2 }\n",
}


# An API fault's ``count`` either fits in the agent's own retries (absorbed) or beats them
# (the attempt fails), on whichever attempts it targets. Schedules used to draw neither: every
# fault targeted attempt 1 with its kind's fixed params, so "an API error on every attempt"
# (one tier escalated, the other recovered at attempt 2) was never generated.
_API_KINDS = ("api_overloaded", "api_server_error")
_API_COUNTS = ("", "params = { count = 1 }\n", "params = { count = 12 }\n")
_ATTEMPTS = ("", "attempt = 2\n", 'attempt = "all"\n')


@st.composite
def _schedules(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(sorted(_PARITY_KINDS)))
    event = draw(st.sampled_from(sorted(HONOURED_EVENTS[kind])))
    counted = event in ("tool_call", "file_written", "api_request")
    n = draw(st.integers(1, 2)) if counted else 1
    params = _PARITY_KINDS[kind]
    if kind in _API_KINDS:
        params = draw(st.sampled_from(_API_COUNTS)) + draw(st.sampled_from(_ATTEMPTS))
    return TASK + _fault(kind, event, n, params)


_EVERY_ATTEMPT = TASK + _fault("api_server_error", "api_request", 1, 'attempt = "all"\n')


@pytest.mark.slow
@needs_tmux
@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
@example(_EVERY_ATTEMPT)
@given(_schedules())
def test_generated_fault_schedules_end_alike_on_both_tiers(text: str) -> None:
    _same_on_both_tiers(text)


def test_the_schedules_include_an_api_fault_on_every_attempt_past_the_retries() -> None:
    from hypothesis import find

    found = find(
        _schedules(),
        lambda t: 'kind = "api_server_error"' in t and 'attempt = "all"' in t and "count" not in t,
        settings=settings(max_examples=2000, database=None),
    )
    assert parse_scenario(found).faults[0].attempt is None


@pytest.mark.slow
@needs_tmux
def test_an_api_fault_on_every_attempt_escalates_on_both_tiers() -> None:
    seen = _same_on_both_tiers(_EVERY_ATTEMPT)
    assert seen["outcomes"] == {"t1": "escalated"}
    assert set(seen["reasons"]["t1"]) == {"api_error"}
