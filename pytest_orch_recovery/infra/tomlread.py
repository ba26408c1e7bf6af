"""Reading TOML documents people write: one-line ``file:line: field: message`` errors.

``tomllib`` reports the position of syntax errors only; :func:`key_lines` finds the line of
every table header and key, so a schema error names the line of the offending key. The fleet
file, task files and chaos scenarios all read through :class:`TomlReader`, and the task table
(``id``, ``title``, ``deliverables``, ...) has one parser, :meth:`TomlReader.task`, for all.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_orch_recovery.engine.errors import OrchRecoveryError
from pytest_orch_recovery.engine.model import Task

# The keys of one task table (a scenario's [[tasks]] adds ``expect``).
TASK_KEYS = frozenset({"id", "title", "deliverables", "tests", "agent_type", "pr", "agent",
                       "prompt"})


class TomlError(OrchRecoveryError, ValueError):
    """A TOML document that cannot be used, with where and what."""

    def __init__(self, source: str, line: int, field_name: str, message: str) -> None:
        self.source = source
        self.line = line
        self.field = field_name
        self.message = message
        where = f"{source}:{line}"
        super().__init__(f"{where}: {field_name}: {message}" if field_name else
                         f"{where}: {message}")


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|"""
                  r"""[A-Za-z0-9_\-]+))*)\s*=""")

Path_ = tuple[str | int, ...]


def split_dotted(text: str) -> list[str]:
    parts = re.findall(r'"[^"]*"|\'[^\']*\'|[^.\s]+', text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[Path_, int]:
    """The 1-based line of every table header and key, by path (array tables indexed).

    >>> lines = key_lines('name = "x"\\n[[tasks]]\\nid = "a"\\n[[tasks]]\\nid = "b"\\n')
    >>> lines[("name",)], lines[("tasks", 1, "id")], lines[("tasks", 1)]
    (1, 5, 4)
    """
    out: dict[Path_, int] = {}
    arrays: dict[tuple[str, ...], int] = {}  # array-of-tables path -> current index
    current: Path_ = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), 1):
        if in_multiline:
            if line.count('"""') % 2 == 1 or line.count("'''") % 2 == 1:
                in_multiline = False
            continue
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            names = split_dotted(header.group(2))
            resolved: list[str | int] = []
            for i, name in enumerate(names):
                resolved.append(name)
                key = tuple(names[: i + 1])
                is_last = i == len(names) - 1
                if header.group(1) == "[[" and is_last:
                    arrays[key] = arrays.get(key, -1) + 1
                    # A new element of an array forgets the sub-arrays of the previous one.
                    for sub in [k for k in arrays if len(k) > len(key) and k[: len(key)] == key]:
                        del arrays[sub]
                    resolved.append(arrays[key])
                elif key in arrays:
                    resolved.append(arrays[key])
            current = tuple(resolved)
            out.setdefault(current, number)
            continue
        key_match = _KEY.match(line)
        if key_match:
            path = (*current, *split_dotted(key_match.group(1)))
            out.setdefault(path, number)
            rest = line[key_match.end():]
            if rest.count('"""') == 1 or rest.count("'''") == 1:
                in_multiline = True
    return out


def line_of(lines: Mapping[Path_, int], path: Path_) -> int:
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def field_name(path: Path_) -> str:
    """``("tasks", 1, "expect", "outcome")`` -> ``tasks[2].expect.outcome`` (1-based)."""
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def lineno_from_message(message: str) -> int:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else 1



def parse_document(text: str, source: str,
                   error: type[TomlError] = TomlError) -> dict[str, Any]:
    """``tomllib.loads`` with its syntax error turned into ``error`` naming the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or lineno_from_message(str(exc))
        raise error(source, line, "", f"invalid TOML: {exc}") from None


class TomlReader:
    """Validates one parsed document, raising :attr:`error` with file and line."""

    error: type[TomlError] = TomlError

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = key_lines(text)

    def fail(self, path: Path_, message: str) -> TomlError:
        return self.error(self.source, line_of(self.lines, path), field_name(path), message)

    def table(self, value: object, path: Path_, allowed: frozenset[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a table, not {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), "unknown key; expected one of "
                                + ", ".join(sorted(allowed)))
        return value

    def string(self, value: object, path: Path_, *, empty: bool = False) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {type(value).__name__}")
        if not empty and not value.strip():
            raise self.fail(path, "must not be empty")
        return value

    def integer(self, value: object, path: Path_, *, minimum: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, not {type(value).__name__}")
        if value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def seconds(self, value: object, path: Path_) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"must be a number of seconds, not {type(value).__name__}")
        if not value > 0:
            raise self.fail(path, f"must be > 0, got {value}")
        return float(value)

    def boolean(self, value: object, path: Path_) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, not {value!r}")
        return value

    def strings(self, value: object, path: Path_, choices: Sequence[str] = ()) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list of strings, not {type(value).__name__}")
        out = []
        for i, item in enumerate(value):
            text = self.string(item, path)
            if choices and text not in choices:
                raise self.fail(path, f"item {i + 1} {text!r} is not one of "
                                + ", ".join(choices))
            out.append(text)
        return tuple(out)

    def task(self, raw: Mapping[str, Any], path: Path_) -> tuple[Task, str | None]:
        """A task table's task and its agent name (None: the coordinator names it)."""
        for required in ("id", "title", "deliverables"):
            if required not in raw:
                raise self.fail(path, f"missing required key {required!r}")
        deliverables = self.strings(raw["deliverables"], (*path, "deliverables"))
        if not deliverables:
            raise self.fail((*path, "deliverables"), "must list at least one file")
        task = Task(
            task_id=self.string(raw["id"], (*path, "id")),
            title=self.string(raw["title"], (*path, "title")),
            deliverables=deliverables,
            tests=None if raw.get("tests") is None else self.string(raw["tests"],
                                                                     (*path, "tests")),
            agent_type=self.string(raw.get("agent_type", "claude-code"), (*path, "agent_type")),
            wants_pr=self.boolean(raw.get("pr", True), (*path, "pr")),
            prompt=self.string(raw.get("prompt", ""), (*path, "prompt"), empty=True),
        )
        agent = None if raw.get("agent") is None else self.string(raw["agent"], (*path, "agent"))
        return task, agent
