"""The coordinator's two ports: the runtime (how it starts, watches and stops agent attempts)
and the event log it writes every decision to before acting on it.

The same coordinator drives the in-process simulation (virtual clock) and real tmux sessions;
both implement :class:`Runtime`. A runtime also answers what an attempt left in its workspace
(:meth:`Runtime.partial_work`), because only it knows where that workspace is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import ExitInfo, PartialWork, Strategy, Task, WorkItem

__all__ = [
    "AttemptExit",
    "Clock",
    "EventLog",
    "LaunchSpec",
    "Runtime",
]


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one attempt of one task."""

    task: Task
    agent: str  # the agent's name, e.g. task-agent-5030 (one tmux session)
    attempt: int  # 1-based attempt number for this task
    agent_type: str
    strategy: Strategy | None  # None for the first attempt
    prompt: str  # the full prompt the agent receives
    work: tuple[WorkItem, ...]  # the structured form of what the prompt asks for
    key: str  # idempotency key: launching the same key twice is a no-op
    resume_session: str | None = None
    timeout: float | None = None  # seconds; the coordinator enforces it


@dataclass(frozen=True)
class AttemptExit:
    """What the runtime reports when an attempt ends."""

    agent: str
    attempt: int
    exit: ExitInfo
    started_at: float
    ended_at: float  # by the agent's own account where the runtime has one; see runtime/tmux
    output: str = ""  # captured pane / stdout+stderr text
    result: Mapping[str, Any] | None = None  # the agent's result JSON, when it printed one
    session_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    # What the workspace held, when the runtime probed it already (off the coordinator's
    # loop); None: the coordinator asks :meth:`Runtime.partial_work` itself.
    partial: PartialWork | None = None


class Clock(Protocol):
    def now(self) -> float: ...


class Runtime(Protocol):
    """Launch, wait for exit, interrupt, kill, capture output, clean up."""

    @property
    def clock(self) -> Clock:
        """The time source every event of this runtime is stamped with."""

    def launch(self, spec: LaunchSpec) -> None:
        """Start the attempt. Must be idempotent on ``spec.key``."""

    def next_exit(self, deadline: float | None) -> AttemptExit | None:
        """Block until some live attempt exits, or until ``deadline`` (clock time) passes,
        returning None then. With no live attempts and no deadline, return None at once."""

    def interrupt(self, agent: str) -> None:
        """Deliver SIGINT to the agent's foreground process group."""

    def kill(self, agent: str) -> None:
        """Stop the agent for good (SIGTERM, then SIGKILL)."""

    def output(self, agent: str) -> str:
        """The text the agent has printed so far."""

    def partial_work(self, task: Task, agent: str) -> PartialWork:
        """What the agent's workspace holds now."""

    def live(self) -> frozenset[str]:
        """Names of agents whose attempt is still running, or has ended but its exit has not
        been returned by :meth:`next_exit` yet."""

    def apply_remedy(self, agent: str, remedy: str) -> str:
        """Carry out a policy remedy (e.g. ``remove_stale_index_lock``) in the agent's
        workspace before its next attempt; return what was done, for the journal."""

    def cleanup(self, agent: str) -> None:
        """Release everything the agent's attempts hold (processes, sessions)."""


class EventLog(Protocol):
    """Where the coordinator writes its events, in order, before it acts on them; implemented
    by :mod:`pytest_orch_recovery.store` (a JSONL file on one host)."""

    def append(self, event: Event) -> Event:
        """Write ``event`` durably and return it as stored."""
        ...

    def events(self) -> Iterable[Event]:
        """Every event written so far, oldest first."""
        ...

    def __len__(self) -> int: ...
