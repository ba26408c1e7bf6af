"""An agent's checkpoint file as plain fields: schema v1, validation, hook updates, atomic writes.

This is the one implementation of the checkpoint file. It works on :class:`CheckpointFields`,
a dict with exactly the fields of :class:`~pytest_orch_recovery.engine.model.Checkpoint`, so
the ``PostToolUse`` hook processes (``orch-recovery checkpoint --from-hook`` and the chaos
fault hook, one per tool call of every agent) read, fold and write a checkpoint without
importing the engine's model and ``dataclasses`` (a large part of each hook's start-up,
docs/performance.md). :mod:`pytest_orch_recovery.infra.checkpoint` gives the engine the same
operations on ``Checkpoint`` objects, built from these fields.

The seed stores checkpoints at ``/tmp/orchestration_checkpoints/{agent_name}.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from pytest_orch_recovery.engine.errors import InvalidValue, OrchRecoveryError
from pytest_orch_recovery.store import atomic, validation

# typing weighs on the hook processes' start-up (docs/performance.md): for the type checker
# only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any, TypedDict

    class CheckpointFields(TypedDict):
        """The validated fields of a checkpoint: ``Checkpoint(**fields)`` makes the object."""

        agent: str
        task_id: str
        attempt: int
        completed_subtasks: tuple[str, ...]
        created_files: tuple[str, ...]
        next_actions: tuple[str, ...]
        updated_at: str
        session_id: str | None


SCHEMA_VERSION = 1
DEFAULT_CHECKPOINT_DIR = Path("/tmp/orchestration_checkpoints")  # the origin orchestrator's
ENV_CHECKPOINT_DIR = "ORCH_CHECKPOINT_DIR"

# Tools whose PostToolUse payload names a file the agent wrote, and the tool_input key holding it.
FILE_TOOLS: Mapping[str, str] = {
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
}

_MAX_COMMAND_CHARS = 72
MAX_CHECKPOINT_BYTES = 4 * 1024 * 1024
MAX_HOOK_INPUT_CHARS = validation.MAX_DOCUMENT_BYTES
# One simple read-only command says nothing about progress; recording it would only add noise
# to the continuation prompt built from the checkpoint.
_READ_ONLY = frozenset(
    {"ls", "pwd", "cat", "head", "tail", "grep", "rg", "find", "which", "wc", "echo", "tree"}
)
_READ_ONLY_GIT = frozenset({"status", "diff", "log", "show", "branch", "remote", "rev-parse"})
_SHELL_OPERATORS = re.compile(r"[;&|><`$(]")


class CheckpointError(OrchRecoveryError, ValueError):
    """A checkpoint file (or a value bound for one) is unusable.

    >>> str(CheckpointError(Path("/c/a.json"), "attempt", "expected an integer >= 1, got 'x'"))
    "/c/a.json: field 'attempt': expected an integer >= 1, got 'x'"
    """

    def __init__(
        self,
        path: Path,
        field: str | None,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = path
        self.field = field
        self.message = message
        self.line = line
        self.column = column
        where = str(path)
        if line is not None:
            where += f":{line}" + (f":{column}" if column is not None else "")
        what = f" field {field!r}:" if field else ""
        super().__init__(f"{where}:{what} {message}")


def new_fields(agent: str, task_id: str, attempt: int = 1) -> CheckpointFields:
    """The fields of a checkpoint nothing has been recorded in yet (``Checkpoint``'s
    defaults).

    >>> new_fields("a", "t")["completed_subtasks"], new_fields("a", "t")["session_id"]
    ((), None)
    """
    return {
        "agent": agent,
        "task_id": task_id,
        "attempt": attempt,
        "completed_subtasks": (),
        "created_files": (),
        "next_actions": (),
        "updated_at": "",
        "session_id": None,
    }


# --------------------------------------------------------------------------- locations


def checkpoint_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """The directory to use: the argument, else ``$ORCH_CHECKPOINT_DIR``, else the origin
    orchestrator's."""
    if directory is not None:
        return Path(directory)
    env = os.environ.get(ENV_CHECKPOINT_DIR)
    return Path(env) if env else DEFAULT_CHECKPOINT_DIR


def checkpoint_path(directory: str | os.PathLike[str] | None, agent: str) -> Path:
    """``<dir>/<agent>.json``; the agent name must be a plain file name.

    >>> checkpoint_path("/tmp/cp", "task-agent-5030")
    PosixPath('/tmp/cp/task-agent-5030.json')
    """
    base = checkpoint_dir(directory)
    try:
        validation.agent_name(agent)
    except validation.RuleError as exc:
        raise CheckpointError(base / "<agent>.json", "agent", str(exc)) from None
    return base / f"{agent}.json"


@contextlib.contextmanager
def checkpoint_lock(directory: str | os.PathLike[str] | None, agent: str) -> Iterator[Path]:
    """Hold ``agent``'s checkpoint lock: an ``flock`` on ``<dir>/.<agent>.lock`` beside the
    checkpoint, for one read-modify-write (parallel tool calls run parallel hooks; without it
    concurrent updates are lost). Yields the checkpoint's path."""
    path = checkpoint_path(directory, agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{agent}.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise CheckpointError(lock, None, f"cannot open lock: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the kernel wakes us when the holder is done
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def utc_now() -> str:
    """The current time as ISO 8601 UTC with a ``Z`` suffix, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- encoding


def fields_to_json(fields: CheckpointFields, *, workspace: Path | None = None) -> dict[str, Any]:
    """The JSON object of the file (schema v1) holding ``fields``."""
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "agent": fields["agent"],
        "task_id": fields["task_id"],
        "attempt": fields["attempt"],
        "completed_subtasks": list(fields["completed_subtasks"]),
        "created_files": list(fields["created_files"]),
        "next_actions": list(fields["next_actions"]),
        "updated_at": fields["updated_at"],
        "session_id": fields["session_id"],
    }
    if workspace is not None:
        out["workspace"] = str(workspace)
    return out


def write_fields(
    directory: str | os.PathLike[str] | None,
    fields: CheckpointFields,
    *,
    workspace: Path | None = None,
) -> Path:
    """Validate ``fields`` and write them atomically; stamps ``updated_at`` when it is empty."""
    path = checkpoint_path(directory, fields["agent"])
    if not fields["updated_at"]:
        fields = {**fields, "updated_at": utc_now()}
    ws = None if workspace is None else Path(os.path.abspath(workspace))
    # Refuse to write what we would refuse to read; store created files in their normal form.
    fields = _validate(path, fields_to_json(fields, workspace=ws), fields["agent"], ws)
    fields["created_files"] = _unique(fields["created_files"])
    atomic.write_json(path, fields_to_json(fields, workspace=ws))
    return path


# --------------------------------------------------------------------------- decoding


def read_fields(
    directory: str | os.PathLike[str] | None, agent: str, *, workspace: Path | None = None
) -> tuple[CheckpointFields, Path | None] | None:
    """The agent's checkpoint and the workspace the file records, or None when there is none.

    Raises :class:`CheckpointError` for a torn or invalid file. ``created_files`` are checked
    against ``workspace`` (or, when not given, the workspace the file records).
    """
    path = checkpoint_path(directory, agent)
    if not path.exists() and not path.is_symlink():
        return None
    try:
        raw = validation.read_bounded(path, MAX_CHECKPOINT_BYTES)
    except validation.RuleError as exc:
        raise CheckpointError(path, None, str(exc)) from None
    data = _decode(path, raw)
    ws = None if workspace is None else Path(os.path.abspath(workspace))
    fields = _validate(path, data, agent, ws)
    recorded = data.get("workspace")
    return fields, Path(recorded) if isinstance(recorded, str) else None


def parse_fields(
    path: Path, raw: bytes, agent: str | None = None, *, workspace: Path | None = None
) -> CheckpointFields:
    """Decode and validate the bytes of a checkpoint file named ``path``."""
    ws = None if workspace is None else Path(os.path.abspath(workspace))
    return _validate(path, _decode(path, raw), agent, ws)


def _decode(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CheckpointError(path, None, "not UTF-8 text", line=line) from None
    try:
        data = validation.loads_json(text)
    except validation.DocumentError as exc:
        raise CheckpointError(
            path, exc.field or None, str(exc), line=exc.line, column=exc.column
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(path, None, f"expected a JSON object, got {_kind(data)}")
    return data


def read_fields_safely(
    directory: str | os.PathLike[str] | None, agent: str, workspace: Path | None
) -> tuple[CheckpointFields | None, str | None]:
    """``(fields, None)``, ``(None, None)`` when absent, ``(None, problem)`` when unusable.

    Never raises, whatever the file holds or the arguments are: the engine restarts the agent
    instead of resuming.
    """
    try:
        record = read_fields(directory, agent, workspace=workspace)
    except CheckpointError as exc:
        return None, str(exc)
    except (OSError, ValueError, RecursionError) as exc:  # e.g. a NUL in a path given to us
        return None, f"{checkpoint_dir(directory)}: checkpoint of {agent!r} unusable: {exc}"
    return (None, None) if record is None else (record[0], None)


_REQUIRED: tuple[str, ...] = (
    "schema_version",
    "agent",
    "task_id",
    "attempt",
    "completed_subtasks",
    "created_files",
    "next_actions",
    "updated_at",
)


def _validate(
    path: Path, data: Mapping[str, Any], agent: str | None, workspace: Path | None
) -> CheckpointFields:
    for name in _REQUIRED:
        if name not in data:
            raise CheckpointError(path, name, "required field is missing")
    version = data["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise CheckpointError(path, "schema_version", f"expected {SCHEMA_VERSION}, got {version!r}")
    name = _string(path, data, "agent")
    if not name:
        raise CheckpointError(path, "agent", "must not be empty")
    if agent is not None and name != agent:
        raise CheckpointError(path, "agent", f"belongs to {name!r}, expected {agent!r}")
    task_id = _string(path, data, "task_id")
    attempt = data["attempt"]
    if type(attempt) is not int or attempt < 1:
        raise CheckpointError(path, "attempt", f"expected an integer >= 1, got {attempt!r}")
    updated_at = _string(path, data, "updated_at")
    _check_utc(path, updated_at)
    session_id = data.get("session_id")
    if session_id is not None and not isinstance(session_id, str):
        raise CheckpointError(path, "session_id", f"expected a string or null, got {session_id!r}")
    recorded = data.get("workspace")
    if recorded is not None and (
        not isinstance(recorded, str)
        or not os.path.isabs(recorded)
        or "\x00" in recorded
        or len(recorded) > validation.MAX_PATH_CHARS
    ):
        raise CheckpointError(
            path, "workspace", f"expected an absolute path without NUL, got {recorded!r}"[:200]
        )
    root = workspace if workspace is not None else (Path(recorded) if recorded else None)
    created = _strings(path, data, "created_files")
    if root is not None:
        created = tuple(_inside(path, root, p) for p in created)
    return {
        "agent": name,
        "task_id": task_id,
        "attempt": attempt,
        "completed_subtasks": _strings(path, data, "completed_subtasks"),
        "created_files": created,
        "next_actions": _strings(path, data, "next_actions"),
        "updated_at": updated_at,
        "session_id": session_id,
    }


def _string(path: Path, data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise CheckpointError(path, name, f"expected a string, got {_kind(value)}")
    return value


def _strings(path: Path, data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data[name]
    if not isinstance(value, list):
        raise CheckpointError(path, name, f"expected a list of strings, got {_kind(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise CheckpointError(path, f"{name}[{i}]", f"expected a string, got {_kind(item)}")
    return tuple(value)


def _check_utc(path: Path, stamp: str) -> None:
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        raise CheckpointError(
            path, "updated_at", f"expected an ISO 8601 UTC time, got {stamp!r}"
        ) from None
    offset = when.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise CheckpointError(path, "updated_at", f"expected a UTC time, got {stamp!r}")


def _inside(path: Path, workspace: Path, name: str) -> str:
    """``name`` as a path relative to ``workspace``; CheckpointError when it escapes it."""
    field = "created_files"
    if not name or "\x00" in name:
        raise CheckpointError(path, field, f"invalid path {name!r}")
    relative = workspace_relative(workspace, name)
    if relative is None:
        raise CheckpointError(path, field, f"{name!r} is outside the workspace {workspace}")
    return relative


def workspace_relative(workspace: Path, name: str) -> str | None:
    """``name`` relative to ``workspace``, or None when it lies (or links) outside it.

    >>> workspace_relative(Path("/w"), "/w/docs/fake3.md"), workspace_relative(Path("/w"), "../x")
    ('docs/fake3.md', None)
    """
    if "\x00" in name:
        return None
    root = Path(os.path.abspath(workspace))
    candidate = Path(name)
    if candidate.is_absolute():
        try:
            candidate = candidate.relative_to(root)
        except ValueError:
            return None
    parts = PurePosixPath(candidate.as_posix()).parts
    if not parts or ".." in parts:
        return None
    # A symlink anywhere on the way may point out of the workspace.
    try:
        resolved = (root / candidate).resolve()
        if not resolved.is_relative_to(root.resolve()):
            return None
    except (OSError, RuntimeError):  # symlink loops
        return None
    return candidate.as_posix()


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- hook updates


def fold_tool_use(
    fields: CheckpointFields,
    tool_name: str,
    tool_input: Mapping[str, Any],
    tool_response: object,
    *,
    workspace: Path,
    session_id: str | None = None,
) -> CheckpointFields:
    """Fold one Claude Code tool call into the checkpoint's fields (a new dict).

    File tools add the file (relative to the workspace, once) and a "wrote"/"edited" subtask;
    Bash adds a "ran: ..." subtask unless the call failed or only looked around.
    ``updated_at`` is stamped when anything changed.

    >>> done = fold_tool_use(new_fields("task-agent-5030", "fake3"), "Write",
    ...                      {"file_path": "/w/fake3.md", "content": "# /fake3"},
    ...                      {"type": "create", "filePath": "/w/fake3.md"}, workspace=Path("/w"))
    >>> done["created_files"], done["completed_subtasks"]
    (('fake3.md',), ('wrote fake3.md',))
    """
    subtasks = list(fields["completed_subtasks"])
    created = list(fields["created_files"])
    if not tool_failed(tool_response):
        if tool_name in FILE_TOOLS:
            target = tool_input.get(FILE_TOOLS[tool_name])
            if isinstance(target, str) and target:
                relative = workspace_relative(workspace, target)
                verb = "wrote" if tool_name == "Write" else "edited"
                subtasks.append(f"{verb} {relative if relative is not None else target}")
                if relative is not None:
                    created.append(relative)
        elif tool_name == "Bash":
            command = tool_input.get("command")
            if isinstance(command, str) and not _read_only(command):
                subtasks.append("ran: " + summarize_command(command))
    updated: CheckpointFields = {
        **fields,
        "completed_subtasks": _unique(subtasks),
        "created_files": _unique(created),
        "session_id": session_id if session_id else fields["session_id"],
    }
    if updated != fields:
        updated["updated_at"] = utc_now()
    return updated


def fold_hook_payload(
    fields: CheckpointFields, payload: Mapping[str, Any], *, workspace: Path | None = None
) -> CheckpointFields:
    """Fold a whole ``PostToolUse`` hook input (as read from the hook's stdin) into
    ``fields``.

    The payload carries ``session_id``, ``transcript_path``, ``cwd``, ``hook_event_name``,
    ``tool_name``, ``tool_input`` and ``tool_response`` (Claude Code hooks reference). A
    ``PostToolUseFailure`` event records nothing but the session.
    """
    root = workspace if workspace is not None else _payload_cwd(payload)
    session = payload.get("session_id")
    session_id = session if isinstance(session, str) else None
    tool_name = payload.get("tool_name")
    tool_input = payload.get("tool_input")
    response = payload.get("tool_response")
    if payload.get("hook_event_name") == "PostToolUseFailure":
        response = {"is_error": True, "error": payload.get("error")}
    if not isinstance(tool_name, str) or not isinstance(tool_input, Mapping):
        tool_name, tool_input = "", {}
    return fold_tool_use(
        fields, tool_name, tool_input, response, workspace=root, session_id=session_id
    )


def record_hook_input(
    text: str,
    *,
    agent: str,
    directory: str | os.PathLike[str] | None = None,
    task_id: str = "",
    attempt: int = 1,
    workspace: Path | None = None,
) -> str | None:
    """Fold one ``PostToolUse`` hook input, the raw text of the hook's stdin, into ``agent``'s
    checkpoint and save it when anything changed. The workspace is ``workspace`` or the
    payload's ``cwd``; ``task_id`` and ``attempt`` seed a checkpoint that does not exist yet.

    Returns why an unreadable checkpoint was replaced by a fresh one (None when it was not);
    raises :class:`ValueError` on input that is not a hook payload. This is what both
    ``orch-recovery checkpoint --from-hook`` and the chaos fault hook run.
    """
    if len(text) > MAX_HOOK_INPUT_CHARS:
        raise InvalidValue(
            f"<stdin>: hook input is {len(text)} characters long; the limit is "
            f"{MAX_HOOK_INPUT_CHARS}"
        )
    try:
        payload: Any = validation.loads_json(text)
    except validation.DocumentError as exc:
        where = "" if exc.line is None else f":{exc.line}:{exc.column}"
        raise InvalidValue(
            f"<stdin>{where}: invalid hook input JSON: "
            f"{exc.describe().removeprefix('invalid JSON: ')}"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidValue("<stdin>: hook input is not a JSON object")
    if workspace is None:
        cwd = payload.get("cwd")
        if (
            not isinstance(cwd, str)
            or not os.path.isabs(cwd)
            or "\x00" in cwd
            or len(cwd) > validation.MAX_PATH_CHARS
        ):
            raise InvalidValue(
                f"<stdin>: field 'cwd': expected an absolute path without NUL, got {cwd!r}"[:200]
            )
        workspace = Path(cwd)
    workspace = workspace.absolute()
    with checkpoint_lock(directory, agent):
        fields, problem = read_fields_safely(directory, agent, workspace)
        if fields is None:
            fields = new_fields(agent, task_id, attempt)
        updated = fold_hook_payload(fields, payload, workspace=workspace)
        if updated != fields or problem is not None or not fields["updated_at"]:
            write_fields(directory, updated, workspace=workspace)
    return problem


def _payload_cwd(payload: Mapping[str, Any]) -> Path:
    cwd = payload.get("cwd")
    if not isinstance(cwd, str) or not os.path.isabs(cwd):
        raise InvalidValue(f"hook payload has no absolute 'cwd' (got {cwd!r}) and no workspace")
    return Path(cwd)


def tool_failed(tool_response: object) -> bool:
    """Whether a tool response says the call failed.

    Claude Code's Bash response is ``{stdout, stderr, interrupted, isImage}`` with no exit status
    (PostToolUse fires on success; failures go to ``PostToolUseFailure``), so an interrupted call
    or an explicit error flag / non-zero exit code is what marks a failure here.

    >>> tool_failed({"stdout": "", "stderr": "", "interrupted": True, "isImage": False})
    True
    >>> tool_failed({"stdout": "ok", "stderr": "", "interrupted": False, "isImage": False})
    False
    """
    if isinstance(tool_response, str):
        return tool_response.lstrip().lower().startswith("error")
    if not isinstance(tool_response, Mapping):
        return False
    if tool_response.get("interrupted") is True or tool_response.get("success") is False:
        return True
    if tool_response.get("is_error") is True or tool_response.get("isError") is True:
        return True
    for key in ("exit_code", "exitCode", "returnCode", "code"):
        code = tool_response.get(key)
        if type(code) is int and code != 0:
            return True
    return False


def summarize_command(command: str, limit: int = _MAX_COMMAND_CHARS) -> str:
    """The first line of a command, whitespace collapsed, cut at a word with ``...``.

    >>> summarize_command('git commit -m "Add /fake3 command documentation and runner"', 30)
    'git commit -m "Add /fake3 ...'
    """
    lines = [ln for ln in command.strip().splitlines() if ln.strip()]
    first = " ".join(lines[0].split()) if lines else ""
    more = len(lines) > 1
    if len(first) <= limit and not more:
        return first
    if len(first) > limit:
        cut = first[: limit - 4]  # room for " ..."
        space = cut.rfind(" ")
        first = cut[: space + 1] if space > limit // 2 else cut
    return first.rstrip() + " ..."


def _read_only(command: str) -> bool:
    text = command.strip()
    if not text or _SHELL_OPERATORS.search(text) or "\n" in text:
        return False
    words = text.split()
    if words[0] == "git":
        return len(words) > 1 and words[1] in _READ_ONLY_GIT
    return words[0] in _READ_ONLY


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
