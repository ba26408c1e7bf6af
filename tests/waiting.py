"""The suite's one way to wait for something: a bounded wait on a condition or on an exit.

Tests never sleep for a fixed time to let something happen; they wait for the evidence that it
has, with a generous bound, and fail with what they were waiting for when the bound passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from pytest_orch_recovery.engine.ports import AttemptExit
    from pytest_orch_recovery.runtime.tmux import TmuxRuntime

T = TypeVar("T")

BOUND = 120.0  # seconds: long enough for a loaded 2-core CI machine, short of hanging CI
INTERVAL = 0.05  # seconds between looks where nothing can be waited on directly


def wait_until(
    check: Callable[[], T | None],
    what: str,
    *,
    timeout: float = BOUND,
    interval: float = INTERVAL,
) -> T:
    """Call ``check`` until it returns something other than None (or False) and return it;
    fail the test naming ``what`` after ``timeout`` seconds. For evidence only observable from
    outside (a /proc entry, a file, a pane's state), where there is no event to block on."""
    end = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() >= end:
            pytest.fail(f"no {what} within {timeout:.0f} s")
        time.sleep(interval)


def next_exit(runtime: TmuxRuntime, *, timeout: float = BOUND) -> AttemptExit:
    """The next attempt exit the runtime reports (it blocks on the exit itself), bounded."""
    deadline = runtime.clock.now() + timeout
    got = runtime.next_exit(deadline)
    assert got is not None, f"no exit reported within {timeout:.0f} s"
    assert got.ended_at < deadline
    return got
