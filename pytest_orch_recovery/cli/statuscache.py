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

The file's frame, and when it is used, are :mod:`pytest_orch_recovery.report.kept`'s: tied
to the journal, made by the same code, no event since naming an ended task; otherwise
``status`` reads as it did without it and writes a new one. Its two sections: ``table``, one
line per ended task (cells padded to the stored widths, split around the ATTEMPT cell, which
the reader's budget completes), and ``json``, the row's object text cut around the budget.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_orch_recovery.cli import fleet_output, statusrows
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.report import fleetview, jsondoc, kept, safetext
from pytest_orch_recovery.report.fleetview import FleetView, TaskStatus
from pytest_orch_recovery.report.jsondoc import Encoded, Rows
from pytest_orch_recovery.report.kept import NEWLINE as _NEWLINE
from pytest_orch_recovery.report.kept import SEP as _SEP
from pytest_orch_recovery.report.kept import Kept, Sections
from pytest_orch_recovery.store.history import History

__all__ = ["CACHE_FROM", "CACHE_SUFFIX", "cache_path", "render_cached", "save"]

CACHE_SUFFIX = ".status"
CACHE_FROM = kept.KEEP_FROM
# Stands for the attempt budget in an ended task's JSON text; the command line's budget
# replaces it when the row is written. No task's own budget can be it: the journal's are
# positive (engine/events.py reads any other as none).
_BUDGET_MARK = -7_205_759_403_792_793
_ROW_LEVEL = 2  # a row of the document's "tasks"; its fields one level deeper
_BUDGET_KEY = "\n" + "  " * (_ROW_LEVEL + 1) + '"budget": '
_BUDGET_FIELD = f"{_BUDGET_KEY}{_BUDGET_MARK}"
# The row's cells and JSON, and the code that renders them.
_CODE = kept.code_hash(statusrows, fleet_output, fleetview, jsondoc, sys.modules[__name__])


def cache_path(journal: Path) -> Path:
    return kept.kept_path(journal, CACHE_SUFFIX)


# --------------------------------------------------------------------------- writing


def save(journal: Path, history: History, offset: int, seq: int) -> None:
    """Keep ``history`` (the journal's up to ``offset``/``seq``) beside the journal."""
    kept.save(journal, CACHE_SUFFIX, _CODE, history, offset, seq, lambda: _sections(history))


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


def _sections(history: History) -> Sections:
    rows = FleetView(history, budget=_BUDGET_MARK).statuses(now=0.0)
    cells_of: list[list[str]] = []
    keys: list[str] = []
    texts: list[bytes] = []
    widths = [len(h) for h in statusrows.HEADERS]
    notes: list[tuple[int, str]] = []
    for ordinal, (task, row) in enumerate(zip(history.tasks.values(), rows, strict=True)):
        if not kept.ended(task):
            continue
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
    fields = {"widths": widths, "attempts": sorted(set(keys)), "notes": notes}
    return Sections(fields, {"table": table, "json": texts})


# --------------------------------------------------------------------------- reading


def render_cached(journal: Path, budget: int, fmt: str, now: float) -> Iterator[str] | None:
    """``status``'s output (table or JSON, no live checks, no hosts) from the file beside
    ``journal``, or None when there is none to use. The rows are read as they are written."""
    cached = kept.load(journal, CACHE_SUFFIX, _CODE)
    if cached is None:
        return None
    view = FleetView(cached.history, budget=budget)
    live = view.statuses(now=now)
    conditions = view.usage_conditions(now=now)
    if fmt == "json":
        return _json(cached, live, budget, conditions, now)
    return _table(cached, live, budget, conditions)


def _json_row(stored: str, budget: int) -> Encoded:
    before, cut, after = stored.replace(_NEWLINE, "\n").partition(_SEP)
    if not cut:  # the task's own budget is in the text
        return Encoded(before)
    return Encoded(f"{before}{_BUDGET_KEY}{budget}{after}")


def _json(
    cached: Kept,
    live: list[TaskStatus],
    budget: int,
    conditions: list[fleetview.UsageCondition],
    now: float,
) -> Iterator[str]:
    def rows() -> Iterator[Any]:
        try:
            for _, row in kept.in_task_order(cached, "json", live):
                yield row.to_json() if isinstance(row, TaskStatus) else _json_row(row, budget)
        finally:
            cached.close()

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
    cached: Kept,
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
    yield "".join(_notes(cached, live))
    if count == 0:
        yield statusrows.EMPTY + "\n"
        cached.close()
        return
    yield fleet_output.table_line(statusrows.HEADERS, widths)
    try:
        yield from _table_lines(cached, live, attempt_cells, widths, live_cells)
    finally:
        cached.close()


def _table_lines(
    cached: Kept,
    live: list[TaskStatus],
    attempt_cells: dict[str, str],
    widths: list[int],
    live_cells: list[list[str]],
) -> Iterator[str]:
    column = statusrows.ATTEMPT_COLUMN
    stored_widths = [int(w) for w in cached.header["widths"]]
    # The stored rows were padded to the widths of the ended tasks: when the open ones are no
    # wider, a row is its two parts around its ATTEMPT cell; else it is cut into its cells.
    pairs = enumerate(zip(widths, stored_widths, strict=True))
    padded = all(w == s for i, (w, s) in pairs if i != column)
    middle = {key: cell.ljust(widths[column]) + "  " for key, cell in attempt_cells.items()}
    by_live = {id(row): cells for row, cells in zip(live, live_cells, strict=True)}
    lines: list[str] = []
    for _, row in kept.in_task_order(cached, "table", live):
        if isinstance(row, TaskStatus):
            lines.append(fleet_output.table_line(by_live[id(row)], widths))
        else:
            parts = row.split(_SEP)
            if len(parts) != 3 or parts[1] not in middle:
                raise cached.damaged("a row of an ended task is not one of its rows")
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


def _notes(cached: Kept, live: list[TaskStatus]) -> Iterator[str]:
    """The lines above the table for tasks whose last exit was noticed late, in row order."""
    notes = [(int(o), kept.escape_foreign(str(n))) for o, n in cached.header["notes"]]
    notes += [
        (o, note)
        for o, note in zip(cached.ordinals(), map(statusrows.delay_note, live), strict=True)
        if note is not None
    ]
    return (note for _, note in sorted(notes, key=lambda item: item[0]))
