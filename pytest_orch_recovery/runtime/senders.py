"""Who sent a signal: ``siginfo`` decoded, the sender read from ``/proc`` at once, and the
kernel's own counters for the SIGKILL a process never sees coming.

Measured on this machine (Linux 6.18, tmux 3.3a, Python 3.11) with ``signal.sigwaitinfo`` in
a tmux pane: a ``tmux send-keys C-c`` arrives as SIGINT with ``si_code`` 128 (SI_KERNEL: the
tty line discipline generated it) and ``si_pid`` 0; ``/bin/kill -INT`` and ``os.kill`` arrive
with ``si_code`` 0 (SI_USER) and the sender's pid. A sender that exits at once (``kill(1)``) is
a zombie by the time we look: its ``cmdline`` reads empty, its ``comm`` and parent remain.

The OOM killer's SIGKILL is invisible to its victim; the cgroup's ``oom_kill`` counter is not:
cgroup v2 ``memory.events``, cgroup v1 ``memory.oom_control`` (Linux 4.13+). This machine runs
cgroup v1 for memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from pytest_orch_recovery.engine.model import SignalOrigin, SignalSender
from pytest_orch_recovery.infra.processes import (
    PROC,
    cgroup_lines,
    command_line,
    parent_pid,
    process_name,
)

# <asm-generic/siginfo.h>
SI_USER = 0
SI_KERNEL = 0x80
SI_QUEUE = -1
SI_TKILL = -6
_ORIGINS = {
    SI_USER: SignalOrigin.PROCESS,
    SI_QUEUE: SignalOrigin.QUEUE,
    SI_TKILL: SignalOrigin.THREAD,
}
# Signals a terminal's line discipline generates (Ctrl-C, Ctrl-\, Ctrl-Z, hang-up, resize).
_TTY_SIGNALS = frozenset(
    {signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP, signal.SIGWINCH}
)
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def origin_of(signo: int, code: int, pid: int) -> SignalOrigin:
    """The origin ``si_code`` names.

    >>> origin_of(2, 0x80, 0), origin_of(2, 0, 4242), origin_of(15, -1, 7)
    (<SignalOrigin.TTY: 'tty'>, <SignalOrigin.PROCESS: 'process'>, <SignalOrigin.QUEUE: 'queue'>)
    """
    if code == SI_KERNEL:
        return SignalOrigin.TTY if signo in _TTY_SIGNALS and pid == 0 else SignalOrigin.KERNEL
    return _ORIGINS.get(code, SignalOrigin.UNKNOWN)


def sender_of(
    signo: int, code: int, pid: int, uid: int, *, clients: int | None = None, proc: Path = PROC
) -> SignalSender:
    """Decode one ``siginfo`` and read the sender from ``/proc`` now (call it at once)."""
    origin = origin_of(signo, code, pid)
    if origin is SignalOrigin.TTY or pid <= 0:
        return SignalSender(
            signo,
            origin,
            code,
            uid=uid if pid > 0 else None,
            clients=clients if origin is SignalOrigin.TTY else None,
        )
    parent = parent_pid(pid, proc)
    return SignalSender(
        signo,
        origin,
        code,
        pid=pid,
        uid=uid,
        command=command_line(pid, proc),
        name=process_name(pid, proc),
        parent_pid=parent,
        parent_command=command_line(parent, proc) if parent else "",
    )


def tmux_clients(env: dict[str, str] | None = None) -> int | None:
    """How many tmux clients are attached to the session of the pane we run in (``$TMUX``,
    ``$TMUX_PANE``); None outside tmux or when tmux cannot say."""
    env = dict(os.environ if env is None else env)
    socket, pane = env.get("TMUX", "").split(",")[0], env.get("TMUX_PANE", "")
    if not socket or not pane:
        return None
    try:
        proc = subprocess.run(
            ["tmux", "-S", socket, "list-clients", "-t", pane, "-F", "#{client_pid}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return sum(1 for line in proc.stdout.splitlines() if line.strip())


def memory_cgroup(
    pid: int | str = "self", proc: Path = PROC, root: Path = _CGROUP_ROOT
) -> Path | None:
    """The directory of the memory cgroup ``pid`` is in (v2 unified or v1 ``memory``)."""
    for line in cgroup_lines(pid, proc):
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        rel = path.lstrip("/")
        if "memory" in controllers.split(","):
            candidate = root / "memory" / rel
        elif hierarchy == "0" and not controllers:
            candidate = (
                root / rel if (root / "cgroup.controllers").exists() else root / "unified" / rel
            )
            if not (candidate / "memory.events").exists():
                continue
        else:
            continue
        if candidate.is_dir():
            return candidate
    return None


def oom_kills(cgroup: Path | None) -> int | None:
    """The cgroup's ``oom_kill`` counter: processes the OOM killer killed in it so far."""
    if cgroup is None:
        return None
    for name in ("memory.events", "memory.oom_control"):
        try:
            text = (cgroup / name).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                with contextlib.suppress(ValueError):
                    return int(value)
    return None
