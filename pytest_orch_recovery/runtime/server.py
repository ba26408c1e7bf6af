"""The tmux server behind a socket name, seen from outside: where it lives, whether it runs,
stopping it. Only for servers this package started (the runtime and the sandbox)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


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


def reap_empty_server(socket_name: str, owner_mark: str) -> str:
    """Kill the server on ``socket_name`` when a runtime with ``owner_mark`` started it and
    it holds no session any more: what a supervisor killed with SIGKILL leaves behind (its
    server keeps running with ``exit-empty off``). Returns what it found: ``"none"`` (no
    server), ``"reaped"``, ``"busy"`` (sessions left: a supervisor adopts them) or
    ``"foreign"`` (someone else's server: never touched)."""
    if not tmux_server_running(socket_name):
        return "none"
    mark = _tmux(socket_name, "show-options", "-gqv", OWNER_OPTION).stdout.strip()
    if mark != owner_mark:
        return "foreign"
    sessions = _tmux(socket_name, "list-sessions", "-F", "#{session_name}")
    if sessions.returncode == 0 and sessions.stdout.strip():
        return "busy"
    kill_tmux_server(socket_name)
    return "reaped"
