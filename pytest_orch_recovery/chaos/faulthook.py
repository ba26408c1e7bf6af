"""The harness's ``PostToolUse`` hook: keep the checkpoint, then fire event-keyed faults.

Real agents (the real Claude Code CLI and the bundled sim agent alike) run ``PostToolUse``
hooks after every tool call and wait for them. That makes the hook the exact place to inject
a fault "after fake3.md is written" or "after the 2nd tool call": the agent is paused on the
hook, so the fault lands at that event and nowhere else — no timing, no races.

``python -P -m pytest_orch_recovery.chaos.faulthook --plan FAULTS.json`` reads the hook payload on
stdin, first updates the checkpoint exactly as ``orch-recovery checkpoint --from-hook`` does,
then counts the event (per agent and attempt, in ``<state dir>``) and carries out any fault of
the plan that is due:

``sigint``       SIGINT to the terminal's foreground process group (the agent and its wrapper)
``sigint_keys``  ``tmux send-keys C-c`` into the agent's pane
``kill``         SIGKILL to the agent process (as the OOM killer does)
``terminate``    SIGTERM to the terminal's foreground process group, as a supervisor stopping
                 the agent sends it (so the launch wrapper sees it and names its sender)
``stall``        the hook never returns: the agent hangs until its supervisor kills it
``stale_index_lock``   leaves ``index.lock`` in the worktree's git dir
``corrupt_checkpoint`` tears the agent's checkpoint file
``host_down`` / ``host_partition`` / ``store_outage``  asks the harness (several hosts on the
                 tmux tier) to kill this host, freeze its supervisor, or stop the database:
                 a request in ``<state dir>/host-requests/``; the agent stays parked on the
                 hook meanwhile, mid-attempt (a host fault's end for it is its host's doing),
                 and after an outage goes on once the harness says the database is back

Each fault that fires appends one line to ``<state dir>/fired.jsonl``. A hook must never break
the agent by accident: any error is printed to stderr and the hook exits 0.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pytest_orch_recovery.engine.errors import InvalidState
from pytest_orch_recovery.infra.checkpoint_file import MAX_HOOK_INPUT_CHARS, record_hook_input
from pytest_orch_recovery.store import atomic, validation

# One hook process runs per tool call of every agent: what only a firing fault, a usage error
# or the type checker needs (typing, argparse, subprocess, infra.processes) is imported where
# it is used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any

HOOK_TIMEOUT_SECONDS = 3600  # a "stall" fault must outlive any attempt timeout
HOST_FAULTS = frozenset({"host_down", "host_partition", "store_outage"})
_HARNESS_LOOK = 0.2  # seconds between looks for the harness's answer to an outage request
SIGNAL_WAIT_SECONDS = 30.0  # how long a signal fault waits for the agent to die of it
_FILE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})


def foreground_group(context: Mapping[str, Any]) -> int:
    """The foreground process group of the agent's terminal: the launch wrapper's group, which
    holds the agent. Read from our own terminal when we have one (the sim agent's hooks); the
    real Claude Code runs hooks in a new session without a terminal (tpgid -1), so then from
    the agent's tmux pane."""
    from pytest_orch_recovery.infra.processes import foreground_process_group

    own = foreground_process_group(os.getpid())
    if own is not None:
        return own
    import subprocess

    pane_pid = subprocess.run(
        [
            "tmux",
            "-L",
            str(context["tmux_socket"]),
            "display-message",
            "-p",
            "-t",
            f"={context['agent']}:",
            "#{pane_pid}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    pane = foreground_process_group(int(pane_pid))
    if pane is None:
        raise InvalidState(f"the agent's pane (pid {pane_pid}) has no foreground process group")
    return pane


def agent_pid(leader: int) -> int:
    """The agent: our ancestor whose parent is ``leader`` (the launch wrapper)."""
    from pytest_orch_recovery.infra.processes import parent_pid

    pid = os.getppid()
    while pid > 1:
        parent = parent_pid(pid)
        if parent is None:
            break  # gone while we looked
        if parent == leader or pid == leader:
            return pid
        pid = parent
    return os.getppid()


def _event_names(
    payload: Mapping[str, Any], workspace: Path, test_commands: Sequence[str] = ()
) -> list[tuple[str, str | None]]:
    """The events this tool call completes: always ``tool_call``, plus a more specific one
    (the same events the simulation fires: a file written, a commit, a push, ``gh pr create``,
    a run of the task's tests)."""
    events: list[tuple[str, str | None]] = [("tool_call", None)]
    tool = payload.get("tool_name")
    tool_input = payload.get("tool_input") or {}
    if tool in _FILE_TOOLS and isinstance(tool_input, Mapping):
        path = str(tool_input.get("file_path") or tool_input.get("notebook_path") or "")
        with contextlib.suppress(ValueError):
            path = str(Path(path).resolve().relative_to(workspace.resolve()))
        events.append(("file_written", path))
    elif tool == "Bash" and isinstance(tool_input, Mapping):
        command = str(tool_input.get("command", ""))
        if "git commit" in command:
            events.append(("commit", None))
        if "git push" in command:
            events.append(("push", None))
        if "gh pr create" in command:
            events.append(("open_pr", None))
        if command.strip() in test_commands:
            events.append(("test", None))
    return events


class _State:
    """Event counters and fired faults of one attempt, under an exclusive lock."""

    def __init__(self, directory: Path, agent: str, attempt: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{agent}.{attempt}.json"
        self._lock = open(directory / f"{agent}.lock", "a")  # noqa: SIM115 - held till close
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            self.data = {"counts": {}, "fired": []}

    def count(self, event: str) -> int:
        counts = self.data["counts"]
        counts[event] = int(counts.get(event, 0)) + 1
        return int(counts[event])

    def save(self) -> None:
        atomic.write_json(self.path, self.data)

    def close(self) -> None:
        self._lock.close()


def due_faults(
    plan: Sequence[Mapping[str, Any]],
    *,
    task_id: str,
    attempt: int,
    event: str,
    n: int,
    path: str | None,
    fired: Sequence[str],
) -> list[Mapping[str, Any]]:
    """The faults of ``plan`` (``FaultSpec.to_json`` dicts) that fire at this event."""
    due = []
    for fault in plan:
        if fault["id"] in fired or fault["task"] not in ("*", task_id):
            continue
        if fault["attempt"] not in (None, attempt):
            continue
        trigger = fault["trigger"]
        if trigger["event"] != event:
            continue
        if trigger.get("path") is not None:
            if trigger["path"] != path:
                continue
        elif int(trigger.get("n", 1)) != n:
            continue
        due.append(fault)
    return due


def _await_exit(pid: int, timeout: float = SIGNAL_WAIT_SECONDS) -> bool:
    """Block until ``pid`` exits (pidfd: an event, not a poll), at most ``timeout`` seconds.

    The agent waits for this hook, so while we wait it can do nothing else: the signal lands
    at exactly this event (a keystroke travels through the pty asynchronously; without the
    wait the agent could already be in its next API request)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def _fire(fault: Mapping[str, Any], *, workspace: Path, context: Mapping[str, Any]) -> str:
    import subprocess

    kind = fault["kind"]
    if kind in ("sigint", "sigint_keys"):
        group = foreground_group(context)
        pid = agent_pid(group)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the hook itself keeps going
        if kind == "sigint":
            os.killpg(group, signal.SIGINT)
            how = "SIGINT sent to the foreground process group"
        else:
            socket, agent = str(context["tmux_socket"]), str(context["agent"])
            subprocess.run(
                ["tmux", "-L", socket, "send-keys", "-t", f"={agent}:", "C-c"],
                check=True,
                capture_output=True,
            )
            how = "C-c typed into the pane"
        return how + ("" if _await_exit(pid) else "; the agent outlived it")
    if kind in ("kill", "terminate"):
        group = foreground_group(context)
        pid = agent_pid(group)
        if kind == "kill":  # the agent alone, as the OOM killer picks one process
            os.kill(pid, signal.SIGKILL)
            how = f"SIGKILL sent to agent pid {pid}"
        else:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the hook itself keeps going
            os.killpg(group, signal.SIGTERM)
            how = f"SIGTERM sent to the foreground process group {group}"
        return how + ("" if _await_exit(pid) else "; the agent outlived it")
    if kind == "stale_index_lock":
        git_dir = subprocess.run(
            ["git", "rev-parse", "--absolute-git-dir"],
            cwd=workspace,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(git_dir, "index.lock").touch()
        return f"left {git_dir}/index.lock"
    if kind == "corrupt_checkpoint":
        target = Path(str(context["checkpoint_dir"])) / f"{context['agent']}.json"
        text = target.read_text() if target.exists() else '{"schema_version": 1, "agent": "x"}'
        target.write_text(text[: max(1, len(text) // 2)])  # torn on purpose: not atomic
        return f"tore {target.name}"
    if kind == "stall":
        return "stalling"
    if kind in HOST_FAULTS:
        request = host_request_path(Path(str(context["state_dir"])), str(fault["id"]))
        atomic.write_json(
            request,
            {
                "id": fault["id"],
                "kind": kind,
                "host": context.get("host"),
                "agent": context["agent"],
                "params": fault.get("params") or {},
            },
        )
        return f"asked the harness: {kind} of host {context.get('host')}"
    return f"fault {kind} is not injected by the hook"


def host_request_path(state_dir: Path, fault_id: str) -> Path:
    """Where the hook leaves a host fault's request for the harness; the harness writes
    ``<same>.done`` once it has carried it out."""
    folder = state_dir / "host-requests"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{fault_id}.json"


def _await_harness(done: Path, timeout: float = HOOK_TIMEOUT_SECONDS) -> bool:
    """Hold the agent until the harness has carried the request out (``done`` exists)."""
    deadline = time.monotonic() + timeout
    while not done.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(_HARNESS_LOOK)
    return True


def _run(plan: str, text: str) -> None:
    agent = os.environ["ORCH_AGENT"]
    attempt = int(os.environ.get("ORCH_ATTEMPT", "1"))
    task_id = os.environ.get("ORCH_TASK_ID", "")
    try:
        problem = record_hook_input(text, agent=agent, task_id=task_id, attempt=attempt)
        if problem is not None:
            print(f"faulthook: starting a fresh checkpoint: {problem}", file=sys.stderr)
    except Exception as exc:  # the checkpoint is best effort; faults still fire
        print(f"faulthook: checkpoint not updated: {exc}", file=sys.stderr)
    plan_doc = json.loads(Path(plan).read_text())
    payload = json.loads(text)
    workspace = Path(str(payload.get("cwd") or os.getcwd()))
    state = _State(Path(plan_doc["state_dir"]), agent, attempt)
    stall = False
    parked = False
    outages: list[Path] = []  # store outages to wait out
    try:
        for event, path in _event_names(payload, workspace, plan_doc.get("test_commands", ())):
            n = state.count(event)
            for fault in due_faults(
                plan_doc["faults"],
                task_id=task_id,
                attempt=attempt,
                event=event,
                n=n,
                path=path,
                fired=state.data["fired"],
            ):
                state.data["fired"].append(fault["id"])
                state.save()
                record = {
                    "id": fault["id"],
                    "kind": fault["kind"],
                    "task": task_id,
                    "attempt": attempt,
                    "event": event,
                    "n": n,
                    "time": time.time(),
                }
                with open(Path(plan_doc["state_dir"]) / "fired.jsonl", "a") as log:
                    log.write(json.dumps(record) + "\n")
                context = {
                    **plan_doc.get("context", {}),
                    "agent": agent,
                    "state_dir": plan_doc["state_dir"],
                }
                detail = _fire(fault, workspace=workspace, context=context)
                print(f"faulthook: {fault['kind']}: {detail}", file=sys.stderr)
                stall = stall or fault["kind"] == "stall"
                # A lost or cut-off host's agent stays mid-attempt: its end is the host's.
                parked = parked or fault["kind"] in ("host_down", "host_partition")
                if fault["kind"] == "store_outage":
                    request = host_request_path(Path(plan_doc["state_dir"]), str(fault["id"]))
                    outages.append(request.with_suffix(".done"))
        state.save()
    finally:
        state.close()
    for done in outages:
        if not _await_harness(done):
            print("faulthook: store_outage: the harness never answered", file=sys.stderr)
    if parked:  # until the agent is stopped (not only its process group: the hook's own
        _await_exit(os.getppid(), HOOK_TIMEOUT_SECONDS)  # session may differ from it)
    while stall:  # parked until the supervisor kills the agent's process group
        signal.pause()


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="faulthook",
        description="PostToolUse hook: update the checkpoint, then fire due faults.",
    )
    parser.add_argument("--plan", required=True, help="the fault plan JSON the harness wrote")
    return parser


def plan_argument(argv: Sequence[str]) -> str | None:
    """The plan of the one command line the harness writes, ``--plan PATH`` (or
    ``--plan=PATH``); None for anything else, which :func:`build_parser` parses.

    >>> plan_argument(["--plan", "/s/plan.json"]), plan_argument(["--help"])
    ('/s/plan.json', None)
    """
    if len(argv) == 2 and argv[0] == "--plan" and argv[1] and not argv[1].startswith("-"):
        return argv[1]
    if len(argv) == 1 and argv[0].startswith("--plan=") and len(argv[0]) > len("--plan="):
        return argv[0].removeprefix("--plan=")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    plan = plan_argument(args)
    if plan is None:  # argparse's help and usage errors, and whatever else it accepts
        plan = build_parser().parse_args(args).plan
    try:
        hook_input = validation.read_stream(sys.stdin, MAX_HOOK_INPUT_CHARS)
        _run(plan, hook_input.decode("utf-8", errors="replace"))
    except Exception as exc:  # never break the agent by accident
        print(f"faulthook: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
