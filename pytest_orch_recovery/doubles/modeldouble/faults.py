"""API faults the double injects, keyed on events (request number, plan step), never on time.

Kinds and what the client sees (status and body as the real API sends them):

- ``overloaded``: 529 ``overloaded_error`` "Overloaded"
- ``rate_limit``: 429 ``rate_limit_error`` with a ``retry-after`` header (``seconds``)
- ``server_error``: 500 ``api_error`` "Internal server error"
- ``auth``: 401 ``authentication_error`` "invalid x-api-key"
- ``stall``: no answer for ``seconds`` (then the normal reply), or until the double stops
  (then the connection closes unanswered)
- ``stream_error``: a streaming reply that starts (200, ``keep_events`` events) and then
  carries ``event: error`` with an ``overloaded_error`` body and ends, as Anthropic's streaming
  docs describe for high load; a non-streaming request gets the 529 it corresponds to
- ``usage_limit``: the account (the request's API key) is at its plan's usage limit from
  now until the first whole minute ``seconds`` away: every request with that key, this one
  and the next, gets 429 ``rate_limit_error`` with ``anthropic-ratelimit-unified-status:
  rejected``, ``anthropic-ratelimit-unified-reset`` (epoch seconds) and
  ``anthropic-ratelimit-unified-representative-claim: five_hour``, the headers Claude Code
  reads its "You've hit your session limit · resets ..." from (router-for-me/CLIProxyAPI#3148
  shows a captured one)
- ``quit_early``: instead of the next step, a closing text that claims the task is done (a
  model that stops early); the agent then exits 0 as if it had succeeded
- ``drop_stream``: a streaming reply cut after ``keep_events`` events (message_start and some
  deltas), without the final chunk: the client sees an incomplete SSE body. A non-streaming
  request gets its connection closed before any response.

Triggers (all given must hold; none given = every task request):

- ``at_request=k``: from the k-th ``POST /v1/messages`` on, 1-based, counted per server
  (``scope="server"``, side requests included) or per task (``scope="task"``);
- ``at_step=k``: the reply about to be sent is step k of the task's full plan (1-based;
  ``len(steps) + 1`` is the closing text);
- ``before_kind="push"``: the reply about to be sent is a step of that kind;
- ``task="..."``: only conversations of the task whose ``match`` contains this text.

Side requests (titles, quota checks) are only hit by ``at_request`` faults with server scope.
A fault fires at most ``times`` times.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_orch_recovery.engine.errors import InvalidValue


class ApiFaultKind(enum.StrEnum):
    OVERLOADED = "overloaded"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    AUTH = "auth"
    STALL = "stall"
    DROP_STREAM = "drop_stream"
    STREAM_ERROR = "stream_error"
    QUIT_EARLY = "quit_early"
    USAGE_LIMIT = "usage_limit"


# kind -> API error type for the kinds that answer with an error body
ERROR_TYPES: dict[ApiFaultKind, str] = {
    ApiFaultKind.OVERLOADED: "overloaded_error",
    ApiFaultKind.RATE_LIMIT: "rate_limit_error",
    ApiFaultKind.SERVER_ERROR: "api_error",
    ApiFaultKind.AUTH: "authentication_error",
}


@dataclass(frozen=True)
class ApiFaultSpec:
    kind: ApiFaultKind
    times: int = 1
    at_request: int | None = None
    scope: str = "server"  # "server" | "task": what at_request counts
    at_step: int | None = None
    before_kind: str | None = None
    task: str | None = None
    seconds: float = 30.0  # stall: how long to hold; rate_limit: retry-after; usage_limit: reset
    keep_events: int = 3  # drop_stream / stream_error: SSE events sent first

    def __post_init__(self) -> None:
        if self.times < 1:
            raise InvalidValue(f"times: must be at least 1, got {self.times}")
        if self.scope not in ("server", "task"):
            raise InvalidValue(f"scope: must be 'server' or 'task', got {self.scope!r}")
        if self.at_request is not None and self.at_request < 1:
            raise InvalidValue(f"at_request: must be 1 or more, got {self.at_request}")
        if self.seconds < 0:
            raise InvalidValue(f"seconds: must not be negative, got {self.seconds}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiFaultSpec:
        """Build from a plan file's ``[[faults]]`` entry; ValueError names the bad field."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidValue(f"{unknown[0]}: unknown fault field")
        if "kind" not in data:
            raise InvalidValue("kind: required")
        try:
            kind = ApiFaultKind(data["kind"])
        except ValueError:
            names = ", ".join(k.value for k in ApiFaultKind)
            raise InvalidValue(f"kind: {data['kind']!r} is not one of {names}") from None
        ints = ("times", "at_request", "at_step", "keep_events")
        for name in ints:
            value = data.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise InvalidValue(f"{name}: must be an integer")
        seconds = data.get("seconds", 30.0)
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise InvalidValue("seconds: must be a number")
        args = {k: v for k, v in data.items() if k not in ("kind", "seconds")}
        return cls(kind=kind, seconds=float(seconds), **args)

    def to_json(self) -> dict[str, Any]:
        return {
            k: (str(v) if k == "kind" else v) for k, v in self.__dict__.items() if v is not None
        }


@dataclass(frozen=True)
class RequestContext:
    """What a fault trigger can look at."""

    server_index: int
    task_index: int | None  # None for side requests
    task_match: str | None
    step_position: int | None  # 1-based plan position of the reply (len+1: closing text)
    step_kind: str | None

    @property
    def side(self) -> bool:
        return self.task_index is None


def triggers(spec: ApiFaultSpec, ctx: RequestContext) -> bool:
    """Whether the fault applies to this request (ignoring how often it already fired)."""
    if ctx.side and not (spec.at_request is not None and spec.scope == "server"):
        return False
    if spec.task is not None and (ctx.task_match is None or spec.task not in ctx.task_match):
        return False
    if spec.at_request is not None:
        index = ctx.server_index if spec.scope == "server" else ctx.task_index
        if index is None or index < spec.at_request:
            return False
    if spec.at_step is not None and ctx.step_position != spec.at_step:
        return False
    return spec.before_kind is None or ctx.step_kind == spec.before_kind


class FaultBook:
    """The faults still armed; thread-safe. The first armed fault that triggers fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[list[Any]] = []  # [spec, remaining]

    def add(self, spec: ApiFaultSpec) -> None:
        with self._lock:
            self._armed.append([spec, spec.times])

    def take(self, ctx: RequestContext) -> ApiFaultSpec | None:
        with self._lock:
            for entry in self._armed:
                spec: ApiFaultSpec = entry[0]
                if entry[1] > 0 and triggers(spec, ctx):
                    entry[1] -= 1
                    return spec
        return None

    def remaining(self) -> list[tuple[ApiFaultSpec, int]]:
        with self._lock:
            return [(e[0], e[1]) for e in self._armed]
