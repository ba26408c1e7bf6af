"""Scanning text with the pattern table (:mod:`.patterns`): which row owns which line.

A :class:`Table` holds rows and a prefilter built from each row's required literals
(:mod:`.needles`), so a text is tokenised once and only the rows whose literals occur are
tried, each only on the lines holding them. Each line goes to the *first* row (table order)
that matches it. A table can be built from any subset of the rows: the leave-one-tool-out
measurement disables the rows a tool's own wording matched and judges the rest.

A line that is a JSON object (a stream-json event, a Codex ``exec --json`` event) is quoted
by the text inside it that the row matched, not by its raw JSON: evidence shows the error
line, ``API Error: 529 ...``, rather than ``{"type":"result",...``.
"""

from __future__ import annotations

import bisect
import functools
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pytest_orch_recovery.engine import cues
from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.engine.needles import required_needles
from pytest_orch_recovery.engine.patterns import PATTERNS, Extracted, Pattern
from pytest_orch_recovery.engine.structured import json_object, message_lines

# Only the end of a long log is scanned: the error that stopped a run is at the end, and
# the classifier runs thousands of times a second in simulation.
TAIL_BYTES = 64 * 1024
# How much of a line evidence quotes.
QUOTE_CHARS = 200
_FIRST = operator.itemgetter(0)
_LINE = operator.attrgetter("line")


class Match(NamedTuple):
    """A reading of one line of one source: a table row that matched it (``exact``), or a
    cause the cue model read in it (:mod:`.cues`) with its own ``weight``. A tuple: every
    classification builds several, and a tuple is built in a fraction of a frozen
    dataclass's time."""

    pattern: Pattern
    source: str
    line: int  # 1-based, counted in the whole text even when only its tail was scanned
    text: str  # the line (or the message inside a JSON line), stripped, cut to 200 chars
    api_status: int | None = None
    retry_after: float | None = None
    weight: float | None = None  # None: the row's own weight
    exact: bool = True
    fatal: bool | None = None  # None: the row's own stops_run

    @property
    def reason(self) -> Reason:
        return self.pattern.reason

    @property
    def stops_run(self) -> bool:
        return self.pattern.stops_run if self.fatal is None else self.fatal

    @property
    def strength(self) -> float:
        return self.pattern.weight if self.weight is None else self.weight


_WORD = re.compile(r"\w+")
_NEWLINE = re.compile("\n")
_JSON_LINE = re.compile(r"^[ \t]*(?:\^[A-Z\\])*\{", re.MULTILINE)
# A terminal echoes a typed control key as "^C" (or "^\\", "^Z") where the cursor is, so a
# CLI's JSON printed right after an interrupt starts with it on the same line.
_TTY_ECHO = re.compile(r"^(?:\^[A-Z\\])+")


def _json_on(line: str) -> Mapping[str, Any] | None:
    """The JSON object ``line`` holds, after any echo of a typed control key."""
    return json_object(_TTY_ECHO.sub("", line.strip()))


def _is_json(line: str) -> bool:
    return "{" in line and _json_on(line) is not None


def _interior_word(needle: str) -> str | None:
    """The longest word of ``needle`` with a non-word character on both sides inside it:
    wherever the needle occurs, that word occurs as a whole token of the text."""
    inner = [m.group() for m in _WORD.finditer(needle) if m.start() > 0 and m.end() < len(needle)]
    return max(inner, key=len) if inner else None


_Rows = tuple[int, ...]


def _by_folded(
    by_substring: Iterable[tuple[str, _Rows]],
) -> tuple[tuple[str, tuple[tuple[str, _Rows], ...]], ...]:
    """Substring needles grouped under a lower-cased needle found in each of them: a text
    whose lower-cased form lacks the group's needle holds none of the group's needles, so
    one test rejects them all ("FAILED", " failed", "Failed" under "failed")."""
    entries = sorted(by_substring, key=lambda entry: len(entry[0]))
    groups: dict[str, list[tuple[str, _Rows]]] = {}
    for needle, rows in entries:
        folded = needle.lower()
        key = next((k for k in groups if k in folded), folded)
        groups.setdefault(key, []).append((needle, rows))
    return tuple((key, tuple(members)) for key, members in groups.items())


@dataclass(frozen=True)
class Table:
    """Rows in table order, with the prefilter that says which of them can match a text."""

    rows: tuple[Pattern, ...]
    always: _Rows  # rows with no usable literal
    by_word: dict[str, _Rows]  # whole word that must be a token -> rows
    by_substring: tuple[tuple[str, _Rows], ...]  # needle without such a word
    needles: tuple[tuple[str, ...] | None, ...]  # per row; None for the ``always`` rows

    @classmethod
    def of(cls, rows: Sequence[Pattern]) -> Table:
        always: list[int] = []
        by_word: dict[str, list[int]] = {}
        by_substring: dict[str, list[int]] = {}
        per_row: list[tuple[str, ...] | None] = []
        for index, row in enumerate(rows):
            needles = required_needles(row.regex)
            per_row.append(needles)
            if needles is None:
                always.append(index)
                continue
            for needle in needles:
                word = _interior_word(needle)
                if word is None:
                    by_substring.setdefault(needle, []).append(index)
                else:
                    by_word.setdefault(word, []).append(index)
        return cls(
            tuple(rows),
            tuple(always),
            {w: tuple(ix) for w, ix in by_word.items()},
            tuple((n, tuple(ix)) for n, ix in by_substring.items()),
            tuple(per_row),
        )

    @functools.cached_property
    def _words(self) -> frozenset[str]:
        return frozenset(self.by_word)

    @functools.cached_property
    def _folded(self) -> tuple[tuple[str, tuple[tuple[str, _Rows], ...]], ...]:
        return _by_folded(self.by_substring)

    def without(self, names: Iterable[str]) -> Table:
        """This table with the rows called ``names`` left out."""
        drop = set(names)
        return Table.of([row for row in self.rows if row.name not in drop])

    def rows_possible_in(self, text: str) -> list[int]:
        """Indices, in table order, of the rows that can match ``text`` (a superset of the
        rows that do: every test is a necessary condition of the row's regex)."""
        possible: set[int] = set(self.always)
        by_word = self.by_word
        for word in self._words.intersection(_WORD.findall(text)):
            possible.update(by_word[word])
        folded = text.lower()
        for key, members in self._folded:
            if key in folded:
                for needle, rows in members:
                    if needle in text:
                        possible.update(rows)
        return sorted(possible)

    def first_row_per_line(
        self, text: str, line_starts: list[int]
    ) -> dict[int, tuple[int, re.Match[str]]]:
        """Line index -> (row index, match) of the first row, in table order, matching in it.

        Rows are tried in table order, each only where it can match: on the lines holding one
        of its required literals (found with ``str.find``), each line searched on its own. A
        row with no literal scans the whole text once.
        """
        rows = self.rows_possible_in(text)
        found: dict[int, tuple[int, re.Match[str]]] = {}
        if not rows:
            return found
        if len(line_starts) == 1:  # one line: the first row that finds anything owns it
            for row_index in rows:
                hit = self.rows[row_index].regex.search(text)
                if hit is not None:
                    return {0: (row_index, hit)}
            return found
        for row_index in rows:
            regex = self.rows[row_index].regex
            needles = self.needles[row_index]
            if needles is None:
                for m in regex.finditer(text):
                    line_index = bisect.bisect_right(line_starts, m.start()) - 1
                    found.setdefault(line_index, (row_index, m))
                continue
            tried: set[int] = set()
            for needle in needles:
                at = text.find(needle)
                while at >= 0:
                    line_index = bisect.bisect_right(line_starts, at) - 1
                    line_end = text.find("\n", at)
                    if line_index not in tried and line_index not in found:
                        tried.add(line_index)
                        end = len(text) if line_end < 0 else line_end
                        hit = regex.search(text, line_starts[line_index], end)
                        if hit is not None:
                            found[line_index] = (row_index, hit)
                    if line_end < 0:
                        break
                    at = text.find(needle, line_end + 1)  # the next line holding it
        return found


TABLE = Table.of(PATTERNS)


def tail_of(text: str) -> tuple[str, int]:
    """The last ``TAIL_BYTES`` characters from a line start, and the lines skipped."""
    if len(text) <= TAIL_BYTES:
        return text, 0
    start = text.find("\n", len(text) - TAIL_BYTES)
    if start < 0:
        return text[-TAIL_BYTES:], text.count("\n", 0, len(text) - TAIL_BYTES)
    return text[start + 1 :], text.count("\n", 0, start + 1)


def line_starts_of(text: str) -> list[int]:
    starts = [0]
    starts += [m.end() for m in _NEWLINE.finditer(text)]
    return starts


def line_at(text: str, line_starts: list[int], index: int) -> str:
    start = line_starts[index]
    end = text.find("\n", start)
    return text[start : end if end >= 0 else len(text)]


def quote(line: str, row: Pattern | None = None) -> str:
    """What evidence shows of ``line``: the line itself, or for a JSON object line the
    message inside it (the one ``row`` matches, when a row matched)."""
    stripped = line.strip()
    if stripped.startswith("{"):
        data = json_object(stripped)
        if data is not None:
            texts = message_lines(data)
            chosen = next(
                (t for t in texts if row is not None and row.regex.search(t)),
                texts[0] if texts else None,
            )
            if chosen is not None:
                return chosen.strip()[:QUOTE_CHARS]
    return stripped[:QUOTE_CHARS]


def table_matches(
    tail: str, line_starts: list[int], skipped: int, source: str, table: Table
) -> dict[int, Match]:
    """Line index (in ``tail``) -> the exact match of the row owning that line."""
    found = table.first_row_per_line(tail, line_starts)
    out: dict[int, Match] = {}
    for line_index in sorted(found):
        row_index, m = found[line_index]
        row = table.rows[row_index]
        extracted = row.extract(m) if row.extract is not None else Extracted()
        out[line_index] = Match(
            pattern=row,
            source=source,
            line=skipped + line_index + 1,
            text=quote(line_at(tail, line_starts, line_index), row),
            api_status=extracted.api_status or row.api_status,
            retry_after=extracted.retry_after,
        )
    return out


def match_lines(text: str, source: str, table: Table = TABLE) -> list[Match]:
    """Every line of ``text`` that a table row recognises, in line order.

    Each line is attributed to the first row (table order) that matches it. Only the last
    ``TAIL_BYTES`` of a long text are scanned; line numbers still count from the start.

    >>> [(m.line, m.pattern.name) for m in match_lines("ok\\nfatal: not a git repository", "x")]
    [(2, 'git_not_a_repository')]
    """
    if not text:
        return []
    tail, skipped = tail_of(text)
    found = table_matches(tail, line_starts_of(tail), skipped, source, table)
    return [found[i] for i in sorted(found)]


# --------------------------------------------------------------------------- cause model

# An earlier cue line weighs less than the last one: the last error lines before the exit
# say what stopped the run. Each later cue line takes this much off, down to the floor.
_EARLIER_STEP = 0.08
_EARLIER_FLOOR = 0.6


@dataclass(frozen=True)
class JsonLine:
    """A JSON object printed on one line (or a whole text that is one JSON object)."""

    line: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Reading:
    """Everything read in one source: exact and cue matches in line order, JSON events."""

    matches: list[Match]
    events: list[JsonLine]


# The cause model reads at most this many lines from the end of a source: the last lines
# before the exit say why it ended, and an earlier line weighs little there anyway
# (_EARLIER_FLOOR). The table still scans the whole tail.
CUE_LINES = 128


_CueLine = tuple[int, str, cues.CueReading]  # line number, the text read, its reading


def _message_cue(line_no: int, data: Mapping[str, Any]) -> list[_CueLine]:
    """The first of a JSON object's messages that carries a cue: its keys are field names,
    not prose (``"killed": {...}`` counts subagents), so only its messages are read."""
    for message in message_lines(data):
        reading = cues.read_line(message)
        if reading is not None:
            return [(line_no, message, reading)]
    return []


def _prose_cues(
    tail: str, starts: list[int], skipped: int, exact: Mapping[int, Match]
) -> list[_CueLine]:
    """The cause model's reading of the last lines no table row owns, JSON lines aside."""
    first = max(0, len(starts) - CUE_LINES)
    # The lines read, and the few above the first that reading it may look at.
    lines = tail[starts[max(0, first - cues.LINES_ABOVE)] :].split("\n")
    offset = len(starts) - len(lines)
    wanted = [
        index - offset
        for index in range(first, len(starts))
        if index not in exact and not _is_json(lines[index - offset])  # JSON: read by its messages
    ]
    return [
        (skipped + offset + index + 1, lines[index], reading)
        for index, reading in cues.read_lines(lines, wanted)
    ]


def _json_lines(
    tail: str, starts: list[int], skipped: int, exact: Mapping[int, Match]
) -> tuple[list[JsonLine], list[_CueLine]]:
    """The JSON events among the lines, and the cues of those no table row owns."""
    events: list[JsonLine] = []
    read: list[_CueLine] = []
    if "{" not in tail:
        return events, read
    for brace in _JSON_LINE.finditer(tail):
        index = bisect.bisect_right(starts, brace.start()) - 1
        data = _json_on(line_at(tail, starts, index))
        if data is None:
            continue
        events.append(JsonLine(skipped + index + 1, data))
        if index not in exact:
            read += _message_cue(skipped + index + 1, data)
    return events, read


def read_lines(text: str, source: str, table: Table = TABLE) -> Reading:
    """:func:`match_lines`, plus the cause model's reading of every line no row owns, and
    the JSON events among the lines. A JSON line is read by the messages inside it."""
    if not text:
        return Reading([], [])
    tail, skipped = tail_of(text)
    starts = line_starts_of(tail)
    exact = table_matches(tail, starts, skipped, source, table)
    whole = json_object(tail.strip()) if tail.lstrip().startswith("{") else None
    if whole is not None:  # one JSON object, perhaps pretty-printed (a CLI's result)
        events, read = [JsonLine(skipped + 1, whole)], _message_cue(skipped + 1, whole)
    else:
        events, read = _json_lines(tail, starts, skipped, exact)
        read += _prose_cues(tail, starts, skipped, exact)
    if events:  # the JSON lines' readings join the prose lines' in line order
        read.sort(key=_FIRST)
    last = len(read) - 1
    weighted = [
        Match(
            cues.row_for(reading),
            source,
            line_no,
            line.strip()[:QUOTE_CHARS],
            None,
            None,
            reading.weight * max(_EARLIER_FLOOR, 1 - _EARLIER_STEP * (last - k)),
            False,
            reading.fatal,
        )
        for k, (line_no, line, reading) in enumerate(read)
    ]
    if not weighted:
        return Reading(list(exact.values()), events)  # built in line order
    if not exact:
        return Reading(weighted, events)
    return Reading(sorted([*exact.values(), *weighted], key=_LINE), events)
