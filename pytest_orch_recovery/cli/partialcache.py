"""``partial`` over a large journal without building every finished task's row again.

An ended task's ``partial`` row (its last probe, or its success) stays as it is until an
event names the task again, all but its NEXT ACTIONS: those come from the agent's checkpoint
file, which the agent may rewrite at any time, so every read reads them again (the directory
listed once, :class:`~.partialrows.CheckpointReader`). Beside ``journal.jsonl`` the command
keeps ``journal.jsonl.partial`` (the frame is :mod:`pytest_orch_recovery.report.kept`'s):
each ended task's row in task order, led by its agent (for ``--agent`` and the checkpoint)
and whether that name can have a checkpoint file. Two sections: ``table`` (the cells but the
last, padded to the stored widths) and ``json`` (the row's object text up to its checkpoint
fields, which the reader completes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from pytest_orch_recovery.cli import fleet_output, partialrows
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.report import fleetview, jsondoc, kept, safetext
from pytest_orch_recovery.report.fleetview import FleetView, PartialReport
from pytest_orch_recovery.report.jsondoc import Encoded, Rows
from pytest_orch_recovery.report.kept import NEWLINE, SEP, Kept, Sections
from pytest_orch_recovery.store import validation
from pytest_orch_recovery.store.history import History

__all__ = ["CACHE_FROM", "CACHE_SUFFIX", "cache_path", "render_cached", "save"]

CACHE_SUFFIX = ".partial"
CACHE_FROM = kept.KEEP_FROM
_ROW_LEVEL = 2  # a row of the document's "tasks"
_STATIC = len(partialrows.HEADERS) - 1  # the cells before NEXT ACTIONS
_CODE = kept.code_hash(
    partialrows, fleet_output, fleetview, jsondoc, validation, sys.modules[__name__]
)
# What ends a row's object text: the checkpoint's fields, then the object's close.
_CLOSE = "\n" + "  " * _ROW_LEVEL + "}"


def cache_path(journal: Path) -> Path:
    return kept.kept_path(journal, CACHE_SUFFIX)


def _agent_key(agent: str) -> str:
    """The agent as a stored row names it: ASCII, no control character, one per name."""
    return json.dumps(agent, ensure_ascii=True)


def _checkpoint_text(actions: partialrows.Actions) -> str:
    """The checkpoint's fields of a row's object text, from the first one's line break."""
    fields = {"next_actions": list(actions[0]), "checkpoint_file_problem": actions[1]}
    text = jsondoc.encode(fields, _ROW_LEVEL, allow_nan=False)
    return safetext.json_document(text[1:])  # without the object's opening brace


# --------------------------------------------------------------------------- writing


def save(journal: Path, history: History, offset: int, seq: int) -> None:
    """Keep ``history`` (the journal's up to ``offset``/``seq``) beside the journal."""
    kept.save(journal, CACHE_SUFFIX, _CODE, history, offset, seq, lambda: _sections(history))


def _sections(history: History) -> Sections:
    widths = [len(h) for h in partialrows.HEADERS[:_STATIC]]
    kept_rows: list[tuple[str, list[str]]] = []
    texts: list[bytes] = []
    none: partialrows.Actions = ((), None)
    for task, report in zip(history.tasks.values(), FleetView(history).partial_work(), strict=True):
        if not kept.ended(task):
            continue
        lead = f"{_agent_key(report.agent)}{SEP}{int(partialrows.plain_name(report.agent))}{SEP}"
        cells = [fleet_output.cell(c) for c in partialrows.row_cells(report)]
        if any(SEP in c or "\n" in c for c in cells):
            raise InvalidValue("a cell holds a control character")
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
        kept_rows.append((lead, cells))
        whole = jsondoc.encode(partialrows.json_row(report, none), _ROW_LEVEL, allow_nan=False)
        whole = safetext.json_document(whole)
        head = jsondoc.encode(report.to_json(), _ROW_LEVEL, allow_nan=False)
        head = safetext.json_document(head)[: -len(_CLOSE)] + ","
        if head + _checkpoint_text(none) != whole or SEP in head or NEWLINE in head:
            raise InvalidValue("a row's JSON text does not end in its checkpoint's fields")
        texts.append(f"{lead}{head.replace(chr(10), NEWLINE)}\n".encode())
    table = [
        (
            lead + "".join(c.ljust(w) + "  " for c, w in zip(cells, widths, strict=True)) + "\n"
        ).encode()
        for lead, cells in kept_rows
    ]
    return Sections({"widths": widths}, {"table": table, "json": texts})


# --------------------------------------------------------------------------- reading


def render_cached(
    journal: Path, fmt: str, agent: str | None, directory: Path | None
) -> Iterator[str] | None:
    """``partial``'s output (table or JSON) from the file beside ``journal``, or None when
    there is none to use. The rows are read as they are written; the checkpoint files of
    ``directory`` are read now."""
    loaded = kept.load(journal, CACHE_SUFFIX, _CODE)
    if loaded is None:
        return None
    widths = loaded.header.get("widths")
    if (
        type(widths) is not list
        or len(widths) != _STATIC
        or any(type(w) is not int or not 0 <= w <= 1024 for w in widths)
    ):  # not the shape this code reads
        loaded.close()
        return None
    live = FleetView(loaded.history).partial_work()
    actions = partialrows.CheckpointReader(directory)
    key = None if agent is None else _agent_key(agent)
    if fmt == "json":
        return _json(loaded, live, key, actions)
    return _table(loaded, live, key, actions)


# A row of the merged order: a live report, or a stored one's (agent, plain name, text).
_Row = PartialReport | tuple[str, bool, str]


def _merged(
    loaded: Kept, section: str, live: Sequence[PartialReport], agent: str | None
) -> Iterator[_Row]:
    """Every row in task order, of ``agent``'s tasks when given."""
    for _, row in kept.in_task_order(loaded, section, live):
        if isinstance(row, PartialReport):
            if agent is None or _agent_key(row.agent) == agent:
                yield row
            continue
        key, plain, rest = _parts(loaded, row)
        if agent is None or key == agent:
            name = key[1:-1] if plain else json.loads(key)
            yield name, plain, rest


def _parts(loaded: Kept, row: str) -> tuple[str, bool, str]:
    parts = row.split(SEP, 2)
    if len(parts) != 3 or parts[1] not in ("0", "1") or not parts[0].startswith('"'):
        raise loaded.damaged("a row of an ended task is not one of its rows")
    return parts[0], parts[1] == "1", parts[2]


def _json(
    loaded: Kept,
    live: list[PartialReport],
    agent: str | None,
    actions: partialrows.CheckpointReader,
) -> Iterator[str]:
    none: partialrows.Actions = ((), None)
    no_checkpoint = _checkpoint_text(none)  # most agents': their text made once

    def rows() -> Iterator[object]:
        try:
            for row in _merged(loaded, "json", live, agent):
                if isinstance(row, PartialReport):
                    yield partialrows.json_row(row, actions(row.agent))
                    continue
                name, plain, head = row
                found = actions(name, plain)
                tail = no_checkpoint if found == none else _checkpoint_text(found)
                yield Encoded(head.replace(NEWLINE, "\n") + tail)
        finally:
            loaded.close()

    return fleet_output.json_chunks("partial", {"tasks": Rows(rows())})


def _cells(padded: str, stored: list[int]) -> list[str]:
    """A stored row's cells back (no cell ends in a space: they are single lines)."""
    cells, at = [], 0
    for width in stored:
        cells.append(padded[at : at + width].rstrip(" "))
        at += width + 2
    return cells


def _table(
    loaded: Kept,
    live: list[PartialReport],
    agent: str | None,
    actions: partialrows.CheckpointReader,
) -> Iterator[str]:
    stored = [int(w) for w in loaded.header["widths"]]
    widths = [*stored, 0]
    rows: Iterator[_Row]
    if agent is None:  # the stored widths cover every stored row
        count = loaded.tasks - len(loaded.open_at) + len(live)
        shown = live
        rows = _merged(loaded, "table", live, None)
    else:  # one agent's rows: their own widths, found by reading them first
        try:
            chosen = list(_merged(loaded, "table", live, agent))
        finally:
            loaded.close()
        count = len(chosen)
        shown = [r for r in chosen if isinstance(r, PartialReport)]
        widths = [len(h) for h in partialrows.HEADERS]
        for row in chosen:
            if not isinstance(row, PartialReport):
                cells = _cells(row[2], stored)
                widths[:-1] = [max(w, len(c)) for w, c in zip(widths[:-1], cells, strict=True)]
        rows = iter(chosen)
    for report in shown:
        cells = [fleet_output.cell(c) for c in partialrows.row_cells(report)]
        widths[:-1] = [max(w, len(c)) for w, c in zip(widths[:-1], cells, strict=True)]
    if count == 0:
        loaded.close()
        yield partialrows.EMPTY + "\n"
        return
    yield fleet_output.table_line(partialrows.HEADERS, widths)
    try:
        yield from _table_lines(rows, widths, stored, actions)
    finally:
        loaded.close()


def _table_lines(
    rows: Iterator[_Row],
    widths: list[int],
    stored: list[int],
    actions: partialrows.CheckpointReader,
) -> Iterator[str]:
    padded = widths[:-1] == stored
    none: partialrows.Actions = ((), None)
    no_checkpoint = fleet_output.cell(partialrows.next_cell(none))  # most agents' cell
    lines: list[str] = []
    for row in rows:
        if isinstance(row, PartialReport):
            cells = [*partialrows.row_cells(row), partialrows.next_cell(actions(row.agent))]
            lines.append(fleet_output.table_line([fleet_output.cell(c) for c in cells], widths))
        else:
            name, plain, text = row
            if not padded:
                cells = _cells(text, stored)
                text = "".join(c.ljust(w) + "  " for c, w in zip(cells, widths, strict=False))
            found = actions(name, plain)
            last = (
                no_checkpoint if found == none else fleet_output.cell(partialrows.next_cell(found))
            )
            lines.append((text + last).rstrip() + "\n")
        if len(lines) >= 512:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)
