"""One persistent tmux client in control mode (``tmux -C``), instead of a tmux process per command.

A fleet's supervisor asks its tmux server a few questions about every attempt (pane state,
history, killing its session) and, with the screen watch, looks at every running pane a few
times a second. As separate ``tmux`` processes each of those is a fork and exec competing for
the CPU with the agents; here they are lines written to one client that stays connected.

The protocol (tmux(1) "CONTROL MODE"): a command is one line on the client's stdin; its reply
is one block, ``%begin TIME NUMBER FLAGS`` ... ``%end`` (or ``%error``) with the same three
fields, never interleaved with another command's; lines outside a block are notifications and
are skipped. Blocks with flags ``0`` answer the client's own command line (the session it
attaches to) and are skipped too. libtmux (0.62) has no such client, only a test helper that
attaches one without reading its replies.

Safety, since pane content and values reach this channel:

- A reply ends only at the ``%end``/``%error`` carrying its ``%begin``'s exact fields. A line
  a pane printed could still forge one, so pane text never travels here: the runtime captures
  panes into a buffer that tmux saves to a file (:meth:`TmuxRuntime._capture`).
- Arguments are single-quoted for tmux's command parser (no ``$``, ``~`` or ``;`` meaning
  inside); one holding a line break or NUL cannot be sent on a line and raises
  :class:`NotSendable` so the caller runs a tmux process instead. An empty line would detach
  the client, and no line here is ever empty.

The client attaches to a session of its own (tmux ends a control client that is not attached)
named ``orch+control-…``: ``+`` is not allowed in agent names, so it never meets an agent's.
The session is killed by :meth:`ControlClient.close`. If this process dies, the client exits on
EOF of its stdin and its session stays, with no client, until the next runtime on the server
(or ``orch-recovery reap``) kills it (:func:`~.server.drop_orphaned_control_sessions`). Not
``destroy-unattached``: tmux 3.3a destroys such a session while the exiting client still
refers to it, and the server then crashes on its next look at that client (upstream commit
72c5037, "Correctly clear clients referring to a session with destroy-unattached"): measured
here, a supervisor killed with SIGKILL took the tmux server, and every agent's pane, with it.

The client's own command line (the ``new-session`` it attaches with) and the lines written to
its stdin are queued by the server as they arrive, in no fixed order: no line is written before
that command's reply, which also names the session (its id).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import subprocess
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_orch_recovery.engine.errors import OrchRecoveryError

_log = logging.getLogger(__name__)

CONTROL_SESSION_PREFIX = "orch+control-"
_names = itertools.count(1)
_REPLY_TIMEOUT = 60.0  # a server this slow to answer is treated as gone


class ControlClosed(OrchRecoveryError, RuntimeError):
    """The control client is gone (or never started); run a tmux process instead."""


class NotSendable(OrchRecoveryError, ValueError):
    """An argument cannot be written on one control-mode line (a line break or NUL)."""


def quote(arg: str) -> str:
    """``arg`` as one token of tmux's command parser, taken literally.

    >>> quote("=agent-1:"), quote("it's $HOME; ~"), quote("")
    ("'=agent-1:'", "'it'\\\\''s $HOME; ~'", "''")
    """
    if any(c in arg for c in "\n\r\0"):
        raise NotSendable(f"tmux argument {arg[:40]!r}: holds a line break or NUL")
    return "'" + arg.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class ControlReply:
    """One command's reply: its output lines, and whether tmux ran it without an error
    (``%end``) or not (``%error``; the lines are then its error message)."""

    ok: bool
    lines: tuple[str, ...]


@dataclass
class _Waiting:
    done: threading.Event = field(default_factory=threading.Event)
    reply: ControlReply | None = None


class ControlClient:
    """A ``tmux -L socket -C`` client; :meth:`command` may be called from any thread."""

    def __init__(
        self, socket_name: str, *, env: Mapping[str, str] | None = None, cwd: str = "/"
    ) -> None:
        self.session = f"{CONTROL_SESSION_PREFIX}{os.getpid()}-{next(_names)}"
        self._lock = threading.Lock()  # one writer at a time, and the waiting order with it
        self._waiting: deque[_Waiting] = deque()
        self._closed = False
        self._closing = False  # close() asked for the end: it is no failure
        # -N: never start a server (one without the runtime's options and mark). The
        # session's pane exits at once: it holds no process (the server keeps dead panes,
        # remain-on-exit). It is named by its id from here on (a target "=name" with a "+"
        # in the name finds nothing in tmux 3.3a).
        argv = ["tmux", "-L", socket_name, "-f", "/dev/null", "-N", "-C",
                "new-session", "-s", self.session, "-x", "20", "-y", "2",
                "-P", "-F", "#{session_id}", "true"]  # fmt: skip
        self._attached = threading.Event()  # the command line's reply came (or the end)
        self._own: ControlReply | None = None
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._read, name="tmux-control", daemon=True)
        self._reader.start()
        try:
            self._session_id = self._attach()
            self.command("refresh-client", "-F", "no-output")  # no %output lines for us
        except ControlClosed:
            self.close()
            raise

    def _attach(self) -> str:
        """Wait for the reply to the client's command line; the id of its session."""
        if not self._attached.wait(_REPLY_TIMEOUT):
            self._broken(f"no reply to new-session in {_REPLY_TIMEOUT:.0f} s")
        own = self._own
        if own is None or not own.ok or not own.lines:
            why = " ".join(own.lines) if own is not None else "the client ended"
            raise ControlClosed(f"tmux control client not attached: {why.strip()}")
        return own.lines[0]

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.poll() is None

    @property
    def pid(self) -> int:
        return self._proc.pid

    def command(self, *args: str) -> ControlReply:
        """Run one tmux command and return its reply. Raises :class:`NotSendable` for an
        argument that cannot go on a line, :class:`ControlClosed` when the client is gone or
        the server does not answer."""
        line = " ".join(quote(a) for a in args) + "\n"  # quote() first: nothing half-sent
        waiting = _Waiting()
        with self._lock:
            if self._closed or self._proc.stdin is None:
                raise ControlClosed("tmux control client is closed")
            self._waiting.append(waiting)
            try:
                self._proc.stdin.write(line.encode("utf-8", errors="surrogateescape"))
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as exc:
                self._waiting.remove(waiting)
                raise ControlClosed(f"tmux control client: {exc}") from None
        if not waiting.done.wait(_REPLY_TIMEOUT):
            self._broken(f"no reply to {args[0]} in {_REPLY_TIMEOUT:.0f} s")
        if waiting.reply is None:
            raise ControlClosed("tmux control client ended before replying")
        return waiting.reply

    def _read(self) -> None:
        """Reader thread: match each block to the oldest waiting command, until EOF."""
        assert self._proc.stdout is not None
        guard: bytes | None = None  # "TIME NUMBER FLAGS" of the open block
        lines: list[str] = []
        for raw in self._proc.stdout:
            line = raw.rstrip(b"\n")
            if guard is None:
                if line.startswith(b"%begin "):
                    guard, lines = line[len(b"%begin ") :], []
                continue  # a notification (or %exit)
            for end, ok in ((b"%end ", True), (b"%error ", False)):
                if line.startswith(end) and line[len(end) :] == guard:
                    if not guard.endswith(b" 0"):
                        self._answer(ControlReply(ok, tuple(lines)))
                    elif not self._attached.is_set():  # flags 0: the client's command line
                        self._own = ControlReply(ok, tuple(lines))
                        self._attached.set()
                    guard = None
                    break
            else:
                lines.append(line.decode("utf-8", errors="replace"))
        self._attached.set()  # nobody waits for a reply that cannot come
        self._broken("tmux control client ended")

    def _answer(self, reply: ControlReply) -> None:
        with self._lock:
            waiting = self._waiting.popleft() if self._waiting else None
        if waiting is None:
            _log.warning("tmux control client: a reply nobody asked for")
            return
        waiting.reply = reply
        waiting.done.set()

    def _broken(self, why: str) -> None:
        """Stop using the client: every waiting command fails, later ones are refused."""
        with self._lock:
            first = not self._closed
            self._closed = True
            waiting, self._waiting = list(self._waiting), deque()
        if first and not self._closing:
            _log.warning("%s; running tmux commands as processes from now on", why)
        for w in waiting:
            w.done.set()
        self._stop()

    def _stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()  # EOF: the client exits
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def close(self) -> None:
        """Kill the client's session (which ends the client) and wait for it. Idempotent."""
        self._closing = True
        if self.alive and hasattr(self, "_session_id"):
            with contextlib.suppress(ControlClosed):
                self.command("kill-session", "-t", self._session_id)
        self._broken("closed")
        if self._reader is not threading.current_thread():
            self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
