"""``report`` over a large journal without folding every ended task's history again.

The dashboard's figures are totals that add up (:class:`~pytest_orch_recovery.report.metrics.
Totals`): beside ``journal.jsonl`` the command keeps ``journal.jsonl.report`` (the frame of
:mod:`pytest_orch_recovery.report.kept`), holding the totals of the tasks that had ended at a
byte offset of the journal, their recovery events as the JSON report writes them (newest
first, one line each, already encoded), and the full history of the tasks still open there.
A read folds the journal's tail into the open tasks, adds their totals to the kept ones and
renders: the Markdown reads only the newest few kept events, the JSON streams them all
between the live ones. The bytes are the same as a fold of the whole journal gives.

The file is used for one journal (``--journal`` once, no ``--store``) under the frame's rules
(tied to the journal, same code, no event since naming an ended task, a short tail); every
option of the command applies as before. It is derived data: deleting it is always safe.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, overload

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.report import jsondoc, kept, metrics, recent, rootcause, safetext
from pytest_orch_recovery.report.jsondoc import Encoded
from pytest_orch_recovery.report.metrics import Metrics, Outcome, RecoveryEvent, Totals
from pytest_orch_recovery.report.recent import Key, RecentEvents
from pytest_orch_recovery.store.history import History, TaskHistory

__all__ = ["KEEP_FROM", "SUFFIX", "fold", "kept_metrics", "save"]

log = logging.getLogger(__name__)

SUFFIX = ".report"
KEEP_FROM = kept.KEEP_FROM
# A recovery event is a row of the document's metrics' "recent" list: three levels deep.
_ROW_LEVEL = 3
_SECTION = "recent"


# What a kept file holds besides the fold: the totals and the events' JSON text.
_CODE = kept.code_hash(metrics, recent, jsondoc, rootcause, sys.modules[__name__])


# --------------------------------------------------------------------------- writing


def _sections(ended: Totals) -> kept.Sections:
    rows: list[bytes] = []
    times: list[float] = []
    ordinals: list[int] = []
    task_ids: list[str] = []
    outcomes: list[str] = []
    for (time, ordinal), event in ended.recent.live:
        text = jsondoc.encode(event.to_json(), _ROW_LEVEL)
        text = safetext.json_document(text)  # as a document has it
        if kept.SEP in text or kept.NEWLINE in text:
            raise InvalidValue("JSON text holds a control character")
        rows.append((text.replace("\n", kept.NEWLINE) + "\n").encode("utf-8"))
        times.append(time)
        ordinals.append(ordinal)
        task_ids.append(event.task_id)
        outcomes.append(event.outcome.value)
    fields = {
        "totals": ended.to_json(),
        "recent_keys": [times, ordinals],
        "recent_tasks": task_ids,
        "recent_outcomes": outcomes,
    }
    return kept.Sections(fields, {_SECTION: rows})


def _split(history: History) -> tuple[Totals, Totals]:
    """The totals of the ended tasks and of the others."""
    ended: list[tuple[int, TaskHistory]] = []
    still_open: list[tuple[int, TaskHistory]] = []
    for ordinal, task in enumerate(history.tasks.values()):
        (ended if kept.ended(task) else still_open).append((ordinal, task))
    return Totals.of(ended), Totals.of(still_open)


def save(journal: Path, history: History, offset: int, seq: int) -> None:
    """Keep the totals of ``history``'s ended tasks (the journal's up to ``offset``/``seq``)
    beside the journal; never raises for a place it cannot write."""
    ended, _ = _split(history)
    kept.save(journal, SUFFIX, _CODE, history, offset, seq, lambda: _sections(ended))


def fold(
    journal: Path,
    history: History,
    offset: int,
    seq: int,
    *,
    orphaned_workspaces: int | None = None,
) -> Metrics:
    """``compute(history)`` (the journal's up to ``offset``/``seq``), keeping the ended
    tasks' totals beside the journal as :func:`save` does once it holds :data:`KEEP_FROM`
    events: the ended tasks are counted once for both."""
    ended, still_open = _split(history)
    if seq >= KEEP_FROM:
        kept.save(journal, SUFFIX, _CODE, history, offset, seq, lambda: _sections(ended))
    return ended.merge(still_open).metrics(
        history.orphaned_paths, orphaned_workspaces=orphaned_workspaces
    )


# --------------------------------------------------------------------------- reading


class _Keys(Sequence[Key]):
    """The kept events' sort keys, as one sequence over the two lists that hold them."""

    def __init__(self, times: list[float], ordinals: list[int]) -> None:
        self._times = times
        self._ordinals = ordinals

    def __len__(self) -> int:
        return len(self._times)

    @overload
    def __getitem__(self, index: int) -> Key: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Key]: ...

    def __getitem__(self, index: int | slice) -> Key | Sequence[Key]:
        if isinstance(index, slice):
            return list(zip(self._times[index], self._ordinals[index], strict=True))
        return self._times[index], self._ordinals[index]


class _StoredEvents:
    """The kept recovery events, read from the file forwards as the merge asks for them."""

    def __init__(self, loaded: kept.Kept, fields: dict[str, Any]) -> None:
        times, ordinals = fields["recent_keys"]
        self.task_ids: list[str] = fields["recent_tasks"]
        self._outcomes: list[str] = fields["recent_outcomes"]
        columns = ((times, float), (ordinals, int), (self.task_ids, str), (self._outcomes, str))
        if any(type(c) is not list or not set(map(type, c)) <= {kind} for c, kind in columns):
            raise InvalidValue("the kept events' columns are not of their types")
        if not len(times) == len(ordinals) == len(self.task_ids) == len(self._outcomes):
            raise InvalidValue("the kept events' columns differ in length")
        self.keys = _Keys(times, ordinals)
        self._loaded = loaded
        self._lines: Iterator[str] | None = None
        self._next = 0

    def _seek(self, index: int) -> Iterator[str]:
        """The section's lines from event ``index`` on (a new pass when it lies behind)."""
        if self._lines is None or index < self._next:
            self._lines = self._loaded.lines(_SECTION)
            self._next = 0
        for _ in range(index - self._next):
            self._line()
        return self._lines

    def _line(self) -> str:
        assert self._lines is not None
        text = next(self._lines, None)
        if text is None:
            raise self._loaded.damaged("a recovery event of an ended task is cut short")
        self._next += 1
        return text.replace(kept.NEWLINE, "\n")

    def outcome(self, index: int) -> Outcome:
        return Outcome(self._outcomes[index])

    def event(self, index: int) -> RecoveryEvent:
        self._seek(index)
        text = self._line()
        try:
            return RecoveryEvent.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise self._loaded.damaged(f"a recovery event of an ended task is bad: {exc}") from None

    def rows(self, start: int, stop: int) -> Iterator[Encoded]:
        self._seek(start)
        line = self._line
        for _ in range(stop - start):
            yield Encoded(line())


def _totals(loaded: kept.Kept) -> Totals:
    fields = loaded.header
    stored = RecentEvents[RecoveryEvent]((), _StoredEvents(loaded, fields))
    return Totals.from_json(fields["totals"], stored)


@contextmanager
def kept_metrics(
    journal: Path, *, orphaned_workspaces: int | None = None
) -> Iterator[Metrics | None]:
    """The :class:`Metrics` of ``journal`` (as ``compute`` of its whole history gives them)
    from the file kept beside it and the journal's tail, or None when there is no file to
    use (then fold the journal and :func:`save`). Its ``recent`` events are read from the
    file as they are looked at: use the metrics inside the ``with``."""
    loaded = kept.load(journal, SUFFIX, _CODE)
    if loaded is None:
        yield None
        return
    try:
        history = loaded.history
        try:
            live = Totals.of(zip(loaded.ordinals(), history.tasks.values(), strict=True))
            metrics: Metrics | None = (
                _totals(loaded)
                .merge(live)
                .metrics(history.orphaned_paths, orphaned_workspaces=orphaned_workspaces)
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            log.info("%s: not used, rebuilding: %s", loaded.path, exc)
            metrics = None
        yield metrics
    finally:
        loaded.close()
