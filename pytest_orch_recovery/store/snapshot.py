"""Snapshots of a journal's folded history, so a read does not replay every event again.

Beside ``journal.jsonl`` a reader keeps ``journal.jsonl.history``: the :class:`History` folded
up to a byte offset of the journal, written atomically every :data:`SNAPSHOT_EVERY` new events.
A read loads it, checks it against the journal (the file still holds the same bytes just before
that offset, and the next line continues its ``seq``), and folds only the lines appended since;
a snapshot that is missing, unreadable, made by another version of the fold or no longer
matches the journal (rewritten, truncated) is ignored and rebuilt from the whole journal.

The file is JSON lines (docs/journal.md): a header (format, the fold's fingerprint, the
journal offset, seq and seam hash, the number of tasks), the fleet's records, then one row per
task, each preceded by the shared values it is the first to refer to (:mod:`.historycodec`).
It is data only: a reader checks every value against the fold's classes and builds nothing
else, so a crafted file cannot run code, and what it can say, the journal beside it could say
too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pytest_orch_recovery.engine import events as _events
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.historycodec import (
    FINGERPRINT,
    Decoder,
    Encoder,
    SnapshotFormatError,
)
from pytest_orch_recovery.store.journal import cyclic_gc_paused, read_events

__all__ = [
    "SNAPSHOT_EVERY",
    "SNAPSHOT_SUFFIX",
    "HistoryFollower",
    "history_rows",
    "journal_seam",
    "open_regular",
    "read_history",
    "read_rows",
    "write_tied",
]

log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".history"
SNAPSHOT_EVERY = 50_000  # events folded since the last snapshot that make a read write one
_SEAM_BYTES = 4096  # journal bytes just before the offset whose hash ties a snapshot to it
# 1 was a pickle (ignored now, and rebuilt); 2 is JSON lines.
_FORMAT = 2
_HEADER_BYTES = 4096
_MAX_ROW_BYTES = 64 << 20  # one task's row; a longer line is no snapshot of ours
_ROWS_PER_WRITE = 512


def snapshot_path(journal: Path) -> Path:
    return journal.with_name(journal.name + SNAPSHOT_SUFFIX)


def journal_seam(journal: Path, offset: int) -> str | None:
    """The hash that ties derived data made at ``offset`` to ``journal`` (None: the journal
    is shorter than that now)."""
    with open(journal, "rb") as source:
        if os.fstat(source.fileno()).st_size < offset:
            return None
        return _seam(source, offset)


def open_regular(path: Path) -> BinaryIO | None:
    """``path`` opened for binary reading when it is a regular file; None when it is missing
    or something else (a FIFO, a directory, a device behind a symlink): not data derived by
    this package. The open does not block, so a FIFO in its place cannot hang a read. Other
    OSErrors propagate."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return open(fd, "rb")


def write_tied(
    journal: Path, path: Path, offset: int, chunks: Callable[[str], Iterable[bytes]]
) -> None:
    """Write ``path``, derived from ``journal`` up to ``offset``, atomically: ``chunks`` gets
    the seam that ties it to the journal (:func:`journal_seam`). Nothing when the journal is
    shorter than ``offset`` now. Never raises for a place it cannot write or a value it cannot
    store (logged): whoever reads the file stays correct without it, only slower."""
    try:
        seam = journal_seam(journal, offset)
        if seam is None:
            return
        atomic.write_chunks(path, chunks(seam))
    except OSError as exc:  # a read-only directory
        log.info("%s: cannot write: %s", path, exc.strerror or exc)
    except (TypeError, ValueError, OverflowError) as exc:  # a value JSON cannot hold
        log.info("%s: cannot write: %s", path, exc)


def _seam(handle: Any, offset: int) -> str:
    start = max(0, offset - _SEAM_BYTES)
    handle.seek(start)
    return hashlib.sha256(handle.read(offset - start)).hexdigest()


def _load(journal: Path) -> tuple[History, int, int] | None:
    """The snapshot's history, offset and seq, when it is there and matches the journal."""
    path = snapshot_path(journal)
    try:
        opened = open_regular(path)
        if opened is None:
            return None
        with opened as handle:
            header = json.loads(handle.readline(_HEADER_BYTES))
            if header.get("format") != _FORMAT or header.get("fold") != FINGERPRINT:
                return None
            offset, seq, count = int(header["bytes"]), int(header["seq"]), int(header["tasks"])
            if journal_seam(journal, offset) != header["seam"]:
                return None
            history = read_rows(handle, count)
            if handle.read(1):
                raise SnapshotFormatError("rows after the last task")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        log.info("%s: snapshot not used, rebuilding: %s", path, exc)
        return None
    return history, offset, seq


def read_rows(handle: Any, count: int) -> History:
    """The fleet's row and ``count`` tasks as :func:`history_rows` wrote them, from the
    binary file ``handle``; :class:`SnapshotFormatError` (or ValueError) when they do not fit
    the fold's classes."""
    history = History()
    loads = json.loads
    decoder = Decoder()
    decoder.fleet(history, loads(_line(handle)))
    tasks = history.tasks
    while len(tasks) < count:
        row = loads(_line(handle))
        if type(row) is dict:
            decoder.define(row.get("v"))
            continue
        task = decoder.task(row)
        if task.task_id in tasks:
            raise SnapshotFormatError(f"task {task.task_id!r} twice")
        tasks[task.task_id] = task
    return history


def _line(handle: Any) -> bytes:
    line: bytes = handle.readline(_MAX_ROW_BYTES)
    if not line.endswith(b"\n"):
        raise SnapshotFormatError("a row is cut short or too long")
    return line


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


def _chunks(header: dict[str, Any], history: History) -> Iterator[bytes]:
    yield _dumps(header)
    yield from history_rows(history)


def history_rows(history: History) -> Iterator[bytes]:
    """``history`` as JSON lines (the fleet's row, then each task's, each preceded by the
    shared values it is the first to use), in pieces to write one after another."""
    encoder = Encoder()
    yield _dumps(encoder.fleet(history))
    rows: list[bytes] = []
    for task in history.tasks.values():
        row = encoder.task(task)
        rows.extend(_dumps({"v": value}) for value in encoder.take_values())
        rows.append(_dumps(row))
        if len(rows) >= _ROWS_PER_WRITE:
            yield b"".join(rows)
            rows.clear()
    yield b"".join(rows)


def _save(journal: Path, history: History, offset: int, seq: int) -> None:
    def chunks(seam: str) -> Iterator[bytes]:
        header = {"format": _FORMAT, "fold": FINGERPRINT, "bytes": offset, "seq": seq}
        header.update(seam=seam, tasks=len(history.tasks))
        return _chunks(header, history)

    write_tied(journal, snapshot_path(journal), offset, chunks)


class HistoryFollower:
    """A journal's history kept current by folding only what was appended since the last
    :meth:`refresh` (``status --watch``), starting from the journal's snapshot.

    ``every``: write a snapshot when at least this many events were folded since the last one
    (None: never write).
    """

    def __init__(self, journal: Path, *, every: int | None = SNAPSHOT_EVERY) -> None:
        self.journal = Path(journal)
        self._every = every
        self.history = History()
        self.offset = 0
        self.seq = 0
        self._saved_seq = 0
        self._loaded = False
        self.snapshot_seq = 0  # the seq the snapshot it started from covers (0: none)

    def refresh(self) -> History:
        with cyclic_gc_paused():
            return self._refresh()

    def _refresh(self) -> History:
        if not self._loaded:
            self._loaded = True
            loaded = _load(self.journal)
            if loaded is not None:
                self.history, self.offset, self.seq = loaded
                self._saved_seq = self.snapshot_seq = self.seq
        try:
            size = self.journal.stat().st_size
        except OSError:
            size = None
        if size is not None and size < self.offset:  # rewritten under us: start again
            self.history, self.offset, self.seq, self._saved_seq = History(), 0, 0, 0
            self.snapshot_seq = 0
        add = self.history.add
        for event, end in self._tail():
            add(event)
            self.offset, self.seq = end, event.seq
        if self._every is not None and self.seq - self._saved_seq >= self._every:
            _save(self.journal, self.history, self.offset, self.seq)
            self._saved_seq = self.seq
        return self.history

    def _tail(self) -> Iterator[tuple[_events.Event, int]]:
        return read_events(self.journal, start=self.offset, seq=self.seq)


def read_history(journal: Path, *, every: int | None = SNAPSHOT_EVERY) -> History:
    """The journal's history: its snapshot plus the events appended since (see the module)."""
    return HistoryFollower(journal, every=every).refresh()
