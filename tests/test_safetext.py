"""safetext's escaping equals its definition, character by character: every Unicode control
character (category Cc) and bidi control is escaped, nothing else."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.report.safetext import json_document, terminal

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _unsafe(char: str) -> bool:
    return char in _BIDI or unicodedata.category(char) == "Cc"


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) <= 0xFF else f"\\u{ord(char):04x}"


def _terminal(value: str) -> str:
    if not any(_unsafe(c) for c in value):
        return value
    return "".join(_escaped(c) if _unsafe(c) or c == "\\" else c for c in value)


def _json_document(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" if c >= "\x7f" and _unsafe(c) else c for c in text)


_TEXT = st.text(
    st.characters(codec=None)
    | st.sampled_from([*sorted(_BIDI), "\\", "\x1b", "\x7f", "\x9b", "\u2028", "\x00"])
)


@given(_TEXT)
def test_terminal_escapes_exactly_the_control_characters(value: str) -> None:
    assert terminal(value) == _terminal(value)


@given(_TEXT)
def test_json_document_escapes_exactly_what_json_lets_through(value: str) -> None:
    assert json_document(value) == _json_document(value)


def test_every_control_character_is_found() -> None:
    controls = [chr(c) for c in range(0x110000) if _unsafe(chr(c))]
    assert [terminal(c) for c in controls] == [_terminal(c) for c in controls]
    assert [json_document(c) for c in controls] == [_json_document(c) for c in controls]
