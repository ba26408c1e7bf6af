"""Literal substrings a regular expression cannot match without, read from its source text.

The matcher skips a table row on every line that holds none of its row's needles, so a
needle set must be a *necessary* condition of the regex: wherever in doubt, this reader
drops a literal (or gives up and returns None: the row is then tried everywhere). It reads
the subset of regex syntax the pattern table uses and treats anything else as opaque; it
never consults the standard library's private parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pytest_orch_recovery.engine.errors import OrchRecoveryError

# A literal shorter than this is too common to reject anything.
MIN_NEEDLE = 3

# Escapes that stand for one literal character.
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
# Escapes that stand for a class of characters or a position: never part of a literal.
_CLASS_ESCAPES = frozenset("bBdDsSwWAZzG")


class _Opaque(OrchRecoveryError):
    """A construct this reader does not follow: no needle from it (caught inside this module)."""


def _structure(source: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, depth after it) of each character outside escapes and classes,
    from ``start``: the part of the syntax that groups and alternatives are made of."""
    depth = 0
    i = start
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            i = _class_end(source, i)
            continue
        depth += 1 if char == "(" else -1 if char == ")" else 0
        yield i, char, depth
        i += 1


def group_end(source: str, start: int) -> int:
    """Index just past the ``)`` closing the group that opens at ``source[start] == "("``."""
    for i, char, depth in _structure(source, start):
        if char == ")" and depth == 0:
            return i + 1
    raise _Opaque("unbalanced group")


def _class_end(source: str, start: int) -> int:
    """Index just past the ``]`` closing the class that opens at ``source[start] == "["``."""
    i = start + 1
    if i < len(source) and source[i] == "^":
        i += 1
    if i < len(source) and source[i] == "]":
        i += 1  # a leading ] is a literal member
    while i < len(source):
        if source[i] == "\\":
            i += 2
            continue
        if source[i] == "]":
            return i + 1
        i += 1
    raise _Opaque("unbalanced class")


def split_top(source: str) -> list[str]:
    """``source`` cut at its top-level ``|``."""
    parts: list[str] = []
    begin = 0
    for i, char, depth in _structure(source):
        if char == "|" and depth == 0:
            parts.append(source[begin:i])
            begin = i + 1
    parts.append(source[begin:])
    return parts


def _quantifier(source: str, i: int) -> tuple[int, int]:
    """(minimum repeats, index past the quantifier) of a quantifier at ``i``; (1, i) if none."""
    if i >= len(source):
        return 1, i
    char = source[i]
    if char in "?*+":
        low = 0 if char in "?*" else 1
        i += 1
    elif char == "{":
        close = source.find("}", i)
        body = source[i + 1 : close] if close > 0 else ""
        if not re.fullmatch(r"\d*(?:,\d*)?", body) or not body:
            return 1, i  # a literal brace
        low = int(body.split(",")[0] or 0)
        i = close + 1
    else:
        return 1, i
    if i < len(source) and source[i] in "?+":
        i += 1  # lazy or possessive
    return low, i


# Complexity: one branch per regular-expression construct this reader follows.
def _options(source: str, min_len: int) -> list[tuple[str, ...]]:  # noqa: C901
    """Needle sets of one alternative-free sequence: each set is one necessary condition
    (one of its needles must occur)."""
    options: list[tuple[str, ...]] = []
    run: list[str] = []

    def flush() -> None:
        if len(run) >= min_len:
            options.append(("".join(run),))
        run.clear()

    i = 0
    while i < len(source):
        char = source[i]
        literal: str | None = None
        if char == "\\":
            if i + 1 >= len(source):
                raise _Opaque("trailing backslash")
            nxt = source[i + 1]
            if nxt in _CLASS_ESCAPES or nxt.isdigit():
                i += 2
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", source[i + 2 : i + 6]):
                literal, i = chr(int(source[i + 2 : i + 6], 16)), i + 6
            elif nxt == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", source[i + 2 : i + 4]):
                literal, i = chr(int(source[i + 2 : i + 4], 16)), i + 4
            elif nxt.isalpha() and nxt not in _CHAR_ESCAPES:
                raise _Opaque(f"escape \\{nxt}")
            else:
                literal, i = _CHAR_ESCAPES.get(nxt, nxt), i + 2
        elif char == "[":
            i = _class_end(source, i)
        elif char == "(":
            end = group_end(source, i)
            inner = source[i + 1 : end - 1]
            low, i = _quantifier(source, end)
            flush()
            if low == 0 or inner.startswith(("?=", "?!", "?<=", "?<!", "?#")):
                continue  # optional, or zero-width: requires nothing
            if inner.startswith("?P<"):
                inner = inner[inner.index(">") + 1 :]
            elif inner.startswith("?:"):
                inner = inner[2:]
            elif inner.startswith("?"):
                raise _Opaque("group flags")
            needed = needles_of(inner, min_len)
            if needed is not None:
                options.append(needed)
            continue
        elif char in ".^$":
            i += 1
        elif char in "?*+{":
            raise _Opaque("quantifier with nothing to repeat")
        else:
            literal, i = char, i + 1
        if literal is None:
            flush()
            low, i = _quantifier(source, i)
            continue
        low, after = _quantifier(source, i)
        if after == i:
            run.append(literal)
            continue
        if low >= 1:
            run.append(literal)
        flush()
        i = after
    flush()
    return options


def needles_of(source: str, min_len: int = MIN_NEEDLE) -> tuple[str, ...] | None:
    """Substrings one of which occurs in every text the regex ``source`` matches, or None.
    Each is at least ``min_len`` characters long (shorter ones reject too little).

    >>> needles_of(r"fatal: (?:not a git|bad) repo")
    ('fatal: ',)
    >>> needles_of(r"(?:alpha one|beta two)\\d")
    ('alpha one', 'beta two')
    >>> needles_of(r"x?y*") is None
    True
    """
    try:
        branches = split_top(source)
        if len(branches) > 1:
            each = [needles_of(branch, min_len) for branch in branches]
            if any(b is None for b in each):
                return None
            return tuple(dict.fromkeys(n for b in each if b for n in b))
        options = _options(source, min_len)
    except _Opaque:
        return None
    if not options:
        return None
    # The most selective option: the longest shortest-needle, then the fewest needles.
    return max(options, key=lambda opt: (min(len(n) for n in opt), -len(opt)))


def required_needles(regex: re.Pattern[str]) -> tuple[str, ...] | None:
    """:func:`needles_of` a compiled regex; None for flags this reader does not follow
    (case-insensitive or verbose: a literal of the source is then no literal of the text)."""
    if regex.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    if regex.pattern.startswith("(?") and re.match(r"\(\?[aiLmsux]+\)", regex.pattern):
        return None
    return needles_of(regex.pattern)
