"""The launch wrapper: the process tmux starts in an agent's pane.

``python -m pytest_orch_recovery.runtime.wrapper SPEC.json`` runs the agent command with the
exact environment and directory the spec names, in the wrapper's own process group (so it is
the terminal's foreground group and receives Ctrl-C like the agent does), and:

- records every INT / TERM / HUP delivered to it (and so to its group) as
  ``signals_delivered``: the real Claude Code exits 0 on SIGINT, so the exit status alone would
  hide the interruption;
- and who sent each one (``signal_senders``): the wrapper blocks those signals and SIGCHLD and
  takes them with ``signal.sigwaitinfo``, so it has each one's ``siginfo`` (``si_code``:
  typed at the terminal or ``kill()`` from a process; ``si_pid``, ``si_uid``) and reads the
  sender's command line from ``/proc`` at once (:mod:`.senders`); the agent itself runs with
  the signals unblocked, as it would without us;
- reads its memory cgroup's ``oom_kill`` counter before and after, so a SIGKILL that ended
  the agent is known to be the OOM killer's when the counter rose;
- writes ``exit_file`` atomically: exit status or signal, delivered signals, times;
- writes one line ``exit <agent> <attempt>`` to the runtime's event FIFO (non-blocking: a
  runtime that has gone away must not hang the pane);
- finally ends the way the agent ended (same status, or the same signal re-raised), so tmux's
  ``pane_dead_status`` / ``pane_dead_signal`` agree with the exit file.

With ``nice`` > 0 the agent runs at that lower CPU priority: the wrapper's own nice value
(inherited by the agent and everything it starts) and, where the kernel groups processes by
session for scheduling (``CONFIG_SCHED_AUTOGROUP``, on by default on most distributions), the
nice value of the pane's session group too: there each pane is one group, and a process's
own nice value only ranks it inside its group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.model import ExitInfo, SignalOrigin, SignalSender
from pytest_orch_recovery.infra.processes import MAX_NICE, lower_priority, lower_session_group
from pytest_orch_recovery.runtime.senders import memory_cgroup, oom_kills, sender_of, tmux_clients
from pytest_orch_recovery.store import atomic

# typing weighs on each launch wrapper's start-up (docs/performance.md): for the type checker
# only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SCHEMA_VERSION = 1
_TRAPPED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Taken with sigwaitinfo: the trapped signals, and SIGCHLD to wake when the agent ends.
_WAITED = frozenset({*_TRAPPED, signal.SIGCHLD})
# POSIX shells: 127 "command not found", 126 "found but not executable".
_NOT_FOUND, _NOT_EXECUTABLE = 127, 126


@dataclass(frozen=True)
class WrapperSpec:
    """What the runtime asks the wrapper to run, written to a JSON file per attempt."""

    agent: str
    attempt: int
    key: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    exit_file: str
    fifo: str | None
    nice: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "agent": self.agent,
            "attempt": self.attempt,
            "key": self.key,
            "argv": list(self.argv),
            "env": dict(self.env),
            "cwd": self.cwd,
            "exit_file": self.exit_file,
            "fifo": self.fifo,
            "nice": self.nice,
        }

    @classmethod
    def load(cls, path: Path) -> WrapperSpec:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name in ("agent", "attempt", "key", "argv", "env", "cwd", "exit_file"):
            if name not in data:
                raise InvalidValue(f"{path}: field {name}: missing")
        if not data["argv"]:
            raise InvalidValue(f"{path}: field argv: empty command")
        return cls(
            agent=str(data["agent"]),
            attempt=int(data["attempt"]),
            key=str(data["key"]),
            argv=tuple(str(a) for a in data["argv"]),
            env={str(k): str(v) for k, v in data["env"].items()},
            cwd=str(data["cwd"]),
            exit_file=str(data["exit_file"]),
            fifo=data.get("fifo"),
            nice=_nice(data.get("nice", 0), path),
        )


def _nice(value: object, path: Path) -> int:
    if type(value) is not int or not 0 <= value <= MAX_NICE:
        raise InvalidValue(f"{path}: field nice: an integer 0..{MAX_NICE}, got {value!r}")
    return value


def notify(fifo: str | None, line: str) -> None:
    """Write one line to the runtime's FIFO without ever blocking (no reader: dropped)."""
    if not fifo:
        return
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND)
    except OSError:  # ENXIO: nobody reading; ENOENT: runtime closed
        return
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())  # < PIPE_BUF: one atomic write
    except OSError:
        pass
    finally:
        os.close(fd)


def _unblock() -> None:  # in the child, before exec: the agent gets its signals as usual
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)


@dataclass
class _Received:
    """Signals taken while the agent ran, each with its sender."""

    senders: list[SignalSender]

    def take(self, info: signal.struct_siginfo) -> None:
        tty = info.si_code == 0x80 and info.si_pid == 0
        self.senders.append(
            sender_of(
                info.si_signo,
                info.si_code,
                info.si_pid,
                info.si_uid,
                clients=tmux_clients() if tty else None,
            )
        )


# How often a lowering of the pane's group the kernel put off is tried again while the agent
# runs (the kernel takes one per 100 ms from all users' processes: see lower_session_group).
_GROUP_RETRY = 0.15


def _run(
    spec: WrapperSpec, received: _Received, *, group_lowered: bool = True
) -> tuple[ExitInfo, int | None, str | None]:
    try:
        child = subprocess.Popen(
            list(spec.argv), cwd=spec.cwd, env=dict(spec.env), preexec_fn=_unblock
        )
    except FileNotFoundError:
        return ExitInfo(status=_NOT_FOUND, source="wrapper"), None, "command not found"
    except PermissionError:
        return ExitInfo(status=_NOT_EXECUTABLE, source="wrapper"), None, "Permission denied"
    while (code := child.poll()) is None:
        # An event: a signal for us, or the agent's end; without one, now and then, another
        # try at lowering the pane's group (the agent's session too).
        info = (
            signal.sigwaitinfo(_WAITED)
            if group_lowered
            else signal.sigtimedwait(_WAITED, _GROUP_RETRY)
        )
        if info is None:
            group_lowered = lower_session_group(spec.nice)
            continue
        if info.si_signo != signal.SIGCHLD:
            received.take(info)
    if code < 0:
        return ExitInfo(status=None, signal=-code, source="wrapper"), child.pid, None
    return ExitInfo.from_shell_status(code, source="wrapper"), child.pid, None


def run(spec: WrapperSpec) -> ExitInfo:
    received = _Received([])
    group_lowered = lower_priority(spec.nice)
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    cgroup = memory_cgroup()
    oom_before = oom_kills(cgroup)
    started = time.time()
    info, child_pid, error = _run(spec, received, group_lowered=group_lowered)
    oom_after = oom_kills(cgroup)
    oom = (
        info.signal == signal.SIGKILL
        and oom_before is not None
        and oom_after is not None
        and oom_after > oom_before
    )
    if oom:
        received.senders.append(SignalSender(int(signal.SIGKILL), SignalOrigin.KERNEL))
    info = info.with_evidence(tuple(received.senders), oom_killed=oom)
    if error is not None:
        print(f"{spec.argv[0]}: {error}", file=sys.stderr, flush=True)
    atomic.write_json(
        spec.exit_file,
        {
            "schema_version": SCHEMA_VERSION,
            "agent": spec.agent,
            "attempt": spec.attempt,
            "key": spec.key,
            "exit": info.to_json(),
            "signals_delivered": [
                s.signal_name for s in received.senders if s.origin is not SignalOrigin.KERNEL
            ],
            "oom_kill": {
                "cgroup": None if cgroup is None else str(cgroup),
                "before": oom_before,
                "after": oom_after,
            },
            "started_at": started,
            "ended_at": time.time(),
            "pid": child_pid,
            "wrapper_pid": os.getpid(),
            "error": error,
        },
    )
    notify(spec.fifo, f"exit {spec.agent} {spec.attempt}")
    return info


def _end_like(info: ExitInfo) -> int:
    if info.status is None and info.signal is not None:
        with contextlib.suppress(OSError, ValueError):  # SIGKILL/SIGSTOP: no handler to reset
            signal.signal(info.signal, signal.SIG_DFL)
        with contextlib.suppress(OSError, ValueError):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {info.signal})
        with contextlib.suppress(OSError):
            os.kill(os.getpid(), info.signal)
        return 128 + info.signal
    return info.status if info.status is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m pytest_orch_recovery.runtime.wrapper SPEC.json", file=sys.stderr)
        return 2
    return _end_like(run(WrapperSpec.load(Path(args[0]))))


if __name__ == "__main__":
    status = main()
    # Its work is done (exit file written, the runtime told). End now, without the
    # interpreter's teardown: at an agent's low CPU priority on a loaded machine that took
    # seconds, and the runtime reports the attempt only once this process is gone.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
