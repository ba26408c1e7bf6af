"""``status`` over a large journal without building every finished task again.

A task that has ended (succeeded or escalated) shows the same row in every ``status`` until
an event names it again: its elapsed time is closed, it waits for no launch, and nothing of
its row depends on the clock. Beside ``journal.jsonl`` the command keeps
``journal.jsonl.status``: those rows as they are printed (the table's cells, the JSON
object's text around the attempt budget, which the command line may change) up to a byte
offset of the journal, plus the full history of the tasks still open there. A read folds
only the events appended since into the open tasks, renders their rows as before, and
writes the ended tasks' rows from the file as they come: the output is the same bytes, never
held whole, and its cost is the rows' size, not the fold of a quarter million histories.

The file is used only when it is tied to the journal as the history snapshot is (the bytes
just before its offset, ``store/snapshot.py``), was written by the same fold and the same
code that renders rows (a hash of their modules' source), and no event appended since names
an ended task (an operator's release reopens one): otherwise ``status`` reads as it did
without it and writes a new one. It is derived data: deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_orch_recovery.cli import fleet_output, statusrows
from pytest_orch_recovery.engine import events, model
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import OperatorAction
from pytest_orch_recovery.engine.model import TERMINAL
from pytest_orch_recovery.report import fleetview, jsondoc, safetext
from pytest_orch_recovery.report.fleetview import FleetView, TaskStatus
from pytest_orch_recovery.report.jsondoc import Encoded, Rows
from pytest_orch_recovery.store import atomic, snapshot
from pytest_orch_recovery.store import history as history_module
from pytest_orch_recovery.store.history import History, TaskHistory
from pytest_orch_recovery.store.historycodec import FINGERPRINT
from pytest_orch_recovery.store.journal import JournalError, read_events

__all__ = ["CACHE_FROM", "CACHE_SUFFIX", "cache_path", "render_cached", "save"]

log = logging.getLogger(__name__)

CACHE_SUFFIX = ".status"
# Events a journal must hold before status keeps a file beside it (as many as make a read
# write a history snapshot): a small journal reads fast enough without one.
CACHE_FROM = snapshot.SNAPSHOT_EVERY
_FORMAT = 1
_MAX_LINE = 256 << 20
# Stands for the attempt budget in an ended task's JSON text; the command line's budget
# replaces it when the row is written. No task's own budget can be it: the journal's are
# positive (engine/events.py reads any other as none).
_BUDGET_MARK = -7_205_759_403_792_793
_ROW_LEVEL = 2  # a row of the document's "tasks"; its fields one level deeper
_BUDGET_KEY = "\n" + "  " * (_ROW_LEVEL + 1) + '"budget": '
_BUDGET_FIELD = f"{_BUDGET_KEY}{_BUDGET_MARK}"


def cache_path(journal: Path) -> Path:
    return journal.with_name(journal.name + CACHE_SUFFIX)


def _code_hash() -> str:
    """What a stored row depends on beyond the fold: the code that renders it."""
    digest = hashlib.sha256(FINGERPRINT.encode())
    # The row's cells and JSON, the fold, and the values' own to_json and str (events, model).
    renderers = (statusrows, fleet_output, fleetview, jsondoc, safetext, history_module)
    for module in (*renderers, events, model):
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:16]


_CODE = _code_hash()


def _settled(task: TaskHistory) -> bool:
    return task.phase in TERMINAL and task.ended_at is not None


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8") + b"\n"


# --------------------------------------------------------------------------- writing


def save(journal: Path, history: History, offset: int, seq: int) -> None:
    """Keep ``history`` (the journal's up to ``offset``/``seq``) beside the journal."""
    try:
        seam = snapshot.journal_seam(journal, offset)
        if seam is None:
            return
        atomic.write_chunks(cache_path(journal), _chunks(history, offset, seq, seam))
    except OSError as exc:  # a read-only directory: status stays correct, only slower
        log.info("%s: cannot write: %s", cache_path(journal), exc.strerror or exc)
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold: no file, no harm
        log.info("%s: cannot write: %s", cache_path(journal), exc)


# A stored row is one line whose parts are split by a character that no cell (one terminal-safe
# line) and no JSON text (control characters escaped) holds; the JSON text's own line breaks
# are stored as another such character.
_SEP = "\x00"
_NEWLINE = "\x01"
# Any other control character in a kept row did not come from this module (which wrote only
# terminal-safe cells and escaped JSON): a file written by someone else. It is shown escaped,
# never handed to the terminal.
_FOREIGN = re.compile(f"[\x02-\x09\x0b-\x1f{safetext.BEYOND_C0}]")
# A row of these bytes alone (printable ASCII, the separators) needs no look for the others.
_PLAIN = bytes(range(0x20, 0x7F)) + b"\x00\x01\n"


def _foreign_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _damaged(journal: Path, what: str) -> JournalError:
    return JournalError(
        f"{cache_path(journal)}: {what}; the file is derived data, delete it and run again"
    )


def _attempt_key(attempt: int, own: int | None, releases: int) -> str:
    """The parts of an ATTEMPT cell, which the reader's budget completes."""
    return f"{attempt},{'' if own is None else own},{releases}"


def _table_rows(cells: list[list[str]], widths: list[int], keys: list[str]) -> Iterator[bytes]:
    """Each row's line padded to ``widths`` as two parts, before and after the ATTEMPT cell
    (empty here), with the key of that cell between them: the reader joins the three."""
    start = sum(w + 2 for w in widths[: statusrows.ATTEMPT_COLUMN])
    end = start + widths[statusrows.ATTEMPT_COLUMN] + 2
    for row, key in zip(cells, keys, strict=True):
        if any(_SEP in c or "\n" in c for c in row):
            raise InvalidValue("a cell holds a control character")
        line = fleet_output.table_line(row, widths)[:-1]
        if len(line) <= end:  # nothing after the ATTEMPT cell: no row of ours
            raise InvalidValue("a row ends at its ATTEMPT cell")
        yield f"{line[:start]}{_SEP}{key}{_SEP}{line[end:]}\n".encode()


def _json_line(text: str) -> bytes:
    """A row's JSON text with the budget's value cut out (the part after it follows the
    separator), unless the task names its own budget."""
    if _SEP in text or _NEWLINE in text:
        raise InvalidValue("JSON text holds a control character")
    before, mark, after = text.partition(_BUDGET_FIELD)
    line = before + (_SEP + after if mark else "")
    return (line.replace("\n", _NEWLINE) + "\n").encode("utf-8")


def _chunks(history: History, offset: int, seq: int, seam: str) -> Iterator[bytes]:
    rows = FleetView(history, budget=_BUDGET_MARK).statuses(now=0.0)
    still_open = History()
    still_open.orphaned = history.orphaned
    still_open.usage_limits = history.usage_limits
    open_at: list[int] = []
    cells_of: list[list[str]] = []
    keys: list[str] = []
    texts: list[bytes] = []
    settled_ids: list[str] = []
    widths = [len(h) for h in statusrows.HEADERS]
    notes: list[tuple[int, str]] = []
    for ordinal, (task, row) in enumerate(zip(history.tasks.values(), rows, strict=True)):
        if not _settled(task):
            still_open.tasks[task.task_id] = task
            open_at.append(ordinal)
            continue
        settled_ids.append(task.task_id)
        cells = [fleet_output.cell(c) for c in statusrows.row_cells(row)]
        cells[statusrows.ATTEMPT_COLUMN] = ""  # made of these parts with the reader's budget:
        keys.append(_attempt_key(row.attempt, task.budget, row.releases))
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
        cells_of.append(cells)
        text = jsondoc.encode(row.to_json(), _ROW_LEVEL, allow_nan=False)
        texts.append(_json_line(safetext.json_document(text)))  # as a document has it
        note = statusrows.delay_note(row)
        if note is not None:
            notes.append((ordinal, note))
    table = list(_table_rows(cells_of, widths, keys))
    header = {
        "format": _FORMAT,
        "code": _CODE,
        "bytes": offset,
        "seq": seq,
        "seam": seam,
        "tasks": len(history.tasks),
        "open": len(still_open.tasks),
        "table_bytes": sum(map(len, table)),
        "json_bytes": sum(map(len, texts)),
        "widths": widths,
        "attempts": sorted(set(keys)),
        "notes": notes,
        "open_at": open_at,
    }
    yield _dumps(header)
    yield _dumps(settled_ids)
    yield from snapshot.history_rows(still_open)
    for section in (table, texts):
        for start in range(0, len(section), 512):
            yield b"".join(section[start : start + 512])


# --------------------------------------------------------------------------- reading


@dataclass
class _Cached:
    journal: Path
    header: dict[str, Any]
    handle: Any  # positioned at the first ended task's row
    history: History  # the open tasks, with the events appended since folded in


def _open(journal: Path) -> _Cached | None:
    """The file beside ``journal`` with the journal's tail folded in; None when it is missing,
    stale, damaged, or the tail names an ended task."""
    path = cache_path(journal)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a directory, a device: not ours
        os.close(fd)
        return None
    handle = open(fd, "rb")  # noqa: SIM115 - handed on to the rows' reader
    try:
        cached = _read_head(journal, handle)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        log.info("%s: not used, rebuilding: %s", path, exc)
        cached = None
    if cached is None:
        handle.close()
    return cached


def _line(handle: Any) -> Any:
    line: bytes = handle.readline(_MAX_LINE)
    if not line.endswith(b"\n"):
        raise InvalidValue("a row is cut short or too long")
    return json.loads(line)


def _read_head(journal: Path, handle: Any) -> _Cached | None:
    header = _line(handle)
    if type(header) is not dict or header.get("format") != _FORMAT:
        return None
    if header.get("code") != _CODE:
        return None
    offset, seq = int(header["bytes"]), int(header["seq"])
    if snapshot.journal_seam(journal, offset) != header["seam"]:
        return None
    settled_ids = frozenset(_line(handle))
    history = snapshot.read_rows(handle, int(header["open"]))
    rows_bytes = int(header["table_bytes"]) + int(header["json_bytes"])
    if os.fstat(handle.fileno()).st_size != handle.tell() + rows_bytes:
        raise InvalidValue("the rows of ended tasks are cut short or followed by more")
    for folded, (event, _) in enumerate(read_events(journal, start=offset, seq=seq), 1):
        named = event.payload.tasks if isinstance(event.payload, OperatorAction) else ()
        if event.task_id in settled_ids or any(t in settled_ids for t in named):
            return None  # an ended task moves again: its stored row is no longer its row
        history.add(event)
        if folded > snapshot.SNAPSHOT_EVERY:
            return None  # time to write a new one
    if len(settled_ids) + int(header["open"]) != int(header["tasks"]):
        raise InvalidValue("the counts of tasks do not add up")
    return _Cached(journal, header, handle, history)


def render_cached(journal: Path, budget: int, fmt: str, now: float) -> Iterator[str] | None:
    """``status``'s output (table or JSON, no live checks, no hosts) from the file beside
    ``journal``, or None when there is none to use. The rows are read as they are written."""
    cached = _open(journal)
    if cached is None:
        return None
    view = FleetView(cached.history, budget=budget)
    live = view.statuses(now=now)
    conditions = view.usage_conditions(now=now)
    if fmt == "json":
        return _json(cached, live, budget, conditions, now)
    return _table(cached, live, budget, conditions)


def _merged(cached: _Cached, live: list[TaskStatus]) -> Iterator[tuple[int, Any]]:
    """Every row in the journal's order, each as (ordinal, stored row or live row)."""
    header, handle = cached.header, cached.handle
    total, open_at = int(header["tasks"]), header["open_at"]
    opened = iter(live)
    next_open = 0
    try:
        for ordinal in range(total):
            if next_open < len(open_at) and open_at[next_open] == ordinal:
                next_open += 1
                yield ordinal, next(opened)
            else:
                stored: bytes = handle.readline(_MAX_LINE)
                if not stored.endswith(b"\n"):
                    raise _damaged(cached.journal, "a row of an ended task is cut short")
                text = stored[:-1].decode("utf-8", errors="replace")
                if stored.translate(None, _PLAIN):
                    text = _FOREIGN.sub(_foreign_escaped, text)
                yield ordinal, text
        for ordinal, row in enumerate(opened, total):  # tasks submitted since
            yield ordinal, row
    finally:
        handle.close()


def _json_row(stored: str, budget: int) -> Encoded:
    before, cut, after = stored.replace(_NEWLINE, "\n").partition(_SEP)
    if not cut:  # the task's own budget is in the text
        return Encoded(before)
    return Encoded(f"{before}{_BUDGET_KEY}{budget}{after}")


def _json(
    cached: _Cached,
    live: list[TaskStatus],
    budget: int,
    conditions: list[fleetview.UsageCondition],
    now: float,
) -> Iterator[str]:
    cached.handle.seek(int(cached.header["table_bytes"]), os.SEEK_CUR)  # to the JSON texts

    def rows() -> Iterator[Any]:
        for _, row in _merged(cached, live):
            yield row.to_json() if isinstance(row, TaskStatus) else _json_row(row, budget)

    body = {
        "live": False,
        "tasks": Rows(rows()),
        "usage_limits": [c.to_json() for c in conditions],
    }
    return fleet_output.json_chunks("status", body, now=now)


def _attempt_cell(key: str, budget: int) -> str:
    attempt, own, releases = key.split(",")
    return statusrows.attempt_cell(int(attempt), int(own) if own else budget, int(releases))


def _cells(parts: list[str], widths: list[int]) -> list[str]:
    """A stored row's cells back from its three parts (no cell ends in a space: they are
    single lines)."""
    before, key, after = parts
    cells: list[str] = []
    for part, columns in (
        (before, widths[: statusrows.ATTEMPT_COLUMN]),
        (after, widths[statusrows.ATTEMPT_COLUMN + 1 : -1]),
    ):
        at = 0
        for width in columns:
            cells.append(part[at : at + width].rstrip(" "))
            at += width + 2
        if part is after:
            cells.append(part[at:])
    cells.insert(statusrows.ATTEMPT_COLUMN, key)
    return cells


def _table(
    cached: _Cached,
    live: list[TaskStatus],
    budget: int,
    conditions: list[fleetview.UsageCondition],
) -> Iterator[str]:
    header = cached.header
    count = int(header["tasks"]) + len(live) - int(header["open"])
    stored_widths = [int(w) for w in header["widths"]]
    attempt_cells = {key: _attempt_cell(key, budget) for key in header["attempts"]}
    widths = list(stored_widths)
    column = statusrows.ATTEMPT_COLUMN
    widths[column] = max([widths[column], *map(len, attempt_cells.values())])
    live_cells = [[fleet_output.cell(c) for c in statusrows.row_cells(row)] for row in live]
    for cells in live_cells:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
    yield "".join(map(statusrows.condition_note, conditions))
    yield "".join(_notes(header, live))
    if count == 0:
        yield statusrows.EMPTY + "\n"
        cached.handle.close()
        return
    yield fleet_output.table_line(statusrows.HEADERS, widths)
    # The stored rows were padded to the widths of the ended tasks: when the open ones are no
    # wider, a row is its two parts around its ATTEMPT cell; else it is cut into its cells.
    pairs = enumerate(zip(widths, stored_widths, strict=True))
    padded = all(w == s for i, (w, s) in pairs if i != column)
    middle = {key: cell.ljust(widths[column]) + "  " for key, cell in attempt_cells.items()}
    by_live = {id(row): cells for row, cells in zip(live, live_cells, strict=True)}
    lines: list[str] = []
    for _, row in _merged(cached, live):
        if isinstance(row, TaskStatus):
            lines.append(fleet_output.table_line(by_live[id(row)], widths))
        else:
            parts = row.split(_SEP)
            if len(parts) != 3 or parts[1] not in middle:
                raise _damaged(cached.journal, "a row of an ended task is not one of its rows")
            if padded:
                lines.append(f"{parts[0]}{middle[parts[1]]}{parts[2]}\n")
            else:
                cells = _cells(parts, stored_widths)
                cells[column] = attempt_cells[cells[column]]
                lines.append(fleet_output.table_line(cells, widths))
        if len(lines) >= 512:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


def _notes(header: dict[str, Any], live: list[TaskStatus]) -> Iterator[str]:
    """The lines above the table for tasks whose last exit was noticed late, in row order."""
    open_at = header["open_at"]
    total = int(header["tasks"])
    ordinals = [*open_at, *range(total, total + len(live) - len(open_at))]
    notes = [(int(o), _FOREIGN.sub(_foreign_escaped, str(n))) for o, n in header["notes"]]
    notes += [
        (o, note)
        for o, note in zip(ordinals, map(statusrows.delay_note, live), strict=True)
        if note is not None
    ]
    return (note for _, note in sorted(notes, key=lambda item: item[0]))
