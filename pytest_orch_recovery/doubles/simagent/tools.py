"""The four tools the sim agent offers (Write, Edit, Read, Bash) and its permission rules.

Input schemas match Claude Code's tools of the same names. Result texts follow what Claude
Code sends back (sources in comments); a failing call yields ``is_error: true``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_orch_recovery.store import atomic

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

TOOL_SCHEMAS: tuple[dict[str, Any], ...] = (
    {
        "name": "Bash",
        "description": "Run a shell command in the working directory with an optional timeout.",
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command to execute"},
                "timeout": {"type": "number", "description": "Timeout in ms (max 600000)"},
                "description": {"type": "string", "description": "What the command does"},
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    },
    {
        "name": "Edit",
        "description": "Replace exact text in a file.",
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The path of the file to modify"},
                "old_string": {"type": "string", "description": "The text to replace"},
                "new_string": {"type": "string", "description": "The replacement text"},
                "replace_all": {"type": "boolean", "default": False},
            },
            "required": ["file_path", "old_string", "new_string"],
            "additionalProperties": False,
        },
    },
    {
        "name": "Read",
        "description": "Read a file; lines are numbered like cat -n.",
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The path of the file to read"},
                "offset": {"type": "number", "description": "1-based line to start at"},
                "limit": {"type": "number", "description": "Number of lines to read"},
            },
            "required": ["file_path"],
            "additionalProperties": False,
        },
    },
    {
        "name": "Write",
        "description": "Write a file, replacing it if it exists.",
        "input_schema": {
            "type": "object",
            "properties": {
                "file_path": {"type": "string", "description": "The path of the file to write"},
                "content": {"type": "string", "description": "The content to write"},
            },
            "required": ["file_path", "content"],
            "additionalProperties": False,
        },
    },
)
TOOL_NAMES = tuple(t["name"] for t in TOOL_SCHEMAS)

PERMISSION_MODES = ("default", "acceptEdits", "bypassPermissions", "plan")
_EDIT_TOOLS = frozenset({"Write", "Edit"})
EDIT_TOOLS = _EDIT_TOOLS  # the tools a permission dialog shows as a file edit
_DEFAULT_BASH_TIMEOUT_MS = 120_000
_MAX_BASH_TIMEOUT_MS = 600_000
_DEFAULT_OUTPUT_LIMIT = 30_000  # Claude Code's BASH_MAX_OUTPUT_LENGTH default
_READ_DEFAULT_LIMIT = 2000
_EMPTY_FILE_NOTE = (
    "<system-reminder>Warning: the file exists but the contents are empty.</system-reminder>"
)


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call produced: the text the model sees and the structured record."""

    content: str
    is_error: bool = False
    response: Mapping[str, Any] = field(default_factory=dict)  # Claude Code's toolUseResult
    denied: bool = False


# ----------------------------------------------------------------------------- permissions


def split_tool_rules(values: Sequence[str]) -> tuple[str, ...]:
    """``--allowedTools`` takes space- or comma-separated rules; commas inside () stay.

    >>> split_tool_rules(["Bash(git add:*),Write", "Edit"])
    ('Bash(git add:*)', 'Write', 'Edit')
    """
    rules: list[str] = []
    for value in values:
        depth, current = 0, ""
        for ch in value:
            depth += ch == "("
            depth -= ch == ")"
            if ch in ", " and depth == 0:
                if current:
                    rules.append(current)
                current = ""
            else:
                current += ch
        if current:
            rules.append(current)
    return tuple(rules)


def _rule_allows(rule: str, tool: str, tool_input: Mapping[str, Any]) -> bool:
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", rule.strip())
    if match is None or match.group(1) != tool:
        return False
    spec = match.group(2)
    if spec is None or spec in ("", "*"):
        return True
    if tool == "Bash":
        command = str(tool_input.get("command", "")).strip()
        if spec.endswith(":*"):
            prefix = spec[:-2]
            return command == prefix or command.startswith(prefix + " ")
        return command == spec
    return fnmatch.fnmatch(str(tool_input.get("file_path", "")), spec)


@dataclass(frozen=True)
class PermissionPolicy:
    """Headless (``-p``) permission rules: what is not allowed up front is denied."""

    mode: str = "default"
    allowed: tuple[str, ...] = ()

    def denial(self, tool: str, tool_input: Mapping[str, Any]) -> str | None:
        """The denial text for a call that needs permission, or None when it may run.

        Wording from Claude Code's headless denials (anthropics/claude-code-action#20,
        siteboon/claudecodeui#122).

        >>> PermissionPolicy().denial("Bash", {"command": "ls"})
        "Claude requested permissions to use Bash, but you haven't granted it yet."
        >>> PermissionPolicy("acceptEdits").denial("Write", {"file_path": "/a"}) is None
        True
        """
        if tool == "Read" or self.mode == "bypassPermissions":
            return None
        if tool in _EDIT_TOOLS and self.mode == "acceptEdits":
            return None
        if any(_rule_allows(rule, tool, tool_input) for rule in self.allowed):
            return None
        if tool in _EDIT_TOOLS:
            path = tool_input.get("file_path", "")
            return (
                f"Claude requested permissions to write to {path}, but you haven't granted it yet."
            )
        return f"Claude requested permissions to use {tool}, but you haven't granted it yet."


# ----------------------------------------------------------------------------- execution


def _error(text: str, **response: Any) -> ToolOutcome:
    # Claude Code wraps input validation failures in <tool_use_error> tags.
    return ToolOutcome(f"<tool_use_error>{text}</tool_use_error>", True, response)


def _resolve(cwd: Path, raw: object) -> Path:
    path = Path(str(raw))
    return path if path.is_absolute() else cwd / path


def run_tool(name: str, tool_input: Mapping[str, Any], cwd: Path) -> ToolOutcome:
    """Execute one tool call in ``cwd``. Unknown tools and bad inputs are errors, not raises."""
    try:
        if name == "Write":
            return _write(cwd, tool_input)
        if name == "Edit":
            return _edit(cwd, tool_input)
        if name == "Read":
            return _read(cwd, tool_input)
        if name == "Bash":
            return _bash(cwd, tool_input)
    except KeyError as exc:
        return _error(f"InputValidationError: {name} failed: required parameter {exc} is missing")
    except OSError as exc:
        return ToolOutcome(f"Error: {exc}", True, {"error": str(exc)})
    return _error(f"Error: No such tool available: {name}")


def _write(cwd: Path, tool_input: Mapping[str, Any]) -> ToolOutcome:
    path = _resolve(cwd, tool_input["file_path"])
    content = str(tool_input["content"])
    existed = path.exists()
    mode = path.stat().st_mode & 0o7777 if existed else 0o644
    atomic.write_bytes(path, content.encode("utf-8"), mode=mode)
    if existed:
        text = f"The file {path} has been updated successfully."
    else:
        text = f"File created successfully at: {path}"
    kind = "update" if existed else "create"
    return ToolOutcome(text, False, {"type": kind, "filePath": str(path), "content": content})


def _edit(cwd: Path, tool_input: Mapping[str, Any]) -> ToolOutcome:
    path = _resolve(cwd, tool_input["file_path"])
    old, new = str(tool_input["old_string"]), str(tool_input["new_string"])
    replace_all = bool(tool_input.get("replace_all", False))
    if old == new:
        return _error("No changes to make: old_string and new_string are exactly the same.")
    if not path.exists():
        if old == "":
            atomic.write_bytes(path, new.encode("utf-8"))
            return ToolOutcome(
                f"File created successfully at: {path}", False, {"filePath": str(path)}
            )
        return _error("File does not exist.")
    if path.is_dir():
        return _error(f"EISDIR: illegal operation on a directory, read '{path}'")
    original = path.read_text(encoding="utf-8")
    if old == "":
        if original.strip():
            return _error("Cannot create new file - file already exists.")
        updated = new
    else:
        count = original.count(old)
        if count == 0:
            return _error(f"String to replace not found in file.\nString: {old}")
        if count > 1 and not replace_all:
            return _error(
                f"Found {count} matches of the string to replace, but replace_all is false. "
                "To replace all occurrences, set replace_all to true. To replace only one "
                f"occurrence, please provide more context to uniquely identify the instance.\n"
                f"String: {old}"
            )
        updated = original.replace(old, new) if replace_all else original.replace(old, new, 1)
    atomic.write_bytes(path, updated.encode("utf-8"), mode=path.stat().st_mode & 0o7777)
    response = {
        "filePath": str(path),
        "oldString": old,
        "newString": new,
        "originalFile": original,
        "replaceAll": replace_all,
    }
    return ToolOutcome(f"The file {path} has been updated successfully.", False, response)


def _read(cwd: Path, tool_input: Mapping[str, Any]) -> ToolOutcome:
    path = _resolve(cwd, tool_input["file_path"])
    if not path.exists():
        return _error("File does not exist.")
    if path.is_dir():
        return _error(f"EISDIR: illegal operation on a directory, read '{path}'")
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    offset = max(int(tool_input.get("offset") or 1), 1)
    limit = int(tool_input.get("limit") or _READ_DEFAULT_LIMIT)
    chosen = lines[offset - 1 : offset - 1 + limit]
    numbered = "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(chosen, start=offset))
    if not text:
        numbered = _EMPTY_FILE_NOTE
    response = {
        "type": "text",
        "file": {
            "filePath": str(path),
            "content": "\n".join(chosen),
            "numLines": len(chosen),
            "startLine": offset,
            "totalLines": len(lines),
        },
    }
    return ToolOutcome(numbered, False, response)


def truncate_output(text: str, limit: int) -> str:
    """Keep the head and tail of long output, saying how much was cut.

    >>> truncate_output("a" * 10, 20)
    'aaaaaaaaaa'
    >>> truncate_output("x" * 100, 20)
    'xxxxxxxxxx\\n\\n... [80 characters truncated] ...\\n\\nxxxxxxxxxx'
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n\n... [{cut} characters truncated] ...\n\n{text[len(text) - half :]}"


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (they share our process group, so no killpg)."""
    # Imported here: only a timed-out or interrupted command needs it.
    from pytest_orch_recovery.infra.processes import child_pids

    for child in child_pids(pid):
        _kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _output_file(name: str) -> BinaryIO:
    """A new anonymous file in memory, gone when closed (as ``tempfile.TemporaryFile()``)."""
    return os.fdopen(os.memfd_create(f"bash-{name}", os.MFD_CLOEXEC), "w+b")


def _bash(cwd: Path, tool_input: Mapping[str, Any]) -> ToolOutcome:
    command = str(tool_input["command"])
    default_ms = int(os.environ.get("BASH_DEFAULT_TIMEOUT_MS", _DEFAULT_BASH_TIMEOUT_MS))
    timeout_ms = min(float(tool_input.get("timeout") or default_ms), _MAX_BASH_TIMEOUT_MS)
    limit = int(os.environ.get("BASH_MAX_OUTPUT_LENGTH", _DEFAULT_OUTPUT_LIMIT))
    # Output goes to files, not pipes: a background grandchild holding a pipe open must not
    # keep the agent waiting after the command itself has exited. Anonymous memory files
    # (memfd_create, Linux) rather than tempfile's: tempfile and its shutil weigh on every
    # sim agent's start-up.
    with _output_file("stdout") as out, _output_file("stderr") as err:
        # Same process group on purpose: a SIGINT to the agent's group reaches the command too.
        proc = subprocess.Popen(
            ["/bin/bash", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        timed_out = False
        try:
            code = proc.wait(timeout=timeout_ms / 1000.0)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc.pid)
            code = proc.wait()
        except KeyboardInterrupt:
            _kill_tree(proc.pid)
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace").rstrip("\n")
        stderr = err.read().decode("utf-8", errors="replace").rstrip("\n")
    combined = truncate_output("\n".join(s for s in (stdout, stderr) if s), limit)
    response = {"stdout": stdout, "stderr": stderr, "interrupted": timed_out, "isImage": False}
    if timed_out:
        text = f"Command timed out after {timeout_ms / 1000:g}s"
        return ToolOutcome(f"{text}\n{combined}".rstrip("\n"), True, response)
    if code != 0:
        shown = 128 - code if code < 0 else code  # -N: killed by signal N, shown as 128+N
        return ToolOutcome(f"Exit code {shown}\n{combined}".rstrip("\n"), True, response)
    return ToolOutcome(combined or "Tool ran without output or errors", False, response)
