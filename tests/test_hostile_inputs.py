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
from pytest_orch_recovery.engine.runtime import LaunchSpec
from pytest_orch_recovery.engine.validation import (
    MAX_DEPTH,
    DocumentError,
    RuleError,
    load_json_file,
    loads_json,
    read_bounded,
)
from pytest_orch_recovery.infra.agents import TemplateDriver, driver_for
from pytest_orch_recovery.infra.command_template import TemplateError

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
        ('kind = "api_overloaded"\nparams = { count = "many" }', "faults[1].params.count",
         "must be an integer"),
        ('kind = "api_overloaded"\nparams = { count = -1 }', "faults[1].params.count",
         "must be >= 1"),
        ('kind = "api_rate_limit"\nparams = { retry_after = -5 }',
         "faults[1].params.retry_after", "must be >= 0"),
        ('kind = "api_rate_limit"\nparams = { retry_after = nan }',
         "faults[1].params.retry_after", "finite"),
        ('kind = "pr_create_fails"\nparams = { error = "bogus" }', "faults[1].params.error",
         "is not one of bad_credentials, unreachable"),
        ('kind = "sigint"\nparams = { colour = "red" }', "faults[1].params.colour",
         "takes no parameter"),
        ('kind = "sigint"\nafter_file = "../x.md"', "faults[1].after_file", "leaves its root"),
        ('kind = "sigint"\nafter_tool_call = 99999999999', "faults[1].after_tool_call",
         "must be <="),
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
    text = (TASK + 'agent = "one"\n' + TASK.replace('"t1"', '"t2"') + 'agent = "one"\n')
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
    result = pytester.runpytest_subprocess("--orch-chaos", "--orch-tier=sim", str(bad),
                                           "--orch-report=r.md", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["*bad.toml:4: tasks[[]1[]].deliverables[[]1[]]: path "
                                 "'/etc/x.md' must be relative*"])


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
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device"),
                       (tmp_path, "a directory")):
        with pytest.raises(RuleError, match=f"not a regular file [(]{kind}[)]"):
            read_bounded(path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 101)
    with pytest.raises(RuleError, match="is 101 bytes; the limit is 100"):
        load_json_file(big, 100)


# --------------------------------------------------------------------------- command templates


def _spec(task_id: str = "t1", *, title: str = "Docs", prompt: str = "do it") -> LaunchSpec:
    return LaunchSpec(task=Task(task_id, title, ("a.md",)), agent="task-agent-1", attempt=1,
                      agent_type="claude-code", strategy=None, prompt=prompt, work=(),
                      key="k1")


def test_a_placeholder_inside_a_script_word_is_refused() -> None:
    template = "sh -c 'echo {task_id} > out'"
    with pytest.raises(TemplateError, match=r"read \"\$ORCH_TASK_ID\" from the environment"):
        driver_for(template)
    from pytest_orch_recovery.infra.argtypes import agent_command

    with pytest.raises(Exception, match="which a program would read as a script"):
        agent_command(template)
    for bad in ('sh -c "echo {prompt}"', "bash -c {prompt}", "{prompt} x", "x {task_id!r}",
                "x {nope}", "python -e {prompt}", "x '{agent} y'"):
        with pytest.raises(TemplateError):
            driver_for(bad)


def test_hostile_values_never_run(tmp_path: Path) -> None:
    """A task id and a prompt full of shell syntax reach the agent as plain text."""
    hostile = "$(touch pwned)`touch pwned2`'; touch pwned3 #\"$(touch pwned4)\""
    template = "sh -c 'printf %s \"$ORCH_TASK_ID\" > out; printf %s \"$1\" > arg' sh {prompt}"
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
