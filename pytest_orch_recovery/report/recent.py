"""The report's recovery events, newest first, without holding every one of them.

A fleet that ran for months has a recovery event for every task that ever failed; the
Markdown dashboard shows the newest few and the JSON report writes them all one after
another. :class:`RecentEvents` is that list as a sequence that may come in two parts: the
events folded from the journal now (``live``) and events kept from an earlier fold
(``stored``: a :class:`StoredEvents`, e.g. rows of a file that the report keeps beside its
journal), each already in order. The two are merged by their sort key, ``(-time of the first
failure, task ordinal)``: exactly the order a stable sort of all events by ``-time`` gives
when the events come in task order. A stored event is decoded only when it is looked at.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Container, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar, overload

from pytest_orch_recovery.engine.errors import InvalidValue

__all__ = ["Key", "RecentEvent", "RecentEvents", "StoredEvents"]

# (-time of the task's first failure, the task's place in the journal's task order)
Key = tuple[float, int]


class RecentEvent(Protocol):
    """What this module reads of a recovery event
    (:class:`~pytest_orch_recovery.report.metrics.RecoveryEvent`)."""

    @property
    def task_id(self) -> str: ...

    @property
    def outcome(self) -> Any: ...

    def to_json(self) -> dict[str, Any]: ...


E = TypeVar("E", bound=RecentEvent)
E_co = TypeVar("E_co", bound=RecentEvent, covariant=True)


class StoredEvents(Protocol[E_co]):
    """Recovery events kept from an earlier fold, ascending by :data:`Key`."""

    @property
    def keys(self) -> Sequence[Key]: ...

    @property
    def task_ids(self) -> Sequence[str]: ...

    def outcome(self, index: int) -> Any: ...

    def event(self, index: int) -> E_co: ...

    def row(self, index: int) -> Any:
        """The event as the JSON report's row (e.g. already encoded text)."""


class RecentEvents(Sequence[E], Generic[E]):
    """Recovery events newest first; ties in the journal's task order."""

    __slots__ = ("_live", "_stored")

    def __init__(
        self, live: Sequence[tuple[Key, E]] = (), stored: StoredEvents[E] | None = None
    ) -> None:
        self._live = sorted(live, key=lambda item: item[0])
        self._stored = stored

    @property
    def live(self) -> list[tuple[Key, E]]:
        return self._live

    @property
    def stored(self) -> StoredEvents[E] | None:
        return self._stored

    def merged(self, other: RecentEvents[E]) -> RecentEvents[E]:
        """Both lists as one (their tasks are different; at most one has stored events)."""
        if self._stored is not None and other._stored is not None:
            raise InvalidValue("two stored lists of recovery events cannot be merged")
        return RecentEvents([*self._live, *other._live], self._stored or other._stored)

    def _order(self) -> Iterator[tuple[bool, int]]:
        """(live?, index) of every event in order."""
        stored = self._stored
        if stored is None:
            yield from ((True, i) for i in range(len(self._live)))
            return
        keys = stored.keys
        done = 0
        for index, (key, _) in enumerate(self._live):
            at = bisect.bisect_left(keys, key, lo=done)
            yield from ((False, j) for j in range(done, at))
            done = at
            yield True, index
        yield from ((False, j) for j in range(done, len(keys)))

    def _event(self, live: bool, index: int) -> E:
        if live:
            return self._live[index][1]
        assert self._stored is not None
        return self._stored.event(index)

    def __len__(self) -> int:
        return len(self._live) + (0 if self._stored is None else len(self._stored.keys))

    def __iter__(self) -> Iterator[E]:
        return (self._event(live, index) for live, index in self._order())

    @overload
    def __getitem__(self, index: int) -> E: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[E, ...]: ...

    def __getitem__(self, index: int | slice) -> E | tuple[E, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        size = len(self)
        if not -size <= index < size:
            raise IndexError("recovery event index out of range")
        place = next(itertools.islice(self._order(), index % size, None))
        return self._event(*place)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RecentEvents({list(self)!r})"

    def _task_id(self, live: bool, index: int) -> str:
        if live:
            return self._live[index][1].task_id
        assert self._stored is not None
        return self._stored.task_ids[index]

    def singles(self, exclude: Container[str], limit: int) -> tuple[list[E], int]:
        """The newest ``limit`` events of tasks not in ``exclude``, and how many there are."""
        head: list[E] = []
        for live, index in self._order():
            if len(head) >= limit:
                break
            if self._task_id(live, index) not in exclude:
                head.append(self._event(live, index))
        count = sum(1 for _, event in self._live if event.task_id not in exclude)
        if self._stored is not None:
            ids = self._stored.task_ids
            count += len(ids) - sum(map(exclude.__contains__, ids))
        return head, count

    def outcomes(self, task_ids: Collection[str]) -> dict[str, Any]:
        """The outcome of each of ``task_ids`` that has a recovery event."""
        found = {e.task_id: e.outcome for _, e in self._live if e.task_id in task_ids}
        if self._stored is not None:
            for index, task_id in enumerate(self._stored.task_ids):
                if task_id in task_ids:
                    found[task_id] = self._stored.outcome(index)
        return found

    def json_rows(self) -> Iterator[Any]:
        """Each event as the JSON report's row, in order."""
        for live, index in self._order():
            if live:
                yield self._live[index][1].to_json()
            else:
                assert self._stored is not None
                yield self._stored.row(index)
