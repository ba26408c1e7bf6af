"""Session transcripts in Claude Code's layout: ``$HOME/.claude/projects/<slug>/<id>.jsonl``.

The slug is the working directory with every non-alphanumeric character replaced by ``-``
(the layout tools that read Claude Code transcripts rely on; anthropics/claude-code#24067,
lossless-claude/lcm#534). One JSON object per line, appended and fsynced as the run goes,
so a SIGKILL loses at most the line being written; a torn last line is skipped on load.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pytest_orch_recovery.store import atomic

# typing weighs on each sim agent's start-up (docs/performance.md): for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

INTERRUPTED_TOOL_TEXT = "[Request interrupted by user for tool use]"


def project_slug(cwd: str | os.PathLike[str]) -> str:
    """Claude Code's directory name for a project.

    >>> project_slug("/work/agent_1/repo.git")
    '-work-agent-1-repo-git'
    """
    return re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


def projects_root(home: Path) -> Path:
    return home / ".claude" / "projects"


def session_path(home: Path, cwd: Path, session_id: str) -> Path:
    return projects_root(home) / project_slug(cwd) / f"{session_id}.jsonl"


def find_session(home: Path, cwd: Path, session_id: str) -> Path | None:
    """The transcript for ``session_id``: this project's first, then any project's."""
    own = session_path(home, cwd, session_id)
    if own.is_file():
        return own
    root = projects_root(home)
    if root.is_dir():
        for candidate in sorted(root.glob(f"*/{session_id}.jsonl")):
            return candidate
    return None


def latest_session(home: Path, cwd: Path) -> str | None:
    """The most recently written session of this project (for ``--continue``)."""
    directory = projects_root(home) / project_slug(cwd)
    files = [p for p in directory.glob("*.jsonl")] if directory.is_dir() else []
    if not files:
        return None
    return max(files, key=lambda p: p.stat().st_mtime_ns).stem


class SessionLog:
    """Append-only transcript of one session."""

    def __init__(self, path: Path, session_id: str, cwd: Path, version: str) -> None:
        self.path = path
        self.session_id = session_id
        self.cwd = cwd
        self.version = version
        self.last_uuid: str | None = None

    def append(
        self, kind: str, message: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> str:
        entry_uuid = str(uuid.uuid4())
        entry: dict[str, Any] = {
            "parentUuid": self.last_uuid,
            "isSidechain": False,
            "userType": "external",
            "cwd": str(self.cwd),
            "sessionId": self.session_id,
            "version": self.version,
            "type": kind,
            "message": dict(message),
            "uuid": entry_uuid,
            "timestamp": _now_iso(),
        }
        if extra:
            entry.update(extra)
        atomic.append_line(self.path, json.dumps(entry, ensure_ascii=False), mode=0o600)
        self.last_uuid = entry_uuid
        return entry_uuid

    def load(self) -> list[dict[str, Any]]:
        """The conversation stored so far, repaired so the API accepts it."""
        entries = read_entries(self.path)
        if entries:
            self.last_uuid = entries[-1].get("uuid")
        messages: list[dict[str, Any]] = []
        last_assistant_id: str | None = None
        for entry in entries:
            if entry.get("type") not in ("user", "assistant"):
                continue
            message = entry.get("message") or {}
            role = message.get("role", entry["type"])
            content = _as_blocks(message.get("content", ""))
            if role == "assistant":
                msg_id = message.get("id")
                # Claude Code may write one line per content block of a streamed message.
                if messages and messages[-1]["role"] == "assistant" and msg_id == last_assistant_id:
                    messages[-1]["content"] += content
                    continue
                last_assistant_id = msg_id
            messages.append({"role": role, "content": content})
        return repair_history(messages)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_entries(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                continue  # torn last line: the writer died mid-append
            print(
                f"{path}:{number}: skipping unreadable transcript line: {exc.msg}", file=sys.stderr
            )
    return entries


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [dict(b) for b in content]


def repair_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Make a stored conversation valid to send again.

    A tool call whose result never arrived (the agent was killed while the tool ran) gets a
    synthetic error result, as Claude Code does on resume; consecutive messages of the same
    role are merged so tool results stay in the user turn right after their tool calls.

    >>> hist = [{"role": "user", "content": [{"type": "text", "text": "go"}]},
    ...         {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
    ...                                             "name": "Bash", "input": {}}]}]
    >>> fixed = repair_history(hist)
    >>> fixed[-1]["content"][0]["tool_use_id"], fixed[-1]["content"][0]["is_error"]
    ('t1', True)
    """
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        _push(out, message)
        if message["role"] != "assistant":
            continue
        pending = [b["id"] for b in message["content"] if b.get("type") == "tool_use"]
        following = messages[index + 1] if index + 1 < len(messages) else None
        answered = set()
        if following is not None and following["role"] == "user":
            answered = {
                b.get("tool_use_id") for b in following["content"] if b.get("type") == "tool_result"
            }
        missing = [tid for tid in pending if tid not in answered]
        if missing:
            _push(
                out,
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": tid,
                            "content": INTERRUPTED_TOOL_TEXT,
                            "is_error": True,
                        }
                        for tid in missing
                    ],
                },
            )
    return out


def _push(out: list[dict[str, Any]], message: Mapping[str, Any]) -> None:
    content = list(message["content"])
    if out and out[-1]["role"] == message["role"]:
        if message["role"] == "user":
            # tool results must lead the user turn that answers tool calls
            merged = out[-1]["content"] + content
            results = [b for b in merged if b.get("type") == "tool_result"]
            others = [b for b in merged if b.get("type") != "tool_result"]
            out[-1]["content"] = results + others
        else:
            out[-1]["content"] += content
        return
    out.append({"role": message["role"], "content": content})
