"""A :class:`History` as plain JSON rows, for snapshots: data only, nothing a reader executes.

Every record the fold keeps (the fold's own classes and the event parts they hold) is a frozen
or slotted data class; each one is written as the list of its field values in field order,
an enum as its value, a tuple or list as a list, a dict as a list of pairs. Decoding is driven
by the classes' type hints: each value is checked against its field's type (a string where a
number belongs is refused, not carried into a view), enums are looked up by value and only the
known classes are ever built. Strings are interned as they are read: agents, reasons' details,
rules and paths repeat across thousands of tasks.

Frozen values (exits, attributions and their evidence, decisions, work items) repeat across
tasks: each distinct one is written once and referred to by its index, so a reader builds and
keeps it once. The one shared mutable object, the failure record an attempt points at (the
same object as in ``TaskHistory.failures``), is written as its index in that list.

:data:`FINGERPRINT` changes whenever any of these classes gains, loses, renames or retypes a
field, so a snapshot written by another version of the fold is rebuilt, never misread.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.events import PartialSummary, UsageLimited
from pytest_orch_recovery.store.history import (
    AttemptRecord,
    FailureRecord,
    FollowUp,
    History,
    Mark,
    TaskHistory,
)

__all__ = ["FINGERPRINT", "Decoder", "Encoder", "SnapshotFormatError"]


class SnapshotFormatError(OrchRecoveryError, ValueError):
    """A snapshot row does not match the fold's classes (the snapshot is then rebuilt)."""


_Decode = Callable[[Any], Any]
_intern = sys.intern


def _wrong(expected: str, value: object) -> SnapshotFormatError:
    return SnapshotFormatError(f"expected {expected}, got {type(value).__name__}")


def _str(value: Any) -> str:
    if type(value) is not str:
        raise _wrong("a string", value)
    return _intern(value)


def _int(value: Any) -> int:
    if type(value) is not int:
        raise _wrong("an integer", value)
    return value


def _float(value: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise _wrong("a number", value)
    return value  # an int stays an int: views print what the journal said


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _wrong("true or false", value)
    return value


_SCALARS: dict[Any, _Decode] = {str: _str, int: _int, float: _float, bool: _bool}


def _optional(inner: _Decode) -> _Decode:
    def decode(value: Any) -> Any:
        return None if value is None else inner(value)

    return decode


def _enum(cls: type[enum.Enum]) -> _Decode:
    members = {member.value: member for member in cls}

    def decode(value: Any) -> Any:
        try:
            return members[value]
        except (KeyError, TypeError):
            raise SnapshotFormatError(f"{value!r} is no {cls.__name__}") from None

    return decode


def _sequence(inner: _Decode, build: Callable[[list[Any]], Any]) -> _Decode:
    def decode(value: Any) -> Any:
        if type(value) is not list:
            raise _wrong("a list", value)
        return build([inner(item) for item in value])

    return decode


def _pairs(key: _Decode, item: _Decode) -> _Decode:
    def decode(value: Any) -> Any:
        if type(value) is not list:
            raise _wrong("a list of pairs", value)
        out = {}
        for pair in value:
            if type(pair) is not list or len(pair) != 2:
                raise _wrong("a pair", pair)
            out[key(pair[0])] = item(pair[1])
        return out

    return decode


# Written inline where they occur: the mutable records, and values that carry their own time
# or files (nearly every one is distinct, so sharing would only add a lookup).
_INLINE = (TaskHistory, AttemptRecord, FailureRecord, FollowUp, Mark, PartialSummary, UsageLimited)
# Fields written as something other than their value: an attempt's failure is an index.
_OVERRIDES: dict[tuple[type, str], _Decode] = {(AttemptRecord, "failure"): _optional(_int)}


def _fields(cls: type) -> tuple[str, ...]:
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields):
        raise SnapshotFormatError(
            f"a snapshot cannot hold {cls.__name__}: a field is not set by __init__"
        )
    return tuple(f.name for f in fields)


class Decoder:
    """Reads a snapshot's rows back: :meth:`define` for each shared value, :meth:`task` for
    each task, in the order :class:`Encoder` wrote them."""

    def __init__(self) -> None:
        self._values: list[Any] = []
        self._built: dict[type, _Decode] = {}
        self._refs: dict[type, _Decode] = {}
        self._classes = {c.__qualname__: c for c in _VALUE_CLASSES}
        self._task = self._record(TaskHistory)
        self._usage = self._record(UsageLimited)

    def _decoder_for(self, hint: Any) -> _Decode:
        if hint in _SCALARS:
            return _SCALARS[hint]
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (types.UnionType, typing.Union):
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1 or len(args) != 2:
                raise SnapshotFormatError(f"a snapshot cannot hold {hint!r}")
            return _optional(self._decoder_for(rest[0]))
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return _sequence(self._decoder_for(args[0]), tuple)
        if origin is list:
            return _sequence(self._decoder_for(args[0]), list)
        if origin is dict:
            return _pairs(self._decoder_for(args[0]), self._decoder_for(args[1]))
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return _enum(hint)
        if isinstance(hint, type) and hint in _INLINE:
            return self._record(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self._ref(hint)
        raise SnapshotFormatError(f"a snapshot cannot hold {hint!r}")

    def _record(self, cls: type) -> _Decode:
        """The decoder of data class ``cls`` written as the list of its field values."""
        known = self._built.get(cls)
        if known is not None:
            return known
        decoders: list[_Decode] = []

        def decode(value: Any) -> Any:
            if type(value) is not list or len(value) != len(decoders):
                raise _wrong(f"{cls.__name__}'s {len(decoders)} fields", value)
            return cls(*[d(v) for d, v in zip(decoders, value, strict=True)])

        self._built[cls] = decode  # before the fields: a class may hold itself
        hints = typing.get_type_hints(cls)
        for name in _fields(cls):
            override = _OVERRIDES.get((cls, name))
            decoders.append(override if override is not None else self._decoder_for(hints[name]))
        return decode

    def _ref(self, cls: type) -> _Decode:
        """The decoder of a field holding a shared value of ``cls``: its table index."""
        known = self._refs.get(cls)
        if known is not None:
            return known
        values = self._values

        def decode(value: Any) -> Any:
            if type(value) is not int or not 0 <= value < len(values):
                raise SnapshotFormatError(f"no shared value {value!r}")
            found = values[value]
            if type(found) is not cls:
                raise _wrong(cls.__name__, found)
            return found

        self._refs[cls] = decode
        return decode

    def define(self, row: Any) -> None:
        """The next shared value: ``[class name, field values...]``."""
        if type(row) is not list or not row or type(row[0]) is not str:
            raise _wrong("a shared value", row)
        cls = self._classes.get(row[0])
        if cls is None:
            raise SnapshotFormatError(f"a snapshot holds no {row[0]!r}")
        self._values.append(self._record(cls)(row[1:]))

    def task(self, row: Any) -> TaskHistory:
        """A task :meth:`Encoder.task` wrote."""
        task: TaskHistory = self._task(row)
        for attempt in task.attempts:
            failure: Any = attempt.failure
            if failure is not None:
                if not 0 <= failure < len(task.failures):
                    raise SnapshotFormatError(f"attempt {attempt.number}: no failure {failure}")
                attempt.failure = task.failures[failure]
        return task

    def fleet(self, history: History, row: Any) -> None:
        """Put :meth:`Encoder.fleet`'s data back into ``history``."""
        if type(row) is not list or len(row) != 2:
            raise _wrong("the fleet row", row)
        orphaned, limits = row
        history.orphaned = dict.fromkeys(_sequence(_str, list)(orphaned))
        if type(limits) is not list:
            raise _wrong("a list of usage limits", limits)
        for pair in limits:
            if type(pair) is not list or len(pair) != 2:
                raise _wrong("a usage limit and its time", pair)
            limited: UsageLimited = self._usage(pair[0])
            history.usage_limits[limited.agent_type] = (limited, _float(pair[1]))


def _value_classes() -> tuple[type, ...]:
    """Every frozen record class a history can hold (shared values in a snapshot)."""
    found: dict[type, None] = {}
    stack: list[Any] = [TaskHistory, UsageLimited]
    seen: set[Any] = set()
    while stack:
        hint = stack.pop()
        if hint in seen:
            continue
        seen.add(hint)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if hint not in _INLINE:
                found[hint] = None
            stack.extend(typing.get_type_hints(hint).values())
        else:
            stack.extend(typing.get_args(hint))
    names = [c.__qualname__ for c in found]
    if len(set(names)) != len(names):
        raise SnapshotFormatError("two record classes of a history share a name")
    return tuple(sorted(found, key=lambda c: (c.__module__, c.__qualname__)))


_VALUE_CLASSES = _value_classes()


def _fingerprint() -> str:
    classes = sorted({*_VALUE_CLASSES, *_INLINE}, key=lambda c: (c.__module__, c.__qualname__))
    parts = []
    enums: set[type[enum.Enum]] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        fields = ",".join(f"{name}:{hints[name]}" for name in _fields(cls))
        parts.append(f"{cls.__module__}.{cls.__qualname__}({fields})")
        enums |= _enums(cls)
    for kind in sorted(enums, key=lambda c: (c.__module__, c.__qualname__)):
        parts.append(f"{kind.__qualname__}={','.join(str(m.value) for m in kind)}")
    parts.append(",".join(sorted(vars(History()))))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _enums(cls: type) -> set[type[enum.Enum]]:
    found: set[type[enum.Enum]] = set()
    stack = list(typing.get_type_hints(cls).values())
    while stack:
        hint = stack.pop()
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            found.add(hint)
        stack.extend(typing.get_args(hint))
    return found


FINGERPRINT = _fingerprint()
_JSON_SCALARS = frozenset({str, int, float, bool})


# --------------------------------------------------------------------------- encoding


class Encoder:
    """Writes a history's rows: each distinct frozen value once (:meth:`take_values`, to be
    written before the rows that refer to it), each task as one row of its own."""

    def __init__(self) -> None:
        self._index: dict[tuple[type, str], int] = {}
        # The same object met again (a history read from a snapshot shares its values): no
        # need to write out its row to find it. The history outlives the encoder, so ids
        # stay unique meanwhile.
        self._by_id: dict[int, int] = {}
        self._new: list[list[Any]] = []
        self._fields = {c: _fields(c) for c in (*_VALUE_CLASSES, *_INLINE)}

    def _plain(self, value: Any) -> Any:
        kind = type(value)
        if kind in _JSON_SCALARS or value is None:
            return value
        if isinstance(value, enum.Enum):
            return value.value
        if kind is tuple or kind is list:
            return [self._plain(v) for v in value]
        if kind is dict:
            return [[self._plain(k), self._plain(v)] for k, v in value.items()]
        fields = self._fields.get(kind)
        if fields is None:
            raise SnapshotFormatError(f"a snapshot cannot hold {kind.__name__}")
        if kind in _INLINE:
            return [self._plain(getattr(value, name)) for name in fields]
        index = self._by_id.get(id(value))
        if index is not None:
            return index
        row = [self._plain(getattr(value, name)) for name in fields]
        # Keyed by the row as written (repr tells 0 from 0.0 and 1 from True), not by
        # equality: equal values a view prints differently must stay apart.
        key = (kind, repr(row))
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self._index)
            self._new.append([kind.__qualname__, *row])
        self._by_id[id(value)] = index
        return index

    def take_values(self) -> list[list[Any]]:
        """The shared values first referred to since the last call, in order."""
        new, self._new = self._new, []
        return new

    def task(self, task: TaskHistory) -> list[Any]:
        """``task`` as one JSON-ready row (:meth:`Decoder.task` reads it back)."""
        index = {id(failure): i for i, failure in enumerate(task.failures)}
        row = []
        for name in self._fields[TaskHistory]:
            if name == "attempts":
                row.append([self._attempt(a, index) for a in task.attempts])
            else:
                row.append(self._plain(getattr(task, name)))
        return row

    def _attempt(self, attempt: AttemptRecord, index: dict[int, int]) -> list[Any]:
        row = []
        for name in self._fields[AttemptRecord]:
            value = getattr(attempt, name)
            if name == "failure":
                row.append(None if value is None else index[id(value)])
            else:
                row.append(self._plain(value))
        return row

    def fleet(self, history: History) -> list[Any]:
        """What a history holds beside its tasks: orphaned workspaces and usage limits."""
        return [
            list(history.orphaned),
            [[self._plain(limited), time] for limited, time in history.usage_limits.values()],
        ]
