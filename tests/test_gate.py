"""The merge gate over scenario runs: aggregation, steady-state first-try, oracle, strict."""

from __future__ import annotations

from pytest_orch_recovery.chaos.campaign import run_scenario
from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.record import ScenarioRun
from pytest_orch_recovery.chaos.scenario import Scenario, ScenarioTask
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.plugin.gate import aggregate, prefixed_events
from pytest_orch_recovery.report.dashboard import render_campaign_json, render_campaign_markdown
from pytest_orch_recovery.report.htmlreport import render_html
from pytest_orch_recovery.report.metrics import Criteria
from pytest_orch_recovery.report.pagefacts import page_facts


def _run(name: str, tasks: list[Task], *faults: FaultSpec) -> ScenarioRun:
    s = Scenario(name, tuple(ScenarioTask(t) for t in tasks), tuple(faults))
    return run_scenario(s, tier="sim", seed=1, agent="sim")


SIMPLE = [Task(f"s{i}", f"Simple {i}", ("a.md",)) for i in range(3)]
COMPLEX = [Task("c1", "Complex", tuple(f"m{i}.py" for i in range(6)))]


def test_task_ids_are_unique_across_scenarios() -> None:
    a = _run("a", SIMPLE[:1])
    b = _run("b", SIMPLE[:1])
    ids = {e.task_id for r in (a, b) for e in prefixed_events(r) if e.task_id}
    assert ids == {"a/s0", "b/s0"}
    assert aggregate([a, b], Criteria()).metrics.total_tasks == 2


def test_first_try_rates_come_from_fault_free_tasks_only() -> None:
    control = _run("control", SIMPLE + COMPLEX)
    faulted = _run(
        "faulted",
        [Task("x", "X", ("x.md",))],
        FaultSpec("sigint", Trigger("file_written", n=1), task="x"),
    )
    result = aggregate([faulted, control], Criteria())
    m = result.metrics
    assert (m.first_try_simple, m.settled_simple) == (3, 3)
    assert (m.first_try_complex, m.settled_complex) == (1, 1)
    assert m.required_recovery == 1 and m.recovered == 1 and result.control_tasks == 4
    assert not result.failed and result.fail_lines() == []


def test_order_of_runs_does_not_change_the_figures() -> None:
    runs = [_run("b", SIMPLE), _run("a", COMPLEX, FaultSpec("kill", Trigger("tool_call", n=2)))]
    one = aggregate(runs, Criteria())
    two = aggregate(list(reversed(runs)), Criteria())
    assert one.metrics == two.metrics and one.results == two.results


def test_an_escalation_misses_a_high_recovery_threshold() -> None:
    doomed = _run("doomed", SIMPLE[:1], FaultSpec("kill", Trigger("start"), attempt=None))
    result = aggregate([doomed], Criteria(min_recovery_rate=0.5))
    assert result.failed
    (line,) = result.fail_lines()
    assert line.startswith("FAIL recovery_rate: observed 0.000 (0/1)")


def test_wrong_attributions_count_against_max_unattributed() -> None:
    run = _run("w", SIMPLE[:1], FaultSpec("kill", Trigger("file_written", n=1), fault_id="f1"))
    run.ledger["f1"]["kind"] = "api_overloaded"  # the oracle now expects api_error
    result = aggregate([run], Criteria())
    assert result.wrong_attributions == 1
    assert result.metrics.unattributed_failures == 1
    assert any(line.startswith("FAIL unattributed_failures") for line in result.fail_lines())
    assert result.confusion_matrix() == {"api_error": {"killed": 1}}
    assert aggregate([run], Criteria(max_unattributed=1)).fail_lines() == []


def test_strict_fails_on_unexercised_faults_unless_expected() -> None:
    run = _run("u", SIMPLE[:1], FaultSpec("kill", Trigger("tool_call", n=30), fault_id="f1"))
    assert aggregate([run], Criteria()).fail_lines() == []
    assert aggregate([run], Criteria(), strict=True).fail_lines() == [
        "FAIL strict: fault u/f1 (kill) not exercised"
    ]
    run.ledger["f1"]["expected_status"] = "not_exercised"
    assert aggregate([run], Criteria(), strict=True).fail_lines() == []
    run.ledger["f1"].pop("expected_status")
    run.generated = True
    assert aggregate([run], Criteria(), strict=True).fail_lines() == []


def test_reports_render_the_matrix_ledger_and_timeline() -> None:
    # Task ids are refused at load unless they are in the safe alphabet; titles are free text
    # and must reach the page escaped.
    runs = [
        _run(
            "hostile",
            [Task("h-1", '<b>h</b> $(rm -rf ~) "q"', ("a.md",))],
            FaultSpec("sigint", Trigger("file_written", n=1)),
        )
    ]
    result = aggregate(runs, Criteria())
    campaign = {
        **result.to_json(),
        "seed": 1,
        "tier": "sim",
        "agent": "sim",
        "replay": "pytest --orch-chaos --orch-seed 1",
    }
    md = render_campaign_markdown(result.metrics, result.results, campaign)
    assert "| sigint | 1 |" in md and "| hostile | f1 | sigint |" in md
    page = render_html(page_facts(result.events), result.metrics, result.results, campaign=campaign)
    assert "<b>h</b>" not in page and "&lt;b&gt;h&lt;/b&gt;" in page
    assert 'class="bar fail"' in page and 'class="bar ok"' in page
    data = render_campaign_json(result.metrics, result.results, campaign)
    assert data["schema_version"] == 2 and "events" not in data["campaign"]
    assert data["campaign"]["confusion_matrix"] == {"sigint": {"sigint": 1}}
