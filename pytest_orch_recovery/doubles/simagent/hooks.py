"""``PostToolUse`` command hooks from Claude Code settings files.

Settings schema (Claude Code hooks reference)::

    {"hooks": {"PostToolUse": [{"matcher": "Write|Edit",
                                "hooks": [{"type": "command", "command": "...", "timeout": 60}]}]}}

Files read, in order: ``$HOME/.claude/settings.json``, ``<cwd>/.claude/settings.json``,
``<cwd>/.claude/settings.local.json``. The command gets the hook payload as JSON on stdin.
Exit 0 is success; exit 2 is a blocking error whose stderr is fed back to the model; any
other status is a non-blocking error shown to the user (here: on stderr) and the run goes on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_orch_recovery.engine.errors import InvalidValue

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EVENT = "PostToolUse"
DEFAULT_TIMEOUT_S = 60.0
BLOCKING_EXIT = 2


@dataclass(frozen=True)
class HookCommand:
    matcher: str
    command: str
    timeout: float
    source: str  # the settings file it came from

    def matches(self, tool_name: str) -> bool:
        """Empty or ``*`` matches every tool; otherwise the matcher is a regex.

        >>> HookCommand("Write|Edit", "x", 1, "s").matches("Edit")
        True
        >>> HookCommand("Write", "x", 1, "s").matches("WriteFile")
        False
        """
        if self.matcher in ("", "*"):
            return True
        try:
            return re.fullmatch(self.matcher, tool_name) is not None
        except re.error:
            return self.matcher == tool_name


@dataclass(frozen=True)
class HookRun:
    hook: HookCommand
    exit_code: int | None  # None when it timed out
    stdout: str
    stderr: str

    @property
    def blocking(self) -> bool:
        return self.exit_code == BLOCKING_EXIT


def settings_files(cwd: Path, home: Path) -> list[Path]:
    return [
        home / ".claude" / "settings.json",
        cwd / ".claude" / "settings.json",
        cwd / ".claude" / "settings.local.json",
    ]


def load_hooks(paths: list[Path], warn: Callable[[str], None]) -> list[HookCommand]:
    """All PostToolUse command hooks; a bad file is reported (file, line, field) and skipped."""
    found: list[HookCommand] = []
    for path in paths:
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            warn(f"{path}:{exc.lineno}: invalid settings JSON ({exc.msg}); hooks ignored")
            continue
        try:
            found += _parse(data, str(path))
        except ValueError as exc:
            warn(f"{path}: {exc}; hooks ignored")
    return found


def _parse(data: Any, source: str) -> list[HookCommand]:
    if not isinstance(data, dict):
        raise InvalidValue("top level: expected an object")
    hooks = data.get("hooks", {})
    if not isinstance(hooks, dict):
        raise InvalidValue("field hooks: expected an object")
    groups = hooks.get(EVENT, [])
    if not isinstance(groups, list):
        raise InvalidValue(f"field hooks.{EVENT}: expected a list")
    out: list[HookCommand] = []
    for i, group in enumerate(groups):
        where = f"hooks.{EVENT}[{i}]"
        if not isinstance(group, dict) or not isinstance(group.get("hooks", []), list):
            raise InvalidValue(f"field {where}: expected an object with a hooks list")
        matcher = group.get("matcher", "")
        if not isinstance(matcher, str):
            raise InvalidValue(f"field {where}.matcher: expected a string")
        for j, hook in enumerate(group.get("hooks", [])):
            field = f"{where}.hooks[{j}]"
            if not isinstance(hook, dict) or hook.get("type") != "command":
                continue  # other hook types (prompt, agent) are not run by the sim agent
            command = hook.get("command")
            if not isinstance(command, str) or not command:
                raise InvalidValue(f"field {field}.command: expected a non-empty string")
            timeout = hook.get("timeout", DEFAULT_TIMEOUT_S)
            if not isinstance(timeout, int | float) or timeout <= 0:
                raise InvalidValue(f"field {field}.timeout: expected a positive number of seconds")
            out.append(HookCommand(matcher, command, float(timeout), source))
    return out


def run_hooks(hooks: list[HookCommand], payload: Mapping[str, Any], cwd: Path) -> list[HookRun]:
    """Run every hook whose matcher takes ``payload['tool_name']``, in order."""
    runs: list[HookRun] = []
    data = json.dumps(payload).encode("utf-8")
    env = dict(os.environ, CLAUDE_PROJECT_DIR=str(cwd))
    for hook in hooks:
        if not hook.matches(str(payload["tool_name"])):
            continue
        try:
            # Like Claude Code (measured: tpgid -1 in the hook), hooks run in a session of their
            # own, without the agent's terminal.
            proc = subprocess.run(
                ["/bin/sh", "-c", hook.command],
                input=data,
                cwd=cwd,
                env=env,
                capture_output=True,
                timeout=hook.timeout,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            err = (exc.stderr or b"").decode("utf-8", errors="replace")
            runs.append(HookRun(hook, None, "", err))
            continue
        runs.append(
            HookRun(
                hook,
                proc.returncode,
                proc.stdout.decode("utf-8", errors="replace"),
                proc.stderr.decode("utf-8", errors="replace"),
            )
        )
    return runs
