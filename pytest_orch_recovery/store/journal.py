"""The engine's append-only journal: one JSON event per line (schema in ``docs/journal.md``).

A restarted coordinator rebuilds its state by replaying the journal, and skips any recovery
action whose idempotency key it has already recorded. Each append is a single ``write`` of a
whole line followed by ``fdatasync``, so a crash leaves at most one torn line, always the last;
opening the journal cuts it off so later appends stay line-aligned.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from pytest_orch_recovery.engine.errors import InvalidValue, OrchRecoveryError
from pytest_orch_recovery.engine.events import Event, EventFormatError, json_type_word
from pytest_orch_recovery.store import validation
from pytest_orch_recovery.store.atomic import fsync_dir

__all__ = [
    "Journal",
    "JournalError",
    "JournalMark",
    "cyclic_gc_paused",
    "journal_text",
    "read_events",
    "replay",
]

MAX_LINE_CHARS = 16 * 1024 * 1024  # one event


class JournalError(OrchRecoveryError):
    """The journal cannot be opened, read or appended to; the message names file and line."""


SEAM_BYTES = 4096  # journal bytes just before a mark whose hash ties a snapshot to the file


@dataclass(frozen=True)
class JournalMark:
    """A point in a journal file: the end of the line of event ``seq``, at byte ``offset``,
    and the sha256 of the :data:`SEAM_BYTES` before it (the file still holds the same
    bytes there when the seam matches)."""

    offset: int
    seq: int
    seam: str


def seam_at(fd: int, offset: int) -> str:
    """The seam of a mark at ``offset`` in the open file ``fd``."""
    start = max(0, offset - SEAM_BYTES)
    return hashlib.sha256(os.pread(fd, offset - start, start)).hexdigest()


class Journal:
    """An append-only event log, on disk (``path``) or in memory (``path=None``).

    >>> from pytest_orch_recovery.engine.events import DecisionMade, Event, TaskSubmitted
    >>> j = Journal(None)
    >>> j.append(Event(TaskSubmitted(), 0.0, task_id="fake3")).seq
    1
    >>> j.append(Event(DecisionMade(), 1.5, task_id="fake3", key="fake3:2")).seq
    2
    >>> j.has_key("fake3:2"), [e.kind.value for e in j.events_for("fake3")]
    (True, ['task_submitted', 'decision'])
    """

    def __init__(
        self,
        path: Path | None,
        *,
        fsync: bool = True,
        validate: bool = True,
        resume: tuple[JournalMark, Sequence[Event]] | None = None,
    ) -> None:
        """``resume``: a mark of this file and the events before it still needed (a
        coordinator snapshot's): only the lines after the mark are read, and
        :meth:`events` gives those events, then the lines after the mark. When the file no
        longer matches the mark (rewritten, cut), it is read whole; :attr:`resumed_at` says
        which (the mark's seq, or 0)."""
        self._path = None if path is None else Path(path)
        self._fsync = fsync
        # An in-memory journal still checks each event would serialise, unless told not to
        # (the simulation's hot loop, whose events the file-backed tiers serialise anyway).
        self._validate = validate or self._path is not None
        self._events: list[Event] = []
        self._keys: set[str] = set()
        self._by_task: dict[str, list[Event]] = {}
        self._fd: int | None = None
        self._size = 0  # bytes of whole lines in the file
        self._seq = 0  # the last event's seq
        self._closed = False
        self.resumed_at = 0
        if self._path is not None:
            self._fd = self._open_locked(self._path)
            try:
                if resume is None or not self._resume(*resume):
                    self._load()
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ opening

    @staticmethod
    def _open_locked(path: Path) -> int:
        existed = path.exists()
        try:
            # O_CLOEXEC: agents the coordinator launches must not inherit the fd, or the lock
            # would outlive a crashed coordinator and refuse its restart.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise JournalError(f"{path}: cannot open journal: {exc.strerror or exc}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise JournalError(
                f"{path}: cannot open journal: not a regular file ({validation.file_kind(mode)})"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalError(
                f"{path}: journal is locked by another process (one writer at a time)"
            ) from None
        if not existed:
            fsync_dir(path.parent)  # make the new file's name durable too
        return fd

    def _load(self, start: int = 0, seq: int = 0) -> None:
        assert self._fd is not None and self._path is not None
        with open(self._fd, "rb", closefd=False) as handle:
            handle.seek(start)
            raw = handle.read()
        with cyclic_gc_paused():
            events, valid = _parse(self._path, raw, first_line=seq + 1)
            self._seq = seq
            for event in events:
                self._index(event)
        if valid < len(raw):  # a torn last line: cut it so the next append starts a line
            os.ftruncate(self._fd, start + valid)
            os.fsync(self._fd)
        self._size = start + valid

    def _resume(self, mark: JournalMark, before: Sequence[Event]) -> bool:
        """Read only what follows ``mark``; False when the file does not match it."""
        assert self._fd is not None
        if os.fstat(self._fd).st_size < mark.offset or mark.offset < 1:
            return False
        if os.pread(self._fd, 1, mark.offset - 1) != b"\n":
            return False
        if seam_at(self._fd, mark.offset) != mark.seam:
            return False
        try:
            self._load(mark.offset, mark.seq)
        except JournalError:  # the line after the mark does not continue it: not this file
            self._events, self._size, self._seq = [], 0, 0
            return False
        self._events[:0] = before
        self.resumed_at = mark.seq
        return True

    def mark(self) -> JournalMark:
        """The mark of the file's end now (the last event written)."""
        if self._fd is None:
            raise JournalError(f"{self._path or '<memory>'}: no file to mark")
        return JournalMark(self._size, self._seq, seam_at(self._fd, self._size))

    # ------------------------------------------------------------------ writing

    def append(self, event: Event) -> Event:
        """Give ``event`` the next ``seq``, write it durably, and return the stored event
        (``event`` itself when it already carries that ``seq``)."""
        if self._closed:
            raise JournalError(f"{self._path or '<memory>'}: journal is closed")
        seq = self._seq + 1
        stored = event if event.seq == seq else replace(event, seq=seq)
        if not self._validate:
            self._index(stored)
            return stored
        problem = event_field_problem(stored)  # refuse to write what replay would refuse
        if problem is not None:
            raise JournalError(f"{self._path or '<memory>'}: event seq {stored.seq}: {problem}")
        try:
            line = json.dumps(
                stored.to_json(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError) as exc:
            raise JournalError(
                f"{self._path or '<memory>'}: event seq {stored.seq} is not JSON: {exc}"
            ) from None
        if self._fd is not None:
            self._write_line((line + "\n").encode("utf-8"))
        self._index(stored)
        return stored

    def _write_line(self, data: bytes) -> None:
        assert self._fd is not None
        size = self._size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self._fsync:
                os.fdatasync(self._fd)
            self._size = size + len(data)
        except OSError as exc:
            # Take back a partial line (e.g. ENOSPC) so the file stays a sequence of lines.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise JournalError(f"{self._path}: cannot append: {exc.strerror or exc}") from None

    def _index(self, event: Event) -> None:
        self._events.append(event)
        self._seq = event.seq
        if event.key is not None:
            self._keys.add(event.key)
        if event.task_id is not None:
            self._by_task.setdefault(event.task_id, []).append(event)

    # ------------------------------------------------------------------ reading

    @property
    def path(self) -> Path | None:
        return self._path

    def __len__(self) -> int:
        """The number of events in the journal (the last one's seq)."""
        return self._seq

    def events(self) -> Sequence[Event]:
        """Every event so far, in ``seq`` order (a snapshot); opened with ``resume``: the
        events given with the mark, then every event after it."""
        return tuple(self._events)

    def has_key(self, key: str) -> bool:
        """Whether any event carries idempotency key ``key``."""
        self._whole("has_key")
        return key in self._keys

    def events_for(self, task_id: str) -> list[Event]:
        self._whole("events_for")
        return list(self._by_task.get(task_id, ()))

    def _whole(self, what: str) -> None:
        if self.resumed_at:
            raise JournalError(
                f"{self._path}: {what} needs every event; this journal was opened after "
                f"event {self.resumed_at} (a coordinator snapshot)"
            )

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Release the lock and the file; further appends raise. Safe to call twice."""
        self._closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor also drops the flock

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def replay(path: Path) -> list[Event]:
    """Read a journal without locking or repairing it; a torn last line is ignored."""
    try:
        raw = validation.read_bounded(path, validation.MAX_JOURNAL_BYTES)
    except validation.RuleError as exc:
        raise JournalError(f"{path}: cannot read journal: {exc}") from None
    with cyclic_gc_paused():
        return _parse(Path(path), raw)[0]


_CHUNK_BYTES = 8 << 20


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Parsing or folding a journal builds hundreds of thousands of acyclic objects; the
    cyclic collector would rescan them again and again (a fifth to a quarter of the CPU of
    a large read or a restart) and find nothing to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_events(path: Path, *, start: int = 0, seq: int = 0) -> Iterator[tuple[Event, int]]:
    """Stream a journal's events from byte ``start`` (the end of the line whose ``seq`` is
    ``seq``; 0 for the beginning), each with the byte offset just after its line, without
    holding the file in memory. Same checks as :func:`replay`; a torn last line is ignored.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise JournalError(f"{path}: cannot read journal: {exc.strerror or exc}") from None
    with open(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            kind = validation.file_kind(info.st_mode)
            raise JournalError(f"{path}: cannot read journal: not a regular file ({kind})")
        if info.st_size > validation.MAX_JOURNAL_BYTES:
            raise JournalError(
                f"{path}: cannot read journal: is {info.st_size} bytes; the limit is "
                f"{validation.MAX_JOURNAL_BYTES}"
            )
        handle.seek(start)
        offset, pending = start, b""
        while True:
            chunk = handle.read(_CHUNK_BYTES)
            if not chunk:
                return  # what is left in ``pending`` is a torn last line
            data = pending + chunk
            whole = data.rfind(b"\n") + 1
            pending = data[whole:]
            if not whole:
                continue
            first_line = seq + 1
            events = _parse(path, data[:whole], first_line=first_line)[0]
            ends = _line_ends(data, whole, offset)
            yield from zip(events, ends, strict=True)
            offset += whole
            seq += len(events)


def _line_ends(data: bytes, whole: int, offset: int) -> list[int]:
    ends, at = [], data.find(b"\n", 0, whole)
    while at >= 0:
        ends.append(offset + at + 1)
        at = data.find(b"\n", at + 1, whole)
    return ends


def _parse(path: Path, raw: bytes, *, first_line: int = 1) -> tuple[list[Event], int]:
    """The events in ``raw`` and the length of its whole-line prefix.

    Bytes after the last newline are a torn write and are left out. Every whole line must be an
    event whose ``seq`` continues the one before.
    """
    valid = raw.rfind(b"\n") + 1
    try:
        text = raw[:valid].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + first_line
        raise JournalError(f"{path}:{line}: not UTF-8 text") from None
    lines = text.split("\n")
    lines.pop()  # the empty string after the final newline
    return _events(path, lines, first_line), valid


def _refuse_constant(token: str) -> float:
    raise InvalidValue(f"{token} is not a JSON number")


def _events(path: Path, lines: Iterable[str], first_line: int = 1) -> list[Event]:
    events: list[Event] = []
    loads = json.JSONDecoder(parse_constant=_refuse_constant).decode
    from_json = Event.from_json
    expected = first_line  # one event per line: line n holds seq n
    for number, line in enumerate(lines, first_line):
        if len(line) > MAX_LINE_CHARS:
            raise JournalError(
                f"{path}:{number}: line is {len(line)} characters long; the "
                f"limit is {MAX_LINE_CHARS}"
            )
        try:
            event = from_json(loads(line))
        except json.JSONDecodeError as exc:
            raise JournalError(f"{path}:{number}: invalid JSON: {exc.msg}") from None
        except EventFormatError as exc:
            raise JournalError(f"{path}:{number}: {exc}") from None
        except KeyError as exc:
            raise JournalError(f"{path}:{number}: missing or unknown {_what(exc)}") from None
        except (TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise JournalError(f"{path}:{number}: not a journal event: {exc}") from None
        problem = event_field_problem(event)
        if problem is not None:
            raise JournalError(f"{path}:{number}: {problem}")
        if type(event.seq) is not int or event.seq != expected:
            raise JournalError(
                f"{path}:{number}: field 'seq' is {event.seq!r}, expected {expected} "
                "(seq must be gap-free)"
            )
        events.append(event)
        expected += 1
    return events


def event_field_problem(event: Event) -> str | None:
    """What is wrong with the fields every event has (``field 'time': ...``), or None.

    A journal line is refused, with its file and line, when its time is not a finite number
    of seconds in ``[0, MAX_TIME]``, or its task id, agent or key is not a string, or its
    attempt not a whole number >= 1 (docs/limits.md). The payload's fields are checked by
    :meth:`Event.from_json`.

    >>> from pytest_orch_recovery.engine.events import WorkspaceOrphaned
    >>> event_field_problem(Event(WorkspaceOrphaned("w"), float("nan"), "t1"))
    "field 'time': must be a finite number, got nan"
    >>> event_field_problem(Event(WorkspaceOrphaned("w"), 1.0, "t1", agent=["a"]))  # type: ignore
    "field 'agent': must be a string or null, not a list"
    """
    time = event.time
    if not 0.0 <= time <= validation.MAX_TIME:  # NaN fails both comparisons
        try:
            validation.number(time, maximum=validation.MAX_TIME)
        except validation.RuleError as exc:
            return f"field 'time': {exc}"
    for name in ("task_id", "agent", "key"):
        value = getattr(event, name)
        if value is not None and type(value) is not str:
            return f"field {name!r}: must be a string or null, not {json_type_word(value)}"
    attempt = event.attempt
    if attempt is not None and (type(attempt) is not int or not 1 <= attempt <= 1_000_000):
        return f"field 'attempt': must be a whole number >= 1 or null, got {attempt!r}"[:200]
    return None


def _what(exc: KeyError) -> str:
    key = exc.args[0] if exc.args else "?"
    if key in ("kind", "time", "seq"):
        return f"field {key!r}"
    return f"event kind {key!r}"


def journal_text(events: Iterable[Event], *, compact: bool = False) -> str:
    """``events`` as the lines of a journal file, ``seq`` renumbered from 1 (e.g. a chaos
    campaign's events of several runs, for ``orch-recovery report``); ``compact``: without
    output tails, prompts and result JSON (:meth:`Event.to_compact_json`).

    >>> from pytest_orch_recovery.engine.events import Event, WorkspaceOrphaned
    >>> journal_text([Event(WorkspaceOrphaned("w"), 0.0, "t1", seq=7)])
    '{"seq":1,"kind":"workspace_orphaned","time":0.0,"task_id":"t1","data":{"path":"w"}}\\n'
    """
    return "".join(
        json.dumps(
            replace(e, seq=seq).to_compact_json() if compact else replace(e, seq=seq).to_json(),
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        + "\n"
        for seq, e in enumerate(events, 1)
    )
