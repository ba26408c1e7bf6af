"""``failures`` over a large journal without building every finished task's failures again.

An ended task's failed attempts print the same rows until an event names the task again.
Beside ``journal.jsonl`` the command keeps ``journal.jsonl.failures`` (the frame is
:mod:`pytest_orch_recovery.report.kept`'s): those rows in the order the command prints them
(by time; a tie in task order, then attempt order), each led by its time, its task's position
and its agent (for ``--agent``). A read folds only the events appended since into the open
tasks, makes their rows as before and merges them into the stored rows by (time, position):
the output is the same bytes, its cost the rows' size, not the fold of every history.

Two sections: ``table`` (the date and time of the TIME cell apart, since the cell shows the
date only when it is not today; the cells TASK to STRATEGY padded to the stored widths; the
evidence cells, up to ten, which ``--evidence`` picks from) and ``json`` (the row's object
text as a document holds it).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pytest_orch_recovery.cli import failurerows, fleet_output
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.report import fleetview, jsondoc, kept, safetext
from pytest_orch_recovery.report.fleetview import FailedAttempt, FleetView
from pytest_orch_recovery.report.jsondoc import Encoded, Rows
from pytest_orch_recovery.report.kept import NEWLINE, SEP, Kept, Sections
from pytest_orch_recovery.store.history import History

__all__ = ["CACHE_FROM", "CACHE_SUFFIX", "cache_path", "render_cached", "save"]

CACHE_SUFFIX = ".failures"
CACHE_FROM = kept.KEEP_FROM
_ROW_LEVEL = 2  # a row of the document's "failures"
_MIDDLE = slice(1, len(failurerows.HEADERS) - 1)  # TASK .. STRATEGY: padded when stored
_CODE = kept.code_hash(failurerows, fleet_output, fleetview, jsondoc, sys.modules[__name__])

# A live row: (time, its task's position, the row).
_Live = tuple[float, int, FailedAttempt]


def cache_path(journal: Path) -> Path:
    return kept.kept_path(journal, CACHE_SUFFIX)


def _agent_key(agent: str) -> str:
    """The agent as a stored row names it: ASCII, no control character, one per name."""
    return json.dumps(agent, ensure_ascii=True)


def _stamp(at: float) -> tuple[str, str]:
    """The date and the time of day of the TIME cell (``clock``), apart."""
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H:%M:%S")


def _today() -> str:
    return datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%d")


def _time_cell(date: str, hms: str, today: str) -> str:
    return hms if date == today else f"{date} {hms}"


# --------------------------------------------------------------------------- writing


def save(journal: Path, history: History, offset: int, seq: int) -> None:
    """Keep ``history`` (the journal's up to ``offset``/``seq``) beside the journal."""
    kept.save(journal, CACHE_SUFFIX, _CODE, history, offset, seq, lambda: _sections(history))


def _sections(history: History) -> Sections:
    position = {task_id: at for at, task_id in enumerate(history.tasks)}
    ended = {task_id for task_id, task in history.tasks.items() if kept.ended(task)}
    widths = [len(h) for h in failurerows.HEADERS[_MIDDLE]]
    kept_rows: list[tuple[str, list[str], list[str]]] = []  # (lead, cells, evidence)
    texts: list[bytes] = []
    dates: set[str] = set()
    for f in FleetView(history).failures():
        if f.task_id not in ended:
            continue
        lead = f"{f.time!r}{SEP}{position[f.task_id]}{SEP}{_agent_key(f.agent)}{SEP}"
        date, hms = _stamp(f.time)
        dates.add(date)
        cells = [fleet_output.cell(c) for c in failurerows.row_cells(f)[_MIDDLE]]
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
        details = failurerows.evidence_lines(f, failurerows.MAX_EVIDENCE) if f.evidence else []
        evidence = [fleet_output.cell(d) for d in details]
        stamp = [date, hms]
        for part in (*stamp, *cells, *evidence):
            if SEP in part or "\n" in part or fleet_output.cell(part) != part:
                raise InvalidValue("a cell is not one terminal-safe line")
        kept_rows.append((f"{lead}{date}{SEP}{hms}{SEP}", cells, evidence))
        text = safetext.json_document(jsondoc.encode(f.to_json(), _ROW_LEVEL, allow_nan=False))
        if SEP in text or NEWLINE in text:
            raise InvalidValue("JSON text holds a control character")
        texts.append(f"{lead}{text.replace(chr(10), NEWLINE)}\n".encode())
    table = [
        (
            lead
            + "".join(c.ljust(w) + "  " for c, w in zip(cells, widths, strict=True))
            + "".join(SEP + e for e in evidence)
            + "\n"
        ).encode()
        for lead, cells, evidence in kept_rows
    ]
    fields = {"widths": widths, "dates": sorted(dates), "rows": len(table)}
    return Sections(fields, {"table": table, "json": texts})


# --------------------------------------------------------------------------- reading


def render_cached(
    journal: Path, fmt: str, evidence: int, agent: str | None
) -> Iterator[str] | None:
    """``failures``' output (table or JSON, no hosts) from the file beside ``journal``, or
    None when there is none to use. The rows are read as they are written."""
    loaded = kept.load(journal, CACHE_SUFFIX, _CODE)
    if loaded is None:
        return None
    if not _fits(loaded.header):
        loaded.close()
        return None
    position = dict(zip(loaded.history.tasks, loaded.ordinals(), strict=True))
    live = [
        (f.time, position[f.task_id], f)
        for f in FleetView(loaded.history).failures()
        if agent is None or f.agent == agent
    ]
    key = None if agent is None else _agent_key(agent)
    if fmt == "json":
        return _json(loaded, live, key)
    return _table(loaded, live, key, evidence)


def _fits(header: dict[str, object]) -> bool:
    """The header's own fields have the shapes this code reads."""
    widths, dates, rows = header.get("widths"), header.get("dates"), header.get("rows")
    middle = len(failurerows.HEADERS[_MIDDLE])
    return (
        type(widths) is list
        and len(widths) == middle
        and all(type(w) is int and 0 <= w <= 1024 for w in widths)
        and type(dates) is list
        and all(type(d) is str for d in dates)
        and type(rows) is int
        and rows >= 0
    )


def _merged(
    loaded: Kept, section: str, live: Sequence[_Live], agent: str | None
) -> Iterator[str | FailedAttempt]:
    """The stored rows (of ``agent``'s, when given: each without its lead) and the live
    ones in the order the command prints them."""
    pending = iter(live)
    upcoming = next(pending, None)
    for line in loaded.lines(section):
        parts = line.split(SEP, 3)
        if len(parts) != 4:
            raise loaded.damaged("a row of an ended task is not one of its rows")
        if upcoming is not None:
            try:
                at = (float(parts[0]), int(parts[1]))
            except ValueError:
                raise loaded.damaged("a row of an ended task is not one of its rows") from None
            while upcoming is not None and (upcoming[0], upcoming[1]) < at:
                yield upcoming[2]
                upcoming = next(pending, None)
        if agent is None or parts[2] == agent:
            yield parts[3]
    while upcoming is not None:
        yield upcoming[2]
        upcoming = next(pending, None)


def _json(loaded: Kept, live: list[_Live], agent: str | None) -> Iterator[str]:
    def rows() -> Iterator[object]:
        try:
            for row in _merged(loaded, "json", live, agent):
                if isinstance(row, FailedAttempt):
                    yield row.to_json()
                else:
                    yield Encoded(row.replace(NEWLINE, "\n"))
        finally:
            loaded.close()

    return fleet_output.json_chunks("failures", {"failures": Rows(rows())})


def _live_cells(f: FailedAttempt, evidence: int) -> tuple[list[str], list[str]]:
    cells = [fleet_output.cell(c) for c in failurerows.row_cells(f)]
    return cells, [fleet_output.cell(e) for e in failurerows.evidence_lines(f, evidence)]


def _cells(middle: str, stored: list[int]) -> list[str]:
    """The cells TASK to STRATEGY of a stored row (no cell ends in a space: they are single
    lines)."""
    cells, at = [], 0
    for width in stored:
        cells.append(middle[at : at + width].rstrip(" "))
        at += width + 2
    return cells


def _parts(loaded: Kept, row: str) -> list[str]:
    """A stored row's date, time of day, padded cells and evidence cells."""
    parts = row.split(SEP)
    if len(parts) < 3 or len(parts[1]) != 8:
        raise loaded.damaged("a row of an ended task is not one of its rows")
    return parts


def _table(loaded: Kept, live: list[_Live], agent: str | None, evidence: int) -> Iterator[str]:
    stored = [int(w) for w in loaded.header["widths"]]
    today = _today()
    rows: Sequence[str | FailedAttempt]
    if agent is None:  # the stored widths and dates cover every stored row
        rows_count = int(loaded.header["rows"]) + len(live)
        widths = [len(h) for h in failurerows.HEADERS]
        widths[_MIDDLE] = stored
        dates = [str(d) for d in loaded.header["dates"]]
        times = [len(_time_cell(kept.escape_foreign(d), "00:00:00", today)) for d in dates]
        widths[failurerows.TIME_COLUMN] = max([widths[0], *times])
        rows = []
    else:  # one agent's rows: their own widths, found by reading them first
        try:
            rows = list(_merged(loaded, "table", live, agent))
        except BaseException:
            loaded.close()
            raise
        rows_count = len(rows)
        widths = [len(h) for h in failurerows.HEADERS]
        for row in rows:
            if isinstance(row, str):
                date, hms, middle = _parts(loaded, row)[:3]
                found = [len(_time_cell(date, hms, today)), *map(len, _cells(middle, stored))]
                widths[:-1] = [max(w, n) for w, n in zip(widths[:-1], found, strict=True)]
    for _, _, f in live:
        cells, _ = _live_cells(f, evidence)
        widths[:-1] = [max(w, len(c)) for w, c in zip(widths[:-1], cells, strict=True)]
    if rows_count == 0:
        loaded.close()
        yield failurerows.EMPTY + "\n"
        return
    yield fleet_output.table_line(failurerows.HEADERS, widths)
    source = iter(rows) if agent is not None else _merged(loaded, "table", live, None)
    try:
        yield from _table_lines(loaded, source, widths, today, evidence)
    finally:
        loaded.close()


def _table_lines(
    loaded: Kept,
    rows: Iterator[str | FailedAttempt],
    widths: list[int],
    today: str,
    evidence: int,
) -> Iterator[str]:
    stored = [int(w) for w in loaded.header["widths"]]
    padded = widths[_MIDDLE] == stored
    time_width = widths[failurerows.TIME_COLUMN]
    pad = " " * (sum(widths[:-1]) + 2 * (len(widths) - 1))
    blank = [""] * (len(widths) - 1)
    heads: dict[str, tuple[str, str]] = {}  # date -> what goes before and after the time

    def head(date: str) -> tuple[str, str]:
        before = "" if date == today else f"{date} "
        return before, " " * max(0, time_width - len(before) - 8) + "  "

    lines: list[str] = []
    for row in rows:
        if isinstance(row, FailedAttempt):
            cells, more = _live_cells(row, evidence)
            lines.append(fleet_output.table_line([*cells, more[0]], widths))
            lines += [fleet_output.table_line([*blank, e], widths) for e in more[1:]]
        else:
            parts = _parts(loaded, row)
            date, hms, middle = parts[0], parts[1], parts[2]
            if not padded:
                cells = _cells(middle, stored)
                middle = "".join(
                    c.ljust(w) + "  " for c, w in zip(cells, widths[_MIDDLE], strict=True)
                )
            before, after = heads.get(date) or heads.setdefault(date, head(date))
            first = parts[3] if len(parts) > 3 and evidence else "-"
            lines.append(f"{before}{hms}{after}{middle}{first}".rstrip() + "\n")
            if evidence > 1:
                lines += [(pad + e).rstrip() + "\n" for e in parts[4 : 3 + evidence]]
        if len(lines) >= 512:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)
