"""The classifier's rules, its invariants, and the ``orch-recovery classify`` CLI end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.cli import main as cli
from pytest_orch_recovery.engine.classify import (
    EXIT_ONLY_CONFIDENCE_CAP,
    LogText,
    Observation,
    classify,
    looks_successful,
)
from pytest_orch_recovery.engine.matcher import read_lines
from pytest_orch_recovery.engine.model import Attribution, ExitInfo, Reason

OVERLOADED_RETRY = (
    '  ⎿  API Error (529 {"type":"error","error":{"type":"overloaded_error",'
    '"message":"Overloaded"}}) · Retrying in 4 seconds… (attempt 4/10)'
)
OVERLOADED_FINAL = 'API Error: 529 {"type":"error","error":{"type":"overloaded_error"}}'


def _result(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Done.",
        "session_id": "0b5a0c8e-6f1e-4c5e-9d43-9a1b2c3d4e5f",
        "permission_denials": [],
    }
    base.update(fields)
    return base


def _denial(path: str) -> dict[str, Any]:
    return {
        "tool_name": "Write",
        "tool_use_id": "toolu_01",
        "tool_input": {"file_path": path, "content": "x"},
    }


def _log(text: str, source: str = "pane") -> tuple[LogText, ...]:
    return (LogText(source, text),)


# --------------------------------------------------------------------------- exit rules


def test_exit_zero_is_not_success_when_deliverables_are_missing() -> None:
    att = classify(Observation(exit=ExitInfo(0), deliverables_missing=("fake3.py",)))
    assert att.reason is Reason.INCOMPLETE
    assert any(e.kind == "deliverables" for e in att.evidence)


@pytest.mark.parametrize(
    "exit_info",
    [
        ExitInfo.from_shell_status(130),
        ExitInfo.from_returncode(-2),
        ExitInfo.from_tmux(None, 2),
    ],
    ids=["130", "-2", "pane_dead_signal"],
)
def test_interrupt_exits_are_sigint(exit_info: ExitInfo) -> None:
    att = classify(Observation(exit=exit_info, deliverables_missing=("fake3.py",)))
    assert att.reason is Reason.SIGINT


def test_exit_zero_empty_output_after_delivered_sigint_is_sigint() -> None:
    obs = Observation(
        exit=ExitInfo(0),
        logs=_log(""),
        deliverables_missing=("fake3.py", "fake3_runner.py"),
        deliverables_present=("fake3.md",),
        signals_delivered=(2,),
    )
    att = classify(obs)
    assert att.reason is Reason.SIGINT
    assert att.confidence > 0.8
    assert any("no output" in e.detail for e in att.evidence)


def test_supervisor_timeout_beats_the_kill_it_sent() -> None:
    obs = Observation(exit=ExitInfo.from_returncode(-9), timed_out=True, signals_delivered=(15, 9))
    att = classify(obs)
    assert att.reason is Reason.TIMEOUT
    assert all(e.reason is not Reason.KILLED for e in att.evidence)


def test_exit_124_is_timeout() -> None:
    assert classify(Observation(exit=ExitInfo.from_shell_status(124))).reason is Reason.TIMEOUT


@pytest.mark.parametrize(
    "exit_info",
    [
        ExitInfo.from_shell_status(137),
        ExitInfo.from_shell_status(143),
        ExitInfo.from_returncode(-9),
    ],
)
def test_kill_without_timeout_is_killed(exit_info: ExitInfo) -> None:
    assert classify(Observation(exit=exit_info)).reason is Reason.KILLED


def test_oom_text_without_signal_info_is_killed() -> None:
    log = "Out of memory: Killed process 4242 (node) total-vm:10240000kB, anon-rss:8000000kB\n"
    att = classify(Observation(exit=ExitInfo(1), logs=_log(log, "dmesg")))
    assert att.reason is Reason.KILLED
    top = att.evidence[0]
    assert (top.source, top.line) == ("dmesg", 1)


# --------------------------------------------------------------------------- result JSON rules


def test_permission_denials_with_missing_deliverables_is_permission_even_with_exit_0() -> None:
    obs = Observation(
        exit=ExitInfo(0),
        result=_result(permission_denials=[_denial("/ws/fake3.py")]),
        deliverables_missing=("fake3.py",),
    )
    att = classify(obs)
    assert att.reason is Reason.PERMISSION
    assert any("fake3.py" in e.detail and e.kind == "result" for e in att.evidence)


def test_is_error_with_api_error_text_is_api_error_with_status() -> None:
    obs = Observation(
        exit=ExitInfo(1),
        result=_result(is_error=True, result="API Error: 529 Overloaded. Try again."),
    )
    att = classify(obs)
    assert (att.reason, att.api_status) == (Reason.API_ERROR, 529)


def test_api_error_status_field_even_when_subtype_claims_success() -> None:
    # anthropics/claude-code#79500: subtype "success", is_error true, terminal_reason api_error
    obs = Observation(
        exit=ExitInfo(0),
        result=_result(is_error=True, terminal_reason="api_error", api_error_status=403),
        deliverables_missing=("a.py",),
    )
    att = classify(obs)
    assert (att.reason, att.api_status) == (Reason.API_ERROR, 403)


def test_error_max_turns_is_incomplete() -> None:
    obs = Observation(exit=ExitInfo(0), result=_result(subtype="error_max_turns", is_error=True))
    assert classify(obs).reason is Reason.INCOMPLETE


def test_root_refusal_of_skip_permissions_is_permission() -> None:
    text = (
        "--dangerously-skip-permissions cannot be used with root/sudo privileges "
        "for security reasons\n"
    )
    att = classify(Observation(exit=ExitInfo(1), logs=_log(text, "stderr")))
    assert att.reason is Reason.PERMISSION
    assert att.confidence > EXIT_ONLY_CONFIDENCE_CAP


# --------------------------------------------------------------------------- logs


def test_retried_529_followed_by_success_is_not_the_cause() -> None:
    obs = Observation(
        exit=ExitInfo(0),
        logs=_log(f"{OVERLOADED_RETRY}\nWrote fake3.md\n"),
        deliverables_present=("fake3.md",),
    )
    assert looks_successful(obs)
    att = classify(obs)
    assert att.reason is Reason.UNKNOWN and att.confidence == 0.0


def test_retried_529_then_missing_work_is_incomplete_not_api_error() -> None:
    obs = Observation(
        exit=ExitInfo(0),
        logs=_log(f"{OVERLOADED_RETRY}\nWrote fake3.md\n"),
        deliverables_present=("fake3.md",),
        deliverables_missing=("fake3.py",),
    )
    assert classify(obs).reason is Reason.INCOMPLETE


def test_the_error_that_stopped_the_run_wins_over_earlier_ones() -> None:
    log = "\n".join(
        [
            "fatal: Unable to create '/ws/.git/index.lock': File exists.",
            OVERLOADED_RETRY,
            "retry-after: 12",
            "[main 1a2b3c4] add fake3.md",
            "aborted: you must first push the current branch to a remote, or use the --head flag",
        ]
    )
    att = classify(Observation(exit=ExitInfo(1), logs=_log(log), deliverables_present=("a",)))
    assert att.reason is Reason.GITHUB_ERROR
    assert att.evidence[0].line == 5
    git = [e for e in att.evidence if e.reason is Reason.GIT_ERROR]
    assert git and git[0].weight < att.evidence[0].weight
    assert att.retry_after is None  # only reported for API errors


def test_final_api_error_after_retries_reports_status_and_retry_after() -> None:
    log = f"{OVERLOADED_RETRY}\nretry-after: 30\n{OVERLOADED_FINAL}\n"
    att = classify(Observation(exit=ExitInfo(1), logs=_log(log)))
    assert (att.reason, att.api_status, att.retry_after) == (Reason.API_ERROR, 529, 30.0)


def test_many_retry_lines_do_not_outvote_one_fatal_line() -> None:
    log = "\n".join([OVERLOADED_RETRY] * 50 + ["fatal: not a git repository"])
    att = classify(Observation(exit=ExitInfo(128), logs=_log(log)))
    assert att.reason is Reason.GIT_ERROR
    api = [e for e in att.evidence if e.reason is Reason.API_ERROR]
    assert len(api) == 1 and "+49 more" in api[0].detail


def test_interrupt_during_api_retry_is_sigint() -> None:
    log = f"{OVERLOADED_RETRY}\n  ⎿  API Error: Operation aborted\n  ⎿  Interrupted by user\n"
    assert classify(Observation(exit=ExitInfo(0), logs=_log(log))).reason is Reason.SIGINT


def test_pytest_failure_summary_in_log_is_test_failure() -> None:
    log = "FAILED tests/test_fake3.py::test_runs - assert 1 == 2\n"
    log += "=== 1 failed, 4 passed in 0.31s ===\n"
    att = classify(Observation(exit=ExitInfo(1), logs=_log(log), deliverables_present=("f.py",)))
    assert att.reason is Reason.TEST_FAILURE


# --------------------------------------------------------------------------- deliverables


def test_tests_failing_with_all_deliverables_present_is_test_failure() -> None:
    obs = Observation(exit=ExitInfo(0), deliverables_present=("a.py", "b.py"), tests_passed=False)
    att = classify(obs)
    assert att.reason is Reason.TEST_FAILURE
    assert not looks_successful(obs)


def test_success_looks_successful_and_needs_evidence_of_work() -> None:
    done = Observation(exit=ExitInfo(0), result=_result(), tests_passed=True)
    assert looks_successful(done)
    assert not looks_successful(Observation(exit=ExitInfo(0)))
    assert not looks_successful(Observation(exit=ExitInfo(1), deliverables_present=("a",)))
    gh_failed = Observation(
        exit=ExitInfo(0),
        deliverables_present=("a",),
        logs=_log("error connecting to api.github.com"),
    )
    assert not looks_successful(gh_failed)
    assert classify(gh_failed).reason is Reason.GITHUB_ERROR


def test_nothing_observed_is_unknown_with_zero_confidence() -> None:
    att = classify(Observation())
    assert att.reason is Reason.UNKNOWN and att.confidence == 0.0
    assert att.evidence


# --------------------------------------------------------------------------- properties

_signals = st.sampled_from([1, 2, 9, 11, 13, 15])
_exits = st.one_of(
    st.none(),
    st.integers(min_value=-64, max_value=255).map(
        lambda n: ExitInfo.from_returncode(n) if n < 0 else ExitInfo.from_shell_status(n)
    ),
    st.builds(ExitInfo.from_tmux, st.none(), _signals),
)
_lines = st.sampled_from(
    [
        OVERLOADED_RETRY,
        OVERLOADED_FINAL,
        "fatal: not a git repository",
        "Killed",
        "=== 2 failed, 1 passed in 0.50s ===",
        "error connecting to api.github.com",
        "Do you want to create fake3.py?",
        "retry-after: 5",
        "ok",
        "",
    ]
)
_results = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"type": st.just("result")},
        optional={
            "subtype": st.sampled_from(["success", "error_max_turns", "error_during_execution"]),
            "is_error": st.booleans(),
            "result": st.text(max_size=80) | _lines,
            "permission_denials": st.lists(st.builds(_denial, st.sampled_from(["/w/a", "b"]))),
            "api_error_status": st.sampled_from([429, 500, 529]),
            "terminal_reason": st.just("api_error"),
        },
    ),
)
_observations = st.builds(
    Observation,
    exit=_exits,
    result=_results,
    logs=st.lists(
        st.builds(LogText, st.sampled_from(["pane", "stderr"]), st.lists(_lines).map("\n".join)),
        max_size=3,
    ).map(tuple),
    deliverables_present=st.lists(st.sampled_from(["a", "b"]), unique=True).map(tuple),
    deliverables_missing=st.lists(st.sampled_from(["c", "d"]), unique=True).map(tuple),
    timed_out=st.booleans(),
    signals_delivered=st.lists(_signals, max_size=3).map(tuple),
    tests_passed=st.sampled_from([None, True, False]),
)


@given(_observations)
def test_confidence_is_in_unit_interval_and_evidence_is_well_formed(obs: Observation) -> None:
    att = classify(obs)
    assert 0.0 <= att.confidence <= 1.0
    assert all(0.0 <= e.weight <= 1.0 for e in att.evidence)
    assert Attribution.from_json(json.loads(json.dumps(att.to_json()))).reason is att.reason


@given(_observations)
def test_classify_is_deterministic(obs: Observation) -> None:
    assert classify(obs) == classify(obs)


@given(st.text(max_size=3000), _exits)
def test_arbitrary_log_text_never_raises(text: str, exit_info: ExitInfo | None) -> None:
    att = classify(Observation(exit=exit_info, logs=_log(text)))
    assert att.reason in Reason


@given(_exits)
def test_exit_code_alone_never_exceeds_the_cap(exit_info: ExitInfo | None) -> None:
    assert classify(Observation(exit=exit_info)).confidence <= EXIT_ONLY_CONFIDENCE_CAP


@settings(max_examples=50)
@given(_observations)
def test_winner_has_evidence_unless_successful(obs: Observation) -> None:
    att = classify(obs)
    if att.confidence > 0:
        assert any(e.reason is att.reason and e.weight > 0 for e in att.evidence)


# --------------------------------------------------------------------------- CLI end to end


def _console() -> list[str]:
    exe = shutil.which("orch-recovery")
    return [exe] if exe else [sys.executable, "-m", "pytest_orch_recovery"]


def _run(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_console(), "classify", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_cli_permission_case_json_shape(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "fake3.md").write_text("# fake3\n")
    result = tmp_path / "result.json"
    result.write_text(json.dumps(_result(permission_denials=[_denial(str(ws / "fake3.py"))])))
    proc = _run(
        "--exit-code", "0", "--result", str(result), "--workspace", str(ws),
        "--deliverable", "fake3.md", "--deliverable", "fake3.py",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"reason", "confidence", "evidence", "retry_after", "api_status"} <= out.keys()
    assert out["reason"] == "permission"
    assert all({"kind", "reason", "weight", "detail"} <= e.keys() for e in out["evidence"])


def test_cli_reads_log_from_stdin_and_repeats_log(tmp_path: Path) -> None:
    other = tmp_path / "pane.txt"
    other.write_text("Wrote fake3.md\n")
    proc = _run("--exit-code", "1", "--log", str(other), "--log", "-", stdin=OVERLOADED_FINAL)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["reason"], out["api_status"]) == ("api_error", 529)
    assert out["evidence"][0]["source"] == "stdin"


def test_cli_sigint_forms_and_negative_exit() -> None:
    forms = (["--signal", "INT"], ["--signal", "SIGINT"], ["--signal", "2"], ["--exit-code", "-2"])
    for args in forms:
        out = json.loads(_run(*args).stdout)
        assert out["reason"] == "sigint", args


def test_cli_stream_json_result_and_empty_result(tmp_path: Path) -> None:
    stream = tmp_path / "stream.jsonl"
    events = [{"type": "system", "subtype": "init"}, _result(subtype="error_max_turns")]
    stream.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    assert json.loads(_run("--result", str(stream)).stdout)["reason"] == "incomplete"
    empty = tmp_path / "empty.json"
    empty.write_text("")
    out = json.loads(_run("--exit-code", "0", "--delivered", "INT", "--result", str(empty)).stdout)
    assert out["reason"] == "sigint"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--exit-code", "abc"], "--exit-code"),
        (["--signal", "NOPE"], "--signal"),
        (["--log", "does-not-exist.txt"], "does-not-exist.txt"),
        (["--deliverable", "a.py"], "--workspace"),
        (["--result", "bad.json"], "bad.json: line 2 column"),
        (["--result", "list.json"], "list.json"),
    ],
)
def test_cli_usage_errors_exit_2_naming_the_problem(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "bad.json").write_text('{"type": "result",\n  "subtype": }\n')
    (tmp_path / "list.json").write_text("[1, 2]\n")
    proc = _run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert needle in proc.stderr


def test_cli_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["classify", "--exit-code", "124", "--timed-out"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "timeout"


def test_cli_every_option_has_help() -> None:
    from pytest_orch_recovery.cli.classify import build_parser

    parser = build_parser("orch-recovery classify")
    for action in parser._actions:
        assert action.help, action.dest


def test_timeout_while_parked_at_a_permission_prompt_blames_the_prompt() -> None:
    obs = Observation(
        exit=ExitInfo.from_returncode(-15),
        timed_out=True,
        logs=(LogText("pane", "⏺ Write(fake3.md)\nDo you want to create fake3.md?\n"),),
        deliverables_missing=("fake3.md",),
    )
    attribution = classify(obs)
    assert attribution.reason is Reason.PERMISSION
    assert any("permission prompt" in e.detail for e in attribution.evidence)


def test_files_present_but_commit_and_pr_undone_is_not_success() -> None:
    obs = Observation(
        exit=ExitInfo.from_returncode(0),
        deliverables_present=("fake3.md",),
        work_missing=("git commit", "git push", "open the PR"),
    )
    assert not looks_successful(obs)
    attribution = classify(obs)
    assert attribution.reason is Reason.INCOMPLETE
    assert any("open the PR" in e.detail for e in attribution.evidence)


def test_sigint_delivered_with_all_files_present_is_still_sigint() -> None:
    obs = Observation(
        exit=ExitInfo.from_returncode(0),
        deliverables_present=("fake3.md",),
        signals_delivered=(2,),
        work_missing=("git commit",),
    )
    assert classify(obs).reason is Reason.SIGINT


def test_claude_codes_aborted_result_is_a_sigint_even_without_the_supervisors_word() -> None:
    # Claude Code 2.1.328 interrupted in a tool or hook (docs/claude-code.md): exit 0 and this.
    aborted = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "terminal_reason": "aborted_tools",
        "permission_denials": [],
        "errors": ["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"],
    }
    attribution = classify(
        Observation(
            exit=ExitInfo(0),
            result=aborted,
            deliverables_present=("fake3.md",),
            work_missing=("git commit",),
        )
    )
    assert attribution.reason is Reason.SIGINT
    assert not any(e.reason is Reason.UNKNOWN and e.weight > 0 for e in attribution.evidence)


# --------------------------------------------------------------------------- what the exit hides


def _details(attribution: Attribution) -> str:
    return "\n".join(e.detail for e in attribution.evidence)


def test_success_result_with_api_error_text_is_an_api_error_and_says_why() -> None:
    # anthropics/claude-code#79500: headless API errors come back as subtype success.
    obs = Observation(
        exit=ExitInfo(0),
        result=_result(result=OVERLOADED_FINAL),
        deliverables_missing=("fake3.md",),
    )
    att = classify(obs)
    assert att.reason is Reason.API_ERROR
    assert att.api_status == 529
    assert "result claims success (subtype success, is_error false)" in _details(att)
    assert "believed over the claim" in _details(att)


def test_success_subtype_with_is_error_and_prompt_too_long() -> None:
    # anthropics/claude-code#12312: subtype success, is_error true, result "Prompt is too long".
    obs = Observation(exit=ExitInfo(0), result=_result(is_error=True, result="Prompt is too long"))
    att = classify(obs)
    assert att.reason is Reason.API_ERROR
    assert "subtype success, is_error true" in _details(att)


def test_success_claim_without_error_text_adds_no_contradiction() -> None:
    obs = Observation(exit=ExitInfo(0), result=_result(), deliverables_present=("fake3.md",))
    assert looks_successful(obs)
    assert "claims success" not in _details(classify(obs))


def test_exit_zero_with_a_fatal_log_line_is_not_success() -> None:
    log = "• Working\n■ stream disconnected before completion: Rate limit is exceeded.\n"
    att = classify(Observation(exit=ExitInfo(0), logs=_log(log)))
    assert att.reason is Reason.API_ERROR
    assert "exit 0, yet the last fatal line of pane is codex_stream_disconnected" in _details(att)


def test_exit_zero_with_only_retried_errors_and_work_done_is_success() -> None:
    log = "The API provider has rate limited you. Try again later.\nRetrying in 0.2 seconds...\n"
    obs = Observation(exit=ExitInfo(0), logs=_log(log), deliverables_present=("fake3.md",))
    assert looks_successful(obs)


@pytest.mark.parametrize(
    "line",
    [
        "timeout: sending signal TERM to command \u2018claude\u2019",
        "The job running on runner GitHub Actions 3 has exceeded the maximum execution time "
        "of 360 minutes.",
        "Error: Process completed with exit code 124.",
    ],
)
def test_timeout_masked_as_exit_1_is_a_timeout_with_the_masking_explained(line: str) -> None:
    att = classify(Observation(exit=ExitInfo.from_shell_status(1), logs=_log(f"working\n{line}\n")))
    assert att.reason is Reason.TIMEOUT
    detail = _details(att)
    assert "exit status 1 does not say timeout, but pane line 2 does" in detail
    assert "re-coded" in detail


def test_timeout_masked_as_exit_0_names_the_swallowed_124() -> None:
    line = "timeout: sending signal KILL to command \u2018codex\u2019"
    att = classify(Observation(exit=ExitInfo(0), logs=_log(line)))
    assert att.reason is Reason.TIMEOUT
    assert "swallowed the limit's 124" in _details(att)


def test_sigterm_exit_with_a_timeout_line_is_the_limits_signal() -> None:
    line = "timeout: sending signal TERM to command \u2018claude\u2019"
    att = classify(Observation(exit=ExitInfo.from_shell_status(143), logs=_log(line)))
    assert att.reason is Reason.TIMEOUT
    assert "the signal was the time limit's" in _details(att)


def test_exit_1_without_a_limit_line_is_not_called_a_timeout() -> None:
    att = classify(Observation(exit=ExitInfo.from_shell_status(1), logs=_log("Error: boom\n")))
    assert att.reason is not Reason.TIMEOUT
    assert "does not say timeout" not in _details(att)


def test_real_124_is_not_described_as_masked() -> None:
    line = "timeout: sending signal TERM to command \u2018claude\u2019"
    att = classify(Observation(exit=ExitInfo.from_shell_status(124), logs=_log(line)))
    assert att.reason is Reason.TIMEOUT
    assert "does not say timeout" not in _details(att)


@pytest.mark.parametrize(
    "text",
    [
        "[Request interrupted by user]",
        "■ Conversation interrupted - tell the model what to do differently. Something went "
        "wrong? Hit `/feedback` to report the issue.",
    ],
)
def test_interrupt_with_no_signal_is_sigint_typed_in_the_pane(text: str) -> None:
    att = classify(Observation(exit=ExitInfo(0), logs=_log(text), deliverables_missing=("a.md",)))
    assert att.reason is Reason.SIGINT
    assert "no SIGINT delivered or seen: a key typed in the pane" in _details(att)


def test_interrupt_in_a_success_result_is_sigint_not_success() -> None:
    obs = Observation(
        exit=ExitInfo(0),
        result=_result(result="[Request interrupted by user]"),
        deliverables_present=("a.md",),
    )
    assert not looks_successful(obs)
    att = classify(obs)
    assert att.reason is Reason.SIGINT
    assert "claims success" in _details(att)
    assert "interrupted per the agent" in _details(att)


def test_interrupt_with_a_delivered_sigint_has_no_no_signal_note() -> None:
    att = classify(
        Observation(
            exit=ExitInfo(0),
            logs=_log("[Request interrupted by user]"),
            signals_delivered=(2,),
        )
    )
    assert att.reason is Reason.SIGINT
    assert "no SIGINT delivered" not in _details(att)


def test_interrupt_text_after_the_supervisors_timeout_stays_a_timeout() -> None:
    att = classify(
        Observation(
            exit=ExitInfo.from_shell_status(130),
            logs=_log("[Request interrupted by user]"),
            timed_out=True,
            signals_delivered=(2,),
        )
    )
    assert att.reason is Reason.TIMEOUT


def test_cli_explains_a_timeout_masked_as_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "agent.log"
    log.write_text("working\nError: Process completed with exit code 124.\n", encoding="utf-8")
    assert cli.main(["classify", "--exit-code", "1", "--log", str(log)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reason"] == "timeout"
    assert any("does not say timeout" in e["detail"] for e in out["evidence"])


# Claude Code 2.1.328's result after a SIGINT while a tool ran (measured here): its
# subagent_stats count "killed" subagents, a field name that is not a message.
_ABORTED_RESULT: dict[str, Any] = {
    "type": "result",
    "subtype": "error_during_execution",
    "is_error": True,
    "stop_reason": "tool_use",
    "terminal_reason": "aborted_tools",
    "permission_denials": [],
    "subagent_stats": {
        "spawned": 0,
        "failed": 0,
        "killed": {"parent": 0, "user": 0, "system": 0},
        "refused": {"depth_limit": 0, "concurrency_limit": 0, "budget": 0},
    },
    "safety_stops": 0,
    "errors": ["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"],
}
# The same result as that CLI printed it, on one line, field order and all.
_ABORTED_LINE = (
    '{"duration_api_ms":402,"stop_reason":"tool_use","session_id":"60663fcd",'
    '"permission_denials":[],"terminal_reason":"aborted_tools","fast_mode_state":"off",'
    '"subagent_stats":{"spawned":0,"requested":{"background":0,"foreground":0,"unset":0},'
    '"started_in_background":0,"max_depth":0,"spawned_by_subagents":0,"completed":0,'
    '"failed":0,"killed":{"parent":0,"user":0,"system":0},"refused":{"depth_limit":0,'
    '"concurrency_limit":0,"budget":0},"by_type":{}},"safety_stops":0,"is_error":true,'
    '"num_turns":4,"subtype":"error_during_execution","errors":["[ede_diagnostic] '
    'result_type=user last_content_type=n/a stop_reason=tool_use"],"type":"result"}'
)

_CUE_WORDS = ("killed", "denied", "timeout", "timed_out", "rate_limit", "failed", "aborted")


@pytest.mark.parametrize(
    "text",
    [
        _ABORTED_LINE + "\n",
        "^C" + _ABORTED_LINE + "\n",  # the tty's echo of a typed Ctrl-C, on the same line
        json.dumps(_ABORTED_RESULT, indent=2) + "\n",
    ],
)
def test_a_result_jsons_field_names_are_not_read_as_its_message(text: str) -> None:
    assert [m.text for m in read_lines(text, "output").matches] == []
    att = classify(Observation(exit=ExitInfo(0), logs=_log(text, "output")))
    assert att.reason is Reason.SIGINT, att.evidence
    assert all(e.reason is Reason.SIGINT for e in att.evidence), att.evidence


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(_CUE_WORDS), st.integers(0, 3), min_size=1))
def test_extra_fields_named_like_causes_change_no_verdict(extra: dict[str, int]) -> None:
    plain = classify(
        Observation(exit=ExitInfo(0), logs=_log(json.dumps(_ABORTED_RESULT), "output"))
    )
    padded = json.dumps({**_ABORTED_RESULT, "stats": extra, **extra})
    att = classify(Observation(exit=ExitInfo(0), logs=_log(padded, "output")))
    assert (att.reason, att.confidence) == (plain.reason, plain.confidence)
