"""Processes as ``/proc`` shows them (Linux): identity, liveness, groups, and stopping them.

The pair (pid, start time) names one process for good: a reused pid has a later start, so
every liveness check that must survive a restart of the checker takes both.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

TERM_GRACE = 5.0  # seconds a process group gets between SIGTERM and SIGKILL
_KILL_GRACE = 5.0  # seconds to wait for SIGKILLed processes to disappear
PROC = Path("/proc")
MAX_NICE = 19  # the lowest CPU priority


def _stat_fields(pid: int, proc: Path | None = None) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the parenthesised comm, which may hold spaces)."""
    try:
        raw = ((proc or PROC) / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: start time in clock ticks since boot; None if gone.

    The pair (pid, start time) names one process for good: a reused pid has a later start.
    """
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def parent_pid(pid: int, proc: Path | None = None) -> int | None:
    """Field 4 of /proc/<pid>/stat (ppid); None if the process is gone."""
    fields = _stat_fields(pid, proc)
    return None if fields is None else int(fields[1])


def foreground_process_group(pid: int) -> int | None:
    """Field 8 of /proc/<pid>/stat (tpgid): the foreground process group of pid's terminal."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    tpgid = int(fields[5])
    return tpgid if tpgid > 0 else None


def process_alive(pid: int, start_time: int | None = None) -> bool:
    """Running (not a zombie) and, when ``start_time`` is given, the same process as then."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


def _all_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _proc_bytes(pid: int | str, name: str, proc: Path) -> bytes:
    try:
        return (proc / str(pid) / name).read_bytes()
    except OSError:  # gone, or not ours to read
        return b""


def command_line(pid: int, proc: Path = PROC) -> str:
    """``/proc/<pid>/cmdline`` as words joined by spaces ("" when gone or a zombie)."""
    raw = _proc_bytes(pid, "cmdline", proc)
    return " ".join(w.decode(errors="replace") for w in raw.split(b"\0") if w)


def process_name(pid: int, proc: Path = PROC) -> str:
    """``/proc/<pid>/comm``: kept while a zombie waits to be reaped, unlike ``cmdline``."""
    return _proc_bytes(pid, "comm", proc).decode(errors="replace").strip()


def cgroup_lines(pid: int | str = "self", proc: Path = PROC) -> list[str]:
    """``/proc/<pid>/cgroup``: one ``hierarchy:controllers:path`` line per hierarchy."""
    return _proc_bytes(pid, "cgroup", proc).decode(errors="replace").splitlines()


@dataclass(frozen=True)
class ProcessTable:
    """One pass over /proc: every process's children and CPU time (clock ticks, utime + stime
    + cutime + cstime). A watcher of many process trees reads it once per look, not once per
    tree."""

    children: dict[int, list[int]]
    ticks: dict[int, int]

    @classmethod
    def read(cls) -> ProcessTable:
        children: dict[int, list[int]] = {}
        ticks: dict[int, int] = {}
        for pid in _all_pids():
            fields = _stat_fields(pid)
            if fields is None or len(fields) < 15:
                continue
            children.setdefault(int(fields[1]), []).append(pid)
            ticks[pid] = sum(int(f) for f in fields[11:15])
        return cls(children, ticks)

    def tree_cpu_ticks(self, root: int) -> int:
        """CPU time of ``root`` and all its descendants, reaped children included: grows
        while any process of the tree does work, even one in a session of its own (how
        Claude Code runs hooks and Bash)."""
        total, todo = 0, [root]
        while todo:
            pid = todo.pop()
            total += self.ticks.get(pid, 0)
            todo.extend(self.children.get(pid, ()))
        return total


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (of all its threads); empty once it is gone."""
    children: list[int] = []
    try:
        for task in (PROC / str(pid) / "task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return children


def pids_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    found = []
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            found.append(pid)
    return found


def pids_with_env(name: str, value: str, *, started_since: int | None = None) -> list[int]:
    """Live processes started with ``name=value`` in their environment (root reads all).

    ``started_since`` (clock ticks since boot, as :func:`process_start_time`): skip processes
    started before it without reading their environment. Reading another process's
    ``environ`` waits for that process's memory-map lock, which a process tearing down a large
    address space (a browser exiting) can hold for long; its start time costs nothing.
    """
    needle = f"{name}={value}".encode()
    found = []
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        if started_since is not None:
            start = process_start_time(pid)
            if start is None or start < started_since:
                continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and process_alive(pid):
            found.append(pid)
    return found


def env_value(pid: int, name: str) -> str | None:
    """The value of ``name`` in the environment ``pid`` was started with, or None."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    prefix = f"{name}=".encode()
    for entry in raw.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :].decode(errors="replace")
    return None


def pids_named(name: str) -> list[int]:
    """Processes whose command name (/proc/<pid>/comm, at most 15 bytes) is ``name``."""
    found = []
    for pid in _all_pids():
        try:
            comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue  # gone
        if comm.rstrip("\n") == name:
            found.append(pid)
    return found


def process_cwd(pid: int) -> Path | None:
    """The working directory of ``pid``; None if it is gone or not ours to read."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait (on pidfds, no polling sleep) until every pid has exited; return those still alive."""
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue
    try:
        end = time.monotonic() + timeout
        pending = set(fds)
        while pending:
            left = end - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(pending), [], [], left)
            pending -= set(ready)
        # A readable pidfd may be a zombie awaiting its parent: that counts as gone.
        return [fds[fd] for fd in pending if process_alive(fds[fd])]
    finally:
        for fd in fds:
            os.close(fd)


def process_stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped by a signal (state ``T``: SIGSTOP is delivered
    asynchronously, so a sender that must know nothing runs any more waits for this)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] == "T"


def freeze(pid: int, timeout: float) -> bool:
    """SIGSTOP ``pid`` and wait until it is seen stopped (at most ``timeout`` seconds, looking
    every 10 ms: /proc offers nothing to block on); False when it never was (or is gone)."""
    os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + timeout
    while not process_stopped(pid):
        if not process_alive(pid) or time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def kill_with_env(name: str, value: str, *, started_since: int | None, timeout: float) -> list[int]:
    """SIGKILL every process started with ``name=value`` in its environment (as a machine's
    loss takes its processes along); returns the pids killed, once they are gone (or the
    bound passed)."""
    pids = pids_with_env(name, value, started_since=started_since)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids, timeout)
    return pids


def stop_process_groups(pgids: Iterable[int], *, grace: float = TERM_GRACE) -> list[int]:
    """SIGTERM each group, wait up to ``grace``, SIGKILL what is left; return survivors."""
    groups = sorted(set(pgids))
    members = {pid for g in groups for pid in pids_in_group(g)}
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGTERM)
    left = wait_gone(members, grace)
    if not left:
        return []
    # Members may have forked while dying: kill the groups again, then whoever was listed.
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGKILL)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return wait_gone(left + [p for g in groups for p in pids_in_group(g)], _KILL_GRACE)


def lower_priority(nice: int) -> bool:
    """Run this process (and what it starts) ``nice`` steps below normal CPU priority, and
    its session's scheduling group too when this process or its parent leads the session
    (a tmux pane: never a session shared with the supervisor). Best effort: a kernel
    without autogroups has no ``/proc/self/autogroup``. False when the group's turn has not
    come yet (see :func:`lower_session_group`): call that again a little later."""
    if nice <= 0:
        return True
    os.setpriority(os.PRIO_PROCESS, 0, min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    if os.getsid(0) not in (os.getpid(), os.getppid()):
        return True
    return lower_session_group(nice)


def lower_session_group(nice: int) -> bool:
    """Set this session's scheduling group (autogroup) to ``nice``; False when the kernel
    said "not now". Without CAP_SYS_ADMIN it takes one such change per 100 ms on the whole
    machine and refuses the others with EAGAIN (kernel/sched/autogroup.c, measured here):
    a fleet launching agents faster than that would leave most of their groups at full
    weight. Any other refusal is final (True: nothing more to try)."""
    try:
        fd = os.open(PROC / "self" / "autogroup", os.O_WRONLY)
    except OSError:
        return True
    try:
        os.write(fd, str(nice).encode("ascii"))
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        os.close(fd)
    return True


def raise_priority(steps: int, pid: int = 0) -> str | None:
    """Run process ``pid`` (0: this one) ``steps`` above normal CPU priority (nice ``-steps``)
    and, where the kernel schedules by session (autogroup) and it leads its session (a
    systemd service, the tmux server), its session's group too: where every agent pane is a
    group of its own, a process's nice value alone only ranks it inside its group. Needs root
    or CAP_SYS_NICE; returns why not when refused (nothing changed then), None when done."""
    if steps <= 0:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -min(steps, 20))
    except PermissionError as exc:
        return f"cannot raise the CPU priority (needs root or CAP_SYS_NICE): {exc.strerror}"
    target = pid or os.getpid()
    if os.getsid(target) != target:
        return None  # the group is the session's: never raise an operator's whole shell
    group = PROC / str(target) / "autogroup"
    with contextlib.suppress(OSError), group.open("w", encoding="ascii") as handle:
        handle.write(str(-min(steps, 20)))
    return None
