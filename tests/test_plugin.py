"""End-to-end: the real plugin through pytester (``pytest --orch-chaos``)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS

REPO = Path(__file__).resolve().parent.parent
BUNDLED = BUNDLED_SCENARIOS

ESCALATING = """
name = "hopeless"

[[tasks]]
id = "doomed"
title = "Migrate the schema"
deliverables = ["m.py"]

[tasks.expect]
outcome = "escalated"

[[faults]]
kind = "kill"
task = "doomed"
at_start = true
attempt = "all"
"""

RECOVERING = """
[[tasks]]
id = "t1"
title = "Create /fake3 command"
deliverables = ["fake3.md"]

[tasks.expect]
outcome = "recovered"
reasons = ["sigint"]

[[faults]]
kind = "sigint"
task = "t1"
after_file = "fake3.md"
"""


@pytest.fixture(autouse=True)
def _sim_tier_by_default(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about the plugin, not about real processes: they run the in-process
    # tier unless a test says otherwise (the real tier has tests of its own). Set after
    # pytester exists, since pytester clears PYTEST_ADDOPTS when it starts.
    # They run the scenarios they write alone (--orch-project-scenarios=instead) unless a
    # test is about the bundled campaign beside them.
    monkeypatch.setenv("PYTEST_ADDOPTS", "--orch-tier=sim --orch-project-scenarios=instead")


def _bundled(pytester: pytest.Pytester) -> None:
    shutil.copytree(BUNDLED, pytester.path / "scenarios")


def _scenario(pytester: pytest.Pytester, name: str, text: str) -> Path:
    path = pytester.path / "scenarios" / f"{name}.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_plugin_off_collects_nothing_and_imports_no_engine(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_ADDOPTS")  # not even a tier named: the plugin as installed
    _scenario(pytester, "x", RECOVERING)
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    pytester.makeconftest(
        """
        import json, sys
        def pytest_unconfigure(config):
            mods = sorted(m for m in sys.modules if m.startswith("pytest_orch_recovery"))
            open("modules.json", "w").write(json.dumps(mods))
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    modules = json.loads((pytester.path / "modules.json").read_text())
    assert "pytest_orch_recovery.plugin.hooks" in modules  # installed: its options are there
    # Only the options and the agent command template's placeholders: no engine, no tier, no
    # scenario, no gate.
    assert set(modules) <= {
        f"pytest_orch_recovery{m}"
        for m in (
            "",
            ".plugin",
            ".plugin.hooks",
            ".plugin.options",
            ".infra",
            ".infra.argtypes",
            ".infra.placeholders",
        )
    }, modules
    assert not (pytester.path / "orch-report.md").exists()


def test_bundled_campaign_passes_runs_only_scenarios_and_writes_dashboard(
    pytester: pytest.Pytester,
) -> None:
    _bundled(pytester)
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_unit.py").write_text("def test_unit():\n    assert 0\n")
    result = pytester.runpytest(
        "--orch-chaos", "--orch-seed=11", "--orch-report=orch-report.md", "--orch-report=o.json"
    )
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=len(list(BUNDLED.glob("*.toml"))))
    result.stdout.fnmatch_lines(
        [
            "*orch-chaos: seed 11, tier sim*",
            "*orch-chaos recovery gate*",
            "PASS recovery_rate: observed *",
            "PASS first_try_simple: observed 1.000 (20/20)*",
        ]
    )
    assert "test_unit" not in result.stdout.str()
    dashboard = (pytester.path / "orch-report.md").read_text(encoding="utf-8")
    assert "## Recovery Metrics Dashboard" in dashboard
    # The dashboard shows the 20 most recent recovery events; which ones depends on the
    # campaign's virtual clock, so the seed incident is looked up in the full list.
    assert re.search(
        r"^### 2025-07-23 - task-agent-\S+ \(\w[\w ]*\) ✅ RECOVERED$", dashboard, re.M
    )
    assert "Attribution Confusion Matrix" in dashboard and "### Fault Ledger" in dashboard
    recent = json.loads((pytester.path / "o.json").read_text())["metrics"]["recent"]
    incident = next(e for e in recent if e["agent"] == "task-agent-5030")
    assert (incident["reason"], incident["outcome"]) == ("sigint", "RECOVERED")


def test_recovery_rate_below_threshold_fails_with_fail_line(pytester: pytest.Pytester) -> None:
    _scenario(pytester, "hopeless", ESCALATING)
    _scenario(pytester, "fine", RECOVERING)
    result = pytester.runpytest("--orch-chaos", "--orch-seed=1", "--orch-min-recovery-rate=0.99")
    result.assert_outcomes(passed=2)  # every scenario met its own expectations...
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # ...but the campaign misses the gate
    result.stdout.fnmatch_lines(
        ["FAIL recovery_rate: observed 0.500 (1/2), 95% lower bound *, threshold > 0.990"]
    )


def _figures(pytester: pytest.Pytester, *extra: str) -> tuple[int, dict[str, object]]:
    report = pytester.path / "r.json"
    result = pytester.runpytest_subprocess(
        "--orch-chaos",
        "--orch-seed=42",
        "--orch-campaign=6",
        f"--orch-report={report}",
        "--orch-min-recovery-rate=0.99",
        "-p",
        "no:cacheprovider",
        *extra,
    )
    data = json.loads(report.read_text(encoding="utf-8"))
    data["campaign"].pop("ledger")  # per-run order is the same; keep the comparison small
    return result.ret, {
        "metrics": data["metrics"],
        "criteria": data["criteria"],
        "matrix": data["campaign"]["confusion_matrix"],
    }


def test_serial_and_xdist_give_the_same_verdict_and_figures(pytester: pytest.Pytester) -> None:
    _bundled(pytester)
    _scenario(pytester, "hopeless", ESCALATING)
    serial_ret, serial = _figures(pytester)
    dist_ret, dist = _figures(pytester, "-p", "xdist", "-n", "2")
    assert serial_ret == dist_ret == pytest.ExitCode.TESTS_FAILED
    assert serial == dist
    criteria = {c["name"]: c for c in serial["criteria"]}  # type: ignore[attr-defined]
    assert criteria["recovery_rate"]["verdict"] == "fail"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orch-min-recovery-rate", "1.5"], "not a rate within [0, 1]"),
        (["--orch-gate", "median"], "is not one of point, lower-bound"),
        (["--orch-tier", "moon"], "is not one of sim, tmux"),
        (["--orch-max-orphans=-1"], "must be >= 0"),
        (["--orch-report", "out.txt"], "must end in .md, .json, .html"),
        (["--orch-agent", "x {bogus}"], "unknown placeholder"),
    ],
)
def test_bad_option_value_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--orch-chaos", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_a_campaign_with_nothing_to_run_is_a_usage_error(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # `--orch-report /elsewhere/x.md` (a space, not `=`) when that file exists (a previous run
    # wrote it): pytest picks its rootdir before it knows plugin options, takes the value for a
    # test path and moves the rootdir away from the project, where there are no scenarios.
    # Passing having run nothing would be a lie.
    _scenario(pytester, "fine", RECOVERING)
    report = tmp_path_factory.mktemp("elsewhere") / "x.md"
    report.write_text("previous run\n")
    result = pytester.runpytest_subprocess(
        "--orch-chaos", "--orch-tier", "sim", "--orch-report", str(report)
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "is not where pytest was started" in err and "--orch-report=PATH" in err
    ok = pytester.runpytest_subprocess(
        "--orch-chaos", "--orch-tier", "sim", f"--orch-report={report}"
    )
    assert ok.ret == 0 and "previous run" not in report.read_text()


def test_bad_ini_value_is_a_usage_error_naming_the_key(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\norch_min_first_try_simple = lots\n")
    result = pytester.runpytest("--orch-chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ini key 'orch_min_first_try_simple'" in result.stderr.str()
    assert "'lots' is not a rate" in result.stderr.str()


def test_cli_beats_ini_beats_default(pytester: pytest.Pytester) -> None:
    _scenario(pytester, "hopeless", ESCALATING)
    _scenario(pytester, "fine", RECOVERING)
    pytester.makeini("[pytest]\norch_min_recovery_rate = 0.4\norch_seed = 9\n")
    ini = pytester.runpytest("--orch-chaos")
    assert ini.ret == 0
    ini.stdout.fnmatch_lines(["*seed 9,*", "PASS recovery_rate: *threshold > 0.400"])
    cli = pytester.runpytest("--orch-chaos", "--orch-min-recovery-rate=0.6")
    assert cli.ret == pytest.ExitCode.TESTS_FAILED
    cli.stdout.fnmatch_lines(["FAIL recovery_rate: *threshold > 0.600"])


def test_malformed_scenario_names_file_line_and_field(pytester: pytest.Pytester) -> None:
    _scenario(pytester, "typo", RECOVERING.replace('kind = "sigint"', 'kind = "sigintt"'))
    _scenario(pytester, "syntax", '[[tasks]]\nid = "a"\ntitle = = 3\n')
    result = pytester.runpytest("--orch-chaos")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # like a bad option (issue 10)
    out = result.stdout.str()
    assert "typo.toml:12: faults[1].kind: unknown fault kind 'sigintt'" in out
    assert "syntax.toml:3: invalid TOML" in out


def test_unmet_expectation_fails_the_item_with_a_readable_diff(
    pytester: pytest.Pytester,
) -> None:
    _scenario(
        pytester, "wrong", RECOVERING.replace('reasons = ["sigint"]', 'reasons = ["timeout"]')
    )
    result = pytester.runpytest("--orch-chaos", "--orch-seed=2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*scenario wrong did not go as expected*", "*t1: reasons: expected timeout, got sigint*"]
    )


def test_strict_fails_on_a_fault_that_never_took_effect(pytester: pytest.Pytester) -> None:
    _scenario(
        pytester,
        "unreached",
        RECOVERING + '\n[[faults]]\nkind = "kill"\ntask = "t1"\nafter_tool_call = 40\n',
    )
    assert pytester.runpytest("--orch-chaos").ret == 0
    strict = pytester.runpytest("--orch-chaos", "--orch-strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["FAIL strict: fault unreached/f2 (kill) not exercised"])


def test_generated_campaign_adds_items_and_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = pytester.runpytest(
        "--orch-chaos",
        "--orch-seed=3",
        "--orch-campaign=5",
        "--orch-report=o.html",
        "--orch-report=o.json",
        "--junitxml=junit.xml",
        "-v",
    )
    names = [line for line in result.outlines if "orch-campaign::gen-" in line]
    assert len(names) == 5, result.stdout.str()
    data = json.loads((pytester.path / "o.json").read_text())
    assert data["schema_version"] == 2 and data["campaign"]["seed"] == 3
    page = (pytester.path / "o.html").read_text()
    assert '<section id="timeline">' in page and '<section id="campaign">' in page
    assert page.count('class="attempt"') == data["metrics"]["attempts"]
    assert "Recovery Metrics Dashboard" in summary.read_text()
    junit = (pytester.path / "junit.xml").read_text()
    assert 'name="orch_recovery_rate"' in junit and 'name="orch_seed" value="3"' in junit


def test_user_tests_get_orch_engine_and_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
        from pytest_orch_recovery.engine.model import Task

        @pytest.mark.orch_faults(FaultSpec("sigint", Trigger("file_written", n=1)))
        def test_resume(orch_engine):
            run = orch_engine.run([Task("t1", "Docs", ("a.md", "b.md"))])
            assert run.outcomes == {"t1": "recovered"}

        @pytest.mark.orch_faults("pr_create_fails", task="t1")
        def test_pr(orch_engine, orch_faults):
            assert [f.kind for f in orch_faults] == ["pr_create_fails"]
            run = orch_engine.run([Task("t1", "Docs", ("a.md",))])
            assert run.repos["t1"].pr is not None
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_a_campaign_only_session_leaves_hypothesis_unloaded(pytester: pytest.Pytester) -> None:
    # pytest --orch-chaos with no paths and no generated runs uses no Hypothesis: its plugin is
    # blocked there (its terminal summary imported all of Hypothesis in every process), and
    # only there: with generated runs, with test paths given, or without --orch-chaos, it stays.
    _scenario(pytester, "one", RECOVERING)
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            pm = config.pluginmanager
            print("HYPOTHESIS", pm.is_blocked("hypothesispytest"), "hypothesis" in sys.modules)
        """
    )

    def seen(*args: str) -> str:
        result = pytester.runpytest_subprocess(*args, "-s")
        assert result.ret == 0, result.stdout.str()
        return next(line for line in result.stdout.lines if line.startswith("HYPOTHESIS"))

    assert seen("--orch-chaos") == "HYPOTHESIS True False"
    # Generated runs use Hypothesis: its plugin stays to end its initialization phase at the
    # session's start (blocked, the generation failed with HypothesisSideeffectWarning). The
    # seed is pinned to one whose generated schedules are recoverable: the gate's verdict is
    # not what this test is about.
    assert seen("--orch-chaos", "--orch-campaign=2", "--orch-seed=2") == "HYPOTHESIS False True"
    assert seen("--orch-chaos", "scenarios/one.toml", "test_plain.py") == "HYPOTHESIS False True"
    assert seen("test_plain.py") == "HYPOTHESIS False True"


def test_the_controller_checks_the_tier_without_importing_the_campaign(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An xdist controller runs no scenario: it says why a tier cannot run before any worker
    # starts, and leaves the engine, the runtime and libtmux to the workers.
    _scenario(pytester, "one", RECOVERING)
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            if not hasattr(config, "workerinput"):
                print("CONTROLLER", "pytest_orch_recovery.chaos.campaign" in sys.modules)
        """
    )
    result = pytester.runpytest_subprocess("--orch-chaos", "-p", "xdist", "-n", "1", "-s")
    assert result.ret == 0, result.stdout.str()
    assert "CONTROLLER False" in result.stdout.lines
    monkeypatch.setenv("PATH", str(pytester.path))  # no tmux, no git
    result = pytester.runpytest("--orch-chaos", "--orch-tier=tmux")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --orch-tier tmux: the tmux tier cannot run here: "
            "tmux is not on PATH; use --orch-tier sim"
        ]
    )


def test_scenarios_run_longest_first_so_xdist_workers_finish_together(
    pytester: pytest.Pytester,
) -> None:
    _scenario(pytester, "a-one", RECOVERING)
    _scenario(
        pytester,
        "b-four",
        "".join(
            f'[[tasks]]\nid = "t{i}"\ntitle = "Task {i}"\ndeliverables = ["f{i}.md"]\n\n'
            for i in (1, 2, 3, 4)
        ),
    )
    _scenario(pytester, "c-one", RECOVERING)
    # One agent, but a hang waited out for its 5 s stall window: longer than four agents.
    _scenario(
        pytester,
        "d-hang",
        'stall_window = 5\n\n[[tasks]]\nid = "h"\ntitle = "Hang"\n'
        'deliverables = ["h.md"]\n\n[[faults]]\nkind = "stall"\ntask = "h"\n',
    )
    result = pytester.runpytest("--orch-chaos", "--collect-only", "-q")
    lines = [line for line in result.stdout.lines if "::" in line]
    # The hang first, then the four agents; ties keep their file order.
    assert lines == [
        "scenarios/d-hang.toml::d-hang",
        "scenarios/b-four.toml::b-four",
        "scenarios/a-one.toml::a-one",
        "scenarios/c-one.toml::c-one",
    ]
    # Listing is not a campaign: no gate verdict, no report written.
    assert result.ret == 0
    assert "orch-chaos recovery gate" not in result.stdout.str()
    assert not (pytester.path / "orch-report.md").exists()
