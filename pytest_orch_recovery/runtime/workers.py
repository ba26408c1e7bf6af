"""A few threads for the tmux runtime's slow steps, so one slow ``git`` or ``gh`` holds no other.

Launching an attempt (``git worktree add``, the hook settings, ``tmux new-session``) and
concluding one that ended (``tmux`` pane state and history, the workspace probe: ``git``
status, ``rev-list``, ``ls-remote``, ``gh pr view``, the task's tests) are a dozen
subprocesses each. Run one after another in the supervisor's one loop, a fleet's worth of them
queue behind each other, and an exit waits for the whole backlog of launches. Here they run on
``workers`` threads, concluding exits first (:data:`EXIT` before :data:`LAUNCH`, then in the
order given). A worker only does I/O and returns a value; its owner applies the values in its
own thread (:meth:`WorkPool.apply_finished`), woken through a pipe it can ``select`` on, so the
runtime's state is only ever changed by one thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import select
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from pytest_orch_recovery.engine.errors import InvalidValue

_log = logging.getLogger(__name__)

EXIT = 0  # concluding an attempt that ended: before any launch
LAUNCH = 1

_Then = Callable[[Any], None]
_Failed = Callable[[BaseException], None]


class WorkPool:
    """``workers`` daemon threads taking jobs by priority; results applied by the owner."""

    def __init__(self, workers: int, *, name: str = "orch-runtime") -> None:
        if workers < 1:
            raise InvalidValue(f"workers: at least 1, got {workers}")
        self._jobs: queue.PriorityQueue[tuple[int, int, Callable[[], Any] | None, int]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._callbacks: dict[int, tuple[_Then, _Failed]] = {}
        self._finished: deque[tuple[int, Any, BaseException | None]] = deque()
        self._lock = threading.Lock()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def fd(self) -> int:
        """Readable when a job has finished (for the owner's ``select``)."""
        return self._read_fd

    @property
    def pending(self) -> int:
        """Jobs submitted whose result has not been applied yet."""
        return len(self._callbacks)

    def submit(self, priority: int, work: Callable[[], Any], then: _Then, failed: _Failed) -> None:
        """Run ``work`` on a worker; later, in the owner's thread, ``then(result)`` or
        ``failed(exception)`` (:meth:`apply_finished`)."""
        seq = next(self._order)
        self._callbacks[seq] = (then, failed)
        self._jobs.put((priority, seq, work, seq))

    def _work(self) -> None:
        while True:
            _, _, work, seq = self._jobs.get()
            if work is None:
                return
            try:
                result, error = work(), None
            except BaseException as exc:  # handed to the owner, who decides
                result, error = None, exc
            with self._lock:
                self._finished.append((seq, result, error))
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._write_fd, b".")

    def apply_finished(self) -> int:
        """Apply every finished job's result in the calling thread; returns how many. An
        exception from a callback is raised after all the others were applied."""
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._read_fd, 4096):
                pass
        with self._lock:
            done = list(self._finished)
            self._finished.clear()
        first: BaseException | None = None
        for seq, result, error in done:
            then, failed = self._callbacks.pop(seq)
            try:
                if error is None:
                    then(result)
                else:
                    failed(error)
            except BaseException as exc:
                first = first or exc
        if first is not None:
            raise first
        return len(done)

    def wait(self, timeout: float | None) -> int:
        """Apply what finished; if nothing had, block until a job finishes (or ``timeout``)
        and apply that. Returns how many were applied."""
        applied = self.apply_finished()
        if applied or not self._callbacks:
            return applied
        select.select([self._read_fd], [], [], timeout)
        return self.apply_finished()

    def drain(self, timeout: float = 120.0) -> None:
        """Wait for every submitted job and apply it (errors logged, not raised): the owner
        is stopping."""
        while self._callbacks:
            try:
                if not self.wait(timeout):
                    _log.warning("%d runtime jobs unfinished after %.0f s", self.pending, timeout)
                    return
            except Exception as exc:
                _log.warning("a runtime job failed while stopping: %s", exc)

    def close(self) -> None:
        for _ in self._threads:
            seq = next(self._order)
            self._jobs.put((EXIT - 1, seq, None, seq))
        for thread in self._threads:
            thread.join(timeout=5.0)
        os.close(self._read_fd)
        os.close(self._write_fd)
