"""The tmux server behind a socket name, seen from outside: where it lives, whether it runs,
stopping it. Only for servers this package started (the runtime and the sandbox)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path


def tmux_socket_path(socket_name: str) -> Path:
    """Where ``tmux -L name`` puts its socket: $TMUX_TMPDIR (or /tmp)/tmux-<uid>/<name>."""
    return Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket_name


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
