"""Install our hook in a worktree's ``.claude/settings.local.json`` without losing the user's.

The file may already hold the operator's own settings (``permissions.allow``, other hooks, an
``env`` block): they are kept. Our hook is the one ``PostToolUse`` hook whose command runs
this package (``-m pytest_orch_recovery...``); installing again replaces it, so the file holds
it once however often an attempt is launched. A file that is not a JSON object is an error
naming the file and line, never silently replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.store import atomic

SETTINGS_FILE = Path(".claude") / "settings.local.json"
HOOK_EVENT = "PostToolUse"
_OURS = "pytest_orch_recovery"  # every command we install runs a module of this package


class SettingsError(OrchRecoveryError, ValueError):
    """A settings file we must not overwrite cannot be read as settings."""


def _is_ours(hook: object) -> bool:
    return isinstance(hook, dict) and _OURS in str(hook.get("command", ""))


def merge_hook(
    settings: dict[str, Any], *, matcher: str, command: str, timeout: int
) -> dict[str, Any]:
    """``settings`` with our ``PostToolUse`` hook in place of any earlier one of ours.

    >>> s = {"permissions": {"allow": ["Bash(ls)"]}}
    >>> s = merge_hook(s, matcher="Write", command="python -m pytest_orch_recovery x", timeout=9)
    >>> s = merge_hook(s, matcher="Write", command="python -m pytest_orch_recovery y", timeout=9)
    >>> s["permissions"], [h["command"] for e in s["hooks"]["PostToolUse"] for h in e["hooks"]]
    ({'allow': ['Bash(ls)']}, ['python -m pytest_orch_recovery y'])
    """
    merged = dict(settings)
    hooks = dict(merged.get("hooks") or {})
    entries: list[Any] = []
    for entry in hooks.get(HOOK_EVENT) or []:
        if isinstance(entry, dict) and isinstance(entry.get("hooks"), list):
            kept = [h for h in entry["hooks"] if not _is_ours(h)]
            if not kept:
                continue  # an entry that held only our old hook
            entry = {**entry, "hooks": kept}
        entries.append(entry)
    entries.append(
        {
            "matcher": matcher,
            "hooks": [{"type": "command", "command": command, "timeout": timeout}],
        }
    )
    hooks[HOOK_EVENT] = entries
    merged["hooks"] = hooks
    return merged


def read_settings(path: Path) -> dict[str, Any]:
    """The settings object in ``path``; {} when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}:{exc.lineno}: settings: not JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}:1: settings: expected a JSON object")
    if not isinstance(data.get("hooks", {}), dict):
        raise SettingsError(f"{path}:1: hooks: expected a JSON object")
    return data


def install_hook(worktree: Path, *, matcher: str, command: str, timeout: int = 3600) -> Path:
    """Merge our hook into ``<worktree>/.claude/settings.local.json`` (written atomically)."""
    path = worktree / SETTINGS_FILE
    merged = merge_hook(read_settings(path), matcher=matcher, command=command, timeout=timeout)
    atomic.write_json(path, merged)
    return path
