"""Text from outside (agent logs, checkpoint files, task titles, file names) made safe for the
two places people read it: a terminal and a Markdown page.

A terminal obeys control characters: ESC starts a sequence that can set the window title,
write the clipboard (OSC 52) or clear the screen, CR and backspace overwrite what was printed,
and in 8-bit mode a single byte 0x9b is a CSI. :func:`terminal` shows every one of them
escaped, as Python writes them (``\\x1b``), and so do the bidirectional overrides that make a
line read differently from what it holds.

A Markdown page is HTML once rendered (GitHub's step summary, a PR comment): :func:`markdown`
escapes HTML and the brackets and backticks that would make links, images or code, so the only
links left are the bare ``http(s)://`` addresses a renderer links by itself;
:func:`markdown_code` is a code span no backtick in the text can end. Both apply
:func:`terminal` too: a report printed to stdout is read on a terminal first.
"""

from __future__ import annotations

import re

# Bidirectional embeddings, overrides and isolates (Unicode TR 9): "Trojan Source" text.
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
# What a terminal obeys: the control characters (Unicode category Cc: C0, DEL, C1) and the
# bidi controls. A regular expression finds them in C, not one Python step per character:
# a status of a large fleet prints megabytes. BEYOND_C0: DEL, C1 and bidi, as the body of a
# regular expression's class (for readers that keep some C0 characters as their own marks).
BEYOND_C0 = f"\x7f-\x9f{_BIDI}"
_UNSAFE = re.compile(f"[\x00-\x1f{BEYOND_C0}]")
_UNSAFE_OR_BACKSLASH = re.compile(f"[\x00-\x1f{BEYOND_C0}\\\\]")
# In a JSON document the C0 controls are escaped already (or are its layout).
_UNSAFE_IN_JSON = re.compile(f"[{BEYOND_C0}]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _escaped_match(match: re.Match[str]) -> str:
    return _escaped(match.group())


def terminal(text: object) -> str:
    """``text`` with every control character (C0, DEL, C1) and bidi control escaped; a
    backslash is doubled only when the text needed escaping, so that ``\\x1b`` in the
    output always means the character was there.

    >>> terminal("ok \\x1b]52;c;aGk=\\x07 done")
    'ok \\\\x1b]52;c;aGk=\\\\x07 done'
    >>> terminal("a\\rb\\x9b2J"), terminal("C:\\\\dir")
    ('a\\\\rb\\\\x9b2J', 'C:\\\\dir')
    """
    value = str(text)
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE_OR_BACKSLASH.sub(_escaped_match, value)


def one_line(text: object, limit: int) -> str:
    """``text`` as one terminal-safe line: whitespace runs (newlines too) become one space,
    control characters are escaped, at most ``limit`` characters (``…`` marks a cut).

    >>> one_line("a\\n  b\\x07", 10), one_line("x" * 12, 5)
    ('a b\\\\x07', 'xxxx…')
    """
    flat = terminal(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_MARKDOWN = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "\\": "\\\\",
    "`": "\\`",
    "[": "\\[",
    "]": "\\]",
    "|": "\\|",
}


def markdown(text: object) -> str:
    """``text`` for a Markdown page: terminal-safe, HTML escaped, no link, image or code span
    of its own (``[``, ``]`` and backticks escaped), ``|`` escaped for table cells.

    >>> markdown('<img src=x onerror=alert(1)> [a](javascript:x) ![t](https://t/p.gif)')
    '&lt;img src=x onerror=alert(1)&gt; \\\\[a\\\\](javascript:x) !\\\\[t\\\\](https://t/p.gif)'
    """
    return "".join(_MARKDOWN.get(c, c) for c in terminal(text))


def markdown_code(text: object) -> str:
    """``text`` as a Markdown code span (nothing in it is rendered), fenced by more backticks
    than its longest run of them, as CommonMark allows.

    >>> markdown_code("pytest -k 'a'"), markdown_code("x ` y")
    ("`pytest -k 'a'`", '`` x ` y ``')
    """
    value = terminal(text)
    longest = run = 0
    for char in value:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    if longest or value.startswith(" ") or value.endswith(" "):
        return f"{fence} {value} {fence}"
    return f"{fence}{value}{fence}"


def json_document(text: str) -> str:
    """A JSON document (as ``json.dumps(..., ensure_ascii=False)`` writes it) with the C1
    and bidi controls it lets through written as ``\\u`` escapes: still the same JSON, and
    safe on a terminal (``json`` escapes C0 controls itself, but not DEL).

    >>> json_document('{"a": "\\x9b2J"}')
    '{"a": "\\\\u009b2J"}'
    """
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
