"""``orch-recovery checkpoint``: create, update or show an agent's checkpoint.

With ``--from-hook`` it reads one Claude Code ``PostToolUse`` hook input from stdin and folds it
in. That mode always exits 0: Claude Code treats a non-zero hook exit as an error (exit 2 on
PostToolUse feeds stderr back to the model as a "blocking error"; other codes are shown as a
hook error), so a broken checkpoint would otherwise disturb the very agent it is meant to help.
Problems are reported on stderr, where they land in Claude Code's debug log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pytest_orch_recovery.engine.errors import InvalidValue, UsageError
from pytest_orch_recovery.infra.argtypes import positive_int

# The checkpoint as plain fields, not the engine's Checkpoint: this command runs after every
# tool call of every agent, and the model with dataclasses weighs on its start-up.
from pytest_orch_recovery.infra.checkpoint_file import (
    ENV_CHECKPOINT_DIR,
    MAX_HOOK_INPUT_CHARS,
    CheckpointError,
    checkpoint_lock,
    checkpoint_path,
    fields_to_json,
    new_fields,
    read_fields,
    record_hook_input,
    utc_now,
    workspace_relative,
    write_fields,
)
from pytest_orch_recovery.store import validation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pytest_orch_recovery.infra.checkpoint_file import CheckpointFields

ENV_AGENT = "ORCH_AGENT"
ENV_TASK_ID = "ORCH_TASK_ID"
_PROG = "orch-recovery checkpoint"


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create, update or show an agent's checkpoint "
        "(<dir>/<agent>.json, schema v1, written atomically).",
    )
    _add_identity(parser)
    _add_progress(parser)
    _add_modes(parser)
    return parser


def _add_identity(parser: argparse.ArgumentParser) -> None:
    """Whose checkpoint, where, and for which task and attempt."""
    parser.add_argument(
        "--agent",
        metavar="NAME",
        help=f"the agent whose checkpoint this is (default: ${ENV_AGENT}); letters, digits, "
        "'-' and '_'",
    )
    parser.add_argument(
        "--dir",
        metavar="DIR",
        type=Path,
        help=f"checkpoint directory (default: ${ENV_CHECKPOINT_DIR}, "
        "else /tmp/orchestration_checkpoints)",
    )
    parser.add_argument(
        "--task-id",
        metavar="ID",
        help="the task the agent works on; needed to create a checkpoint "
        f"(default: ${ENV_TASK_ID})",
    )
    parser.add_argument(
        "--attempt", metavar="N", type=positive_int, help="attempt number, 1 for the first"
    )
    parser.add_argument(
        "--workspace",
        metavar="DIR",
        type=Path,
        help="the agent's workspace; created files must lie inside it "
        "(with --from-hook: default is the payload's cwd)",
    )
    parser.add_argument("--session-id", metavar="ID", help="the agent's session id, for --resume")


def _add_progress(parser: argparse.ArgumentParser) -> None:
    """What the agent did and will do next."""
    parser.add_argument(
        "--completed",
        metavar="TEXT",
        nargs="+",
        action="extend",
        default=[],
        help="record completed subtasks (appended, duplicates dropped)",
    )
    parser.add_argument(
        "--created",
        metavar="PATH",
        nargs="+",
        action="extend",
        default=[],
        help="record files the agent created (relative to the workspace)",
    )
    parser.add_argument(
        "--next",
        metavar="TEXT",
        nargs="+",
        action="extend",
        default=[],
        help="replace the list of next actions",
    )


def _add_modes(parser: argparse.ArgumentParser) -> None:
    """Where the update comes from, and whether to print the result."""
    parser.add_argument(
        "--from-hook",
        action="store_true",
        help="read a Claude Code PostToolUse hook input (JSON) from stdin and apply it; "
        "never fails the hook (problems go to stderr, exit status 0)",
    )
    parser.add_argument(
        "--show", action="store_true", help="print the checkpoint JSON after any update"
    )


class _Refused(UsageError):
    """A usage error found while updating: exit 2 with this message."""


def run(args: argparse.Namespace) -> int:
    if args.from_hook:
        return _run_from_hook(args)
    agent = args.agent or os.environ.get(ENV_AGENT)
    if not agent:
        return _usage(f"--agent is required (or set ${ENV_AGENT})")
    try:
        validation.agent_name(agent)
    except validation.RuleError as exc:
        return _usage(f"--agent: {exc}")
    workspace = None if args.workspace is None else args.workspace.absolute()
    try:
        with checkpoint_lock(args.dir, agent):  # one read-modify-write at a time per agent
            shown = _update(args, agent, workspace)
    except _Refused as exc:
        return _usage(str(exc))
    except CheckpointError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    if shown is None:
        return 1
    if args.show:
        print(json.dumps(shown, indent=2))
    return 0


def _updating(args: argparse.Namespace) -> bool:
    return bool(
        args.task_id
        or args.attempt
        or args.completed
        or args.created
        or args.next
        or args.session_id
    )


def _update(
    args: argparse.Namespace, agent: str, workspace: Path | None
) -> dict[str, object] | None:
    """Load, change and save the checkpoint under its lock; what ``--show`` prints, or None
    when there is nothing to show."""
    record = read_fields(args.dir, agent, workspace=workspace)
    cp = None if record is None else record[0]
    if workspace is None and record is not None:
        workspace = record[1]  # keep the workspace the file already records
    updating = _updating(args)
    if cp is None:
        task_id = args.task_id or os.environ.get(ENV_TASK_ID)
        if args.show and not updating:
            path = checkpoint_path(args.dir, agent)
            print(f"{_PROG}: {path}: no checkpoint for agent {agent!r}", file=sys.stderr)
            return None
        if not task_id:
            raise _Refused(f"no checkpoint for {agent!r} yet: --task-id is required to create one")
        cp = new_fields(agent, task_id)
        updating = True
    if updating:
        cp = _changed(args, cp, workspace)
        try:
            write_fields(args.dir, cp, workspace=workspace)
        except CheckpointError as exc:
            raise _Refused(str(exc)) from None
    return fields_to_json(cp, workspace=workspace)


def _changed(
    args: argparse.Namespace, cp: CheckpointFields, workspace: Path | None
) -> CheckpointFields:
    created = list(cp["created_files"])
    for name in args.created:
        if workspace is not None:
            relative = workspace_relative(workspace, name)
            if relative is None:
                raise _Refused(f"--created {name!r} is outside the workspace {workspace}")
            name = relative
        created.append(name)
    return {
        "agent": cp["agent"],
        "task_id": args.task_id or cp["task_id"],
        "attempt": args.attempt or cp["attempt"],
        "completed_subtasks": tuple(dict.fromkeys([*cp["completed_subtasks"], *args.completed])),
        "created_files": tuple(dict.fromkeys(created)),
        "next_actions": tuple(args.next) if args.next else cp["next_actions"],
        "session_id": args.session_id or cp["session_id"],
        "updated_at": utc_now(),
    }


def _run_from_hook(args: argparse.Namespace) -> int:
    try:
        hook_input = validation.read_stream(sys.stdin, MAX_HOOK_INPUT_CHARS)
        _apply_hook(args, hook_input.decode("utf-8", errors="replace"))
    except Exception as exc:  # a hook must never break the agent; see the module docstring
        print(f"{_PROG}: hook input not recorded: {exc}", file=sys.stderr)
    return 0


def _apply_hook(args: argparse.Namespace, text: str) -> None:
    agent = args.agent or os.environ.get(ENV_AGENT)
    if not agent:
        raise InvalidValue(f"no agent name: pass --agent or set ${ENV_AGENT}")
    problem = record_hook_input(
        text,
        agent=agent,
        directory=args.dir,
        task_id=args.task_id or os.environ.get(ENV_TASK_ID) or "",
        attempt=args.attempt or 1,
        workspace=args.workspace,
    )
    if problem is not None:
        print(f"{_PROG}: starting a fresh checkpoint: {problem}", file=sys.stderr)


def _usage(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 2
