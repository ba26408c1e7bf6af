"""The launch wrapper: the process tmux starts in an agent's pane.

``python -m pytest_orch_recovery.runtime.wrapper SPEC.json`` runs the agent command with the
exact environment and directory the spec names, in the wrapper's own process group (so it is
the terminal's foreground group and receives Ctrl-C like the agent does), and:

- records every INT / TERM / HUP delivered to that group as ``signals_delivered``: the real
  Claude Code exits 0 on SIGINT, so the exit status alone would hide the interruption;
- writes ``exit_file`` atomically: exit status or signal, delivered signals, times;
- writes one line ``exit <agent> <attempt>`` to the runtime's event FIFO (non-blocking: a
  runtime that has gone away must not hang the pane);
- finally ends the way the agent ended (same status, or the same signal re-raised), so tmux's
  ``pane_dead_status`` / ``pane_dead_signal`` agree with the exit file.
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
from types import FrameType
from typing import Any

from pytest_orch_recovery.engine import atomic
from pytest_orch_recovery.engine.model import ExitInfo

SCHEMA_VERSION = 1
_TRAPPED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
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
        }

    @classmethod
    def load(cls, path: Path) -> WrapperSpec:
        data = json.loads(path.read_text(encoding="utf-8"))
        for name in ("agent", "attempt", "key", "argv", "env", "cwd", "exit_file"):
            if name not in data:
                raise ValueError(f"{path}: field {name}: missing")
        if not data["argv"]:
            raise ValueError(f"{path}: field argv: empty command")
        return cls(
            agent=str(data["agent"]),
            attempt=int(data["attempt"]),
            key=str(data["key"]),
            argv=tuple(str(a) for a in data["argv"]),
            env={str(k): str(v) for k, v in data["env"].items()},
            cwd=str(data["cwd"]),
            exit_file=str(data["exit_file"]),
            fifo=data.get("fifo"),
        )


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


def _run(spec: WrapperSpec) -> tuple[ExitInfo, int | None, str | None]:
    try:
        child = subprocess.Popen(list(spec.argv), cwd=spec.cwd, env=dict(spec.env))
    except FileNotFoundError:
        return ExitInfo(status=_NOT_FOUND, source="wrapper"), None, "command not found"
    except PermissionError:
        return ExitInfo(status=_NOT_EXECUTABLE, source="wrapper"), None, "Permission denied"
    code = child.wait()  # PEP 475: retried after each trapped signal's handler runs
    if code < 0:
        return ExitInfo(status=None, signal=-code, source="wrapper"), child.pid, None
    return ExitInfo.from_shell_status(code, source="wrapper"), child.pid, None


def run(spec: WrapperSpec) -> ExitInfo:
    delivered: list[str] = []

    def _record(signum: int, _frame: FrameType | None) -> None:
        delivered.append(signal.Signals(signum).name)

    for sig in _TRAPPED:
        signal.signal(sig, _record)
    started = time.time()
    info, child_pid, error = _run(spec)
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
            "signals_delivered": delivered,
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
    sys.exit(main())
