"""Coordinator snapshots: a supervisor restarts from its coordinator's state plus the
journal's tail instead of folding every event again.

Beside ``journal.jsonl`` the supervisor keeps ``journal.jsonl.coordinator``: the coordinator's
memory after the journal's first ``seq`` events (``engine/coordstate.py``), written atomically
from the supervisor's loop (never from the append path). A restart loads it, opens the journal
at its mark (only the lines after it are read: :class:`~.journal.Journal` ``resume``) and
folds that tail onto it (``Coordinator.recover(state=...)``). A snapshot that is missing,
damaged, made by another version of the fold or under other fold settings, or that no longer
matches the journal is ignored (logged) and the journal is replayed whole; deleting it is
always safe. It is derived data: the journal stays the record.

The file is JSON lines: a header (``format``, ``state`` -- the fold's fingerprint,
``settings``, the mark: ``bytes``, ``seq``, ``seam``, and the counts of what follows), one
object of fleet-wide state (breaker, usage limits, stopped attempts, name draws, incidents),
the settled tasks as one flat array ``[task, agent, task, agent, ...]``, one line per task
escalated and waiting (its state as a replay holds it: ``coordstate.CompactTask``), then the
events that rebuild the other open tasks, one journal line each. Every value is checked
against the type it must have; nothing in the file is executed.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pytest_orch_recovery.engine.coordinator import STATE_FINGERPRINT, state_unfit
from pytest_orch_recovery.engine.coordstate import (
    AttemptState,
    CompactTask,
    CoordinatorState,
    TaskState,
    launch_of,
    spec_of,
)
from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.events import AttemptExited, AttemptLaunched, Event
from pytest_orch_recovery.engine.incidents import Incident
from pytest_orch_recovery.engine.model import (
    Attribution,
    ExitInfo,
    Phase,
    Reason,
    Task,
    WorkItem,
    WorkKind,
)
from pytest_orch_recovery.store import atomic, validation
from pytest_orch_recovery.store.journal import (
    Journal,
    JournalMark,
    cyclic_gc_paused,
    event_field_problem,
)

__all__ = [
    "SNAPSHOT_EVERY",
    "STATE_SUFFIX",
    "StateFormatError",
    "load_state",
    "open_journal",
    "save_state",
    "state_path",
]

log = logging.getLogger(__name__)

STATE_SUFFIX = ".coordinator"
SNAPSHOT_EVERY = 10_000  # events since the last snapshot that make the supervisor write one
_FORMAT = 2
_HEADER_BYTES = 4096
_EVENTS_PER_WRITE = 512
Settings = tuple[tuple[str, str | int | float | None], ...]
_A = TypeVar("_A")
_B = TypeVar("_B")


class StateFormatError(OrchRecoveryError, ValueError):
    """A coordinator snapshot's value is not what its place needs (the snapshot is ignored)."""


def state_path(journal: Path) -> Path:
    journal = Path(journal)
    return journal.with_name(journal.name + STATE_SUFFIX)


# --------------------------------------------------------------------------- writing


def save_state(journal: Journal, state: CoordinatorState) -> bool:
    """Write ``state`` beside ``journal`` (atomically), tied to the journal's end now; the
    state must cover every event written. False (logged) when it was not written."""
    path = journal.path
    if path is None:
        return False
    target = state_path(path)
    mark = journal.mark()
    if mark.seq != state.seq:
        log.info(
            "%s: not written: the state is of event %s, the journal at %s",
            target,
            state.seq,
            mark.seq,
        )
        return False
    try:
        atomic.write_chunks(target, _chunks(state, mark))
    except OSError as exc:  # a read-only directory: restarts stay correct, only slower
        log.warning("%s: cannot write coordinator snapshot: %s", target, exc.strerror or exc)
        return False
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold: no snapshot, no harm
        log.warning("%s: cannot write coordinator snapshot: %s", target, exc)
        return False
    return True


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def _chunks(state: CoordinatorState, mark: JournalMark) -> Iterator[bytes]:
    yield _dumps(
        {
            "format": _FORMAT,
            "state": STATE_FINGERPRINT,
            "settings": [list(pair) for pair in state.settings],
            "bytes": mark.offset,
            "seq": mark.seq,
            "seam": mark.seam,
            "events": len(state.events),
            "settled": len(state.settled),
            "compact": len(state.compact),
        }
    )
    yield _dumps(
        {
            "breaker_open": [[str(r), cause] for r, cause in state.breaker_open],
            "breaker_recent": [
                [str(r), [[t, agent] for t, agent in seen]] for r, seen in state.breaker_recent
            ],
            "limits": [list(pair) for pair in state.limits],
            "stopped": list(state.stopped_keys),
            "name_draws": state.name_draws,
            "incidents": [_incident_row(i) for i in state.incidents],
            "open_incidents": [list(pair) for pair in state.open_incidents],
            "escalated": [list(pair) for pair in state.escalated],
            "shared_agents": [list(pair) for pair in state.shared_agents],
        }
    )
    yield _dumps([word for pair in state.settled.items() for word in pair])
    lines: list[bytes] = []
    for entry in state.compact:
        lines.append(_dumps(_compact_row(entry)))
        if len(lines) >= _EVENTS_PER_WRITE:
            yield b"".join(lines)
            lines.clear()
    for event in state.events:
        lines.append(_dumps(event.to_json()))
        if len(lines) >= _EVENTS_PER_WRITE:
            yield b"".join(lines)
            lines.clear()
    yield b"".join(lines)


def _compact_row(entry: CompactTask) -> list[Any]:
    """A task escalated and waiting as one JSON row; its parts in the journal's own JSON
    forms (``Task``, ``AttemptLaunched``, ``ExitInfo``, ``AttemptExited``, ``Attribution``)."""
    state = entry.state
    if (
        state.phase is not Phase.ESCALATED
        or state.pending is not None
        or state.partial is not None
        or state.released_by is not None
        or state.task.task_id != entry.task_id
    ):
        raise StateFormatError(f"task {entry.task_id!r} is not escalated and waiting")
    return [
        entry.task_id,
        entry.submitted,
        entry.seq,
        list(entry.keys),
        state.task.to_json(),
        state.agent,
        [_attempt_row(state, attempt) for attempt in state.attempts],
        None if state.exited is None else state.exited.to_json(),
        None if state.attribution is None else state.attribution.to_json(),
        [w.to_json() for w in state.missing],
        state.first_failure_at,
        state.escalation_cause,
    ]


def _attempt_row(state: TaskState, attempt: AttemptState) -> list[Any]:
    spec = attempt.spec
    if spec.task != state.task or spec.agent != state.agent:
        raise StateFormatError(f"attempt {spec.key!r} is not of task {state.task.task_id!r}")
    return [
        launch_of(spec).to_json(),
        spec.attempt,
        spec.key,
        attempt.launched_at,
        attempt.deadline,
        None if attempt.reason is None else str(attempt.reason),
        None if attempt.exit is None else attempt.exit.to_json(),
        attempt.timed_out,
        attempt.usage_limited,
        attempt.host_lost,
    ]


def _incident_row(incident: Incident) -> list[Any]:
    return [
        incident.incident_id,
        incident.reason,
        incident.cause,
        incident.opened_at,
        incident.opened_by,
        list(incident.tasks),
        incident.closed,
    ]


# --------------------------------------------------------------------------- reading


def open_journal(path: Path, settings: Settings) -> tuple[Journal, CoordinatorState | None]:
    """The journal, opened after its snapshot's mark when a usable snapshot is beside it
    (then with the state to recover from), else whole (and None)."""
    path = Path(path)
    loaded = load_state(path, settings)
    if loaded is None:
        return Journal(path), None
    state, mark = loaded
    journal = Journal(path, resume=(mark, state.events))
    if journal.resumed_at != state.seq:
        log.info("%s: coordinator snapshot not used: the journal no longer matches it", path)
        return journal, None
    unfit = state_unfit(state, journal.events())
    if unfit is None:
        return journal, state
    log.info("%s: coordinator snapshot not used: %s", path, unfit)
    journal.close()
    return Journal(path), None


def load_state(path: Path, settings: Settings) -> tuple[CoordinatorState, JournalMark] | None:
    """The snapshot beside journal ``path`` and its mark, when it is there, whole, made by
    this fold under ``settings``; None otherwise (logged)."""
    target = state_path(path)
    try:
        # Not a regular file (a FIFO, a device behind a symlink): not a snapshot; the
        # non-blocking open keeps a FIFO from hanging the restart.
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s: coordinator snapshot not used: %s", target, exc.strerror or exc)
        return None
    try:
        with open(fd, "rb") as handle, cyclic_gc_paused():
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StateFormatError("not a regular file")
            return _read(handle, settings)
    except _Stale as exc:
        log.info("%s: coordinator snapshot not used: %s", target, exc)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        log.warning("%s: coordinator snapshot not used (damaged), replaying: %s", target, exc)
    return None


class _Stale(StateFormatError):
    """A whole snapshot, of another fold or other settings: rebuilt, nothing to warn about."""


def _read(handle: BinaryIO, settings: Settings) -> tuple[CoordinatorState, JournalMark]:
    header = _object(json.loads(_line(handle, _HEADER_BYTES)), "header")
    if header.get("format") != _FORMAT or header.get("state") != STATE_FINGERPRINT:
        raise _Stale("made by another version of the coordinator's fold")
    saved = tuple(_pair(p, _str, _setting) for p in _list(header.get("settings"), "settings"))
    if saved != settings:
        raise _Stale(f"made under other settings ({dict(saved)}, now {dict(settings)})")
    mark = JournalMark(_int(header.get("bytes")), _int(header.get("seq")), _str(header.get("seam")))
    limit = validation.MAX_JOURNAL_BYTES
    fleet = _object(json.loads(_line(handle, limit)), "fleet-wide state")
    words = _list(json.loads(_line(handle, limit)), "settled tasks")
    if len(words) != 2 * _int(header.get("settled")):
        raise StateFormatError("the settled tasks are not as many as the header says")
    strings = [_str(word) for word in words]
    settled = dict(zip(strings[::2], strings[1::2], strict=True))
    compact = tuple(
        _compact(json.loads(_line(handle, limit)), mark.seq)
        for _ in range(_int(header.get("compact")))
    )
    events = _events(handle, _int(header.get("events")), mark.seq)
    if handle.read(1):
        raise StateFormatError("lines after the last event")
    state = CoordinatorState(
        seq=mark.seq,
        settings=settings,
        events=events,
        settled=settled,
        breaker_open=tuple(
            _pair(p, _reason, _str) for p in _list(fleet.get("breaker_open"), "breaker_open")
        ),
        breaker_recent=tuple(
            _pair(p, _reason, _window) for p in _list(fleet.get("breaker_recent"), "window")
        ),
        limits=tuple(_pair(p, _str, _number) for p in _list(fleet.get("limits"), "limits")),
        stopped_keys=tuple(_str(k) for k in _list(fleet.get("stopped"), "stopped")),
        name_draws=_int(fleet.get("name_draws")),
        incidents=tuple(_incident(row) for row in _list(fleet.get("incidents"), "incidents")),
        open_incidents=tuple(
            _pair(p, _str, _str) for p in _list(fleet.get("open_incidents"), "open_incidents")
        ),
        escalated=tuple(
            _pair(p, _str, _optional_str) for p in _list(fleet.get("escalated"), "escalated")
        ),
        shared_agents=tuple(
            _pair(p, _str, _str) for p in _list(fleet.get("shared_agents"), "shared_agents")
        ),
        compact=compact,
    )
    return state, mark


def _line(handle: BinaryIO, limit: int) -> bytes:
    line = handle.readline(limit)
    if not line.endswith(b"\n"):
        raise StateFormatError("a line is cut short or too long")
    return line


def _events(handle: BinaryIO, count: int, seq: int) -> tuple[Event, ...]:
    events: list[Event] = []
    loads = json.loads
    last = 0
    for _ in range(count):
        event = Event.from_json(
            _object(loads(_line(handle, validation.MAX_JOURNAL_BYTES)), "event")
        )
        problem = event_field_problem(event)
        if problem is not None:
            raise StateFormatError(problem)
        if type(event.seq) is not int or not last < event.seq <= seq:
            raise StateFormatError(
                f"event seq {event.seq!r} out of order (after {last}, up to {seq})"
            )
        last = event.seq
        events.append(event)
    return tuple(events)


def _wrong(expected: str, value: object) -> StateFormatError:
    return StateFormatError(f"expected {expected}, got {type(value).__name__}")


def _object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _wrong(f"an object ({what})", value)
    return value


def _list(value: Any, what: str) -> list[Any]:
    if type(value) is not list:
        raise _wrong(f"a list ({what})", value)
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise _wrong("a string", value)
    return sys.intern(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise _wrong("a whole number >= 0", value)
    return value


def _number(value: Any) -> float:
    if type(value) not in (int, float) or value != value:
        raise _wrong("a number", value)
    return value  # type: ignore[no-any-return]


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _wrong("true or false", value)
    return value


def _setting(value: Any) -> str | int | float | None:
    if value is None or type(value) in (str, int, float):
        return value  # type: ignore[no-any-return]
    raise _wrong("a setting", value)


def _reason(value: Any) -> Reason:
    try:
        return Reason(value)
    except ValueError:
        raise StateFormatError(f"{value!r} is no failure reason") from None


def _pair(value: Any, first: Callable[[Any], _A], second: Callable[[Any], _B]) -> tuple[_A, _B]:
    if type(value) is not list or len(value) != 2:
        raise _wrong("a pair", value)
    return first(value[0]), second(value[1])


def _window(value: Any) -> tuple[tuple[float, str], ...]:
    return tuple(_pair(p, _number, _str) for p in _list(value, "failures in the window"))


def _compact(row: Any, last: int) -> CompactTask:
    fields: Sequence[Any] = _list(row, "escalated task")
    if len(fields) != 12:
        raise _wrong("an escalated task's 12 fields", row)
    task_id, submitted, seq, keys, task_json, agent, attempts, exited, attribution = fields[:9]
    missing, first_failure_at, cause = fields[9:]
    task = Task.from_json(_object(task_json, "task"))
    if task.task_id != task_id or not 0 < _int(submitted) < _int(seq) <= last:
        raise StateFormatError(f"escalated task {task_id!r}: not of this journal's events")
    agent = _str(agent)
    state = TaskState(
        task=task,
        agent=agent,
        phase=Phase.ESCALATED,
        attempts=[_attempt(a, task, agent) for a in _list(attempts, "attempts")],
        exited=None if exited is None else AttemptExited.from_json(_object(exited, "exited")),
        attribution=(
            None if attribution is None else Attribution.from_json(_object(attribution, "why"))
        ),
        missing=tuple(_work_item(w) for w in _list(missing, "missing work")),
        first_failure_at=None if first_failure_at is None else _number(first_failure_at),
        escalation_cause=_optional_str(cause),
    )
    return CompactTask(
        _str(task_id), submitted, seq, tuple(_str(k) for k in _list(keys, "keys")), state
    )


def _attempt(row: Any, task: Task, agent: str) -> AttemptState:
    fields: Sequence[Any] = _list(row, "attempt")
    if len(fields) != 10:
        raise _wrong("an attempt's 10 fields", row)
    launched_json, number, key, launched_at, deadline, reason, exit_json = fields[:7]
    timed_out, usage_limited, host_lost = fields[7:]
    launched = AttemptLaunched.from_json(_object(launched_json, "launch"))
    if type(number) is not int or number < 1:
        raise _wrong("an attempt number >= 1", number)
    return AttemptState(
        spec=spec_of(launched, task, agent, number, _str(key)),
        launched_at=_number(launched_at),
        deadline=None if deadline is None else _number(deadline),
        reason=None if reason is None else _reason(reason),
        exit=None if exit_json is None else ExitInfo.from_json(_object(exit_json, "exit")),
        timed_out=_bool(timed_out),
        usage_limited=_bool(usage_limited),
        host_lost=_bool(host_lost),
    )


def _work_item(value: Any) -> WorkItem:
    item = _object(value, "work item")
    path = item.get("path")
    if path is not None:
        _str(path)
    try:
        kind = WorkKind(_str(item.get("kind")))
    except ValueError:
        raise StateFormatError(f"{item.get('kind')!r} is no kind of work") from None
    return WorkItem(kind, path)


def _incident(row: Any) -> Incident:
    fields: Sequence[Any] = _list(row, "incident")
    if len(fields) != 7:
        raise _wrong("an incident's 7 fields", row)
    incident_id, reason, cause, opened_at, opened_by, tasks, closed = fields
    return Incident(
        _str(incident_id),
        _str(reason),
        _str(cause),
        _number(opened_at),
        _int(opened_by),
        [_str(t) for t in _list(tasks, "incident tasks")],
        _bool(closed),
    )
