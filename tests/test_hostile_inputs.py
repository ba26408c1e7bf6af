"""Hostile and broken input (issue 10): each refused with one line at its boundary, nothing
written outside the sandbox, nothing run that should not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orch_recovery.chaos.scenario import ScenarioError, load_scenario, parse_scenario
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.infra.agents import TemplateDriver, driver_for
from pytest_orch_recovery.infra.command_template import TemplateError
from pytest_orch_recovery.store.validation import (
    MAX_DEPTH,
    DocumentError,
    RuleError,
    load_json_file,
    loads_json,
    read_bounded,
)

TASK = '[[tasks]]\nid = "t1"\ntitle = "Docs"\ndeliverables = ["a.md"]\n'


def _scenario(extra: str = "", *, task: str = TASK) -> str:
    return task + extra


# --------------------------------------------------------------------------- scenario files


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ('["a.md"]', '["/abs/path.md"]', "tasks[1].deliverables[1]", "must be relative"),
        ('["a.md"]', '["../../../../tmp/x.md"]', "tasks[1].deliverables[1]", "leaves its root"),
        ('["a.md"]', '["a\\u0000b.md"]', "tasks[1].deliverables[1]", "NUL"),
        ('["a.md"]', '["' + "n" * 300 + '.md"]', "tasks[1].deliverables[1]", "limit is 255"),
        ('["a.md"]', '[""]', "tasks[1].deliverables[1]", "empty"),
        ('["a.md"]', '["a.md", "./a.md"]', "tasks[1].deliverables[2]", "repeats"),
        ('id = "t1"', 'id = "$(touch pwned)"', "tasks[1].id", "must use letters"),
        ('id = "t1"', 'id = "' + "x" * 65 + '"', "tasks[1].id", "limit is 64"),
        ('title = "Docs"', 'title = "a\\u0000"', "tasks[1].title", "NUL"),
    ],
)
def test_task_values_are_refused_at_load(old: str, new: str, field: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(TASK.replace(old, new), source="x.toml")
    assert info.value.field == field and message in info.value.message, str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("fault", "field", "message"),
    [
        (
            'kind = "api_overloaded"\nparams = { count = "many" }',
            "faults[1].params.count",
            "must be an integer",
        ),
        (
            'kind = "api_overloaded"\nparams = { count = -1 }',
            "faults[1].params.count",
            "must be >= 1",
        ),
        (
            'kind = "api_rate_limit"\nparams = { retry_after = -5 }',
            "faults[1].params.retry_after",
            "must be >= 0",
        ),
        (
            'kind = "api_rate_limit"\nparams = { retry_after = nan }',
            "faults[1].params.retry_after",
            "finite",
        ),
        (
            'kind = "pr_create_fails"\nparams = { error = "bogus" }',
            "faults[1].params.error",
            "is not one of bad_credentials, unreachable",
        ),
        (
            'kind = "sigint"\nparams = { colour = "red" }',
            "faults[1].params.colour",
            "takes no parameter",
        ),
        ('kind = "sigint"\nafter_file = "../x.md"', "faults[1].after_file", "leaves its root"),
        (
            'kind = "sigint"\nafter_tool_call = 99999999999',
            "faults[1].after_tool_call",
            "must be <=",
        ),
    ],
)
def test_fault_values_are_refused_at_load(fault: str, field: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(_scenario("[[faults]]\n" + fault + "\n"), source="x.toml")
    assert info.value.field == field and message in info.value.message, str(info.value)


@pytest.mark.parametrize(
    ("top", "field", "message"),
    [
        ("attempt_timeout = inf\n", "attempt_timeout", "finite"),
        ("attempt_timeout = 1e308\n", "attempt_timeout", "<= 604800"),
        ("crash_after_event = -3\n", "crash_after_event", ">= 1"),
        ("crash_after_event = " + "9" * 5000 + "\n", "", "invalid TOML"),
    ],
)
def test_top_level_values_are_refused_at_load(top: str, field: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(top + TASK, source="x.toml")
    assert info.value.field == field and message in info.value.message, str(info.value)
    assert "\n" not in str(info.value)


def test_two_tasks_with_one_agent_are_refused() -> None:
    text = TASK + 'agent = "one"\n' + TASK.replace('"t1"', '"t2"') + 'agent = "one"\n'
    with pytest.raises(ScenarioError, match=r"x.toml:10: tasks\[2\].agent: agent 'one' "):
        parse_scenario(text, source="x.toml")
    # The coordinator's default name counts too.
    text = TASK + TASK.replace('"t1"', '"t2"') + 'agent = "task-agent-t1"\n'
    with pytest.raises(ScenarioError, match=r"already runs tasks\[1\]"):
        parse_scenario(text, source="x.toml")


def test_deep_toml_is_one_line() -> None:
    deep = "x = " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(ScenarioError) as info:
        parse_scenario(deep + TASK, source="x.toml")
    assert "nested deeper" in str(info.value) and "\n" not in str(info.value)


def test_special_files_are_not_read_as_scenarios(tmp_path: Path) -> None:
    fifo = tmp_path / "s.toml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(ScenarioError, match="not a regular file"):
            load_scenario(path)


def test_bad_scenario_file_ends_pytest_with_usage_status(pytester: pytest.Pytester) -> None:
    bad = pytester.makefile(".toml", bad=TASK.replace('"a.md"', '"/etc/x.md"'))
    result = pytester.runpytest_subprocess(
        "--orch-chaos", "--orch-tier=sim", str(bad), "--orch-report=r.md", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        ["*bad.toml:4: tasks[[]1[]].deliverables[[]1[]]: path '/etc/x.md' must be relative*"]
    )


# --------------------------------------------------------------------------- documents


def test_bounded_json() -> None:
    with pytest.raises(DocumentError, match="nested deeper"):
        loads_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DocumentError, match="nested deeper"):
        loads_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert loads_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    with pytest.raises(DocumentError, match="invalid JSON"):
        loads_json("1" * 5000)
    with pytest.raises(DocumentError, match="more than 30 digits"):
        loads_json("1" * 40)
    for constant in ("NaN", "Infinity", "-Infinity", '{"t": NaN}'):
        with pytest.raises(DocumentError):
            loads_json(constant)
    with pytest.raises(DocumentError, match="finite"):
        loads_json("1e999")


def test_bounded_reads_refuse_special_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading must not wait for a writer
    for path, kind in (
        (fifo, "a FIFO"),
        (Path("/dev/zero"), "a character device"),
        (tmp_path, "a directory"),
    ):
        with pytest.raises(RuleError, match=f"not a regular file [(]{kind}[)]"):
            read_bounded(path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 101)
    with pytest.raises(RuleError, match="is 101 bytes; the limit is 100"):
        load_json_file(big, 100)


# --------------------------------------------------------------------------- command templates


def _spec(task_id: str = "t1", *, title: str = "Docs", prompt: str = "do it") -> LaunchSpec:
    return LaunchSpec(
        task=Task(task_id, title, ("a.md",)),
        agent="task-agent-1",
        attempt=1,
        agent_type="claude-code",
        strategy=None,
        prompt=prompt,
        work=(),
        key="k1",
    )


def test_a_placeholder_inside_a_script_word_is_refused() -> None:
    template = "sh -c 'echo {task_id} > out'"
    with pytest.raises(TemplateError, match=r"read \"\$ORCH_TASK_ID\" from the environment"):
        driver_for(template)
    from pytest_orch_recovery.infra.argtypes import agent_command

    with pytest.raises(Exception, match="which a program would read as a script"):
        agent_command(template)
    for bad in (
        'sh -c "echo {prompt}"',
        "bash -c {prompt}",
        "{prompt} x",
        "x {task_id!r}",
        "x {nope}",
        "python -e {prompt}",
        "x '{agent} y'",
    ):
        with pytest.raises(TemplateError):
            driver_for(bad)


def test_hostile_values_never_run(tmp_path: Path) -> None:
    """A task id and a prompt full of shell syntax reach the agent as plain text."""
    hostile = '$(touch pwned)`touch pwned2`\'; touch pwned3 #"$(touch pwned4)"'
    template = 'sh -c \'printf %s "$ORCH_TASK_ID" > out; printf %s "$1" > arg\' sh {prompt}'
    driver = driver_for(template)
    assert isinstance(driver, TemplateDriver)
    argv = driver.argv(_spec(hostile, prompt=hostile), prompt_file=tmp_path / "p.md")
    subprocess.run(argv, cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "out").read_text() == hostile
    assert (tmp_path / "arg").read_text() == hostile
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arg", "out"]


def test_every_placeholder_the_validator_accepts_is_filled(tmp_path: Path) -> None:
    from pytest_orch_recovery.infra.argtypes import agent_command
    from pytest_orch_recovery.infra.placeholders import PLACEHOLDERS

    words = " ".join(f"--{name}={{{name}}}" for name in PLACEHOLDERS)
    template = agent_command(f"{sys.executable} -c 'import sys; print(sys.argv[1:])' {words}")
    argv = driver_for(template).argv(_spec(), prompt_file=tmp_path / "p.md", workdir=tmp_path)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    assert "{" not in out and f"--workdir={tmp_path}" in out and "--attempt=1" in out
    assert "--prompt=do it" in out and "--task_id=t1" in out and "--session=" in out


# --------------------------------------------------------------------------- journals, reports


def _journal(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "j.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


SUBMITTED = '{"seq":1,"kind":"task_submitted","time":0,"task_id":"t1"}'


def _report(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from pytest_orch_recovery.cli.main import main

    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"seq":2,"kind":"decision","time":NaN,"task_id":"t1"}', "NaN is not a JSON number"),
        ('{"seq":2,"kind":"decision","time":Infinity,"task_id":"t1"}', "Infinity"),
        ('{"seq":2,"kind":"decision","time":1e308,"task_id":"t1"}', "field 'time': must be"),
        ('{"seq":2,"kind":"decision","time":-1e15,"task_id":"t1"}', "field 'time': must be"),
        (
            '{"seq":2,"kind":"decision","time":1,"task_id":"t1","agent":["a"]}',
            "field 'agent': must be a string or null, not a list",
        ),
        (
            '{"seq":2,"kind":"task_succeeded","time":1,"task_id":"t1","data":{"recovery_time":'
            "1e308}}",
            "field 'recovery_time': must be",
        ),
        (
            '{"seq":2,"kind":"task_succeeded","time":1,"task_id":"t1","data":{"recovery_time":'
            "NaN}}",
            "NaN is not a JSON number",
        ),
        (
            '{"seq":2,"kind":"decision","time":1,"task_id":"t1","data":'
            + "[" * 5000
            + "]" * 5000
            + "}",
            "not a journal event",
        ),
        (
            '{"seq":2,"kind":"decision","time":' + "1" * 5000 + ',"task_id":"t1"}',
            "not a journal event",
        ),
    ],
)
def test_bad_journal_lines_are_one_line_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    path = _journal(tmp_path, SUBMITTED, line)
    code, out, err = _report(["--journal", str(path), "--format", "json"], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"orch-recovery report: error: {path}:2: ") and message in err, err
    assert err.count("\n") == 1


def test_success_of_a_task_never_submitted_is_no_first_try_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    path = _journal(tmp_path, '{"seq":1,"kind":"task_succeeded","time":1,"task_id":"ghost"}')
    code, out, _ = _report(["--journal", str(path), "--format", "json"], capsys)
    assert code == 0 and "NaN" not in out
    metrics = json.loads(out)["metrics"]
    assert metrics["first_try"] == 0 and metrics["unsettled"] == 1, out


def test_special_files_are_not_read_as_journals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_orch_recovery.store.journal import Journal, JournalError, replay

    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        with pytest.raises(JournalError, match="not a regular file"):
            replay(path)
    with pytest.raises(JournalError, match="not a regular file"):
        Journal(fifo)


@pytest.mark.parametrize("kind", ["device", "fifo", "link-to-device", "dangling-link"])
def test_report_output_never_replaces_a_special_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    journal = _journal(tmp_path, SUBMITTED)
    output = tmp_path / "out.md"
    if kind == "device":
        output = Path("/dev/null")
    elif kind == "fifo":
        os.mkfifo(output)
    elif kind == "link-to-device":
        output.symlink_to("/dev/null")
    else:
        output.symlink_to(tmp_path / "nowhere" / "x.md")
    before = os.lstat(output)
    code, _, err = _report(["--journal", str(journal), "--output", str(output)], capsys)
    assert code == 2 and err.count("\n") == 1 and str(output) in err, err
    after = os.lstat(output)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


@pytest.mark.parametrize("mode", [0o644, 0o444])
def test_report_output_never_replaces_a_file_through_a_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int
) -> None:
    journal = _journal(tmp_path, SUBMITTED)
    outside = tmp_path / "outside" / "victim.txt"
    outside.parent.mkdir()
    outside.write_text("precious")
    outside.chmod(mode)
    link = tmp_path / "link.md"
    link.symlink_to(outside)
    code, _, err = _report(["--journal", str(journal), "--output", str(link)], capsys)
    assert code == 2 and "symbolic link" in err and err.count("\n") == 1, err
    assert outside.read_text() == "precious" and outside.stat().st_mode & 0o777 == mode
    assert link.is_symlink()


def test_report_output_never_replaces_a_read_only_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = _journal(tmp_path, SUBMITTED)
    target = tmp_path / "r.md"
    target.write_text("old")
    target.chmod(0o444)
    code, _, err = _report(["--journal", str(journal), "--output", str(target)], capsys)
    assert code == 2 and "read-only" in err and target.read_text() == "old"


def test_report_output_creates_missing_directories_only_under_the_cwd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _journal(tmp_path, SUBMITTED)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, _, _ = _report(["--journal", str(journal), "--output", "a/b/r.md"], capsys)
    assert code == 0 and (work / "a" / "b" / "r.md").is_file()
    outside = tmp_path / "elsewhere" / "deep" / "r.md"
    code, _, err = _report(["--journal", str(journal), "--output", str(outside)], capsys)
    assert code == 2 and "does not exist" in err and not (tmp_path / "elsewhere").exists()


def test_orch_report_outside_the_cwd_is_a_usage_error(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    target = tmp_path / "nonexistent" / "dir" / "x.md"
    result = pytester.runpytest_subprocess(
        "--orch-chaos", "--orch-tier=sim", f"--orch-report={target}", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (tmp_path / "nonexistent").exists()
    # A device is never a report: /dev/null has no report suffix (and store.atomic's
    # output_target refuses devices and FIFOs whatever their name).
    result = pytester.runpytest_subprocess(
        "--orch-chaos", "--orch-tier=sim", "--orch-report=/dev/null", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


# --------------------------------------------------------------------------- checkpoints


def _hook(cwd: str) -> str:
    import json

    return json.dumps(
        {
            "hook_event_name": "PostToolUse",
            "cwd": cwd,
            "tool_name": "Write",
            "tool_input": {"file_path": f"{cwd}/a.md", "content": "x"},
            "tool_response": {"success": True},
        }
    )


def test_nul_in_hook_cwd_is_refused_and_reading_never_raises(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import json

    from pytest_orch_recovery.cli.main import main
    from pytest_orch_recovery.infra.checkpoint import read_checkpoint_safely

    monkeypatch.setattr(sys, "stdin", io.StringIO(_hook(f"{tmp_path}/w\x00x")))
    assert main(["checkpoint", "--from-hook", "--agent", "a1", "--dir", str(tmp_path)]) == 0
    assert "without NUL" in capsys.readouterr().err
    assert not (tmp_path / "a1.json").exists()
    # A file someone else wrote with a NUL in its workspace: a problem, not an exception.
    (tmp_path / "a1.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "agent": "a1",
                "task_id": "t",
                "attempt": 1,
                "completed_subtasks": [],
                "created_files": ["a.md"],
                "next_actions": [],
                "updated_at": "2026-01-01T00:00:00Z",
                "workspace": "/w\x00x",
            }
        )
    )
    cp, problem = read_checkpoint_safely(tmp_path, "a1", None)
    assert cp is None and problem is not None and "workspace" in problem
    for hostile in ("../x", "a\x00b", "x" * 300):
        assert read_checkpoint_safely(tmp_path, hostile, tmp_path)[0] is None
        assert read_checkpoint_safely(tmp_path / "no\x00dir", "a1", tmp_path)[0] is None


def test_checkpoint_agent_outside_the_alphabet_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_orch_recovery.cli.main import main

    code = main(["checkpoint", "--agent", "../x", "--task-id", "t", "--dir", str(tmp_path)])
    assert code == 2 and "must use letters" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_concurrent_hook_writers_lose_no_update(tmp_path: Path) -> None:
    import json

    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = []
    errors = tmp_path / "errors"
    errors.mkdir()
    for i in range(20):
        payload = json.dumps(
            {
                "hook_event_name": "PostToolUse",
                "cwd": str(work),
                "tool_name": "Write",
                "tool_input": {"file_path": f"{work}/f{i}.md", "content": "x"},
                "tool_response": {"success": True},
            }
        )
        with (errors / f"{i}.txt").open("wb") as stderr:  # the child keeps its own copy
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pytest_orch_recovery",
                    "checkpoint",
                    "--from-hook",
                    "--agent",
                    "a1",
                    "--task-id",
                    "t1",
                    "--dir",
                    str(tmp_path / "cp"),
                ],
                stdin=subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        procs.append((proc, payload))
    for proc, payload in procs:  # all started before any gets its input: maximal overlap
        proc.stdin.write(payload.encode())  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    for proc, _ in procs:
        assert proc.wait(timeout=300) == 0
    assert all(path.read_bytes() == b"" for path in errors.iterdir())
    data = json.loads((tmp_path / "cp" / "a1.json").read_text())
    assert sorted(data["created_files"]) == sorted(f"f{i}.md" for i in range(20))


# --------------------------------------------------------------------------- classify options


@pytest.mark.parametrize("value", ["256", "99999999999", "-65", "1" * 5000, "x"])
def test_classify_exit_code_out_of_range_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_orch_recovery.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["classify", f"--exit-code={value}"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid exit code" in err and len(err) < 2000


def test_classify_deliverable_outside_the_repository_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_orch_recovery.cli.main import main

    for value in ("../../etc/passwd", "/etc/passwd", "a\x00b"):
        with pytest.raises(SystemExit) as info:
            main(["classify", "--exit-code=0", "--deliverable", value])
        assert info.value.code == 2
    assert "leaves its root" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--log", "--result"])
def test_classify_refuses_special_files_before_reading(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_orch_recovery.cli.main import main

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        with pytest.raises(SystemExit) as info:
            main(["classify", "--exit-code=1", flag, path])
        assert info.value.code == 2
    assert "not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, '{"x": ' + "1" * 5000 + "}"])
def test_deep_or_huge_json_results_are_one_line_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    from pytest_orch_recovery.cli.main import main

    result = tmp_path / "result.json"
    result.write_text(content)
    with pytest.raises(SystemExit) as info:
        main(["classify", "--exit-code=1", "--result", str(result)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after argparse's usage lines
    assert err.startswith("orch-recovery classify: error: argument --result: " + str(result))
    results = tmp_path / "results"
    results.mkdir()
    (results / "a1.1_results.json").write_text(content)
    journal = _journal(tmp_path, SUBMITTED)
    code, _, err = _report(["--journal", str(journal), "--results", str(results)], capsys)
    assert code == 2 and err.count("\n") == 1 and "a1.1_results.json" in err


def test_scenarios_built_in_code_meet_the_load_rules() -> None:
    """The orch_engine fixture and generated runs skip the file loader, not the rules."""
    from pytest_orch_recovery.chaos.campaign import run_scenario
    from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
    from pytest_orch_recovery.chaos.scenario import Scenario, ScenarioTask

    def scenario(task: Task, *faults: FaultSpec) -> Scenario:
        return Scenario("built", (ScenarioTask(task),), faults=faults)

    for bad, field in (
        (scenario(Task("t1", "Docs", ("../../../tmp/x.md",))), "tasks[1].deliverables[1]"),
        (scenario(Task("$(touch pwned)", "Docs", ("a.md",))), "tasks[1].id"),
        (
            scenario(
                Task("t1", "Docs", ("a.md",)),
                FaultSpec("sigint", Trigger("api_request"), task="t1"),
            ),
            "faults[1]",
        ),
    ):
        with pytest.raises(ScenarioError) as info:
            run_scenario(bad, tier="sim", seed=1, agent="sim")
        assert info.value.field == field
    good = run_scenario(scenario(Task("t1", "Docs", ("a.md",))), tier="sim", seed=1, agent="sim")
    assert good.outcomes == {"t1": "succeeded"}
