from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from events import JournalBuilder, first_try_success, random_journal, seed_incident, sigint_resumed
from hypothesis import given, settings

from pytest_orch_recovery.cli import main as cli
from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import Reason, Strategy
from pytest_orch_recovery.infra.agents import AgentConfig, driver_for
from pytest_orch_recovery.report.dashboard import (
    MAX_REPORT_BYTES,
    REASON_ROWS,
    attempts_markdown,
    render_json,
    render_markdown,
    write_report,
)
from pytest_orch_recovery.report.metrics import Criteria, compute, evaluate
from pytest_orch_recovery.runtime.dispatch import Dispatcher, read_results
from pytest_orch_recovery.store.attempt_results import AttemptResult

SEED_ROW_LABELS = [
    "SIGINT (Ctrl-C)",
    "Timeout",
    "Claude API Error",
    "Git/GitHub Error",
    "Permission Error",
    "Unknown",
    "Test Failure",
    "Killed",
    "Incomplete",
]


def _seed_markdown() -> str:
    m = compute(seed_incident().events)
    return render_markdown(m, evaluate(m))


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = text.index(heading + "\n") + len(heading) + 1
    pattern = re.compile("^#{1," + str(len(level)) + "} ", re.MULTILINE)
    found = pattern.search(text, start)
    return text[start : found.start() if found else len(text)]


def _table(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


# --------------------------------------------------------------------------- Markdown


def test_markdown_headings_in_the_seeds_order() -> None:
    headings = [line for line in _seed_markdown().splitlines() if line.startswith("#")]
    assert headings == [
        "# Orchestration Recovery System - Metrics",
        "## Recovery Metrics Dashboard",
        "### Overall Statistics",
        "### Recovery Reasons",
        "## Recent Recovery Events",
        "### 2025-07-23 - task-agent-5030 (SIGINT) ✅ RECOVERED",
        "### 2025-07-23 - Systematic Permission Failures",
        "## Success Criteria",
    ]


def test_overall_statistics_match_the_seed() -> None:
    overall = _section(_seed_markdown(), "### Overall Statistics")
    for line in [
        "- **Total Agent Tasks**: 5",
        "- **Successful First Try**: 1 (20%) - update-fake3-agent",
        "- **Required Recovery**: 4 (80%) - 3 permission issues, 1 SIGINT",
        "- **Average Recovery Time**: 5 minutes",
    ]:
        assert line in overall.splitlines()


def test_reasons_table_has_every_row_in_the_seeds_order() -> None:
    rows = _table(_section(_seed_markdown(), "### Recovery Reasons"))
    assert [r[0] for r in rows] == SEED_ROW_LABELS == [label for label, _ in REASON_ROWS]
    assert rows[0] == ["SIGINT (Ctrl-C)", "1", "25%", "task-agent-5030"]
    assert rows[4] == ["Permission Error", "3", "75%", "task-agent-1813, 3403, 3532"]
    assert all(r[1:] == ["0", "0%", "-"] for i, r in enumerate(rows) if i not in (0, 4))


def test_recent_event_bullets() -> None:
    event = _section(_seed_markdown(), "### 2025-07-23 - task-agent-5030 (SIGINT) ✅ RECOVERED")
    labels = re.findall(r"^- \*\*(.+?)\*\*: ", event, re.MULTILINE)
    assert labels == [
        "Task",
        "Exit Code",
        "Partial Work",
        "Missing Work",
        "Recovery Strategy",
        "Recovery Time",
        "Result",
        "Root Cause Theory",
        "Lesson Learned",
    ]
    assert "- **Exit Code**: 130 (SIGINT/Ctrl-C)" in event
    assert "- **Recovery Strategy**: RESUME" in event
    assert "- **Result**: PR #886 created successfully" in event
    systematic = _section(_seed_markdown(), "### 2025-07-23 - Systematic Permission Failures")
    assert "- **Affected Agents**: task-agent-1813, 3403, 3532" in systematic
    assert "- **Fix Applied**: Updated task_dispatcher.py line 639 to include flag" in systematic


def test_success_criteria_table() -> None:
    section = _section(_seed_markdown(), "## Success Criteria")
    rows = _table(section)
    assert [r[0] for r in rows] == [
        "recovery_rate",
        "first_try_simple",
        "first_try_complex",
        "orphaned_workspaces",
        "unattributed_failures",
    ]
    assert rows[0] == ["recovery_rate", "> 0.900", "1.000", "4/4", "0.510", "PASS"]
    assert rows[1][-1] == "FAIL" and rows[2][-1] == "INSUFFICIENT SAMPLES"
    assert "- **Recovery Time**: p50 5 minutes, p95 5.8 minutes (over 4 recoveries)" in section
    assert "- **Systematic Causes**: 1 (Missing --dangerously-skip-permissions" in section


def test_escalated_events_and_hostile_text() -> None:
    j = JournalBuilder()
    j.task("e", "agent|x\n## injected").launch().fail_with(
        Reason.GITHUB_ERROR, detail="gh: a | b\nnext line"
    ).decide(Strategy.ESCALATE).escalate()
    f = j.task("f", "agent-2").launch().fail_with(Reason.TIMEOUT).decide(Strategy.RESTART)
    f.launch(Strategy.RESTART).fail_with(Reason.TIMEOUT).decide(Strategy.ESCALATE).escalate()
    m = compute(j.events)
    text = render_markdown(m, evaluate(m))
    assert "(GITHUB ERROR) ❌ ESCALATED" in text
    assert "(TIMEOUT) ❌ ESCALATED" in text
    assert "- **Recovery Strategy**: RESTART → ESCALATE" in text
    assert "## injected" not in text.splitlines()  # journal text never becomes a heading
    git_row = next(r for r in _table(_section(text, "### Recovery Reasons")) if "Git" in r[0])
    assert git_row[:3] == ["Git/GitHub Error", "1", "33.3%"]


def test_recent_events_are_capped_and_the_omission_is_said() -> None:
    j = JournalBuilder()
    for n in range(30):
        sigint_resumed(j, f"t{n}", f"agent-{n}")
    m = compute(j.events)
    text = render_markdown(m, evaluate(m), max_events=5)
    assert text.count("✅ RECOVERED") == 5
    assert "_25 older recovery events and 0 systematic causes omitted" in text
    assert "### " + m.recent[0].date + " - agent-29 (SIGINT)" in text  # newest first


def test_huge_journal_text_stays_under_one_mebibyte() -> None:
    j = JournalBuilder()
    big = "x" * 200_000
    for n in range(60):
        j.task(f"t{n}", f"agent-{n}-{big}", title=big).launch().fail_with(
            Reason.UNKNOWN, detail=big
        ).decide(Strategy.ESCALATE, lesson=big, systematic_cause=f"{n}{big}").escalate()
    m = compute(j.events)
    text = render_markdown(m, evaluate(m), max_events=1000)
    assert len(text.encode()) < MAX_REPORT_BYTES
    assert "…" in text


@settings(max_examples=60, deadline=None)
@given(random_journal())
def test_every_journal_renders_complete_tables(events: list[Event]) -> None:
    m = compute(events)
    text = render_markdown(m, evaluate(m))
    rows = _table(_section(text, "### Recovery Reasons"))
    assert [r[0] for r in rows] == SEED_ROW_LABELS
    assert sum(int(r[1]) for r in rows) == m.failures
    assert len(_table(_section(text, "## Success Criteria"))) == 5


# --------------------------------------------------------------------------- JSON and files


def test_render_json_carries_schema_version_and_everything() -> None:
    m = compute(seed_incident().events)
    data = render_json(m, evaluate(m))
    assert data["schema_version"] == 2
    assert data["metrics"]["total_tasks"] == 5
    assert data["failed_criteria"] == ["first_try_simple"]
    assert data["criteria"][0]["line"].startswith("PASS recovery_rate: observed 1.000 (4/4)")
    assert json.loads(json.dumps(data)) == data


def test_write_report_chooses_format_by_suffix(tmp_path: Path) -> None:
    m = compute(seed_incident().events)
    results = evaluate(m)
    write_report(tmp_path / "out" / "dash.md", m, results)
    write_report(tmp_path / "dash.json", m, results)
    assert (tmp_path / "out" / "dash.md").read_text().startswith("# Orchestration Recovery")
    assert json.loads((tmp_path / "dash.json").read_text())["schema_version"] == 2
    with pytest.raises(ValueError, match=r"dash\.txt: report file name must end in \.md"):
        write_report(tmp_path / "dash.txt", m, results)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["dash.json", "dash.md", "out"]


# --------------------------------------------------------------------------- CLI


def _journal(tmp_path: Path, builder: JournalBuilder, name: str = "journal.jsonl") -> Path:
    return builder.write_jsonl(tmp_path / name)


def test_cli_console_script_prints_markdown(tmp_path: Path) -> None:
    exe = shutil.which("orch-recovery")
    command = [exe] if exe else [sys.executable, "-m", "pytest_orch_recovery"]
    path = _journal(tmp_path, seed_incident())
    done = subprocess.run(
        [*command, "report", "--journal", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Orchestration Recovery System - Metrics\n")
    assert "| Permission Error | 3 | 75% | task-agent-1813, 3403, 3532 |" in done.stdout


def test_cli_combines_journals_and_writes_json(tmp_path: Path) -> None:
    a, b = JournalBuilder(), JournalBuilder()
    first_try_success(a, "a1", "agent-a")
    sigint_resumed(b, "b1", "agent-b")
    out = tmp_path / "report.json"
    code = cli.main(
        [
            "report",
            "--journal",
            str(_journal(tmp_path, a, "a.jsonl")),
            "--journal",
            str(_journal(tmp_path, b, "b.jsonl")),
            "--output",
            str(out),
            "--min-first-try-simple",
            "40%",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["metrics"]["total_tasks"] == 2
    simple = next(c for c in data["criteria"] if c["name"] == "first_try_simple")
    assert (simple["threshold"], simple["verdict"]) == (0.4, "pass")


def test_cli_thresholds_change_the_verdict_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _journal(tmp_path, seed_incident())
    assert cli.main(["report", "--journal", str(path), "--gate", "lower-bound"]) == 0
    gated = _table(_section(capsys.readouterr().out, "## Success Criteria"))
    assert gated[0][-1] == "FAIL"  # 4/4 has a lower bound of 0.510
    args = ["report", "--journal", str(path), "--min-samples", "6", "--format", "md"]
    assert cli.main(args) == 0
    sparse = _table(_section(capsys.readouterr().out, "## Success Criteria"))
    assert sparse[0][-1] == "INSUFFICIENT SAMPLES"


def test_cli_usage_errors_name_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.jsonl"
    assert cli.main(["report", "--journal", str(missing)]) == 2
    assert f"{missing}: no such journal file" in capsys.readouterr().err

    bad_json = _journal(tmp_path, seed_incident(), "bad.jsonl")
    lines = bad_json.read_text().splitlines(keepends=True)
    lines[2] = "{not json\n"
    bad_json.write_text("".join(lines))
    assert cli.main(["report", "--journal", str(bad_json)]) == 2
    assert f"{bad_json}:3: invalid JSON" in capsys.readouterr().err

    bad_field = tmp_path / "field.jsonl"
    events = [e.to_json() for e in seed_incident().events]
    at = next(i for i, e in enumerate(events) if e["kind"] == "failure_attributed")
    events[at]["data"]["attribution"]["reason"] = "gremlins"
    bad_field.write_text("".join(json.dumps(e) + "\n" for e in events))
    assert cli.main(["report", "--journal", str(bad_field)]) == 2
    err = capsys.readouterr().err
    assert (
        f"{bad_field}:{at + 1}: failure_attributed event: 'gremlins' is not a valid Reason" in err
    )

    twice = _journal(tmp_path, seed_incident(), "twice.jsonl")
    assert cli.main(["report", "--journal", str(twice), "--journal", str(twice)]) == 2
    assert "already submitted" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--min-recovery-rate", "1.5"), ("--max-orphans", "-1")])
def test_cli_bad_option_values_exit_2(tmp_path: Path, option: str, value: str) -> None:
    path = _journal(tmp_path, seed_incident())
    with pytest.raises(SystemExit) as stop:
        cli.main(["report", "--journal", str(path), option, value])
    assert stop.value.code == 2


def test_cli_default_criteria_match_the_library() -> None:
    from pytest_orch_recovery.cli.report import build_parser

    args = build_parser("orch-recovery report").parse_args(["--journal", "x"])
    assert (
        Criteria(
            args.min_recovery_rate,
            args.min_first_try_simple,
            args.min_first_try_complex,
            args.max_orphans,
            args.max_unattributed,
            args.gate,
            args.min_samples,
        )
        == Criteria()
    )


# --------------------------------------------------------------------------- --results


def _results_dir(tmp_path: Path, builder: JournalBuilder) -> Path:
    """The results dir the real dispatcher writes while the coordinator journals ``builder``'s
    events (its ``on_event`` observer), in a real sandbox torn down afterwards."""
    out = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}"
    with Sandbox.create(base_dir=tmp_path / "sandboxes") as box:
        dispatcher = Dispatcher(box, lambda c: driver_for("sim", c), AgentConfig())
        for event in builder.events:
            dispatcher.observe(event)
        shutil.copytree(box.results, out)
    return out


def _attempt_rows(markdown: str) -> list[list[str]]:
    return _table(_section(markdown, "## Attempts"))


def test_attempts_table_follows_the_dashboard(tmp_path: Path) -> None:
    journal = seed_incident()
    results = _results_dir(tmp_path, journal)
    attempts = [AttemptResult.from_json(r) for r in read_results(results)]
    m = compute(journal.events)
    text = render_markdown(m, evaluate(m), attempts=attempts)
    assert text.index("## Success Criteria") < text.index("## Attempts")
    assert (
        text
        == render_markdown(m, evaluate(m)).rstrip("\n")
        + "\n\n"
        + "\n".join(attempts_markdown(attempts)).rstrip("\n")
        + "\n"
    )
    rows = _attempt_rows(text)
    # 5 tasks; 4 of them failed once first: 9 judged attempts, in the order they were judged.
    assert len(rows) == 9 == len(list(results.glob("*_results.json")))
    assert rows[0] == ["update-fake3-agent", "update-fake3", "1", "success", "0", "-", "1 minute"]
    assert ["task-agent-1813", "perm-0", "1", "failed", "0", "permission", "30 seconds"] in rows
    assert rows[-2] == [
        "task-agent-5030",
        "fake3",
        "1",
        "failed",
        "130 (SIGINT)",
        "sigint",
        "4 minutes",
    ]
    assert rows[-1][:5] == ["task-agent-5030", "fake3", "2", "success", "0"]


def test_attempts_table_escapes_caps_and_says_when_empty() -> None:
    hostile = AttemptResult.from_json(
        {
            "agent": "a|b\nc",
            "attempt": 1,
            "status": "failed",
            "task_id": "t|1",
            "reason": "unknown",
            "signal": 9,
        }
    )
    rows = attempts_markdown([hostile] * 3, max_rows=2)
    assert rows[4] == "| a\\|b c | t\\|1 | 1 | failed | - (SIGKILL) | unknown | n/a |"
    assert rows[-2] == "*1 more attempt(s) omitted.*"
    assert attempts_markdown([]) == ["## Attempts", "", "No attempt results found.", ""]


@pytest.mark.parametrize(
    "data, message",
    [
        ([], "expected a JSON object, got list"),
        ({"agent": "a", "status": "failed"}, "field attempt: expected a positive integer"),
        ({"agent": "a", "attempt": True, "status": "failed"}, "field attempt"),
        ({"agent": "", "attempt": 1, "status": "failed"}, "field agent"),
        ({"agent": "a", "attempt": 1, "status": "failed", "exit_code": "1"}, "field exit_code"),
        ({"agent": "a", "attempt": 1, "status": "x", "duration": float("nan")}, "field duration"),
        ({"agent": "a", "attempt": 1, "status": "x", "signal": "SIGNOPE"}, "field signal"),
        ({"schema_version": 2, "agent": "a", "attempt": 1, "status": "x"}, "schema_version"),
    ],
)
def test_attempt_result_names_the_bad_field(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AttemptResult.from_json(data)


def test_cli_console_script_reads_results_alongside_the_journal(tmp_path: Path) -> None:
    exe = shutil.which("orch-recovery")
    command = [exe] if exe else [sys.executable, "-m", "pytest_orch_recovery"]
    journal = seed_incident()
    path = _journal(tmp_path, journal)
    results = _results_dir(tmp_path, journal)
    done = subprocess.run(
        [*command, "report", "--journal", str(path), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Orchestration Recovery System - Metrics\n")
    assert len(_attempt_rows(done.stdout)) == 9
    out = tmp_path / "report.json"
    done = subprocess.run(
        [
            *command,
            "report",
            "--journal",
            str(path),
            "--results",
            str(results),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2
    assert data["attempts"] == [AttemptResult.from_json(r).to_json() for r in read_results(results)]
    assert data["attempts"][-2]["signal"] == "SIGINT"


def test_cli_results_is_repeatable_and_optional(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = JournalBuilder(), JournalBuilder()
    first_try_success(a, "a1", "agent-a")
    sigint_resumed(b, "b1", "agent-b")
    journals = [
        "--journal",
        str(_journal(tmp_path, a, "a.jsonl")),
        "--journal",
        str(_journal(tmp_path, b, "b.jsonl")),
    ]
    dirs = [
        "--results",
        str(_results_dir(tmp_path, a)),
        "--results",
        str(_results_dir(tmp_path, b)),
    ]
    assert cli.main(["report", *journals, *dirs]) == 0
    rows = _attempt_rows(capsys.readouterr().out)
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("agent-a", "1", "success"),
        ("agent-b", "1", "failed"),
        ("agent-b", "2", "success"),
    ]
    assert cli.main(["report", *journals, "--format", "json"]) == 0
    assert "attempts" not in json.loads(capsys.readouterr().out)
    assert cli.main(["report", *journals]) == 0
    assert "## Attempts" not in capsys.readouterr().out


def test_cli_results_usage_errors_name_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = ["--journal", str(_journal(tmp_path, seed_incident()))]
    missing = tmp_path / "nowhere"
    assert cli.main(["report", *journal, "--results", str(missing)]) == 2
    assert f"{missing}: no such results directory" in capsys.readouterr().err

    results = _results_dir(tmp_path, seed_incident())
    bad = results / "task-agent-5030.1_results.json"
    bad.write_text('{"agent": "task-agent-5030",\n "attempt": 1,,\n}')
    assert cli.main(["report", *journal, "--results", str(results)]) == 2
    assert f"{bad}:2: invalid JSON: " in capsys.readouterr().err

    bad.write_text(json.dumps({"agent": "task-agent-5030", "attempt": 0, "status": "failed"}))
    assert cli.main(["report", *journal, "--results", str(results)]) == 2
    assert f"{bad}: field attempt: expected a positive integer, got 0" in capsys.readouterr().err

    a_file = tmp_path / "journal.jsonl"
    assert cli.main(["report", *journal, "--results", str(a_file)]) == 2
    assert f"{a_file}: not a results directory" in capsys.readouterr().err
    # One source stays required: --journal (or a fleet store's --store).
    assert cli.main(["report", "--results", str(results)]) == 2
    assert "one of the arguments --journal or --store is required" in capsys.readouterr().err
