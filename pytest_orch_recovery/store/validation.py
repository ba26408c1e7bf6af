"""The rules every boundary applies to what it is given, and bounded reading of JSON and TOML.

One place says what a usable value is, so the scenario loader, the CLI's argparse types, the
hook, the journal and the results readers refuse the same things with the same words
(``docs/limits.md`` lists them for users):

- a **relative path** is non-empty, has no NUL, is not absolute, has no ``..`` part, at most
  :data:`MAX_PATH_CHARS` characters and :data:`MAX_COMPONENT_BYTES` bytes per part;
- a **name** (task id, agent name) is 1 to :data:`MAX_NAME_CHARS` characters of ``A-Z a-z 0-9
  - _``, starting with a letter or digit: it becomes a file name, a branch name and a tmux
  session name, and is never shell syntax;
- a **ref name** (a branch, a base) is one git accepts and never starts with ``-``;
- a **number** is finite and within its range;
- **text** has no NUL and a bounded length;
- a **document** (JSON, TOML) is a regular file of bounded size, nested at most
  :data:`MAX_DEPTH` deep, with integers of at most :data:`MAX_INT_DIGITS` digits and no
  ``NaN`` or ``Infinity``.

A rule raises :class:`RuleError` with a message and no location; the caller knows the file,
line and field and wraps it in its own one-line error (``file:line: field: message``).
Standard library only, no I/O at import.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

from pytest_orch_recovery.engine.errors import OrchRecoveryError

# typing weighs on each hook and wrapper process's start-up (docs/performance.md): for the
# type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

MAX_PATH_CHARS = 1024
MAX_COMPONENT_BYTES = 255  # NAME_MAX of Linux file systems
MAX_NAME_CHARS = 64
MAX_AGENT_CHARS = 80  # room for the coordinator's "task-agent-" prefix before a task id
MAX_TITLE_CHARS = 20_000
MAX_PROMPT_BYTES = 100_000  # below Linux's 128 KiB limit on one argv word or env string
MAX_DEPTH = 64
MAX_INT_DIGITS = 30
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024  # one JSON or TOML file: scenario, results, checkpoint
MAX_JOURNAL_BYTES = 1024 * 1024 * 1024
MAX_SECONDS = 7 * 24 * 3600.0  # an attempt timeout, a retry_after
MAX_TIME = 1e11  # a journal time: seconds since the epoch (year 5138) or of a virtual clock
MAX_COUNT = 1_000_000  # counts in fault params and options
EXIT_STATUS_MIN = -64  # killed by signal N, as Python's subprocess reports it
EXIT_STATUS_MAX = 255

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
NAME_ALPHABET = "letters, digits, '-' and '_', starting with a letter or digit"


class RuleError(OrchRecoveryError, ValueError):
    """A value a rule refuses; the message says what was expected, not where."""


class InputError(OrchRecoveryError, ValueError):
    """A refused input with its place: ``source:line: field: message`` (line and field
    optional). The base of the package's boundary errors (e.g. ``ScenarioError``).

    >>> str(InputError("x.toml", 3, "tasks[1].id", "must not be empty"))
    'x.toml:3: tasks[1].id: must not be empty'
    >>> str(InputError("<stdin>", None, "", "not JSON"))
    '<stdin>: not JSON'
    """

    def __init__(self, source: str, line: int | None, field_name: str, message: str) -> None:
        self.source = source
        self.line = line
        self.field = field_name
        self.message = message
        where = source if line is None else f"{source}:{line}"
        super().__init__(
            f"{where}: {field_name}: {message}" if field_name else f"{where}: {message}"
        )


# --------------------------------------------------------------------------- values


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def text(value: object, *, limit: int = MAX_TITLE_CHARS, empty: bool = False) -> str:
    """A string without NUL, of at most ``limit`` characters.

    >>> text("Docs")
    'Docs'
    >>> text("a\\x00b")
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: must not contain a NUL character
    """
    if not isinstance(value, str):
        raise RuleError(f"must be a string, not {_kind(value)}")
    if "\x00" in value:
        raise RuleError("must not contain a NUL character")
    if not empty and not value.strip():
        raise RuleError("must not be empty")
    if len(value) > limit:
        raise RuleError(f"is {len(value)} characters long; the limit is {limit}")
    return value


def line_text(value: object, *, limit: int = MAX_TITLE_CHARS) -> str:
    """:func:`text` that stays one printable line: no control character (newline, CR, ESC,
    BEL, C1), for a value printed where a line break or an escape would forge output (a
    scenario's name in pytest's test ids and summary lines).

    >>> line_text("a\\nFAILED fake.toml::x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: must be one line without control ...
    """
    out = text(value, limit=limit)
    bad = next((c for c in out if c < " " or "\x7f" <= c <= "\x9f"), None)
    if bad is not None:
        raise RuleError(f"must be one line without control characters, got {bad!r} in it")
    return out


def prompt(value: object) -> str:
    """A prompt: text of at most :data:`MAX_PROMPT_BYTES` bytes in UTF-8, may be empty."""
    out = text(value, limit=MAX_PROMPT_BYTES, empty=True)
    size = len(out.encode("utf-8", "surrogatepass"))
    if size > MAX_PROMPT_BYTES:
        raise RuleError(f"is {size} bytes long in UTF-8; the limit is {MAX_PROMPT_BYTES}")
    return out


def name(value: object, *, what: str = "name", limit: int = MAX_NAME_CHARS) -> str:
    """A task id or agent name: the safe alphabet, 1 to ``limit`` characters.

    >>> name("task-5030")
    'task-5030'
    >>> name("$(touch pwned)", what="task id")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: task id '$(touch pwned)' must use ...
    """
    if not isinstance(value, str):
        raise RuleError(f"{what} must be a string, not {_kind(value)}")
    if not value:
        raise RuleError(f"{what} must not be empty")
    if len(value) > limit:
        raise RuleError(f"{what} is {len(value)} characters long; the limit is {limit}")
    if not NAME_PATTERN.fullmatch(value):
        raise RuleError(f"{what} {_show(value)} must use {NAME_ALPHABET}")
    return value


def agent_name(value: object) -> str:
    return name(value, what="agent name", limit=MAX_AGENT_CHARS)


_REF_FORBIDDEN = frozenset(" ~^:?*[\\\x7f")


def ref_name(value: object, *, what: str = "branch") -> str:
    """A branch or ref name that git takes as one (git-check-ref-format(1)) and no program can
    read as an option: it becomes an argument of ``git rev-list``, ``git worktree add`` and
    ``gh pr view``, and an agent chooses its own HEAD.

    >>> ref_name("task-agent-7-work"), ref_name("origin/main")
    ('task-agent-7-work', 'origin/main')
    >>> ref_name("--repo=attacker/evil")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: branch '--repo=attacker/evil' must not ...
    """
    if not isinstance(value, str):
        raise RuleError(f"{what} must be a string, not {_kind(value)}")
    if not value:
        raise RuleError(f"{what} must not be empty")
    if len(value) > MAX_PATH_CHARS:
        raise RuleError(f"{what} is {len(value)} characters long; the limit is {MAX_PATH_CHARS}")
    problem = None
    if value.startswith("-"):
        problem = "must not start with '-' (git and gh would read it as an option)"
    elif any(c < " " or c in _REF_FORBIDDEN for c in value):
        problem = "must not hold spaces, control characters or any of ~ ^ : ? * [ \\"
    elif ".." in value or "@{" in value or "//" in value or value == "@":
        problem = "must not hold '..', '@{' or '//', nor be '@'"
    elif value.startswith("/") or value.endswith(("/", ".")):
        problem = "must not start with '/' or end with '/' or '.'"
    elif any(p.startswith(".") or p.endswith(".lock") for p in value.split("/")):
        problem = "no part may start with '.' or end with '.lock'"
    if problem is not None:
        raise RuleError(f"{what} {_show(value)} {problem}")
    return value


def branch_pattern(value: object) -> str:
    """A branch pattern: ``{agent}`` and no other field, making a :func:`ref_name` for every
    agent name (the fleet file's ``branch_pattern``, ``ingest --branch``).

    >>> branch_pattern("{agent}-work")
    '{agent}-work'
    >>> branch_pattern("-{agent}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: branch '-a' must not start with '-' ...
    """
    from string import Formatter  # the pattern is read once, at load

    if not isinstance(value, str):
        raise RuleError(f"must be a string, not {_kind(value)}")
    try:
        fields = [(n, spec, conv) for _, n, spec, conv in Formatter().parse(value) if n is not None]
    except ValueError as exc:
        raise RuleError(f"{_show(value)} is not a branch pattern: {exc}") from None
    if not fields or any(field != ("agent", "", None) for field in fields):
        raise RuleError(f"must contain {{agent}} and no other field, got {_show(value)}")
    ref_name(value.format(agent="a"))
    return value


STORE_URL_SCHEMES = ("postgresql://", "postgres://")


def store_url(value: object) -> str:
    """A fleet store: a PostgreSQL connection URL (libpq reads the rest when connecting).

    >>> store_url("sqlite:///fleet.db")
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: must start with postgresql:// (got 'sqlite:')
    """
    url = text(value, limit=4096)
    if not url.startswith(STORE_URL_SCHEMES):
        raise RuleError(f"must start with postgresql:// (got {url.split('//')[0][:40]!r})")
    return url


def relative_path(value: object) -> str:
    """A path relative to its root that stays inside it, in normal form (``a/./b`` -> ``a/b``).

    >>> relative_path("docs/./a.md")
    'docs/a.md'
    >>> relative_path("../../etc/passwd")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: path '../../etc/passwd' leaves its root ...
    """
    if not isinstance(value, str):
        raise RuleError(f"must be a path string, not {_kind(value)}")
    if not value.strip():
        raise RuleError("must not be an empty path")
    if "\x00" in value:
        raise RuleError("path must not contain a NUL character")
    if len(value) > MAX_PATH_CHARS:
        raise RuleError(f"path is {len(value)} characters long; the limit is {MAX_PATH_CHARS}")
    if value.startswith("/") or value.startswith("\\"):
        raise RuleError(f"path {_show(value)} must be relative, not absolute")
    parts = PurePosixPath(value).parts
    if ".." in parts:
        raise RuleError(f"path {_show(value)} leaves its root ('..' is not allowed)")
    parts = tuple(p for p in parts if p != ".")
    if not parts:
        raise RuleError(f"path {_show(value)} names no file")
    for part in parts:
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_COMPONENT_BYTES:
            raise RuleError(
                f"path part {_show(part, 40)} is {size} bytes long; the limit is "
                f"{MAX_COMPONENT_BYTES}"
            )
    return "/".join(parts)


def integer(value: object, *, minimum: int = 0, maximum: int = MAX_COUNT) -> int:
    """A whole number in ``[minimum, maximum]`` (``true``/``false`` are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(f"must be an integer, not {_kind(value)}")
    if value < minimum:
        raise RuleError(f"must be >= {minimum}, got {_show(value)}")
    if value > maximum:
        raise RuleError(f"must be <= {maximum}, got {_show(value)}")
    return value


def number(
    value: object,
    *,
    minimum: float = 0.0,
    maximum: float = MAX_SECONDS,
    exclusive_minimum: bool = False,
) -> float:
    """A finite number in range (``> minimum`` when ``exclusive_minimum``).

    >>> number(2), number(0.5)
    (2.0, 0.5)
    >>> number(float("inf"))
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.RuleError: must be a finite number, got inf
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"must be a number, not {_kind(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise RuleError(
            f"must be at most {maximum:g}, got a {len(str(value))}-digit integer"
        ) from None
    if not math.isfinite(out):
        raise RuleError(f"must be a finite number, got {out!r}")
    low = out <= minimum if exclusive_minimum else out < minimum
    if low or out > maximum:
        bound = f"> {minimum:g}" if exclusive_minimum else f">= {minimum:g}"
        raise RuleError(f"must be {bound} and <= {maximum:g}, got {out:g}")
    return out


def exit_status(value: int) -> int:
    """An exit status as a process can have one: 0-255, or -1..-64 for death by a signal.

    >>> exit_status(130), exit_status(-2)
    (130, -2)
    """
    return integer(value, minimum=EXIT_STATUS_MIN, maximum=EXIT_STATUS_MAX)


def choice(value: object, choices: Iterable[str], *, what: str = "value") -> str:
    """One of ``choices``."""
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        raise RuleError(f"{what} {_show(value)} is not one of " + ", ".join(options))
    return value


# --------------------------------------------------------------------------- documents


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; :class:`RuleError` otherwise.

    Devices (``/dev/zero``), FIFOs and directories are refused before anything is read: the
    open does not block on a FIFO and the size is checked on the open descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RuleError(f"not a regular file ({file_kind(info.st_mode)})")
        if info.st_size > limit:
            raise RuleError(f"is {info.st_size} bytes; the limit is {limit}")
        data = _read_at_most(fd, limit + 1)
        if len(data) > limit:
            raise RuleError(f"grew beyond {limit} bytes while being read")
        return data
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _read_at_most(fd: int, size: int) -> bytes:
    chunks = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_stream(stream: IO[Any], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """At most ``limit`` bytes from a pipe or terminal (standard input; a text stream reads
    through its ``buffer``), read until its end; :class:`RuleError` once byte ``limit + 1``
    has arrived, without reading further (``yes |`` never ends, and 1.5 GB piped in must not
    be held in memory to be refused)."""
    source = getattr(stream, "buffer", stream)
    try:
        data = source.read(limit + 1)
    except OSError as exc:
        raise RuleError(f"cannot read: {exc.strerror or exc}") from None
    if isinstance(data, str):  # a text stream without a buffer (a test's StringIO)
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > limit:
        raise RuleError(f"is more than {limit} bytes; the limit is {limit}")
    return bytes(data)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words.

    >>> file_kind(stat.S_IFCHR), file_kind(stat.S_IFIFO)
    ('a character device', 'a FIFO')
    """
    for test, words in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return words
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


class DocumentError(RuleError):
    """A document refused at a place inside it: ``path`` is the keys and indexes leading
    there (empty for the whole document), ``line`` the line when the parser knows it."""

    def __init__(
        self,
        message: str,
        path: tuple[str | int, ...] = (),
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column

    @property
    def field(self) -> str:
        """``path`` as a field name: ``tasks[2].id`` (indexes 1-based), or ``""``."""
        out = ""
        for part in self.path:
            out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out

    def describe(self) -> str:
        """The message with the field it concerns in front, when there is one."""
        return f"{self.field}: {self}" if self.path else str(self)


def loads_json(data: str | bytes) -> Any:
    """Parse JSON within the limits: depth, integer digits, no NaN/Infinity (refused with the
    place they hold, like any other value out of range).

    >>> loads_json('{"a": [1, 2.5]}')
    {'a': [1, 2.5]}
    >>> loads_json('[' * 100_000)
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.validation.DocumentError: nested deeper than 64 levels
    """
    if isinstance(data, bytes):
        raw = data
        try:
            data = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError("not UTF-8 text", line=raw[: exc.start].count(b"\n") + 1) from None
    if _bracket_depth_exceeds(data, MAX_DEPTH):
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"invalid JSON: {exc.msg}", line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # int_max_str_digits, NaN/Infinity
        raise DocumentError(f"invalid JSON: {_first_line(exc)}") from None
    check_document(doc)
    return doc


def loads_toml(data: str) -> dict[str, Any]:
    """Parse TOML within the limits; syntax errors carry their line."""
    # Imported here: the hook and wrapper processes import this module and read no TOML
    # (tomllib and its regexes weigh on their start-up, docs/performance.md).
    import tomllib

    try:
        doc = tomllib.loads(data)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise DocumentError(f"invalid TOML: {_first_line(exc)}", line=line) from None
    except RecursionError:
        raise DocumentError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise DocumentError(f"invalid TOML: {_first_line(exc)}") from None
    check_document(doc)
    return doc


def load_json_file(path: str | os.PathLike[str], limit: int = MAX_DOCUMENT_BYTES) -> Any:
    """:func:`read_bounded` then :func:`loads_json`."""
    return loads_json(read_bounded(path, limit))


def check_document(doc: object) -> None:
    """Walk a parsed document (iteratively): depth, integer size, finite floats, key NULs."""
    stack: list[tuple[object, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        value, where = stack.pop()
        if len(where) > MAX_DEPTH:
            raise DocumentError(f"nested deeper than {MAX_DEPTH} levels", where[:MAX_DEPTH])
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            if abs(value) >= 10**MAX_INT_DIGITS:
                raise DocumentError(f"integer has more than {MAX_INT_DIGITS} digits", where)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise DocumentError(f"must be a finite number, got {value!r}", where)
        elif isinstance(value, Mapping):
            stack.extend((item, (*where, str(key))) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, (*where, i)) for i, item in enumerate(value))


def _bracket_depth_exceeds(data: str, limit: int) -> bool:
    """Whether brackets nest deeper than ``limit`` somewhere (strings not excluded: a cheap,
    conservative pre-check before a recursive parser; the walk after parsing is exact)."""
    if data.count("[") + data.count("{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped = False
    for char in data:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _line_from_message(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _kind(value: object) -> str:
    return {
        dict: "a table",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
