"""Rows a read command keeps beside a journal, so that its next read renders only what changed.

A task that has ended (succeeded or escalated) keeps its rows until an event names it again.
A command that reads a large journal (``status``, ``failures``, ``partial``) may keep those
rows beside it, already rendered, in a file of its own (``journal.jsonl`` + its suffix): up
to a byte offset of the journal, the ended tasks' rows in named sections, plus the full
history of the tasks still open there. A later read folds only the events appended since
into the open tasks, renders their rows as before and streams the ended tasks' rows from the
file: the output is the same bytes, its cost the output's size and the tail, not the fold of
every task's history.

The file is used only when it is tied to the journal as the history snapshot is (the bytes
just before its offset, ``store/snapshot.py``), was written by the same code (a hash of the
modules that make its rows, :func:`code_hash`), has exactly the byte counts its header says,
and no event appended since names an ended task (an operator's release reopens one) — and
when the tail is short enough that folding it beats writing a new file. Otherwise the command
reads as it did without it and writes a new one. It is derived data: deleting it is always
safe. The layout (docs/journal.md):

- a header object: ``format``, ``code``, ``bytes``/``seq``/``seam`` (the journal's mark),
  ``tasks`` (at the mark), ``open``, ``open_at`` (the open tasks' positions in task order),
  ``sections`` (their names, in order), ``<name>_bytes`` for each, then the command's own
  fields;
- a JSON list of the ended tasks' ids;
- the open tasks' history as in the snapshot (the fleet's row, then one row per task);
- the sections, one line per stored row, whatever the command put in it.

A stored row is one line of text. :data:`SEP` (NUL) and :data:`NEWLINE` (0x01) are free for
the command to split a row into parts and to stand for line breaks of JSON text: neither
occurs in a terminal-safe cell or in JSON text. Any other control character in a stored row
did not come from this code (which stores only terminal-safe cells and escaped JSON): a file
someone else wrote. The reader escapes it, never hands it to the terminal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from pytest_orch_recovery.engine import events, model
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import OperatorAction
from pytest_orch_recovery.engine.model import TERMINAL
from pytest_orch_recovery.report import safetext
from pytest_orch_recovery.store import history as history_module
from pytest_orch_recovery.store import snapshot
from pytest_orch_recovery.store.history import History, TaskHistory
from pytest_orch_recovery.store.historycodec import FINGERPRINT
from pytest_orch_recovery.store.journal import JournalError, read_events

__all__ = [
    "KEEP_FROM",
    "MAX_TAIL",
    "NEWLINE",
    "SEP",
    "Kept",
    "Sections",
    "code_hash",
    "ended",
    "escape_foreign",
    "in_task_order",
    "kept_path",
    "load",
    "save",
]

log = logging.getLogger(__name__)

# Events a journal must hold before a command keeps a file beside it (as many as make a read
# write a history snapshot): a small journal reads fast enough without one.
KEEP_FROM = snapshot.SNAPSHOT_EVERY
# Events appended since the file's mark past which a read gives up on it (and the command,
# reading the journal from its snapshot, writes a new one): a long tail costs more to fold
# than the file saves.
MAX_TAIL = snapshot.SNAPSHOT_EVERY
_FORMAT = 2
_MAX_LINE = 256 << 20
_ROWS_PER_WRITE = 512
_BLOCK = 1 << 20  # bytes of stored rows read at once

SEP = "\x00"
NEWLINE = "\x01"
_FOREIGN = re.compile(f"[\x02-\x09\x0b-\x1f{safetext.BEYOND_C0}]")
# A row of these bytes alone (printable ASCII, the separators) needs no look for the others.
_PLAIN = bytes(range(0x20, 0x7F)) + b"\x00\x01\n"
_RESERVED = frozenset(
    ("format", "code", "bytes", "seq", "seam", "tasks", "open", "open_at", "sections")
)

T = TypeVar("T")


def kept_path(journal: Path, suffix: str) -> Path:
    return journal.with_name(journal.name + suffix)


def code_hash(*modules: ModuleType) -> str:
    """What a stored row depends on beyond the journal: the fold (its fingerprint and
    source), the values' own ``to_json`` and ``str`` (events, model), this module and the
    command's ``modules`` that render a row. A change to any of them makes old files stale."""
    digest = hashlib.sha256(FINGERPRINT.encode())
    base = (history_module, events, model, safetext)
    for module in (*base, *modules):
        digest.update(Path(module.__file__ or "").read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def ended(task: TaskHistory) -> bool:
    """A task whose rows stay as they are until an event names it again."""
    return task.phase in TERMINAL and task.ended_at is not None


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


# --------------------------------------------------------------------------- writing


@dataclass
class Sections:
    """What a command keeps of the ended tasks: its header fields and its sections of rows
    (name -> lines, each ending in a newline), in the order they are written."""

    fields: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, list[bytes]] = field(default_factory=dict)


def save(
    journal: Path,
    suffix: str,
    code: str,
    history: History,
    offset: int,
    seq: int,
    sections: Callable[[], Sections],
) -> None:
    """Keep ``history`` (the journal's up to ``offset``/``seq``) beside the journal: the
    open tasks' history and the ``sections`` the command renders (called once, after the
    journal was found to hold ``offset`` bytes). Never raises for a place it cannot write
    or a value it cannot store: the command stays correct, only slower."""
    snapshot.write_tied(
        journal,
        kept_path(journal, suffix),
        offset,
        lambda seam: _chunks(code, history, offset, seq, seam, sections()),
    )


def _chunks(
    code: str, history: History, offset: int, seq: int, seam: str, sections: Sections
) -> Iterator[bytes]:
    still_open = History()
    still_open.orphaned = history.orphaned
    still_open.usage_limits = history.usage_limits
    open_at: list[int] = []
    ended_ids: list[str] = []
    for ordinal, task in enumerate(history.tasks.values()):
        if ended(task):
            ended_ids.append(task.task_id)
        else:
            still_open.tasks[task.task_id] = task
            open_at.append(ordinal)
    clash = _RESERVED.intersection(sections.fields)
    if clash:
        raise InvalidValue(f"a command's field is the file's own: {sorted(clash)}")
    header: dict[str, Any] = {
        "format": _FORMAT,
        "code": code,
        "bytes": offset,
        "seq": seq,
        "seam": seam,
        "tasks": len(history.tasks),
        "open": len(still_open.tasks),
        "open_at": open_at,
        "sections": list(sections.rows),
    }
    for name, rows in sections.rows.items():
        header[f"{name}_bytes"] = sum(map(len, rows))
    header.update(sections.fields)
    yield _dumps(header)
    yield _dumps(ended_ids)
    yield from snapshot.history_rows(still_open)
    for rows in sections.rows.values():
        for start in range(0, len(rows), _ROWS_PER_WRITE):
            yield b"".join(rows[start : start + _ROWS_PER_WRITE])


# --------------------------------------------------------------------------- reading


@dataclass
class Kept:
    """A kept file that fits its journal, with the journal's tail folded into its open
    tasks. Its sections are read with :meth:`lines`; :meth:`close` when done."""

    path: Path
    header: dict[str, Any]
    history: History  # the open tasks, then the tasks submitted since, the tail folded in
    tasks: int  # tasks at the mark (ended and open)
    open_at: list[int]  # the open tasks' positions among them
    _handle: Any
    _rows_at: int  # where the first section starts

    def ordinals(self) -> list[int]:
        """The position in the whole journal's task order of each task of :attr:`history`."""
        count = len(self.history.tasks)
        return [*self.open_at, *range(self.tasks, self.tasks + count - len(self.open_at))]

    def lines(self, section: str) -> Iterator[str]:
        """The stored rows of ``section``, each without its newline, foreign control
        characters escaped; :class:`JournalError` naming the file when one is cut short."""
        names: list[str] = self.header["sections"]
        start = self._rows_at + sum(
            int(self.header[f"{n}_bytes"]) for n in names[: names.index(section)]
        )
        left = int(self.header[f"{section}_bytes"])
        handle = self._handle
        handle.seek(start)
        # Read in blocks, decoded and escaped whole: a row's bytes never straddle what is
        # decoded (blocks end at a line's end, and no UTF-8 sequence holds a newline byte).
        pending = b""
        while left > 0:
            chunk = handle.read(min(left, _BLOCK))
            if not chunk:
                break
            left -= len(chunk)
            data = pending + chunk if pending else chunk
            end = data.rfind(b"\n") + 1
            pending = data[end:]
            if len(pending) > _MAX_LINE:
                break
            if end:
                block = data[:end] if pending else data
                text = block.decode("utf-8", errors="replace")
                if block.translate(None, _PLAIN):
                    text = _FOREIGN.sub(_foreign_escaped, text)
                yield from text[:-1].split("\n")
        if left or pending:
            raise self.damaged("a row of an ended task is cut short")

    def damaged(self, what: str) -> JournalError:
        return JournalError(
            f"{self.path}: {what}; the file is derived data, delete it and run again"
        )

    def close(self) -> None:
        self._handle.close()


def _foreign_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_foreign(text: str) -> str:
    """``text`` from a kept file (a header's string) with foreign control characters
    escaped, as :meth:`Kept.lines` does for rows."""
    return _FOREIGN.sub(_foreign_escaped, text)


def load(journal: Path, suffix: str, code: str) -> Kept | None:
    """The file ``suffix`` beside ``journal`` with the journal's tail folded in; None when
    it is missing, stale, damaged, made by other code, or the tail names an ended task or
    is longer than :data:`MAX_TAIL`."""
    path = kept_path(journal, suffix)
    try:
        handle = snapshot.open_regular(path)
    except OSError:
        return None
    if handle is None:
        return None
    try:
        kept = _read_head(journal, path, code, handle)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        log.info("%s: not used, rebuilding: %s", path, exc)
        kept = None
    if kept is None:
        handle.close()
    return kept


def _line(handle: Any) -> Any:
    line: bytes = handle.readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        raise InvalidValue("a row is cut short or too long")
    return json.loads(line)


def _read_head(journal: Path, path: Path, code: str, handle: Any) -> Kept | None:
    header = _line(handle)
    if type(header) is not dict or header.get("format") != _FORMAT:
        return None
    if header.get("code") != code:
        return None
    offset, seq = int(header["bytes"]), int(header["seq"])
    if snapshot.journal_seam(journal, offset) != header["seam"]:
        return None
    ended_ids = frozenset(_line(handle))
    opened = int(header["open"])
    history = snapshot.read_rows(handle, opened)
    rows_at = handle.tell()
    names = header["sections"]
    if type(names) is not list or len(set(names)) != len(names):
        raise InvalidValue("the sections are not a list of names")
    rows_bytes = sum(int(header[f"{name}_bytes"]) for name in names)
    if os.fstat(handle.fileno()).st_size != rows_at + rows_bytes:
        raise InvalidValue("the rows of ended tasks are cut short or followed by more")
    open_at = [int(o) for o in header["open_at"]]
    tasks = int(header["tasks"])
    if len(open_at) != opened or len(ended_ids) + opened != tasks:
        raise InvalidValue("the counts of tasks do not add up")
    if open_at != sorted(set(open_at)) or (open_at and not 0 <= open_at[0] <= open_at[-1] < tasks):
        raise InvalidValue("the open tasks' positions are not in order")
    for folded, (event, _) in enumerate(read_events(journal, start=offset, seq=seq), 1):
        named = event.payload.tasks if isinstance(event.payload, OperatorAction) else ()
        if event.task_id in ended_ids or any(t in ended_ids for t in named):
            return None  # an ended task moves again: its stored rows are no longer its rows
        history.add(event)
        if folded > MAX_TAIL:
            return None  # time to write a new one
    return Kept(path, header, history, tasks, open_at, handle, rows_at)


def in_task_order(kept: Kept, section: str, live: Sequence[T]) -> Iterator[tuple[int, str | T]]:
    """Every task's row in the journal's task order, each as (position, stored row or
    live row): ``live`` holds one row per task of :attr:`Kept.history`, in its order."""
    stored = kept.lines(section)
    opened = iter(live)
    open_at = kept.open_at
    next_open = 0
    for ordinal in range(kept.tasks):
        if next_open < len(open_at) and open_at[next_open] == ordinal:
            next_open += 1
            yield ordinal, next(opened)
        else:
            text = next(stored, None)
            if text is None:
                raise kept.damaged("a row of an ended task is cut short")
            yield ordinal, text
    for ordinal, row in enumerate(opened, kept.tasks):  # tasks submitted since
        yield ordinal, row
