"""Checkpoints: schema v1 files, validation, hook updates, and the ``checkpoint`` command."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.cli import checkpoint as command
from pytest_orch_recovery.cli import main as cli
from pytest_orch_recovery.engine.model import Checkpoint
from pytest_orch_recovery.infra.checkpoint import (
    DEFAULT_CHECKPOINT_DIR,
    ENV_CHECKPOINT_DIR,
    CheckpointError,
    apply_hook_payload,
    apply_tool_use,
    checkpoint_dir,
    hook_command,
    hook_settings,
    load_checkpoint,
    parse_checkpoint,
    read_checkpoint_safely,
    save_checkpoint,
    summarize_command,
    tool_failed,
)
from pytest_orch_recovery.infra.checkpoint_file import new_fields

AGENT = "task-agent-5030"


def _valid(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "agent": AGENT,
        "task_id": "fake3",
        "attempt": 1,
        "completed_subtasks": ["wrote fake3.md"],
        "created_files": ["fake3.md"],
        "next_actions": ["git commit", "open the PR"],
        "updated_at": "2025-07-23T10:00:00Z",
        "session_id": None,
    }
    data.update(overrides)
    return data


def _write(directory: Path, data: object, agent: str = AGENT) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{agent}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


# --------------------------------------------------------------------------- files


def test_save_then_load_round_trips_and_records_schema(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    cp = Checkpoint(AGENT, "fake3", 2, ("wrote fake3.md",), ("fake3.md",), ("git commit",))
    path = save_checkpoint(tmp_path / "cp", cp, workspace=ws)

    assert path == tmp_path / "cp" / f"{AGENT}.json"
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    assert data["workspace"] == str(ws)
    assert data["updated_at"].endswith("Z")  # stamped, UTC
    loaded = load_checkpoint(tmp_path / "cp", AGENT, workspace=ws)
    assert loaded == replace(cp, updated_at=data["updated_at"])
    assert os.listdir(tmp_path / "cp") == [f"{AGENT}.json"]  # no temp file left behind


def test_directory_comes_from_argument_then_env_then_seed_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_CHECKPOINT_DIR, raising=False)
    assert checkpoint_dir() == DEFAULT_CHECKPOINT_DIR == Path("/tmp/orchestration_checkpoints")
    monkeypatch.setenv(ENV_CHECKPOINT_DIR, str(tmp_path / "env"))
    assert checkpoint_dir() == tmp_path / "env"
    assert checkpoint_dir(tmp_path / "arg") == tmp_path / "arg"
    save_checkpoint(None, Checkpoint(AGENT, "t"))
    assert (tmp_path / "env" / f"{AGENT}.json").is_file()


def test_absent_checkpoint_is_none_not_a_problem(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path, AGENT) is None
    assert read_checkpoint_safely(tmp_path, AGENT, None) == (None, None)


def test_torn_file_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / f"{AGENT}.json"
    text = json.dumps(_valid(), indent=2)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, AGENT)
    message = str(info.value)
    assert message.startswith(f"{path}:{info.value.line}:{info.value.column}: invalid JSON")
    assert info.value.line is not None and info.value.line > 1


def test_non_utf8_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / f"{AGENT}.json"
    path.write_bytes(b'{\n"agent": "\xff"}')
    with pytest.raises(CheckpointError, match=r":2: not UTF-8"):
        load_checkpoint(tmp_path, AGENT)


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"schema_version": 2}, "schema_version", "expected 1, got 2"),
        ({"schema_version": True}, "schema_version", "expected 1"),
        ({"attempt": "1"}, "attempt", "integer >= 1"),
        ({"attempt": 0}, "attempt", "integer >= 1"),
        ({"attempt": True}, "attempt", "integer >= 1"),
        ({"task_id": 7}, "task_id", "expected a string, got an integer"),
        ({"agent": ""}, "agent", "must not be empty"),
        ({"agent": "task-agent-1813"}, "agent", "belongs to 'task-agent-1813'"),
        ({"created_files": "fake3.md"}, "created_files", "list of strings, got a string"),
        ({"completed_subtasks": ["ok", 3]}, "completed_subtasks[1]", "got an integer"),
        ({"next_actions": None}, "next_actions", "got null"),
        ({"updated_at": "yesterday"}, "updated_at", "ISO 8601"),
        ({"updated_at": "2025-07-23T10:00:00"}, "updated_at", "UTC"),
        ({"updated_at": "2025-07-23T10:00:00+02:00"}, "updated_at", "UTC"),
        ({"session_id": 5}, "session_id", "string or null"),
        ({"workspace": "relative/dir"}, "workspace", "absolute path"),
    ],
)
def test_invalid_field_is_named(
    tmp_path: Path, overrides: dict[str, Any], field: str, fragment: str
) -> None:
    path = _write(tmp_path, _valid(**overrides))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path, AGENT)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}: field {field!r}:")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "field",
    [
        "schema_version",
        "agent",
        "task_id",
        "attempt",
        "completed_subtasks",
        "created_files",
        "next_actions",
        "updated_at",
    ],
)
def test_missing_required_field_is_named(tmp_path: Path, field: str) -> None:
    data = _valid()
    del data[field]
    _write(tmp_path, data)
    with pytest.raises(CheckpointError, match=f"field '{field}': required field is missing"):
        load_checkpoint(tmp_path, AGENT)


def test_optional_fields_may_be_absent(tmp_path: Path) -> None:
    data = _valid()
    del data["session_id"]
    _write(tmp_path, data)
    cp = load_checkpoint(tmp_path, AGENT)
    assert cp is not None and cp.session_id is None and cp.created_files == ("fake3.md",)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    _write(tmp_path, [1, 2])
    with pytest.raises(CheckpointError, match="expected a JSON object, got a list"):
        load_checkpoint(tmp_path, AGENT)


@pytest.mark.parametrize("name", ["../escape.md", "docs/../../escape.md", "/etc/passwd"])
def test_created_files_escaping_the_workspace_are_rejected(tmp_path: Path, name: str) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    _write(tmp_path / "cp", _valid(created_files=["fake3.md", name]))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "cp", AGENT, workspace=ws)
    assert info.value.field == "created_files"
    assert "outside the workspace" in str(info.value)
    cp, problem = read_checkpoint_safely(tmp_path / "cp", AGENT, ws)
    assert cp is None and problem is not None and "created_files" in problem


def test_symlink_out_of_the_workspace_is_rejected(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "docs").symlink_to(outside)
    _write(tmp_path / "cp", _valid(created_files=["docs/fake3.md"]))
    with pytest.raises(CheckpointError, match="created_files"):
        load_checkpoint(tmp_path / "cp", AGENT, workspace=ws)


def test_recorded_workspace_is_used_when_none_is_given(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    _write(tmp_path, _valid(created_files=["../x"], workspace=str(ws)))
    with pytest.raises(CheckpointError, match="created_files"):
        load_checkpoint(tmp_path, AGENT)


def test_absolute_paths_inside_the_workspace_become_relative(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "docs").mkdir(parents=True)
    _write(tmp_path / "cp", _valid(created_files=[str(ws / "docs" / "fake3.md")]))
    cp = load_checkpoint(tmp_path / "cp", AGENT, workspace=ws)
    assert cp is not None and cp.created_files == ("docs/fake3.md",)


def test_save_stores_created_files_relative_to_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    cp = Checkpoint(AGENT, "t", created_files=(str(ws / "fake3.md"), "fake3.md", "b.md"))
    path = save_checkpoint(tmp_path / "cp", cp, workspace=ws)
    assert json.loads(path.read_text())["created_files"] == ["fake3.md", "b.md"]


def test_save_refuses_what_load_would_refuse(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    with pytest.raises(CheckpointError, match="created_files"):
        save_checkpoint(tmp_path, Checkpoint(AGENT, "t", created_files=("../x",)), workspace=ws)
    with pytest.raises(CheckpointError, match="agent"):
        save_checkpoint(tmp_path, Checkpoint("../evil", "t"))
    assert list(tmp_path.glob("*.json")) == []


_texts = st.text(max_size=20)  # no surrogates by default: always valid UTF-8


@given(
    task_id=_texts,
    attempt=st.integers(1, 10**6),
    completed=st.lists(_texts, max_size=5),
    created=st.lists(st.from_regex(r"[a-z][a-z0-9_./-]{0,15}", fullmatch=True), max_size=5),
    next_actions=st.lists(_texts, max_size=5),
    session=st.none() | st.uuids().map(str),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_valid_checkpoint_round_trips(
    tmp_path: Path,
    task_id: str,
    attempt: int,
    completed: list[str],
    created: list[str],
    next_actions: list[str],
    session: str | None,
) -> None:
    cp = Checkpoint(
        AGENT,
        task_id,
        attempt,
        tuple(completed),
        tuple(created),
        tuple(next_actions),
        "2025-07-23T10:00:00Z",
        session,
    )
    save_checkpoint(tmp_path, cp)
    loaded = load_checkpoint(tmp_path, AGENT)
    # without a workspace, paths are kept as written; saving drops repeats
    assert loaded == replace(cp, created_files=tuple(dict.fromkeys(created)))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(raw=st.binary(max_size=400))
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_safe_read_never_raises_on_arbitrary_bytes(tmp_path: Path, raw: bytes) -> None:
    (tmp_path / f"{AGENT}.json").write_bytes(raw)
    cp, problem = read_checkpoint_safely(tmp_path, AGENT, tmp_path)
    assert (cp is None) != (problem is None)
    if problem is not None:
        assert str(tmp_path / f"{AGENT}.json") in problem


@given(fields=st.dictionaries(st.sampled_from(sorted(_valid())), _json, max_size=9))
@settings(max_examples=300)
def test_parse_never_fails_other_than_with_checkpoint_error(fields: dict[str, Any]) -> None:
    raw = json.dumps(_valid() | fields).encode()
    try:
        cp = parse_checkpoint(Path("/cp/a.json"), raw, AGENT, workspace=Path("/nonexistent-ws"))
    except CheckpointError as exc:
        assert exc.field is not None and str(exc).startswith("/cp/a.json: field ")
    else:
        assert cp.agent == AGENT and isinstance(cp.attempt, int) and cp.attempt >= 1


# --------------------------------------------------------------------------- hook updates


def test_write_adds_file_once_and_a_subtask(tmp_path: Path) -> None:
    cp = Checkpoint(AGENT, "fake3")
    write_input = {"file_path": str(tmp_path / "fake3.md"), "content": "# /fake3\n"}
    response = {"type": "create", "filePath": str(tmp_path / "fake3.md"), "content": "# /fake3\n"}
    cp = apply_tool_use(cp, "Write", write_input, response, workspace=tmp_path)
    cp = apply_tool_use(cp, "Write", write_input, response, workspace=tmp_path)
    assert cp.created_files == ("fake3.md",)
    assert cp.completed_subtasks == ("wrote fake3.md",)
    assert cp.updated_at.endswith("Z")


@pytest.mark.parametrize(
    ("tool", "key", "verb"),
    [("Edit", "file_path", "edited"), ("MultiEdit", "file_path", "edited"),
     ("NotebookEdit", "notebook_path", "edited")],
)  # fmt: skip
def test_edit_tools_record_the_file(tmp_path: Path, tool: str, key: str, verb: str) -> None:
    cp = Checkpoint(AGENT, "t", created_files=("a.md",))
    target = str(tmp_path / "src" / "b.py")
    cp = apply_tool_use(cp, tool, {key: target}, {"filePath": target}, workspace=tmp_path)
    assert cp.created_files == ("a.md", "src/b.py")
    assert cp.completed_subtasks == (f"{verb} src/b.py",)


def test_file_outside_the_workspace_is_noted_but_not_created(tmp_path: Path) -> None:
    cp = apply_tool_use(
        Checkpoint(AGENT, "t"),
        "Write",
        {"file_path": "/etc/motd", "content": ""},
        {"type": "create"},
        workspace=tmp_path,
    )
    assert cp.created_files == ()
    assert cp.completed_subtasks == ("wrote /etc/motd",)


def test_bash_records_a_summary_of_the_command(tmp_path: Path) -> None:
    command_text = 'git commit -m "Add /fake3 command: pure markdown LLM command, no Python needed"'
    ok = {"stdout": "[main 1a2b3c] Add", "stderr": "", "interrupted": False, "isImage": False}
    cp = apply_tool_use(
        Checkpoint(AGENT, "t"),
        "Bash",
        {"command": command_text, "description": "Commit the docs"},
        ok,
        workspace=tmp_path,
    )
    (subtask,) = cp.completed_subtasks
    assert subtask.startswith('ran: git commit -m "Add /fake3')
    assert subtask.endswith(" ...") and len(subtask) <= len("ran: ") + 72 + 1


def test_bash_ignores_failures_and_read_only_commands(tmp_path: Path) -> None:
    start = Checkpoint(AGENT, "t")
    interrupted = {"stdout": "", "stderr": "", "interrupted": True, "isImage": False}
    ok = {"stdout": "", "stderr": "", "interrupted": False, "isImage": False}
    for cmd, response in [
        ("git push -u origin HEAD", interrupted),
        ("gh pr create --fill", {"stdout": "", "exit_code": 1}),
        ("git status", ok),
        ("ls -la", ok),
    ]:
        assert (
            apply_tool_use(start, "Bash", {"command": cmd}, response, workspace=tmp_path) == start
        )
    chained = apply_tool_use(
        start, "Bash", {"command": "ls && rm -rf build"}, ok, workspace=tmp_path
    )
    assert chained.completed_subtasks == ("ran: ls && rm -rf build",)


def test_summaries_keep_short_commands_and_mark_multiline_ones() -> None:
    assert summarize_command("  pytest   -q  ") == "pytest -q"
    assert summarize_command("cat > a <<EOF\nhello\nEOF") == "cat > a <<EOF ..."
    assert len(summarize_command("x" * 500)) == 72


def test_tool_failed_reads_the_shapes_claude_code_sends() -> None:
    assert tool_failed("Error: File has not been read yet. Read it first before writing to it.")
    assert tool_failed({"success": False})
    assert (
        apply_tool_use(
            Checkpoint(AGENT, "t"), "Write", {"file_path": "a\x00b"}, {}, workspace=Path("/w")
        ).created_files
        == ()
    )
    assert not tool_failed({"type": "update", "filePath": "/w/a", "structuredPatch": []})
    assert not tool_failed(None)


def test_hook_payload_records_session_and_skips_failure_events(tmp_path: Path) -> None:
    base = {
        "session_id": "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
        "transcript_path": str(tmp_path / "t.jsonl"),
        "cwd": str(tmp_path),
        "hook_event_name": "PostToolUse",
        "tool_name": "Write",
        "tool_input": {"file_path": str(tmp_path / "fake3.md"), "content": "x"},
        "tool_response": {"type": "create", "filePath": str(tmp_path / "fake3.md")},
    }
    cp = apply_hook_payload(Checkpoint(AGENT, "t"), base)
    assert cp.session_id == base["session_id"]
    assert cp.created_files == ("fake3.md",)
    failure = base | {"hook_event_name": "PostToolUseFailure", "error": "permission denied"}
    failed = apply_hook_payload(Checkpoint(AGENT, "t"), failure)
    assert failed.created_files == () and failed.session_id == base["session_id"]


def test_nothing_to_record_returns_the_same_checkpoint(tmp_path: Path) -> None:
    cp = Checkpoint(AGENT, "t", updated_at="2025-07-23T10:00:00Z")
    assert apply_tool_use(cp, "Read", {"file_path": "/w/a"}, {}, workspace=tmp_path) == cp


def test_hook_settings_match_the_claude_code_schema() -> None:
    cmd = hook_command(AGENT, directory="/tmp/cp dir")
    settings_json = json.loads(json.dumps(hook_settings(cmd)))
    (entry,) = settings_json["hooks"]["PostToolUse"]
    assert entry["hooks"] == [{"type": "command", "command": cmd, "timeout": 30}]
    for tool in ("Write", "Edit", "MultiEdit", "Bash"):
        assert re.fullmatch(entry["matcher"], tool)
    assert not re.fullmatch(entry["matcher"], "Read")
    assert cmd.endswith("--dir '/tmp/cp dir'")


# --------------------------------------------------------------------------- the command


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["checkpoint", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_command_creates_updates_and_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    cpd = str(tmp_path / "cp")
    code, _, err = _cli(
        ["--agent", AGENT, "--dir", cpd, "--task-id", "fake3", "--workspace", str(ws),
         "--completed", "wrote fake3.md", "--created", "fake3.md", "--next", "git commit"],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, "")
    code, out, _ = _cli(
        ["--agent", AGENT, "--dir", cpd, "--attempt", "2", "--completed", "wrote fake3.md",
         "ran: git commit", "--next", "open the PR", "--session-id", "s-1", "--show"],
        capsys,
    )  # fmt: skip
    assert code == 0
    shown = json.loads(out)
    assert shown["completed_subtasks"] == ["wrote fake3.md", "ran: git commit"]
    assert shown["next_actions"] == ["open the PR"]
    assert shown["attempt"] == 2 and shown["session_id"] == "s-1"
    assert shown["workspace"] == str(ws)  # kept although not given again
    assert json.loads((tmp_path / "cp" / f"{AGENT}.json").read_text()) == shown


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "--agent is required"),
        (["--agent", AGENT], "--task-id is required"),
        (["--agent", AGENT, "--task-id", "t", "--workspace", "/tmp", "--created", "../x"],
         "outside the workspace"),
    ],
)  # fmt: skip
def test_command_usage_errors_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    fragment: str,
) -> None:
    monkeypatch.delenv(command.ENV_AGENT, raising=False)
    monkeypatch.delenv(command.ENV_TASK_ID, raising=False)
    code, _, err = _cli([*args, "--dir", str(tmp_path)], capsys)
    assert code == 2 and fragment in err
    # No checkpoint written; at most the agent's lock file exists (kept: see checkpoint_lock).
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == []


def test_command_rejects_a_bad_attempt_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["checkpoint", "--agent", AGENT, "--dir", str(tmp_path), "--attempt", "0"])
    assert info.value.code == 2
    assert "'0' must be >= 1" in capsys.readouterr().err


def test_command_reports_a_corrupt_file_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{AGENT}.json"
    path.write_text('{"schema_version": 1,')
    code, _, err = _cli(["--agent", AGENT, "--dir", str(tmp_path), "--show"], capsys)
    assert code == 1 and str(path) in err and "invalid JSON" in err


def test_show_without_a_checkpoint_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(["--agent", AGENT, "--dir", str(tmp_path), "--show"], capsys)
    assert code == 1 and "no checkpoint" in err


def test_every_option_has_help_text() -> None:
    parser = command.build_parser("orch-recovery checkpoint")
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert {a.dest for a in options} >= {"agent", "dir", "from_hook", "show", "session_id"}
    assert all(a.help for a in options)


def _hook_payload(ws: Path, tool: str = "Write", **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "session_id": "abc-123",
        "transcript_path": str(ws / "transcript.jsonl"),
        "cwd": str(ws),
        "hook_event_name": "PostToolUse",
        "tool_name": tool,
        "tool_input": {"file_path": str(ws / "fake3.md"), "content": "# fake3\n"},
        "tool_response": {"type": "create", "filePath": str(ws / "fake3.md")},
    }
    return payload | extra


def test_from_hook_uses_env_agent_and_payload_cwd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(command.ENV_AGENT, AGENT)
    monkeypatch.setenv(command.ENV_TASK_ID, "fake3")
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(_hook_payload(tmp_path))))
    code, out, err = _cli(["--from-hook", "--dir", str(tmp_path / "cp")], capsys)
    assert (code, out, err) == (0, "", "")
    cp = load_checkpoint(tmp_path / "cp", AGENT, workspace=tmp_path)
    assert cp is not None
    assert (cp.task_id, cp.created_files, cp.session_id) == ("fake3", ("fake3.md",), "abc-123")


@pytest.mark.parametrize(
    ("stdin", "fragment"),
    [("{not json", "<stdin>:1:2: invalid hook input JSON"), ("[]", "not a JSON object"),
     ('{"tool_name": "Write"}', "field 'cwd'")],
)  # fmt: skip
def test_from_hook_never_fails_the_agent(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
    fragment: str,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code, _, err = _cli(["--from-hook", "--agent", AGENT, "--dir", str(tmp_path)], capsys)
    assert code == 0 and fragment in err
    assert list(tmp_path.iterdir()) == []


def test_from_hook_replaces_a_torn_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    torn = tmp_path / "cp" / f"{AGENT}.json"
    torn.parent.mkdir()
    torn.write_text('{"schema_version": 1, "agent": "task-ag')
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(_hook_payload(tmp_path))))
    code, _, err = _cli(["--from-hook", "--agent", AGENT, "--dir", str(tmp_path / "cp")], capsys)
    assert code == 0 and "starting a fresh checkpoint" in err and str(torn) in err
    cp = load_checkpoint(tmp_path / "cp", AGENT)
    assert cp is not None and cp.created_files == ("fake3.md",)


def test_console_script_end_to_end(tmp_path: Path) -> None:
    exe = shutil.which("orch-recovery")
    assert exe is not None, "the package must be installed (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env[ENV_CHECKPOINT_DIR] = str(tmp_path / "cp")
    bash = _hook_payload(
        tmp_path,
        tool="Bash",
        tool_input={"command": "git add fake3.md && git commit -m 'Add fake3'", "description": ""},
        tool_response={"stdout": "", "stderr": "", "interrupted": False, "isImage": False},
    )
    for payload in (_hook_payload(tmp_path), bash):
        done = subprocess.run(
            [exe, "checkpoint", "--from-hook", "--agent", AGENT, "--task-id", "fake3"],
            input=json.dumps(payload),
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, "")
    shown = subprocess.run(
        [exe, "checkpoint", "--agent", AGENT, "--show"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    data = json.loads(shown.stdout)
    assert data["completed_subtasks"] == [
        "wrote fake3.md",
        "ran: git add fake3.md && git commit -m 'Add fake3'",
    ]
    assert data["workspace"] == str(tmp_path) and data["session_id"] == "abc-123"


def test_new_fields_are_the_fields_of_an_empty_checkpoint() -> None:
    # checkpoint_file works on plain fields so the hooks need no model; a fresh checkpoint
    # made there must be the one the engine would make.
    assert Checkpoint(**new_fields(AGENT, "t")) == Checkpoint(AGENT, "t")
    assert Checkpoint(**new_fields(AGENT, "t", 3)) == Checkpoint(AGENT, "t", attempt=3)
