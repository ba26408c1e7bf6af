"""The dispatcher: hooks installed, prompt written, permission flag from configuration,
results files per judged attempt."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.events import (
    AttemptExited,
    Event,
    FailureAttributed,
    TaskSucceeded,
)
from pytest_orch_recovery.engine.model import Attribution, ExitInfo, Reason, Task, full_plan
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.infra.agents import (
    SKIP_PERMISSIONS_FLAG,
    AgentConfig,
    CliAgentDriver,
    driver_for,
)
from pytest_orch_recovery.runtime.dispatch import SETTINGS_FILE, Dispatcher, read_results

TASK = Task("t1", 'Create /fake3 command "$(rm -rf /)"', ("fake3.md",))


def _spec(attempt: int = 1) -> LaunchSpec:
    return LaunchSpec(
        TASK,
        "task-agent-5030",
        attempt,
        "claude-code",
        None,
        "Create fake3.md\n",
        full_plan(TASK),
        key=f"t1:{attempt}",
    )


@pytest.fixture
def sandbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    box = Sandbox.create(base_dir=tmp_path)
    yield box
    box.teardown()
    assert box.leftovers() == []


def _dispatcher(sandbox: Sandbox, config: AgentConfig) -> Dispatcher:
    return Dispatcher(sandbox, lambda c: driver_for("sim", c), config)


def test_command_carries_the_permission_flag_only_when_configured(sandbox: Sandbox) -> None:
    dispatcher = _dispatcher(sandbox, AgentConfig().without_permission_flag())
    assert SKIP_PERMISSIONS_FLAG not in " ".join(dispatcher.command_for(_spec()))
    dispatcher.configure(AgentConfig(skip_permissions=True))
    argv = dispatcher.command_for(_spec(2))
    assert SKIP_PERMISSIONS_FLAG in argv[-1]
    # The prompt goes through a file, never through the command line.
    assert "rm -rf" not in argv[-1]
    prompt = sandbox.results / "task-agent-5030.2.prompt.md"
    assert prompt.read_text() == "Create fake3.md\n"


def test_installed_checkpoint_hook_really_writes_the_checkpoint(sandbox: Sandbox) -> None:
    dispatcher = _dispatcher(sandbox, AgentConfig())
    dispatcher.command_for(_spec())
    workspace = sandbox.workspace("task-agent-5030")
    settings = json.loads((workspace / SETTINGS_FILE).read_text())
    command = settings["hooks"]["PostToolUse"][0]["hooks"][0]["command"]
    (workspace / "fake3.md").write_text("# fake3\n")
    payload = {
        "session_id": "s-1",
        "cwd": str(workspace),
        "hook_event_name": "PostToolUse",
        "tool_name": "Write",
        "tool_input": {"file_path": str(workspace / "fake3.md"), "content": "# fake3\n"},
        "tool_response": {"filePath": str(workspace / "fake3.md")},
    }
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        input=json.dumps(payload),
        text=True,
        capture_output=True,
        env=sandbox.env("task-agent-5030"),
        cwd=workspace,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    checkpoint = json.loads((sandbox.checkpoints / "task-agent-5030.json").read_text())
    assert checkpoint["created_files"] == ["fake3.md"]
    assert checkpoint["session_id"] == "s-1"
    # The hook settings stay out of the agent's commits.
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=workspace, text=True, capture_output=True, check=True
    ).stdout
    assert ".claude" not in status


def test_start_signal_makes_the_attempt_die_of_a_real_signal(sandbox: Sandbox) -> None:
    dispatcher = Dispatcher(
        sandbox,
        lambda c: driver_for("sim", c),
        AgentConfig(),
        start_signal=lambda spec: "KILL" if spec.attempt == 1 else None,
    )
    argv = dispatcher.command_for(_spec())
    assert subprocess.run(argv, check=False).returncode == -9
    assert dispatcher.command_for(_spec(2))[-1].startswith("exec ")


def test_results_file_per_judged_attempt(sandbox: Sandbox) -> None:
    dispatcher = _dispatcher(sandbox, AgentConfig())
    dispatcher.observe(
        Event(
            AttemptExited(ExitInfo(0), started_at=1.0, ended_at=10.0),
            10.0,
            "t1",
            "task-agent-5030",
            1,
        )
    )
    dispatcher.observe(
        Event(
            FailureAttributed(Attribution(Reason.SIGINT, 0.95)),
            10.5,
            "t1",
            "task-agent-5030",
            1,
        )
    )
    dispatcher.observe(Event(TaskSucceeded(), 20.0, "t1", "task-agent-5030", 2))
    results = read_results(sandbox.results)
    assert [(r["attempt"], r["status"], r["reason"]) for r in results] == [
        (1, "failed", "sigint"),
        (2, "success", None),
    ]
    assert results[0]["exit_code"] == 0 and results[0]["duration"] == 9.0


HOSTILE = "Fix \"it\" and 'that'\n$(touch pwned) `touch pwned2` $HOME \\ ;|&\n-p --resume x\n"


def test_interactive_argv_passes_the_prompt_as_one_argument_unparsed(tmp_path: Path) -> None:
    echo = (sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))")
    driver = CliAgentDriver("echo", echo, AgentConfig(interactive=True, skip_permissions=False))
    prompt = tmp_path / "it's a $(prompt).md"
    prompt.write_text(HOSTILE)
    argv = driver.argv(_spec(), prompt_file=prompt)
    out = subprocess.run(
        argv,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    # No -p, no --output-format, no permission flag: exactly the prompt (the shell's $(cat)
    # drops only its trailing newline), nothing it holds was run.
    assert json.loads(out.stdout) == [HOSTILE.rstrip("\n")]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    resumed = replace(_spec(2), resume_session="s-1")
    driver = replace(driver, config=replace(driver.config, skip_permissions=True))
    out = subprocess.run(
        driver.argv(resumed, prompt_file=prompt),
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert json.loads(out.stdout) == [
        SKIP_PERMISSIONS_FLAG,
        "--resume",
        "s-1",
        HOSTILE.rstrip("\n"),
    ]


def test_config_for_overrides_one_attempt_only(sandbox: Sandbox) -> None:
    seen: list[AgentConfig] = []

    def config_for(spec: LaunchSpec, current: AgentConfig) -> AgentConfig | None:
        seen.append(current)
        if spec.attempt != 1:
            return None
        return replace(current, interactive=True, skip_permissions=False)

    dispatcher = Dispatcher(
        sandbox, lambda c: driver_for("sim", c), AgentConfig(), config_for=config_for
    )
    first = dispatcher.command_for(_spec(1))[-1]
    assert " -p " not in first and SKIP_PERMISSIONS_FLAG not in first
    assert first.endswith(
        '"$(cat ' + shlex.quote(str(sandbox.results / "task-agent-5030.1.prompt.md")) + ')"'
    )
    second = dispatcher.command_for(_spec(2))[-1]
    assert " -p " in second and SKIP_PERMISSIONS_FLAG in second and "$(cat" not in second
    assert dispatcher.config == AgentConfig() and seen == [AgentConfig(), AgentConfig()]


def test_hook_is_merged_into_the_users_settings(sandbox: Sandbox) -> None:
    workspace = sandbox.add_workspace("task-agent-5030")
    path = workspace / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    user_hook = {"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}
    path.write_text(
        json.dumps(
            {"permissions": {"allow": ["Bash(npm test)"]}, "hooks": {"PostToolUse": [user_hook]}}
        )
    )
    dispatcher = _dispatcher(sandbox, AgentConfig())
    dispatcher.command_for(_spec())
    dispatcher.command_for(_spec(2))  # a second attempt installs it again: still once
    settings = json.loads(path.read_text())
    assert settings["permissions"] == {"allow": ["Bash(npm test)"]}
    entries = settings["hooks"]["PostToolUse"]
    assert entries[0] == user_hook
    ours = [h for e in entries[1:] for h in e["hooks"]]
    assert len(ours) == 1 and "pytest_orch_recovery" in ours[0]["command"]


def test_settings_that_are_not_json_are_never_overwritten(sandbox: Sandbox) -> None:
    from pytest_orch_recovery.infra.settings import SettingsError

    workspace = sandbox.add_workspace("task-agent-5030")
    path = workspace / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{\n  "permissions": {,\n}\n')
    with pytest.raises(SettingsError, match=r"settings.local.json:2: settings: not JSON"):
        _dispatcher(sandbox, AgentConfig()).command_for(_spec())
    assert path.read_text() == '{\n  "permissions": {,\n}\n'
