"""An agent's progress file: schema v1, atomic writes, strict validation, hook updates.

The seed stores checkpoints at ``/tmp/orchestration_checkpoints/{agent_name}.json``. Real agents
write theirs through a Claude Code ``PostToolUse`` hook that runs ``orch-recovery checkpoint
--from-hook``; the engine reads them with :func:`read_checkpoint_safely`, which turns any damage
into a reason to restart instead of a crash.

The file itself (validation, the fold of a hook input, the atomic write) is implemented once,
on plain fields, in :mod:`.checkpoint_file`, which the hook processes import alone; this module
gives the same operations on :class:`~pytest_orch_recovery.engine.model.Checkpoint` objects.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_orch_recovery.engine.model import Checkpoint
from pytest_orch_recovery.infra import checkpoint_file
from pytest_orch_recovery.infra.checkpoint_file import (
    DEFAULT_CHECKPOINT_DIR,
    ENV_CHECKPOINT_DIR,
    FILE_TOOLS,
    MAX_CHECKPOINT_BYTES,
    MAX_HOOK_INPUT_CHARS,
    SCHEMA_VERSION,
    CheckpointError,
    checkpoint_dir,
    checkpoint_lock,
    checkpoint_path,
    record_hook_input,
    summarize_command,
    tool_failed,
    utc_now,
    workspace_relative,
)

if TYPE_CHECKING:
    from pytest_orch_recovery.infra.checkpoint_file import CheckpointFields

# The names of checkpoint_file this module passes on are public here too.
__all__ = [
    "DEFAULT_CHECKPOINT_DIR",
    "ENV_CHECKPOINT_DIR",
    "FILE_TOOLS",
    "HOOK_MATCHER",
    "HOOK_TIMEOUT_SECONDS",
    "MAX_CHECKPOINT_BYTES",
    "MAX_HOOK_INPUT_CHARS",
    "SCHEMA_VERSION",
    "CheckpointError",
    "apply_hook_payload",
    "apply_tool_use",
    "checkpoint_dir",
    "checkpoint_lock",
    "checkpoint_path",
    "checkpoint_to_json",
    "hook_command",
    "hook_settings",
    "load_checkpoint",
    "load_checkpoint_record",
    "parse_checkpoint",
    "read_checkpoint_safely",
    "record_hook_input",
    "save_checkpoint",
    "summarize_command",
    "tool_failed",
    "utc_now",
    "workspace_relative",
]

HOOK_MATCHER = "Write|Edit|MultiEdit|Bash"
HOOK_TIMEOUT_SECONDS = 30  # Claude Code's hook ``timeout`` is in seconds


def _fields(cp: Checkpoint) -> CheckpointFields:
    return {
        "agent": cp.agent,
        "task_id": cp.task_id,
        "attempt": cp.attempt,
        "completed_subtasks": cp.completed_subtasks,
        "created_files": cp.created_files,
        "next_actions": cp.next_actions,
        "updated_at": cp.updated_at,
        "session_id": cp.session_id,
    }


# --------------------------------------------------------------------------- encoding


def checkpoint_to_json(cp: Checkpoint, *, workspace: Path | None = None) -> dict[str, Any]:
    return checkpoint_file.fields_to_json(_fields(cp), workspace=workspace)


def save_checkpoint(
    directory: str | os.PathLike[str] | None, cp: Checkpoint, *, workspace: Path | None = None
) -> Path:
    """Validate ``cp`` and write it atomically; stamps ``updated_at`` when it is empty."""
    return checkpoint_file.write_fields(directory, _fields(cp), workspace=workspace)


# --------------------------------------------------------------------------- decoding


def load_checkpoint(
    directory: str | os.PathLike[str] | None, agent: str, *, workspace: Path | None = None
) -> Checkpoint | None:
    """The agent's checkpoint, or None when there is none.

    Raises :class:`CheckpointError` for a torn or invalid file. ``created_files`` are checked
    against ``workspace`` (or, when not given, the workspace the file records).
    """
    record = load_checkpoint_record(directory, agent, workspace=workspace)
    return None if record is None else record[0]


def load_checkpoint_record(
    directory: str | os.PathLike[str] | None, agent: str, *, workspace: Path | None = None
) -> tuple[Checkpoint, Path | None] | None:
    """Like :func:`load_checkpoint`, also returning the workspace the file records."""
    record = checkpoint_file.read_fields(directory, agent, workspace=workspace)
    return None if record is None else (Checkpoint(**record[0]), record[1])


def parse_checkpoint(
    path: Path, raw: bytes, agent: str | None = None, *, workspace: Path | None = None
) -> Checkpoint:
    """Decode and validate the bytes of a checkpoint file named ``path``."""
    return Checkpoint(**checkpoint_file.parse_fields(path, raw, agent, workspace=workspace))


def read_checkpoint_safely(
    directory: str | os.PathLike[str] | None, agent: str, workspace: Path | None
) -> tuple[Checkpoint | None, str | None]:
    """``(checkpoint, None)``, ``(None, None)`` when absent, ``(None, problem)`` when unusable.

    Never raises, whatever the file holds or the arguments are: the engine restarts the agent
    instead of resuming.
    """
    fields, problem = checkpoint_file.read_fields_safely(directory, agent, workspace)
    return (None if fields is None else Checkpoint(**fields)), problem


# --------------------------------------------------------------------------- hook updates


def apply_tool_use(
    cp: Checkpoint,
    tool_name: str,
    tool_input: Mapping[str, Any],
    tool_response: object,
    *,
    workspace: Path,
    session_id: str | None = None,
) -> Checkpoint:
    """Fold one Claude Code tool call into the checkpoint.

    File tools add the file (relative to the workspace, once) and a "wrote"/"edited" subtask;
    Bash adds a "ran: ..." subtask unless the call failed or only looked around.

    >>> cp = Checkpoint("task-agent-5030", "fake3")
    >>> cp = apply_tool_use(cp, "Write", {"file_path": "/w/fake3.md", "content": "# /fake3"},
    ...                     {"type": "create", "filePath": "/w/fake3.md"}, workspace=Path("/w"))
    >>> cp.created_files, cp.completed_subtasks
    (('fake3.md',), ('wrote fake3.md',))
    """
    return Checkpoint(
        **checkpoint_file.fold_tool_use(
            _fields(cp),
            tool_name,
            tool_input,
            tool_response,
            workspace=workspace,
            session_id=session_id,
        )
    )


def apply_hook_payload(
    cp: Checkpoint, payload: Mapping[str, Any], *, workspace: Path | None = None
) -> Checkpoint:
    """Fold a whole ``PostToolUse`` hook input (as read from the hook's stdin) into ``cp``
    (:func:`.checkpoint_file.fold_hook_payload`)."""
    return Checkpoint(
        **checkpoint_file.fold_hook_payload(_fields(cp), payload, workspace=workspace)
    )


# --------------------------------------------------------------------------- hook installation


def hook_command(
    agent: str, *, directory: str | os.PathLike[str] | None = None, program: str = "orch-recovery"
) -> str:
    """The shell command a ``PostToolUse`` hook runs to keep ``agent``'s checkpoint.

    >>> hook_command("task-agent-5030", directory="/tmp/cp dir")
    "orch-recovery checkpoint --from-hook --agent task-agent-5030 --dir '/tmp/cp dir'"
    """
    parts = [program, "checkpoint", "--from-hook", "--agent", agent]
    if directory is not None:
        parts += ["--dir", os.fspath(directory)]
    return " ".join(shlex.quote(p) for p in parts)


def hook_settings(command: str) -> dict[str, Any]:
    """The ``.claude/settings.json`` fragment that installs the checkpoint hook.

    Shape from the Claude Code hooks reference: ``hooks.<Event>`` is a list of matchers, each
    with a ``hooks`` list of ``{"type": "command", "command": ..., "timeout": seconds}``.

    >>> hook_settings("orch-recovery checkpoint --from-hook")["hooks"]["PostToolUse"][0]["matcher"]
    'Write|Edit|MultiEdit|Bash'
    """
    return {
        "hooks": {
            "PostToolUse": [
                {
                    "matcher": HOOK_MATCHER,
                    "hooks": [
                        {"type": "command", "command": command, "timeout": HOOK_TIMEOUT_SECONDS}
                    ],
                }
            ]
        }
    }
