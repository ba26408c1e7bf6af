"""The fault catalogue: what can be injected, when, and which reason it should be blamed on.

Importable for users' own tests::

    from pytest_orch_recovery.chaos.faults import CATALOGUE, FaultSpec, Trigger
    FaultSpec("sigint", Trigger("file_written", path="fake3.md"), task="task-5030")

A fault is keyed on an *event* of the agent's run, never on elapsed time, so a schedule means
the same thing on the in-process simulation and in real tmux runs:

``start``           as the attempt starts, before its first API request
``api_request``     at the agent's Nth Messages API request of the attempt (1-based)
``tool_call``       after the agent's Nth tool call of the attempt
``file_written``    after the deliverable ``path`` (or the Nth file) is written
``commit``          after ``git commit``
``push``            after ``git push`` (so the code is on origin)
``open_pr``         when the agent runs ``gh pr create``
``test``            when the agent runs the task's tests
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import AttemptExited, Event
from pytest_orch_recovery.engine.model import Reason

TRIGGER_EVENTS = frozenset(
    {"start", "api_request", "tool_call", "file_written", "commit", "push", "open_pr", "test"}
)


@dataclass(frozen=True)
class FaultKind:
    """One entry of the catalogue."""

    name: str
    expected: Reason | None  # what the engine should attribute; None: no failure of its own
    description: str
    default_trigger: str  # the event it fires on unless the schedule says otherwise
    # "attempt": one attempt; "fleet": a configuration fault; "host": keyed on one attempt's
    # event like an attempt fault, it hits the host running that attempt (or the store every
    # host shares), so it needs several hosts (chaos/tiers/simhosts.py)
    scope: str = "attempt"


_KINDS = (
    FaultKind(
        "sigint",
        Reason.SIGINT,
        "SIGINT to the agent's foreground process group (the task-agent-5030 incident)",
        "file_written",
    ),
    FaultKind(
        "sigint_keys",
        Reason.SIGINT,
        "Ctrl-C typed into the agent's tmux pane (send-keys C-c)",
        "file_written",
    ),
    FaultKind(
        "kill", Reason.KILLED, "SIGKILL, as from the OOM killer or a supervisor", "tool_call"
    ),
    FaultKind(
        "terminate", Reason.KILLED, "SIGTERM from something other than a timeout", "tool_call"
    ),
    FaultKind(
        "stall",
        Reason.TIMEOUT,
        "the agent hangs (no output, no exit) past its timeout",
        "tool_call",
    ),
    FaultKind(
        "api_overloaded",
        Reason.API_ERROR,
        "a burst of HTTP 529 overloaded_error replies longer than the agent's retries",
        "api_request",
    ),
    FaultKind(
        "api_rate_limit",
        Reason.API_ERROR,
        "HTTP 429 rate_limit_error with retry-after, past the agent's retries",
        "api_request",
    ),
    FaultKind("api_server_error", Reason.API_ERROR, "HTTP 500 api_error replies", "api_request"),
    FaultKind(
        "usage_limit",
        Reason.API_ERROR,
        "the account's usage limit: every request of that agent type fails with the CLI's "
        "limit text and reset time until the reset",
        "api_request",
    ),
    FaultKind(
        "api_stall", Reason.TIMEOUT, "the API accepts the request and never answers", "api_request"
    ),
    FaultKind(
        "missing_permission_flag",
        Reason.PERMISSION,
        "the dispatcher launches agents without --dangerously-skip-permissions",
        "start",
        scope="fleet",
    ),
    FaultKind(
        "permission_prompt",
        Reason.PERMISSION,
        "an interactive agent parks at a permission prompt and waits forever",
        "tool_call",
    ),
    FaultKind(
        "pr_create_fails",
        Reason.GITHUB_ERROR,
        "gh pr create fails after a successful push (bad credentials, unreachable)",
        "open_pr",
    ),
    FaultKind(
        "stale_index_lock",
        Reason.GIT_ERROR,
        "a stale .git/index.lock left by a killed git makes git commit fail",
        "start",
    ),
    FaultKind(
        "tests_fail",
        Reason.TEST_FAILURE,
        "the implementation is complete but the task's tests fail",
        "test",
    ),
    FaultKind(
        "quit_early",
        Reason.INCOMPLETE,
        "the agent exits 0 reporting success without finishing",
        "tool_call",
    ),
    FaultKind(
        "corrupt_checkpoint",
        None,
        "the checkpoint file is torn (combine with a failure: recovery must restart)",
        "tool_call",
    ),
    FaultKind(
        "coordinator_crash",
        None,
        "the recovery coordinator itself dies mid-recovery and is restarted from its journal",
        "tool_call",
        scope="fleet",
    ),
    FaultKind(
        "host_down",
        Reason.KILLED,
        "the host running the attempt dies: its supervisor, tmux server and agents at once; "
        "its tasks go to other hosts when their leases run out",
        "tool_call",
        scope="host",
    ),
    FaultKind(
        "host_partition",
        Reason.KILLED,
        "the host running the attempt is frozen (cut off) past its lease, then thawed: other "
        "hosts take its tasks over, and it must stop their agents and decide nothing for them",
        "tool_call",
        scope="host",
    ),
    FaultKind(
        "store_outage",
        None,
        "the fleet's database is stopped for a while: agents keep running, supervisors wait "
        "and retry, no event is lost or reordered",
        "tool_call",
        scope="host",
    ),
)

CATALOGUE: Mapping[str, FaultKind] = {k.name: k for k in _KINDS}
# The kinds that need several hosts over a fleet store.
HOST_FAULTS = frozenset(k.name for k in _KINDS if k.scope == "host")

# The trigger events each kind can be keyed on, on every tier: the tmux tier's fault hook sees
# tool calls only, so an event the simulation alone could see (an API request) would make the
# tiers disagree. A scenario keying a fault on any other event is refused at load, whatever
# the tier.
_HOOK_EVENTS = frozenset({"tool_call", "file_written", "commit", "push", "open_pr", "test"})
HONOURED_EVENTS: Mapping[str, frozenset[str]] = {
    **{
        kind: _HOOK_EVENTS | {"start"}
        for kind in ("sigint", "sigint_keys", "kill", "terminate", "stale_index_lock")
    },
    **{kind: _HOOK_EVENTS for kind in ("stall", "corrupt_checkpoint")},
    **{
        kind: frozenset({"api_request"})
        for kind in (
            "api_overloaded",
            "api_rate_limit",
            "api_server_error",
            "api_stall",
            "usage_limit",
        )
    },
    "quit_early": frozenset({"tool_call"}),
    "permission_prompt": frozenset({"start", "tool_call"}),
    "pr_create_fails": frozenset({"open_pr"}),
    "tests_fail": frozenset({"test"}),
    "missing_permission_flag": frozenset({"start"}),
    "coordinator_crash": frozenset({"tool_call"}),
    **{kind: _HOOK_EVENTS for kind in ("host_down", "host_partition", "store_outage")},
}


@dataclass(frozen=True)
class Trigger:
    event: str
    n: int = 1  # the Nth occurrence of the event within the attempt
    path: str | None = None  # for file_written: fire after this file

    def __post_init__(self) -> None:
        if self.event not in TRIGGER_EVENTS:
            raise InvalidValue(
                f"unknown trigger event {self.event!r}; expected one of "
                + ", ".join(sorted(TRIGGER_EVENTS))
            )
        if self.n < 1:
            raise InvalidValue(f"trigger count n must be >= 1, got {self.n}")

    def describe(self) -> str:
        if self.path is not None:
            return f"after {self.path} is written"
        return f"{self.event} #{self.n}"


@dataclass(frozen=True)
class FaultSpec:
    """One fault of a schedule."""

    kind: str
    trigger: Trigger | None = None  # None: the kind's default trigger
    task: str = "*"  # a task id, or "*" for every task
    attempt: int | None = 1  # which attempt it hits; None: every attempt
    params: Mapping[str, Any] = field(default_factory=dict)
    fault_id: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CATALOGUE:
            raise InvalidValue(
                f"unknown fault kind {self.kind!r}; known: " + ", ".join(sorted(CATALOGUE))
            )

    @property
    def entry(self) -> FaultKind:
        return CATALOGUE[self.kind]

    @property
    def effective_trigger(self) -> Trigger:
        return self.trigger or Trigger(self.entry.default_trigger)

    def applies_to(self, task_id: str, attempt: int) -> bool:
        return (self.task in ("*", task_id)) and (self.attempt in (None, attempt))

    def to_json(self) -> dict[str, Any]:
        t = self.effective_trigger
        return {
            "id": self.fault_id,
            "kind": self.kind,
            "trigger": {"event": t.event, "n": t.n, "path": t.path},
            "task": self.task,
            "attempt": self.attempt,
            "params": dict(self.params),
            "expected": None if self.entry.expected is None else str(self.entry.expected),
        }


class FaultStatus:
    """Ledger states of an injected fault."""

    EXERCISED = "exercised"  # it took effect
    INEFFECTIVE = "ineffective"  # it fired but had no visible effect (e.g. retries absorbed it)
    NOT_EXERCISED = "not_exercised"  # its trigger never came


@dataclass
class FaultLedger:
    """What was injected, and whether it took effect."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def register(self, spec: FaultSpec) -> None:
        self.entries.setdefault(
            spec.fault_id, {**spec.to_json(), "status": FaultStatus.NOT_EXERCISED, "hits": []}
        )

    def mark(
        self, spec: FaultSpec, status: str, *, task: str, attempt: int, detail: str = ""
    ) -> None:
        entry = self.entries.setdefault(
            spec.fault_id, {**spec.to_json(), "status": FaultStatus.NOT_EXERCISED, "hits": []}
        )
        entry["hits"].append({"task": task, "attempt": attempt, "status": status, "detail": detail})
        if status == FaultStatus.EXERCISED or entry["status"] == FaultStatus.NOT_EXERCISED:
            entry["status"] = status

    def statuses(self) -> dict[str, str]:
        return {k: str(v["status"]) for k, v in self.entries.items()}

    def mark_fleet_faults(
        self, faults: Sequence[FaultSpec], events: Iterable[Event], crashes: int
    ) -> None:
        """Record the fleet-scope faults from what the journal shows: a missing permission
        flag took effect on each attempt whose agent reported permission denials; a
        coordinator crash when a coordinator was replaced from its journal."""
        events = list(events)
        for spec in faults:
            if spec.kind == "missing_permission_flag":
                for event in events:
                    if not isinstance(event.payload, AttemptExited):
                        continue
                    result = event.payload.result
                    denials = (
                        result.get("permission_denials") if isinstance(result, Mapping) else None
                    )
                    if denials and spec.task in ("*", event.task_id):
                        self.mark(
                            spec,
                            FaultStatus.EXERCISED,
                            task=str(event.task_id),
                            attempt=int(event.attempt or 0),
                            detail=f"{len(denials)} permission denials",
                        )
            elif spec.kind == "coordinator_crash" and crashes:
                self.mark(
                    spec,
                    FaultStatus.EXERCISED,
                    task="*",
                    attempt=0,
                    detail=f"coordinator replaced from its journal {crashes} time(s)",
                )
