"""``report --format html`` over a large journal without reading every event again.

Beside ``journal.jsonl`` the command keeps ``journal.jsonl.page``: the page's fold
(:class:`~pytest_orch_recovery.report.pagefacts.PageFold`: the count and span of the events,
the history of the first tasks the timeline draws) up to a byte offset of the journal. A read
continues that fold with the events appended since: the fold is exact for any cut (later
tasks never move the first ones; a kept task's history is folded from the events naming it,
and the tail's are folded in as a whole read would), so there is nothing to give up on, and a
read costs the page and the tail, not the journal. After :data:`REWRITE_AFTER` events the
file is written again at the new end.

The file is used only when it is tied to the journal as the history snapshot is (the bytes
just before its offset, ``store/snapshot.py``) and was written by the same fold (a hash of the
modules that make it) for as many lanes: otherwise the command folds the whole journal, as
it did without it, and writes a new one. It is derived data: deleting it is always safe.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.report import kept, pagefacts
from pytest_orch_recovery.report.pagefacts import PageFacts, PageFold
from pytest_orch_recovery.store import historycodec, snapshot
from pytest_orch_recovery.store.journal import cyclic_gc_paused, read_events

__all__ = ["PAGE_SUFFIX", "REWRITE_AFTER", "load", "page_path", "read_facts", "save"]

log = logging.getLogger(__name__)

PAGE_SUFFIX = ".page"
# Events folded after the file's offset that make a read write it again: the file is the
# size of a page, so writing it costs little, and the next read folds less.
REWRITE_AFTER = 10_000
_FORMAT = 1
_HEADER_BYTES = 4096
# The page's fold and the history codec, besides what every kept file depends on.
_CODE = kept.code_hash(pagefacts, historycodec)


def page_path(journal: Path) -> Path:
    return kept.kept_path(journal, PAGE_SUFFIX)


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def save(journal: Path, fold: PageFold, offset: int, seq: int) -> None:
    """Keep ``fold`` (of the journal up to ``offset``/``seq``) beside the journal."""
    snapshot.write_tied(
        journal, page_path(journal), offset, lambda seam: _chunks(fold, offset, seq, seam)
    )


def _chunks(fold: PageFold, offset: int, seq: int, seam: str) -> Iterator[bytes]:
    header = {
        "format": _FORMAT,
        "code": _CODE,
        "lanes": pagefacts.LANES,
        "bytes": offset,
        "seq": seq,
        "seam": seam,
        "events": fold.events,
        "first_time": fold.first_time,
        "last_time": fold.last_time,
        "tasks": len(fold.history.tasks),
    }
    yield _dumps(header)
    yield from snapshot.history_rows(fold.history)


def _time(value: object) -> float | None:
    if value is None or type(value) is float:
        return value
    if type(value) is int:  # a journal may say 5 for 5.0; the page prints the same
        return value
    raise InvalidValue(f"a time is {value!r}")


def load(journal: Path) -> tuple[PageFold, int, int] | None:
    """The kept fold, offset and seq, when the file is there and tied to ``journal``."""
    path = page_path(journal)
    try:
        opened = snapshot.open_regular(path)
    except OSError:
        return None
    if opened is None:
        return None
    with opened as handle:
        try:
            header = json.loads(handle.readline(_HEADER_BYTES))
            if type(header) is not dict or header.get("format") != _FORMAT:
                return None
            if header.get("code") != _CODE or header.get("lanes") != pagefacts.LANES:
                return None
            offset, seq = int(header["bytes"]), int(header["seq"])
            if snapshot.journal_seam(journal, offset) != header["seam"]:
                return None
            count, tasks = int(header["events"]), int(header["tasks"])
            if count != seq or not 0 <= tasks <= pagefacts.LANES:
                raise InvalidValue("its counts do not fit the journal")
            history = snapshot.read_rows(handle, tasks)
            if handle.read(1):
                raise InvalidValue("rows after the last task")
            first, last = _time(header["first_time"]), _time(header["last_time"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            log.info("%s: not used, rebuilding: %s", path, exc)
            return None
    return PageFold(history, count, first, last), offset, seq


def read_facts(journal: Path) -> PageFacts:
    """The page's facts of one journal: the kept fold and the events appended since, else
    every event (then kept, once the journal is long enough). A bad journal line raises
    :class:`~pytest_orch_recovery.store.journal.JournalError`."""
    with cyclic_gc_paused():
        loaded = load(journal)
        fold, offset, seq = loaded if loaded is not None else (PageFold(), 0, 0)
        start = seq
        for event, end in read_events(journal, start=offset, seq=seq):
            fold.add(event)
            offset, seq = end, event.seq
        folded = seq - start
        if (folded >= REWRITE_AFTER or loaded is None) and seq >= kept.KEEP_FROM and folded:
            save(journal, fold, offset, seq)
        return fold.facts()
