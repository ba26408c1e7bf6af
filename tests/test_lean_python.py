"""The package's short-lived programs start without ``site`` and still behave as ``python -m``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_orch_recovery.doubles.simagent.version import VERSION_LINE
from pytest_orch_recovery.infra.lean_python import SCRIPT, lean_python_argv

# Every program the harness and runtimes start once per attempt, tool call or gh call.
LEAN_PROGRAMS = (
    "pytest_orch_recovery",  # orch-recovery checkpoint --from-hook
    "pytest_orch_recovery.chaos.faulthook",
    "pytest_orch_recovery.doubles.simagent",
    "pytest_orch_recovery.doubles.forge_cli",
    "pytest_orch_recovery.runtime.wrapper",
)


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=120, env={**os.environ, **env}
    )


def test_a_program_runs_as_python_dash_m_would() -> None:
    out = _run(lean_python_argv("pytest_orch_recovery.doubles.simagent", "--version"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == VERSION_LINE


def test_exit_status_and_usage_errors_come_through() -> None:
    out = _run(lean_python_argv("pytest_orch_recovery.runtime.wrapper"))
    assert out.returncode == 2
    assert "usage: python -m pytest_orch_recovery.runtime.wrapper" in out.stderr


def test_no_site_module_runs_in_a_lean_process() -> None:
    out = _run(
        lean_python_argv("pytest_orch_recovery.doubles.simagent", "--version"),
        PYTHONPROFILEIMPORTTIME="1",
    )
    assert out.returncode == 0, out.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "pytest_orch_recovery.doubles.simagent.cli" in imported
    assert "site" not in imported


@pytest.mark.parametrize("module", LEAN_PROGRAMS)
def test_every_lean_program_needs_only_the_standard_library(module: str) -> None:
    # Without site, nothing from site-packages is importable: a module-level import of a
    # third-party library would fail here before it failed in an agent's pane.
    code = f"import sys; sys.path.insert(0, sys.argv[1]); import {module}"
    root = os.path.dirname(os.path.dirname(os.path.dirname(SCRIPT)))
    out = _run([sys.executable, "-S", "-P", "-c", code, root], PYTHONPATH="")
    assert out.returncode == 0, out.stderr


def test_only_the_package_s_own_programs_start_lean() -> None:
    with pytest.raises(ValueError, match="only the package's own programs"):
        lean_python_argv("pytest", "--version")


_REPORT_MAIN = """\
import json, sys
main = sys.modules["__main__"]
print(json.dumps({"name": __name__, "file": __file__, "package": __package__,
                  "spec": __spec__.name, "argv": sys.argv, "same": main.__dict__ is globals(),
                  "doc": __doc__, "loader": type(__loader__).__name__}))
"""


@pytest.mark.parametrize("module", ["pkg", "pkg.tool"])
def test_the_lean_script_sets_up_main_as_python_dash_m_does(tmp_path: Path, module: str) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(_REPORT_MAIN)
    (package / "tool.py").write_text(_REPORT_MAIN)
    env = {"PYTHONPATH": str(tmp_path)}
    lean = _run([sys.executable, "-S", "-P", SCRIPT, module, "a b", "--c"], **env)
    dash_m = _run([sys.executable, "-S", "-P", "-m", module, "a b", "--c"], **env)
    assert lean.returncode == dash_m.returncode == 0, lean.stderr + dash_m.stderr
    assert json.loads(lean.stdout) == json.loads(dash_m.stdout)
    assert json.loads(lean.stdout)["argv"][1:] == ["a b", "--c"]


def test_a_missing_module_is_one_line_and_a_failure(tmp_path: Path) -> None:
    out = _run([sys.executable, "-S", "-P", SCRIPT, "pytest_orch_recovery.no_such_program"])
    assert out.returncode == 1
    assert out.stderr.strip().endswith("No module named pytest_orch_recovery.no_such_program")


# What a hook process that fires nothing must not import: each is milliseconds of CPU in every
# tool call of every agent (docs/performance.md); a firing fault or a usage error may.
HOOK_NEVER_IMPORTS = (
    "typing",
    "dataclasses",
    "argparse",
    "inspect",
    "runpy",
    "shutil",
    "pytest_orch_recovery.engine.model",
    "pytest_orch_recovery.infra.processes",
)


def _hook_payload(workspace: Path) -> str:
    return json.dumps(
        {
            "session_id": "s-1",
            "transcript_path": str(workspace / "t.jsonl"),
            "cwd": str(workspace),
            "hook_event_name": "PostToolUse",
            "tool_name": "Write",
            "tool_input": {"file_path": str(workspace / "fake3.md"), "content": "# /fake3"},
            "tool_response": {"filePath": str(workspace / "fake3.md"), "success": True},
        }
    )


def _imported(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }


def test_the_fault_hook_imports_only_what_one_tool_call_needs(tmp_path: Path) -> None:
    workspace, checkpoints, state = tmp_path / "ws", tmp_path / "cp", tmp_path / "state"
    workspace.mkdir()
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "state_dir": str(state),
                "test_commands": ["pytest -q"],
                "context": {},
                "faults": [
                    {
                        "id": "later",
                        "kind": "kill",
                        "task": "t1",
                        "attempt": 1,
                        "trigger": {"event": "tool_call", "n": 5},
                    }
                ],
            }
        )
    )
    out = subprocess.run(
        lean_python_argv("pytest_orch_recovery.chaos.faulthook", "--plan", str(plan)),
        input=_hook_payload(workspace),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "PYTHONPROFILEIMPORTTIME": "1",
            "ORCH_AGENT": "task-agent-5030",
            "ORCH_TASK_ID": "t1",
            "ORCH_ATTEMPT": "1",
            "ORCH_CHECKPOINT_DIR": str(checkpoints),
        },
    )
    assert out.returncode == 0, out.stderr
    assert "faulthook:" not in out.stderr  # it did its job without complaint ...
    saved = json.loads((checkpoints / "task-agent-5030.json").read_text())
    assert saved["created_files"] == ["fake3.md"] and saved["session_id"] == "s-1"
    counted = json.loads((state / "task-agent-5030.1.json").read_text())
    assert counted == {"counts": {"tool_call": 1, "file_written": 1}, "fired": []}
    imported = _imported(out.stderr)  # ... and without these
    assert "pytest_orch_recovery.infra.checkpoint_file" in imported
    assert sorted(imported.intersection(HOOK_NEVER_IMPORTS)) == []


def test_the_fault_hook_s_usage_errors_still_come_from_argparse(tmp_path: Path) -> None:
    argv = lean_python_argv("pytest_orch_recovery.chaos.faulthook")
    missing = _run(argv)
    assert missing.returncode == 2
    assert "faulthook: error: the following arguments are required: --plan" in missing.stderr
    helped = _run([*argv, "--help"])
    assert helped.returncode == 0 and helped.stdout.startswith("usage: faulthook")
    extra = _run([*argv, "--plan", "p.json", "--what"])
    assert extra.returncode == 2 and "unrecognized arguments: --what" in extra.stderr


def test_the_checkpoint_hook_command_imports_no_model(tmp_path: Path) -> None:
    # orch-recovery checkpoint --from-hook: what a real agent's PostToolUse hook runs
    workspace = tmp_path / "ws"
    workspace.mkdir()
    out = subprocess.run(
        lean_python_argv(
            "pytest_orch_recovery",
            "checkpoint",
            "--from-hook",
            "--agent",
            "task-agent-5030",
            "--dir",
            str(tmp_path / "cp"),
        ),
        input=_hook_payload(workspace),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert out.returncode == 0, out.stderr
    saved = json.loads((tmp_path / "cp" / "task-agent-5030.json").read_text())
    assert saved["completed_subtasks"] == ["wrote fake3.md"]
    imported = _imported(out.stderr)  # (not cli.checkpoint: importlib.import_module is unlogged)
    assert "pytest_orch_recovery.infra.checkpoint_file" in imported
    assert (
        sorted(
            imported.intersection(
                {"typing", "dataclasses", "inspect", "pytest_orch_recovery.engine.model"}
            )
        )
        == []
    )
