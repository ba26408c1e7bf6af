"""A coordinator's memory as plain data, so a restart need not fold the whole journal again.

:meth:`Coordinator.state` exports it and :meth:`Coordinator.recover` takes it back
(``state=``); the store writes it beside the journal (``store/restart.py``). It holds:

- the events that rebuild what is still open -- every event of each task that has not
  settled, and every escalation of an incident (its page lists them) -- folded again on
  restore through the same fold as a full replay, so an open task's state cannot drift
  from the journal's;
- tasks that succeeded and have nothing running (*settled*) as task id -> agent only: a
  succeeded task takes no more decisions, and its agent is all ``submit``, ``owners`` and
  the workspace sweep ask of it;
- what every event folds into beyond one task: the circuit breaker's window, the accounts'
  usage limits, the attempts stopped by a planned stop, the incident book, and how many
  agent names the fold drew.

:data:`FINGERPRINT` covers the shape of this data and the code of the fold that makes it, so
a state written by another version is ignored (and rebuilt from the whole journal).
"""

from __future__ import annotations

import dataclasses
import hashlib
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.incidents import Incident
from pytest_orch_recovery.engine.model import Reason

__all__ = [
    "FOLD_SETTINGS",
    "CoordinatorState",
    "code_fingerprint",
    "fingerprint",
    "shape_fingerprint",
]

# The settings the fold reads (CoordinatorConfig and the breaker's): a state made under
# other values would differ from a replay under these, so it is not used.
FOLD_SETTINGS = (
    "seed",
    "attempt_timeout",
    "default_agent_type",
    "breaker_threshold",
    "breaker_window",
)


@dataclass(frozen=True)
class CoordinatorState:
    """What a coordinator holds after the journal's first ``seq`` events (module doc)."""

    seq: int
    settings: tuple[tuple[str, str | int | float | None], ...]
    events: tuple[Event, ...]  # in seq order, each <= seq
    settled: Mapping[str, str]  # task id -> agent, in submission order
    breaker_open: tuple[tuple[Reason, str], ...]
    breaker_recent: tuple[tuple[Reason, tuple[tuple[float, str], ...]], ...]
    limits: tuple[tuple[str, float], ...]
    stopped_keys: tuple[str, ...]
    name_draws: int
    incidents: tuple[Incident, ...]
    open_incidents: tuple[tuple[str, str], ...]  # reason -> its open incident
    escalated: tuple[tuple[str, str | None], ...]  # task -> its incident (None: alone)
    # Agents several tasks were submitted under -> the task a replay maps them to (the last).
    shared_agents: tuple[tuple[str, str], ...] = ()


def shape_fingerprint(classes: Iterable[type]) -> str:
    """The field names and types of ``classes``, as text: a class that gains, loses,
    renames or retypes a field changes it."""
    parts = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        fields = ",".join(f"{f.name}:{hints[f.name]}" for f in dataclasses.fields(cls))
        parts.append(f"{cls.__module__}.{cls.__qualname__}({fields})")
    return "\n".join(parts)


def code_fingerprint(functions: Iterable[Callable[..., object]]) -> str:
    """What ``functions`` do, as text: their bytecode, names and constants, without line
    numbers or file names (a moved or reinstalled file is the same code)."""
    return "\n".join(
        b"|".join(_code_words(getattr(f, "__code__"))).hex()  # noqa: B009
        for f in functions
    )


def _code_words(code: types.CodeType) -> Iterator[bytes]:
    yield code.co_code
    yield repr(code.co_names).encode()
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_words(const)
        elif isinstance(const, frozenset):  # its repr's order changes with the hash seed
            yield repr(sorted(repr(c) for c in const)).encode()
        else:
            yield repr(const).encode()


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
