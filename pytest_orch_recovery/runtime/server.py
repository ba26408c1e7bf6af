"""The tmux server behind a socket name, seen from outside: where it lives, whether it runs,
stopping it. Only for servers this package started (the runtime and the sandbox)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from pytest_orch_recovery.infra.processes import process_alive
from pytest_orch_recovery.runtime.control import CONTROL_SESSION_PREFIX


def format_literal(text: str) -> str:
    """``text`` as tmux keeps it where it expands formats (``-c`` start directories, the
    ``pipe-pane`` and ``run-shell`` commands, ``save-buffer`` paths): ``#`` doubled, so a
    path holding ``#(...)`` is a name and never a shell command tmux runs, nor
    ``#{...}`` a variable.

    >>> format_literal("/srv/a#(id)b")
    '/srv/a##(id)b'
    """
    return text.replace("#", "##")


def command_quoted(text: str) -> str:
    r"""``text`` as one double-quoted word of a tmux command string (a hook's command, parsed
    by tmux when the hook fires): ``\``, ``"`` and ``$`` escaped, so a path holding a quote
    neither breaks the command nor ``$NAME`` turns into the server's environment.

    >>> print(command_quoted('/srv/a$HOME"b'))
    "/srv/a\$HOME\"b"
    """
    return '"' + re.sub(r'([\\"$])', r"\\\1", text) + '"'


def tmux_socket_path(socket_name: str) -> Path:
    """Where ``tmux -L name`` puts its socket: $TMUX_TMPDIR (or /tmp)/tmux-<uid>/<name>."""
    return Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket_name


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for the process that starts a runtime's tmux server, with this process's
    ``TMUX_TMPDIR`` (or none): tmux places the socket of ``-L name`` by that variable, and
    every later command on the server (libtmux, ``status --live``, the cleanup) runs with
    this process's environment and looks where :func:`tmux_socket_path` says. An agents'
    allow-list that drops or changes it would start the server where nobody looks."""
    out = {name: value for name, value in env.items() if name != "TMUX_TMPDIR"}
    if os.environ.get("TMUX_TMPDIR"):
        out["TMUX_TMPDIR"] = os.environ["TMUX_TMPDIR"]
    return out


def tmux_server_running(socket_name: str) -> bool:
    if not tmux_socket_path(socket_name).exists():
        return False
    proc = subprocess.run(
        ["tmux", "-L", socket_name, "-f", "/dev/null", "list-sessions"],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    # "no server running on ..." / "error connecting to ..." when nothing answers.
    return proc.returncode == 0 or "no sessions" in proc.stderr


def kill_tmux_server(socket_name: str) -> None:
    """kill-server on the socket, and remove the socket file tmux leaves behind."""
    if tmux_socket_path(socket_name).exists():
        subprocess.run(
            ["tmux", "-L", socket_name, "-f", "/dev/null", "kill-server"],
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
    with contextlib.suppress(FileNotFoundError):
        tmux_socket_path(socket_name).unlink()


OWNER_OPTION = "@orch-runtime"  # server option: the state dir of the runtime that started it


def _tmux(socket_name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-L", socket_name, "-f", "/dev/null", *args],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )


def session_names(socket_name: str) -> list[str]:
    """The names of the sessions on the server behind ``socket_name`` (none when no server
    answers there)."""
    listed = _tmux(socket_name, "list-sessions", "-F", "#{session_name}")
    return listed.stdout.splitlines() if listed.returncode == 0 else []


def drop_orphaned_control_sessions(socket_name: str) -> list[str]:
    """Kill the control clients' sessions (runtime/control.py) whose owner is gone: no
    client attached, or the process named in the session (``orch+control-<pid>-<n>``) dead.
    A runtime killed with SIGKILL leaves its own behind, and in tmux 3.3a its client may
    never end: with replies still to write to a reader that is gone it waits for ever. Such
    a client is told to stop (SIGTERM), and ``kill-session`` detaches a client that still
    refers to the session before destroying it (what ``destroy-unattached`` does not do in
    tmux 3.3a, see runtime/control.py). Returns the names of the sessions killed."""
    listed = _tmux(
        socket_name, "list-sessions", "-F", "#{session_id} #{session_attached} #{session_name}"
    )
    clients = _tmux(socket_name, "list-clients", "-F", "#{client_pid} #{session_id}")
    dropped = []
    for line in listed.stdout.splitlines() if listed.returncode == 0 else ():
        session_id, attached, name = [*line.split(" ", 2), "", ""][:3]
        if not name.startswith(CONTROL_SESSION_PREFIX):
            continue
        owner = name[len(CONTROL_SESSION_PREFIX) :].split("-")[0]
        if attached != "0" and owner.isdigit() and process_alive(int(owner)):
            continue
        for client in clients.stdout.splitlines():
            pid, _, on = client.partition(" ")
            if on == session_id and pid.isdigit():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGTERM)
        if _tmux(socket_name, "kill-session", "-t", session_id).returncode == 0:
            dropped.append(name)
    return dropped


def reap_empty_server(socket_name: str, owner_mark: str) -> str:
    """Kill the server on ``socket_name`` when a runtime with ``owner_mark`` started it and
    it holds no session any more (control sessions left without a client do not count, and
    go): what a supervisor killed with SIGKILL leaves behind (its server keeps running with
    ``exit-empty off``). Returns what it found: ``"none"`` (no server), ``"reaped"``,
    ``"busy"`` (sessions left: a supervisor adopts them) or ``"foreign"`` (someone else's
    server: never touched)."""
    if not tmux_server_running(socket_name):
        return "none"
    mark = _tmux(socket_name, "show-options", "-gqv", OWNER_OPTION).stdout.strip()
    if mark != owner_mark:
        return "foreign"
    drop_orphaned_control_sessions(socket_name)
    if session_names(socket_name):
        return "busy"
    kill_tmux_server(socket_name)
    return "reaped"
