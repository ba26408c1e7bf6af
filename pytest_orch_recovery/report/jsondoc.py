"""JSON documents written exactly as ``json.dumps(value, indent=2, ensure_ascii=False)``
writes them, but in pieces and without the standard library's pure-Python encoder.

With ``indent`` set, :mod:`json` (3.11) gives up its C encoder and walks the value with nested
generators, one step per key and item: that walk, not the views, was most of the time of a
``status --format json`` over a large fleet, and the one string it returns is the whole
document. Here strings are still escaped by the C function :mod:`json` itself uses and
numbers printed by the same ``repr``; the walk is a plain recursion over the known JSON
types, and a list of rows may be a :class:`Rows` (any iterable) that is encoded and handed
on a few hundred rows at a time, so a document of a quarter million rows is never held
whole. The bytes are the same as :func:`json.dumps`'s (a Hypothesis property holds them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring
from typing import Any

from pytest_orch_recovery.engine.errors import InvalidType, InvalidValue
from pytest_orch_recovery.report.safetext import json_document

__all__ = ["Encoded", "Rows", "document_chunks", "dumps", "encode"]

_INDENT = "  "
_ROWS_PER_CHUNK = 256


class Rows:
    """A JSON array whose items come from ``items`` as the document is written."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


class Encoded(str):
    """A row of :class:`Rows` already encoded by :func:`encode` at the rows' level, and in a
    :func:`document_chunks` document already passed through
    :func:`~pytest_orch_recovery.report.safetext.json_document`: written as it is."""

    __slots__ = ()


class _Safe(str):
    """A piece of a document whose rows were each made safe already."""

    __slots__ = ()


def _float(value: float, allow_nan: bool) -> str:
    if math.isfinite(value):
        return float.__repr__(value)
    if not allow_nan:
        raise InvalidValue("Out of range float values are not JSON compliant: " + repr(value))
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _key(key: Any, allow_nan: bool) -> str:
    if isinstance(key, str):
        return encode_basestring(key)
    if isinstance(key, float):
        return encode_basestring(_float(key, allow_nan))
    if key is True or key is False or key is None:
        return encode_basestring({True: "true", False: "false", None: "null"}[key])
    if isinstance(key, int):
        return encode_basestring(int.__repr__(key))
    raise InvalidType(f"keys must be str, int, float, bool or None, not {key.__class__.__name__}")


def _scalar(value: Any, allow_nan: bool) -> str:
    """A value that is no container, in :mod:`json`'s order of checks."""
    if isinstance(value, str):  # a str subclass (a StrEnum) too
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value, allow_nan)
    raise InvalidType(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _plain_items(items: list[Any] | tuple[Any, ...], allow_nan: bool) -> Iterator[str] | None:
    """The items encoded, when all are of one plain type (exactly str, int or float, finite
    or allowed not to be); else None."""
    kinds = set(map(type, items))
    if kinds == {str}:
        return map(encode_basestring, items)
    if kinds == {int}:
        return map(int.__repr__, items)
    if kinds == {float}:
        if all(map(math.isfinite, items)):
            return map(float.__repr__, items)
        return map(functools.partial(_float, allow_nan=allow_nan), items)
    return None


def _encode(value: Any, level: int, out: list[str], allow_nan: bool) -> None:
    """Append ``value`` at nesting ``level`` to ``out``, as :func:`json.dumps` writes it."""
    kind = type(value)
    if kind is str:
        out.append(encode_basestring(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = "\n" + _INDENT * (level + 1)
        lead = "{" + inner
        for key, item in value.items():
            name = encode_basestring(key) if type(key) is str else _key(key, allow_nan)
            if type(item) is str:  # most values of a row: no step down for them
                out.append(lead + name + ": " + encode_basestring(item))
            else:
                out.append(lead + name + ": ")
                _encode(item, level + 1, out, allow_nan)
            lead = "," + inner
        out.append("\n" + _INDENT * level + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = "\n" + _INDENT * (level + 1)
        plain = _plain_items(value, allow_nan)
        if plain is not None:  # a long list of numbers or names: one join, no walk
            out.append("[" + inner + ("," + inner).join(plain) + "\n" + _INDENT * level + "]")
            return
        lead = "[" + inner
        for item in value:
            out.append(lead)
            _encode(item, level + 1, out, allow_nan)
            lead = "," + inner
        out.append("\n" + _INDENT * level + "]")
    else:
        out.append(_scalar(value, allow_nan))


def _chunks(value: Any, level: int, allow_nan: bool, safe: bool = False) -> Iterator[str]:
    """``value`` in pieces: dicts are walked lazily down to the :class:`Rows` they may hold
    (a :class:`Rows` is a dict's value or the document); everything else is encoded at once."""
    if isinstance(value, Rows):
        yield from _rows(value, level, allow_nan, safe)
        return
    if not isinstance(value, dict) or not value:
        out: list[str] = []
        _encode(value, level, out, allow_nan)
        yield "".join(out)
        return
    inner = "\n" + _INDENT * (level + 1)
    lead = "{" + inner
    for key, item in value.items():
        yield lead + _key(key, allow_nan) + ": "
        yield from _chunks(item, level + 1, allow_nan, safe)
        lead = "," + inner
    yield "\n" + _INDENT * level + "}"


def _rows(rows: Rows, level: int, allow_nan: bool, safe: bool) -> Iterator[str]:
    """``safe``: each row is made safe here (an :class:`Encoded` one is already) and the
    pieces are :class:`_Safe`."""
    inner = "\n" + _INDENT * (level + 1)
    out: list[str] = []
    lead = "[" + inner
    for item in rows.items:
        out.append(lead)
        if type(item) is Encoded:
            out.append(item)
        elif safe:
            row: list[str] = []
            _encode(item, level + 1, row, allow_nan)
            out.append(json_document("".join(row)))
        else:
            _encode(item, level + 1, out, allow_nan)
        lead = "," + inner
        if len(out) >= _ROWS_PER_CHUNK * 2:
            yield _Safe("".join(out)) if safe else "".join(out)
            out.clear()
    if lead == "[" + inner:  # no row at all
        yield "[]"
        return
    out.append("\n" + _INDENT * level + "]")
    yield _Safe("".join(out)) if safe else "".join(out)


def encode(value: Any, level: int, *, allow_nan: bool = True) -> str:
    """``value`` as :func:`dumps` writes it nested ``level`` deep (a row of a document's list
    of rows is at level 2)."""
    out: list[str] = []
    _encode(value, level, out, allow_nan)
    return "".join(out)


def dumps(value: Any, *, allow_nan: bool = True) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False, allow_nan=allow_nan)``."""
    return "".join(_chunks(value, 0, allow_nan))


def document_chunks(value: Any, *, allow_nan: bool = True) -> Iterator[str]:
    """The document :func:`~pytest_orch_recovery.report.safetext.json_document` makes of
    :func:`dumps`'s text, newline-terminated, in pieces to write one after another."""
    pending: list[str] = []
    size = 0
    for chunk in _chunks(value, 0, allow_nan, safe=True):
        if type(chunk) is _Safe:
            if pending:
                yield json_document("".join(pending))
                pending.clear()
                size = 0
            yield chunk
            continue
        pending.append(chunk)
        size += len(chunk)
        if size >= 1 << 16:
            yield json_document("".join(pending))
            pending.clear()
            size = 0
    pending.append("\n")
    yield json_document("".join(pending))
