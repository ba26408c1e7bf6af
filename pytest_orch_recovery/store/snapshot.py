"""Snapshots of a journal's folded history, so a read does not replay every event again.

Beside ``journal.jsonl`` a reader keeps ``journal.jsonl.history``: the :class:`History` folded
up to a byte offset of the journal, written atomically every :data:`SNAPSHOT_EVERY` new events.
A read loads it, checks it against the journal (the file still holds the same bytes just before
that offset, and the next line continues its ``seq``), and folds only the lines appended since;
a snapshot that is missing, unreadable, made by another version of the fold or no longer
matches the journal (rewritten, truncated) is ignored and rebuilt from the whole journal.

The file is a JSON header line and a pickle of the history. The pickle is loaded by an
unpickler that can only build the fold's own data classes and enums (no other callable, so a
crafted file cannot run code); what it can say, the journal beside it could say too.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import json
import logging
import os
import pickle
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine import events as _events
from pytest_orch_recovery.engine import model as _model
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store import history as _history
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import read_events

__all__ = ["SNAPSHOT_EVERY", "SNAPSHOT_SUFFIX", "HistoryFollower", "read_history"]

log = logging.getLogger(__name__)

SNAPSHOT_SUFFIX = ".history"
SNAPSHOT_EVERY = 50_000  # events folded since the last snapshot that make a read write one
_SEAM_BYTES = 4096  # journal bytes just before the offset whose hash ties a snapshot to it
_FORMAT = 1
_HEADER_BYTES = 4096


def _classes() -> dict[tuple[str, str], type]:
    """Every class a history holds: the fold's records, events' parts, the model's values."""
    found: dict[tuple[str, str], type] = {}
    for module in (_history, _events, _model):
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and (dataclasses.is_dataclass(value) or issubclass(value, enum.Enum))
            ):
                found[(value.__module__, value.__qualname__)] = value
    found[(History.__module__, History.__qualname__)] = History
    return found


_ALLOWED = _classes()


def _fingerprint() -> str:
    """Changes whenever a class a snapshot holds gains, loses or renames a field: a snapshot
    made by another version of the fold is then rebuilt, not misread."""
    parts = []
    for key, cls in sorted(_ALLOWED.items()):
        names = (
            [m.name for m in cls]
            if issubclass(cls, enum.Enum)
            else [f.name for f in dataclasses.fields(cls)]
            if dataclasses.is_dataclass(cls)
            else sorted(vars(History([])))
        )
        parts.append(f"{key}:{','.join(names)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


_FINGERPRINT = _fingerprint()


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        cls = _ALLOWED.get((module, name))
        if cls is None:
            raise pickle.UnpicklingError(f"a history snapshot cannot hold {module}.{name}")
        return cls


def snapshot_path(journal: Path) -> Path:
    return journal.with_name(journal.name + SNAPSHOT_SUFFIX)


def _seam(handle: Any, offset: int) -> str:
    start = max(0, offset - _SEAM_BYTES)
    handle.seek(start)
    return hashlib.sha256(handle.read(offset - start)).hexdigest()


def _load(journal: Path) -> tuple[History, int, int] | None:
    """The snapshot's history, offset and seq, when it is there and matches the journal."""
    path = snapshot_path(journal)
    try:
        # Not a regular file (a FIFO, /dev/zero behind a symlink): not a snapshot; the
        # non-blocking open keeps a FIFO from hanging the read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            header = json.loads(handle.readline(_HEADER_BYTES))
            if header.get("format") != _FORMAT or header.get("fold") != _FINGERPRINT:
                return None
            offset, seq = int(header["bytes"]), int(header["seq"])
            with open(journal, "rb") as source:
                if os.fstat(source.fileno()).st_size < offset:
                    return None
                if _seam(source, offset) != header["seam"]:
                    return None
            history = _Unpickler(handle).load()
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        log.info("%s: snapshot not used, rebuilding: %s", path, exc)
        return None
    if not isinstance(history, History):
        return None
    return history, offset, seq


def _save(journal: Path, history: History, offset: int, seq: int) -> None:
    try:
        with open(journal, "rb") as source:
            seam = _seam(source, offset)
        header = {"format": _FORMAT, "fold": _FINGERPRINT, "bytes": offset, "seq": seq}
        header["seam"] = seam
        body = io.BytesIO()
        body.write(json.dumps(header).encode() + b"\n")
        pickle.dump(history, body, protocol=pickle.HIGHEST_PROTOCOL)
        atomic.write_bytes(snapshot_path(journal), body.getvalue())
    except OSError as exc:  # a read-only directory: reads stay correct, only slower
        log.info("%s: cannot write snapshot: %s", snapshot_path(journal), exc.strerror or exc)


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

    def refresh(self) -> History:
        if not self._loaded:
            self._loaded = True
            loaded = _load(self.journal)
            if loaded is not None:
                self.history, self.offset, self.seq = loaded
                self._saved_seq = self.seq
        try:
            size = self.journal.stat().st_size
        except OSError:
            size = None
        if size is not None and size < self.offset:  # rewritten under us: start again
            self.history, self.offset, self.seq, self._saved_seq = History(), 0, 0, 0
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
