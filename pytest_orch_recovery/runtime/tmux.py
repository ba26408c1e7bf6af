"""The tmux runtime: each agent attempt in its own session on the runtime's own tmux server.

Where: a :class:`~pytest_orch_recovery.runtime.host.Host` gives the worktrees, directories,
environment and socket name (the chaos tier's sandbox, or any repository in production).

Whose server: the runtime starts its server itself (``-f /dev/null``: no user configuration)
and marks it with the server option ``@orch-runtime`` set to the host's state directory. A
runtime on the same host later (a restarted supervisor) takes that server over; a server
without the mark -- some other orchestrator's -- is refused, never configured, never killed.
:meth:`TmuxRuntime.close` kills only sessions this runtime launched or adopted, and the server
only when this runtime started it; :meth:`TmuxRuntime.detach` leaves everything running.

How an exit is noticed, without polling: the server's ``pane-died`` hook and the launch
wrapper (:mod:`.wrapper`) each write one line to a FIFO in the host's state directory, and
:meth:`TmuxRuntime.next_exit` blocks in ``select`` on it. An attempt is reported once tmux
says its pane is dead (``remain-on-exit on`` keeps the pane and its history), so the pane text
is complete when it is captured. Exit status comes from the wrapper's exit file, or from
``pane_dead_status`` / ``pane_dead_signal`` when the wrapper itself was killed.

Launching twice, across processes: every attempt's session carries its idempotency key (the
session option ``@orch-key``, set in the same tmux command as the session), and a launch
record ``<agent>.<attempt>.pane.json`` beside the exit file holds the pane id, pane pid and
its start time, the exit file and the log. :meth:`TmuxRuntime.launch` of a key that a session
or a record already holds adopts that attempt -- watching it if it runs, reporting its exit
file if it ended -- and never starts it again, nor kills a session to make room.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import re
import select
import shlex
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import libtmux

from pytest_orch_recovery.engine.errors import InvalidState, InvalidValue, OrchRecoveryError
from pytest_orch_recovery.engine.model import (
    ExitInfo,
    PartialWork,
    ScreenFinding,
    SignalOrigin,
    SignalSender,
    Task,
)
from pytest_orch_recovery.engine.ports import AttemptExit, Clock, LaunchSpec
from pytest_orch_recovery.infra.checkpoint import read_checkpoint_safely
from pytest_orch_recovery.infra.gh import GhPullRequests
from pytest_orch_recovery.infra.lean_python import lean_python_argv
from pytest_orch_recovery.infra.processes import (
    MAX_NICE,
    ProcessTable,
    foreground_process_group,
    pids_in_group,
    process_alive,
    process_start_time,
    stop_process_groups,
)
from pytest_orch_recovery.infra.remedies import apply_remedy
from pytest_orch_recovery.infra.workspace import probe
from pytest_orch_recovery.runtime.control import ControlClient, ControlClosed, NotSendable
from pytest_orch_recovery.runtime.host import Host
from pytest_orch_recovery.runtime.screen import ScreenWatch
from pytest_orch_recovery.runtime.senders import memory_cgroup, oom_kills
from pytest_orch_recovery.runtime.server import (
    OWNER_OPTION,
    command_quoted,
    format_literal,
    kill_tmux_server,
    reap_empty_server,
    server_environment,
    tmux_server_running,
)
from pytest_orch_recovery.runtime.workers import EXIT, LAUNCH, WorkPool
from pytest_orch_recovery.runtime.wrapper import WrapperSpec
from pytest_orch_recovery.store import atomic

_log = logging.getLogger(__name__)

_WIDTH, _HEIGHT = 200, 50
_HISTORY_LIMIT = 100_000
# A lost event must not hang a caller that gave no deadline: after this long without any
# event, every pending pane is checked once (a safety net, not the detection path).
_SWEEP_INTERVAL = 30.0
_WATCH_INTERVAL = 0.25  # seconds between looks at a running attempt's screen (see _watching)
_KILL_GRACE = 5.0
# Fields are split on "|", not a tab: a tmux client whose locale is not UTF-8 (LANG=C, as under
# cron or a bare systemd unit) prints every control character, the tab too, as "_". The key
# (a task id among other things) comes last and may hold anything: split at most 6 times.
_PANE_SEP = "|"
_PANE_FORMAT = _PANE_SEP.join(
    [
        "#{session_name}",
        "#{pane_id}",
        "#{pane_pid}",
        "#{pane_dead}",
        "#{pane_dead_status}",
        "#{pane_dead_signal}",
        "#{@orch-key}",
    ]
)
KEY_OPTION = "@orch-key"  # session option: the idempotency key of the attempt it runs
RECORD_SCHEMA_VERSION = 1
# CSI / OSC / two-byte escape sequences, as a pipe-pane log holds them.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


class WallClock:
    """Real time: the tmux runtime's events happen in the world."""

    def now(self) -> float:
        return time.time()


class TmuxError(OrchRecoveryError, RuntimeError):
    """A tmux command failed; carries the command and tmux's own message."""


@dataclass
class _Attempt:
    spec: LaunchSpec
    pane_id: str
    pane_pid: int
    started_at: float
    exit_file: Path
    log_file: Path
    spec_file: Path
    pane_start: int | None = None  # start time of the pane process (pid reuse guard)
    reported: bool = False
    watch: ScreenWatch | None = None  # what the screen shows while it runs (screen.py)
    cgroup: Path | None = None  # the pane's memory cgroup, read at launch
    oom_before: int | None = None  # its oom_kill count at launch
    finding: ScreenFinding | None = None  # why the runtime ended it early, if it did
    concluding: bool = False  # a worker is reading how it ended (see _check)
    recheck: bool = False  # an event came while it did: look again if it was too early


@dataclass(frozen=True)
class _PaneState:
    pane_id: str
    pane_pid: int
    dead: bool
    dead_status: str
    dead_signal: str
    key: str = ""

    @property
    def status_ready(self) -> bool:
        return bool(self.dead_status or self.dead_signal)


def parse_result(text: str) -> dict[str, Any] | None:
    """The last line that parses as a JSON object with ``"type": "result"``.

    Claude Code's ``-p --output-format json`` prints one such object (session_id, is_error,
    subtype, result, permission_denials, ...).

    The object may share its line with what the terminal echoed first (``^C`` after a typed
    Ctrl-C), so a line is read from its first ``{``.

    >>> parse_result('hi\\n{"type": "result", "session_id": "s1"}\\n{"type": "x"}\\n')
    {'type': 'result', 'session_id': 's1'}
    >>> parse_result('^C{"type": "result", "session_id": "s2"}')["session_id"]
    's2'
    """
    for line in reversed(text.splitlines()):
        brace = line.find("{")
        if brace < 0:
            continue
        line = line[brace:].strip()
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("type") == "result":
            return data
    return None


def clean_log(raw: bytes) -> str:
    r"""Terminal bytes from ``pipe-pane`` as plain text: escapes dropped, CR LF made LF.

    >>> clean_log(b"\x1b[1mbold\x1b[0m\r\nnext\r\n")
    'bold\nnext\n'
    """
    text = raw.decode("utf-8", errors="replace")
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


class TmuxRuntime:
    """:class:`~pytest_orch_recovery.engine.ports.Runtime` over the host's own tmux server.

    ``command_for`` turns a launch spec into the agent's argv; the host's ``prs`` answers
    ``pull_request_for(branch)`` for :meth:`partial_work`.
    """

    def __init__(
        self,
        host: Host,
        command_for: Callable[[LaunchSpec], Sequence[str]],
        *,
        clock: Clock | None = None,
        base: str = "main",
        kill_grace: float = _KILL_GRACE,
        stall_window: float | None = None,
        end_on_dialog: bool = True,
        agent_nice: int = 0,
        workers: int = 0,
        control: bool = False,
    ) -> None:
        if not 0 <= agent_nice <= MAX_NICE:
            raise InvalidValue(f"agent_nice: an integer 0..{MAX_NICE}, got {agent_nice}")
        self.host = host
        # Agents run this many steps below normal CPU priority (runtime/wrapper.py).
        self.agent_nice = agent_nice
        # Screen-aware detection (runtime/screen.py): end an attempt whose pane shows a
        # permission dialog, or that has been silent (no output, no CPU) past stall_window.
        self.stall_window = stall_window
        self.end_on_dialog = end_on_dialog
        self.kill_grace = kill_grace  # seconds between SIGTERM and SIGKILL in kill()
        self.clock: Clock = clock if clock is not None else WallClock()
        self._command_for = command_for
        self._base = base
        self._attempts: dict[str, _Attempt] = {}  # the latest attempt of each agent
        self._keys: set[str] = set()
        self._ready: deque[AttemptExit] = deque()
        self._pidfds: dict[int, str] = {}  # pidfd of a live pane process -> agent
        self._partial_line = b""
        self._swept = time.monotonic()
        self._closed = False
        # With workers, launches and the reading of ended attempts (their pane, their
        # workspace probe) run on a pool (runtime/workers.py): launch() returns at once and
        # next_exit() reports exits as their probes finish. Without, all runs in the
        # caller's thread, one step after another.
        self._pool = WorkPool(workers) if workers > 0 else None
        self._launching: dict[str, LaunchSpec] = {}  # queued on the pool, not started yet
        self._screen_pass_running = False
        self._watched_at = 0.0  # monotonic time of the last look at the screens
        # With control, tmux commands go through one control-mode client (runtime/control.py)
        # instead of a tmux process each; pane captures land in files under captures/.
        self._control: ControlClient | None = None
        self._captures = itertools.count(1)
        self._capture_dir = host.state_dir / "captures"
        host.state_dir.mkdir(parents=True, exist_ok=True)
        for d in (host.results, host.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.fifo = host.state_dir / "events.fifo"
        if not self.fifo.exists():
            os.mkfifo(self.fifo, 0o600)
        # O_RDWR on a FIFO (Linux): opening never blocks and reads never see EOF when the
        # last writer goes, so select() wakes only for real lines.
        self._fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        self.server = libtmux.Server(socket_name=host.tmux_socket, config_file="/dev/null")
        try:
            self.created_server = self._start_server()
        except BaseException:
            os.close(self._fifo_fd)
            raise
        if control:
            self._capture_dir.mkdir(exist_ok=True)
            env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
            try:
                self._control = ControlClient(
                    host.tmux_socket, env=server_environment(env), cwd=str(host.state_dir)
                )
            except ControlClosed as exc:
                _log.warning("tmux control client not started (%s); one process a command", exc)

    # ----------------------------------------------------------------- tmux plumbing

    def _tmux(self, *args: str, check: bool = True) -> list[str]:
        control = self._control
        # A command list (";" words) stays one tmux process: on a control line each command
        # of a list gets a reply of its own, and after a failing one the rest get none.
        if control is not None and control.alive and ";" not in args:
            try:
                reply = control.command(*args)
            except (ControlClosed, NotSendable):
                pass  # as a process, below
            else:
                if check and not reply.ok:
                    raise TmuxError(f"tmux {' '.join(args)}: {' '.join(reply.lines).strip()}")
                return list(reply.lines) if reply.ok else []
        proc = self.server.cmd(*args)
        if check and proc.returncode != 0:
            raise TmuxError(f"tmux {' '.join(args)}: {' '.join(proc.stderr).strip()}")
        return list(proc.stdout)

    @property
    def owner_mark(self) -> str:
        """The value of the server's ``@orch-runtime`` option when this host's runtime
        started it."""
        return str(self.host.state_dir.resolve())

    def _start_server(self) -> bool:
        """Start the server, or take over the one this host's runtime started before.
        Returns whether it was started now. Raises on a server someone else started."""
        socket = self.host.tmux_socket
        # A server this host's runtime left with no session (its supervisor was killed with
        # SIGKILL) is reaped, so that it ends with this runtime instead of living on.
        reap_empty_server(socket, self.owner_mark)
        if tmux_server_running(socket):
            mark = self._tmux("show-options", "-gqv", OWNER_OPTION, check=False)
            if (mark[0] if mark else "") != self.owner_mark:
                raise TmuxError(
                    f"tmux socket {socket}: a server this runtime did not start is running "
                    "there; give the runtime a socket name of its own"
                )
            created = False
        else:
            created = True
        hook = self.host.state_dir / "pane-died.sh"
        atomic.write_text(
            hook,
            "#!/bin/sh\n"
            "# tmux pane-died hook: one line to the runtime's FIFO; O_NONBLOCK so a hook\n"
            "# never hangs when no runtime is reading (dd then fails with ENXIO).\n"
            f"printf 'died %s\\n' \"$1\" | dd of={shlex.quote(str(self.fifo))} "
            "oflag=nonblock,append conv=notrunc status=none 2>/dev/null\n",
        )
        env = server_environment(self.host.env("tmux-server"))
        argv = ["tmux", "-L", socket, "-f", "/dev/null", "start-server"]
        hook_path = format_literal(shlex.quote(str(hook)))
        hook_command = command_quoted(f"sh {hook_path} '#{{session_name}}'")
        for option in (
            ["set-option", "-g", OWNER_OPTION, self.owner_mark],
            ["set-option", "-g", "exit-empty", "off"],
            ["set-option", "-g", "remain-on-exit", "on"],
            ["set-option", "-g", "remain-on-exit-format", ""],  # no "Pane is dead" line
            ["set-option", "-g", "history-limit", str(_HISTORY_LIMIT)],
            ["set-hook", "-g", "pane-died", f"run-shell -b {hook_command}"],
        ):
            argv += [";", *option]
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise TmuxError(f"starting tmux server: {proc.stderr.strip()}")
        pid = int(self._tmux("display-message", "-p", "#{pid}")[0])
        self.server_pid = pid
        self.host.record_pid(pid, what="tmux server", pgid=os.getpgid(pid))
        return created

    def _session_pane(self, agent: str) -> _PaneState | None:
        """The pane of session ``agent`` on this server, or None when there is none."""
        return self._pane_at(f"={agent}:")

    def _pane(self, attempt: _Attempt) -> _PaneState | None:
        if not attempt.pane_id:
            return None  # adopted from its record after the server was gone
        return self._pane_at(attempt.pane_id)

    def _pane_at(self, target: str) -> _PaneState | None:
        out = self._tmux("display-message", "-p", "-t", target, _PANE_FORMAT, check=False)
        if not out:
            return None  # the session is gone
        fields = out[0].split(_PANE_SEP, 6)
        if len(fields) != 7 or not fields[2].isdigit():
            return None  # no such target: tmux expands the format with nothing
        return _PaneState(
            fields[1], int(fields[2]), fields[3] == "1", fields[4], fields[5], fields[6]
        )

    # ----------------------------------------------------------------- launching

    def launch(self, spec: LaunchSpec) -> None:
        """Start the attempt in session ``spec.agent``. A key launched before -- by this
        runtime or by one on the same host before a restart -- is adopted, never started
        again. Raises if the agent's previous attempt is still running. With workers the
        start runs on the pool and a failure is raised by the next call that waits."""
        if spec.key in self._keys:
            return
        previous = self._attempts.get(spec.agent)
        if spec.agent in self._launching or (previous is not None and not previous.reported):
            number = (
                self._launching[spec.agent].attempt
                if spec.agent in self._launching
                else (previous.spec.attempt if previous is not None else 0)
            )
            raise InvalidState(f"agent {spec.agent}: attempt {number} is still running")
        self._keys.add(spec.key)
        if self._pool is None:
            try:
                started = self._start(spec)
            except BaseException:
                self._keys.discard(spec.key)
                raise
            self._started(started)
            return
        self._launching[spec.agent] = spec
        self._pool.submit(
            LAUNCH,
            functools.partial(self._start, spec),
            self._started,
            functools.partial(self._start_failed, spec),
        )

    def _start_failed(self, spec: LaunchSpec, error: BaseException) -> None:
        self._launching.pop(spec.agent, None)
        self._keys.discard(spec.key)
        raise error

    def _started(self, started: tuple[_Attempt, bool]) -> None:
        """In the owner's thread: watch the attempt :meth:`_start` started or adopted, and
        report it at once if it has already ended."""
        attempt, new = started
        self._launching.pop(attempt.spec.agent, None)
        if new:
            self.host.record_pid(
                attempt.pane_pid,
                what=f"pane {attempt.spec.agent} attempt {attempt.spec.attempt}",
                pgid=attempt.pane_pid,
            )
        self._track(attempt)
        self._check(attempt)  # its end may have been announced before it was tracked

    def _start(self, spec: LaunchSpec) -> tuple[_Attempt, bool]:
        """Adopt the attempt with this key, or start it; returns it and whether it is new.
        Only I/O (files, git, tmux): safe on a worker thread."""
        session = self._session_pane(spec.agent)
        adopted = self._adopted(spec, session)
        if adopted is not None:
            return adopted, False
        if session is not None and not session.dead:
            raise InvalidState(
                f"agent {spec.agent}: session runs {session.key or 'an unknown attempt'}"
            )
        workspace = self.host.add_workspace(spec.agent)
        argv = list(self._command_for(spec))
        if not argv:
            raise InvalidValue(f"agent {spec.agent}: command_for returned an empty command")
        paths = _AttemptPaths.of(self.host, spec)
        with contextlib.suppress(FileNotFoundError):
            paths.exit_file.unlink()  # a relaunch of the same attempt number under a new key
        env = self.host.env(spec.agent)
        env.update({"ORCH_ATTEMPT": str(spec.attempt), "ORCH_TASK_ID": spec.task.task_id})
        atomic.write_json(
            paths.spec_file,
            WrapperSpec(
                agent=spec.agent,
                attempt=spec.attempt,
                key=spec.key,
                argv=tuple(argv),
                env=env,
                cwd=str(workspace),
                exit_file=str(paths.exit_file),
                fifo=str(self.fifo),
                nice=self.agent_nice,
            ).to_json(),
        )
        target = f"={spec.agent}"
        if session is not None:
            self._tmux("kill-session", "-t", target, check=False)  # a predecessor's dead pane
        started_at = self.clock.now()
        # One command list: tmux runs it to the end before it reads the new pane's output, so
        # pipe-pane sees the very first byte, and the key is on the session before anyone
        # can look at it.
        out = self._tmux(
            "new-session", "-d", "-P", "-F", "#{pane_id} #{pane_pid}",
            "-s", spec.agent, "-c", format_literal(str(workspace)),
            "-x", str(_WIDTH), "-y", str(_HEIGHT),
            "--", *lean_python_argv("pytest_orch_recovery.runtime.wrapper", str(paths.spec_file)),
            ";", "set-option", "-t", f"{target}:", KEY_OPTION, spec.key,
            ";", "pipe-pane", "-o", "-t", f"{target}:",
            format_literal(f"cat >> {shlex.quote(str(paths.log_file))}"),
        )  # fmt: skip
        pane_id, pane_pid = out[0].split()
        attempt = _Attempt(
            spec,
            pane_id,
            int(pane_pid),
            started_at,
            paths.exit_file,
            paths.log_file,
            paths.spec_file,
            pane_start=process_start_time(int(pane_pid)),
            cgroup=memory_cgroup(int(pane_pid)),
        )
        attempt.oom_before = oom_kills(attempt.cgroup)
        _write_record(paths.record_file, attempt)
        return attempt, True

    def _adopted(self, spec: LaunchSpec, session: _PaneState | None) -> _Attempt | None:
        """The attempt with this key launched before (by a runtime that died): from its
        session (``session``: the agent's pane now, if any), or else its launch record.
        None when it never started."""
        paths = _AttemptPaths.of(self.host, spec)
        record = _read_record(paths.record_file, spec.key)
        if session is not None and session.key == spec.key:
            same_pane = record is not None and record.get("pane_pid") == session.pane_pid
            attempt = _Attempt(
                spec,
                session.pane_id,
                session.pane_pid,
                float(record["started_at"]) if record is not None else self.clock.now(),
                paths.exit_file,
                paths.log_file,
                paths.spec_file,
                pane_start=(
                    record.get("pane_start")
                    if same_pane and record is not None
                    else process_start_time(session.pane_pid)
                ),
            )
            if record is None:
                _write_record(paths.record_file, attempt)
            return attempt
        if record is not None:
            # The session is gone (cleaned up, or the server with it): what the record says.
            return _Attempt(
                spec,
                "",
                int(record["pane_pid"]),
                float(record["started_at"]),
                paths.exit_file,
                paths.log_file,
                paths.spec_file,
                pane_start=record.get("pane_start"),
            )
        return None

    def _track(self, attempt: _Attempt) -> None:
        self._keys.add(attempt.spec.key)
        self._attempts[attempt.spec.agent] = attempt
        if process_alive(attempt.pane_pid, attempt.pane_start):
            self._watch(attempt.spec.agent, attempt.pane_pid)

    # ----------------------------------------------------------------- waiting

    def live(self) -> frozenset[str]:
        """Agents still running, or ended with the exit not yet returned by next_exit."""
        running = {a for a, att in self._attempts.items() if not att.reported}
        return frozenset(running | set(self._launching) | {e.agent for e in self._ready})

    def next_exit(self, deadline: float | None) -> AttemptExit | None:
        """Block until an attempt has ended and tmux has its pane's last output, or until
        ``deadline`` (clock time) passes -- also when nothing runs (a backoff delay, an idle
        supervisor): the caller is woken at its deadline, not spun."""
        while True:
            if self._pool is not None:
                self._pool.apply_finished()
            self._drain_events()
            if self._ready:
                return self._ready.popleft()
            if not self.live() and deadline is None:
                return None  # nothing can end: waiting would be for ever
            wait = _SWEEP_INTERVAL
            if deadline is not None:
                left = deadline - self.clock.now()
                if left <= 0:
                    self._sweep()
                    return self._ready.popleft() if self._ready else None
                wait = min(wait, left)
            watching = self._watching()
            if watching:
                wait = min(wait, _WATCH_INTERVAL)
            watched = [self._fifo_fd, *self._pidfds]
            if self._pool is not None:
                watched.append(self._pool.fd)
            readable, _, _ = select.select(watched, [], [], wait)
            if not readable and time.monotonic() - self._swept >= _SWEEP_INTERVAL:
                self._sweep()
            for fd in readable:
                agent = self._pidfds.get(fd)
                if agent is not None:
                    self._check(self._attempts[agent])
            if watching and time.monotonic() - self._watched_at >= _WATCH_INTERVAL:
                self._watch_screens(watching)

    def _watching(self) -> list[_Attempt]:
        """Running attempts whose screen is watched. tmux has no event for "the pane shows
        X" or "nothing happened for N s", so this is a bounded poll (every
        ``_WATCH_INTERVAL``): a stat of the pipe-pane log and a /proc scan per tick, and a
        ``capture-pane`` of the visible screen only when new output arrived."""
        if not (self.end_on_dialog or self.stall_window is not None):
            return []
        return [a for a in self._attempts.values() if not a.reported and a.finding is None]

    def _watch_screens(self, watching: list[_Attempt]) -> None:
        """One look at every watched attempt; with workers, on the pool (a screen capture
        and a /proc scan per tick add up over a fleet), one pass at a time."""
        self._watched_at = time.monotonic()
        if self._pool is None:
            self._screens_seen(self._screen_pass(watching))
        elif not self._screen_pass_running:
            self._screen_pass_running = True
            self._pool.submit(
                EXIT,
                functools.partial(self._screen_pass, watching),
                self._screens_seen,
                self._screen_pass_failed,
            )

    def _screen_pass(self, watching: list[_Attempt]) -> list[tuple[_Attempt, ScreenFinding]]:
        """What each attempt's screen shows that ends it early. Only I/O and each attempt's
        own :class:`ScreenWatch` (touched by one pass at a time)."""
        # CPU time only tells a stall from slow work; without a stall window, no /proc scan.
        processes = ProcessTable.read() if self.stall_window is not None else None
        found = []
        for attempt in watching:
            if attempt.watch is None:
                attempt.watch = ScreenWatch(attempt.started_at, self.stall_window)
            try:
                size = attempt.log_file.stat().st_size
            except FileNotFoundError:
                size = 0
            finding = attempt.watch.observe(
                self.clock.now(),
                output_size=size,
                cpu_ticks=processes.tree_cpu_ticks(attempt.pane_pid) if processes else 0,
                screen=functools.partial(self._visible, attempt.pane_id),
            )
            if finding is not None and (finding.kind != "dialog" or self.end_on_dialog):
                found.append((attempt, finding))
        return found

    def _screens_seen(self, found: list[tuple[_Attempt, ScreenFinding]]) -> None:
        self._screen_pass_running = False
        for attempt, finding in found:
            if attempt.reported or attempt.finding is not None:
                continue
            attempt.finding = finding
            self.kill(attempt.spec.agent)  # its pane dies; the exit is reported as usual

    def _screen_pass_failed(self, error: BaseException) -> None:
        self._screen_pass_running = False
        raise error

    def _drain_events(self) -> None:
        while True:
            try:
                chunk = os.read(self._fifo_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._partial_line += chunk
        *lines, self._partial_line = self._partial_line.split(b"\n")
        for agent in dict.fromkeys(_event_agent(line.decode(errors="replace")) for line in lines):
            attempt = self._attempts.get(agent) if agent else None
            if attempt is not None:
                self._check(attempt)

    def _sweep(self) -> None:
        self._swept = time.monotonic()
        for attempt in list(self._attempts.values()):
            self._check(attempt)

    def _check(self, attempt: _Attempt) -> None:
        """Report the attempt if its pane process has ended and tmux has read the pane dry
        (with workers, a worker reads the pane and probes the workspace; see _conclude)."""
        if attempt.reported or process_alive(attempt.pane_pid, attempt.pane_start):
            return
        if self._pool is None:
            self._concluded(attempt, self._conclude(attempt, probe=False))
            return
        if attempt.concluding:
            attempt.recheck = True
            return
        attempt.concluding = True
        prs = self.host.prs
        if isinstance(prs, GhPullRequests) and prs.batch:
            # Its PR is looked up after its pane and worktree: a listing started now is
            # under way or done by then.
            self._pool.submit(
                EXIT, functools.partial(prs.prefetch, time.time()), _ignore, _log_failure
            )
        # Its process is gone: a pidfd would now stay readable and spin the select loop
        # while the worker runs. The pane-died hook and the wrapper's line still wake us.
        self._forget_pidfd(attempt.spec.agent)
        self._pool.submit(
            EXIT,
            functools.partial(self._conclude, attempt, probe=True),
            functools.partial(self._concluded, attempt),
            functools.partial(self._conclude_failed, attempt),
        )

    def _conclude(self, attempt: _Attempt, *, probe: bool) -> AttemptExit | None:
        """How the ended attempt went, or None while tmux has not read its pane dry. With
        ``probe``, what its workspace holds too (:attr:`AttemptExit.partial`), so the
        coordinator does not run the probe's git and gh in its own loop. Only I/O."""
        pane = self._pane(attempt)
        if pane is not None and not pane.status_ready:
            # Measured here with tmux 3.3a: the server now and then misses a pane's SIGCHLD
            # (about 1 launch in 30), leaving a zombie, an empty pane_dead_status and no
            # pane-died hook until its next SIGCHLD. A synchronous run-shell gives it one: its
            # waitpid(WAIT_ANY) loop then reaps the pane process too.
            self._tmux("run-shell", "true", check=False)
            pane = self._pane(attempt)
        if pane is not None and not pane.dead:
            return None  # tmux has not read the pty to EOF yet; its pane-died hook will wake us
        exited = self._exit_of(attempt, pane)
        if probe:
            try:
                partial = self._probe(
                    attempt.spec.task, attempt.spec.agent, ended_at=exited.ended_at
                )
            except Exception as exc:  # the coordinator probes again and meets it itself
                _log.debug("%s: workspace probe at exit: %s", attempt.spec.agent, exc)
            else:
                exited = dataclasses.replace(exited, partial=partial)
        return exited

    def _concluded(self, attempt: _Attempt, exited: AttemptExit | None) -> None:
        attempt.concluding = False
        if attempt.reported:
            return
        if exited is None:
            if attempt.recheck:
                attempt.recheck = False
                self._check(attempt)
            return
        attempt.reported = True
        self._forget_pidfd(attempt.spec.agent)
        self._ready.append(exited)

    def _conclude_failed(self, attempt: _Attempt, error: BaseException) -> None:
        attempt.concluding = False
        raise error

    def _watch(self, agent: str, pid: int) -> None:
        # Already gone and reaped: the FIFO / hook events and the sweep report it.
        with contextlib.suppress(ProcessLookupError):
            self._pidfds[os.pidfd_open(pid)] = agent

    def _forget_pidfd(self, agent: str) -> None:
        for fd, owner in list(self._pidfds.items()):
            if owner == agent:
                os.close(fd)
                del self._pidfds[fd]

    def _exit_of(self, attempt: _Attempt, pane: _PaneState | None) -> AttemptExit:
        record = _read_exit_file(attempt)
        extra: dict[str, Any] = {
            "log": str(attempt.log_file),
            "exit_file": str(attempt.exit_file),
            "key": attempt.spec.key,
            "signals_delivered": [],
        }
        if pane is not None:
            extra["pane_dead_status"] = pane.dead_status or None
            extra["pane_dead_signal"] = pane.dead_signal or None
        if record is not None:
            info = ExitInfo.from_json(record["exit"])
            extra["signals_delivered"] = list(record.get("signals_delivered", []))
            extra["wrapper_started_at"] = record.get("started_at")
            extra["wrapper_ended_at"] = record.get("ended_at")
        elif pane is not None:
            # The wrapper itself died without a word: a SIGKILL is the OOM killer's when the
            # pane's memory cgroup counted a kill since launch (the kernel's view).
            info = ExitInfo.from_tmux(pane.dead_status, pane.dead_signal)
            after = oom_kills(attempt.cgroup) if info.signal == 9 else None
            if after is not None and attempt.oom_before is not None and after > attempt.oom_before:
                info = info.with_evidence((SignalSender(9, SignalOrigin.KERNEL),), oom_killed=True)
        else:
            info = ExitInfo(status=None, source="tmux")  # the session vanished: unknown
        if attempt.finding is not None:
            info = info.with_evidence(screen=attempt.finding)
        text = self._final_text(attempt, pane)
        result = parse_result(text)
        session = result.get("session_id") if result else None
        return AttemptExit(
            agent=attempt.spec.agent,
            attempt=attempt.spec.attempt,
            exit=info,
            started_at=attempt.started_at,
            ended_at=_agent_end(record, self.clock.now()),
            output=text,
            result=result,
            session_id=session if isinstance(session, str) else None,
            extra=extra,
        )

    def _final_text(self, attempt: _Attempt, pane: _PaneState | None) -> str:
        """The pane's full history (complete once the pane is dead), or the pipe-pane log
        when that holds more (history overflow, or the session is gone)."""
        pane_text = self._capture(attempt.pane_id) if pane is not None else ""
        log_text = _read_log(attempt.log_file)
        return pane_text if len(pane_text) >= len(log_text.rstrip("\n")) else log_text

    def _visible(self, pane_id: str) -> str:
        """The screen as it is now (no history): where a waiting dialog is drawn."""
        lines = self._captured(pane_id, history=False)
        if lines is None:
            lines = self._tmux("capture-pane", "-p", "-J", "-t", pane_id, check=False)
        return "\n".join(lines)

    def _capture(self, pane_id: str) -> str:
        lines = self._captured(pane_id, history=True)
        if lines is None:
            lines = self._tmux("capture-pane", "-p", "-J", "-S", "-", "-t", pane_id, check=False)
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines) + ("\n" if lines else "")

    def _captured(self, pane_id: str, *, history: bool) -> list[str] | None:
        """The pane's lines as ``capture-pane -p`` prints them, through the control client;
        None without one. The text goes to a buffer that tmux saves to a file, never through
        the control channel, where a line the agent printed could pass for the reply's end."""
        control = self._control
        if control is None or not control.alive:
            return None
        number = next(self._captures)
        buffer, path = f"orch-capture-{number}", self._capture_dir / f"{number}.txt"
        span = ("-S", "-") if history else ()
        try:
            if not control.command("capture-pane", "-J", *span, "-b", buffer, "-t", pane_id).ok:
                return []  # no such pane
            saved = control.command("save-buffer", "-b", buffer, format_literal(str(path)))
            control.command("delete-buffer", "-b", buffer)
            data = path.read_bytes() if saved.ok else b""
        except (ControlClosed, NotSendable):
            return None
        except FileNotFoundError:
            data = b""
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        lines = data.decode("utf-8", errors="replace").split("\n")
        while lines and lines[-1] == "":
            lines.pop()
        return lines

    # ----------------------------------------------------------------- control

    def _attempt(self, agent: str) -> _Attempt:
        while self._pool is not None and agent in self._launching:
            self._pool.wait(None)  # its launch is queued: control acts on the started attempt
        try:
            return self._attempts[agent]
        except KeyError:
            raise KeyError(f"agent {agent}: never launched in this runtime") from None

    def pane_id(self, agent: str) -> str:
        """tmux's id (``%N``) of the pane running the agent's latest attempt."""
        return self._attempt(agent).pane_id

    def interrupt(self, agent: str) -> None:
        """SIGINT to the pane's foreground process group (tpgid in /proc/<pane_pid>/stat):
        the group a Ctrl-C at the terminal would reach, signalled without the terminal."""
        attempt = self._attempt(agent)
        pgid = foreground_process_group(attempt.pane_pid)
        if pgid is None:
            return  # already gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)

    def send_ctrl_c(self, agent: str) -> None:
        """Type C-c into the pane: reaches the foreground group only through the tty."""
        self._tmux("send-keys", "-t", self._attempt(agent).pane_id, "C-c")

    def kill(self, agent: str) -> None:
        """SIGTERM the attempt's process groups, wait (bounded), then SIGKILL."""
        attempt = self._attempt(agent)
        groups = {attempt.pane_pid}
        fg = foreground_process_group(attempt.pane_pid)
        if fg is not None:
            groups.add(fg)
        groups = {g for g in groups if pids_in_group(g)}
        if groups:
            stop_process_groups(groups, grace=self.kill_grace)

    def output(self, agent: str) -> str:
        attempt = self._attempt(agent)
        if self._pane(attempt) is not None:
            return self._capture(attempt.pane_id)
        return _read_log(attempt.log_file)

    def partial_work(self, task: Task, agent: str) -> PartialWork:
        return self._probe(task, agent)

    def _probe(self, task: Task, agent: str, *, ended_at: float | None = None) -> PartialWork:
        """What the agent's worktree holds. With ``ended_at`` (the attempt's end), a PR
        listing that started after it answers (one listing serves a burst of exits)."""
        prs = self.host.prs
        if ended_at is not None and isinstance(prs, GhPullRequests) and prs.batch:
            prs = prs.listed_after(ended_at)
        worktree = self.host.workspace(agent)
        checkpoint, problem = read_checkpoint_safely(self.host.checkpoints, agent, worktree)
        return probe(
            worktree,
            task,
            base=self._base,
            prs=prs,
            checkpoint=checkpoint,
            checkpoint_problem=problem,
            # Success needs the task's tests to pass, so the probe runs them itself, in the
            # environment the agent ran them in (not the supervisor's own).
            run_tests=bool(task.tests),
            test_env=self.host.env(agent),
        )

    def apply_remedy(self, agent: str, remedy: str) -> str:
        """Carry out a policy remedy in the agent's worktree (see :mod:`..remedies`)."""
        return apply_remedy(self.host.workspace(agent), remedy)

    def cleanup(self, agent: str) -> None:
        """Stop the agent's processes and remove its session."""
        attempt = self._attempt(agent) if agent in self._launching else self._attempts.get(agent)
        if attempt is not None and not attempt.reported:
            # Nobody waits for this exit any more (a task let go mid-attempt): it is neither
            # reported nor probed, since a probe runs the task's tests, which may take minutes.
            attempt.reported = True
            self._forget_pidfd(agent)
        if attempt is not None and process_alive(attempt.pane_pid, attempt.pane_start):
            self.kill(agent)
        if attempt is None and self._session_pane(agent) is None:
            return
        if self._pool is None:
            self._tmux("kill-session", "-t", f"={agent}", check=False)
        else:  # nothing waits for it; close() and detach() wait for the pool
            self._pool.submit(
                EXIT,
                functools.partial(self._tmux, "kill-session", "-t", f"={agent}", check=False),
                _ignore,
                _log_failure,
            )

    def close(self) -> None:
        """Stop the attempts this runtime launched or adopted and remove their sessions;
        kill the server only if this runtime started it. Release the FIFO. Idempotent."""
        if self._closed:
            return
        if self._pool is not None:
            self._pool.drain()
        for agent, attempt in self._attempts.items():
            if process_alive(attempt.pane_pid, attempt.pane_start):
                stop_process_groups({attempt.pane_pid}, grace=self.kill_grace)
            self._tmux("kill-session", "-t", f"={agent}", check=False)
        self._close_control()
        if self.created_server:
            kill_tmux_server(self.host.tmux_socket)
        self._release()
        with contextlib.suppress(FileNotFoundError):
            self.fifo.unlink()

    def detach(self) -> None:
        """Let go without stopping anything: agents, sessions and the server keep running
        for a runtime on the same host to adopt (a supervisor stopping); a server left with
        no session has nothing to keep and is removed. Idempotent."""
        if not self._closed:
            if self._pool is not None:
                self._pool.drain()  # a queued launch is started, and its record written
            self._close_control()
            self._release()
            reap_empty_server(self.host.tmux_socket, self.owner_mark)

    def _close_control(self) -> None:
        """Its session goes with it, so that a server left with agents' sessions only is
        what :func:`reap_empty_server` and the next runtime see."""
        if self._control is not None:
            self._control.close()

    def _release(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.close()
        self._close_control()
        for fd in self._pidfds:
            os.close(fd)
        self._pidfds.clear()
        os.close(self._fifo_fd)

    def __enter__(self) -> TmuxRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class _AttemptPaths:
    """Where one attempt's files live: named by agent and attempt number."""

    exit_file: Path
    spec_file: Path
    record_file: Path
    log_file: Path

    @classmethod
    def of(cls, host: Host, spec: LaunchSpec) -> _AttemptPaths:
        stem = f"{spec.agent}.{spec.attempt}"
        return cls(
            exit_file=host.results / f"{stem}.exit.json",
            spec_file=host.results / f"{stem}.launch.json",
            record_file=host.results / f"{stem}.pane.json",
            log_file=host.logs / f"{stem}.log",
        )


def _write_record(path: Path, attempt: _Attempt) -> None:
    """The launch record a runtime after a restart adopts the attempt from."""
    atomic.write_json(
        path,
        {
            "schema_version": RECORD_SCHEMA_VERSION,
            "agent": attempt.spec.agent,
            "attempt": attempt.spec.attempt,
            "key": attempt.spec.key,
            "pane_id": attempt.pane_id,
            "pane_pid": attempt.pane_pid,
            "pane_start": attempt.pane_start,
            "started_at": attempt.started_at,
            "exit_file": str(attempt.exit_file),
            "log_file": str(attempt.log_file),
        },
    )


def read_launch_record(path: Path) -> dict[str, Any] | None:
    """A launch record (``<agent>.<attempt>.pane.json``), or None if absent or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("schema_version") != RECORD_SCHEMA_VERSION:
        return None
    return data


def _read_record(path: Path, key: str) -> dict[str, Any] | None:
    data = read_launch_record(path)
    if data is None or data.get("key") != key or not isinstance(data.get("pane_pid"), int):
        return None
    return data


def _ignore(_result: object) -> None:
    pass


def _log_failure(error: BaseException) -> None:
    _log.warning("tmux runtime: %s", error)


def _agent_end(record: dict[str, Any] | None, noticed: float) -> float:
    """When the attempt ended by its own clock: the wrapper's ``ended_at`` (the same clock as
    the journal), so recovery times count from the exit and not from when a busy or
    restarted supervisor noticed it. Without a usable one (the wrapper was killed), when it
    was noticed.

    >>> _agent_end({"ended_at": 10.5}, 12.0), _agent_end(None, 12.0)
    (10.5, 12.0)
    >>> _agent_end({"ended_at": 99.0}, 12.0), _agent_end({"ended_at": "nan"}, 12.0)
    (12.0, 12.0)
    """
    ended = record.get("ended_at") if record is not None else None
    if isinstance(ended, (int, float)) and not isinstance(ended, bool) and math.isfinite(ended):
        return min(float(ended), noticed)  # never after it was noticed (a clock step back)
    return noticed


def _event_agent(line: str) -> str | None:
    """``exit <agent> <attempt>`` (wrapper) or ``died <agent>`` (tmux hook) -> agent."""
    parts = line.split()
    if len(parts) >= 2 and parts[0] in ("exit", "died"):
        return parts[1]
    return None


def _read_exit_file(attempt: _Attempt) -> dict[str, Any] | None:
    try:
        data = json.loads(attempt.exit_file.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("key") != attempt.spec.key or "exit" not in data:
        return None
    return data


def _read_log(path: Path) -> str:
    try:
        return clean_log(path.read_bytes())
    except FileNotFoundError:
        return ""
