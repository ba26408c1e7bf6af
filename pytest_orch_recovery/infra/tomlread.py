"""Reading TOML documents people write: one-line ``file:line: field: message`` errors.

``tomllib`` reports the position of syntax errors only; :func:`key_lines` finds the line of
every table header and key, so a schema error names the line of the offending key. Values go
through :mod:`pytest_orch_recovery.store.validation`'s rules. Chaos scenarios, the fleet file
and task files all read through :class:`TomlReader`, and the task table (``id``, ``title``,
``deliverables``, ...) has one parser for all: :meth:`TomlReader.task_table`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.policy import POLICY_SETTING_KEYS, PolicySettings
from pytest_orch_recovery.store import validation
from pytest_orch_recovery.store.validation import InputError, RuleError

# The keys of one task table (a scenario's [[tasks]] adds ``expect``).
TASK_KEYS = frozenset(
    {"id", "title", "deliverables", "tests", "agent_type", "pr", "agent", "prompt"}
)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|"""
    r"""[A-Za-z0-9_\-]+))*)\s*="""
)

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
            rest = line[key_match.end() :]
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


def parse_document(text: str, source: str, error: type[InputError] = InputError) -> dict[str, Any]:
    """:func:`validation.loads_toml` with its refusal raised as ``error`` naming the line."""
    try:
        return validation.loads_toml(text)
    except validation.DocumentError as exc:
        if exc.path:
            raise TomlReader(source, text, error).fail(exc.path, str(exc)) from None
        raise error(source, exc.line or 1, "", str(exc)) from None


class TomlReader:
    """Validates one parsed document, raising :attr:`error` with file and line."""

    error: type[InputError] = InputError

    def __init__(self, source: str, text: str, error: type[InputError] | None = None) -> None:
        self.source = source
        self.lines = key_lines(text)
        if error is not None:
            self.error = error

    def fail(self, path: Path_, message: str) -> InputError:
        return self.error(self.source, line_of(self.lines, path), field_name(path), message)

    def table(self, value: object, path: Path_, allowed: frozenset[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a table, not {type(value).__name__}")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    (*path, key), "unknown key; expected one of " + ", ".join(sorted(allowed))
                )
        return value

    def string(
        self,
        value: object,
        path: Path_,
        *,
        empty: bool = False,
        limit: int = validation.MAX_TITLE_CHARS,
    ) -> str:
        try:
            return validation.text(value, limit=limit, empty=empty)
        except RuleError as exc:
            raise self.fail(path, str(exc)) from None

    def checked(self, rule: Any, value: object, path: Path_, **kwargs: Any) -> Any:
        """``rule(value, **kwargs)`` from :mod:`validation`, its refusal placed at ``path``."""
        try:
            return rule(value, **kwargs)
        except RuleError as exc:
            raise self.fail(path, str(exc)) from None

    def integer(
        self, value: object, path: Path_, *, minimum: int = 1, maximum: int = validation.MAX_COUNT
    ) -> int:
        out: int = self.checked(validation.integer, value, path, minimum=minimum, maximum=maximum)
        return out

    def seconds(self, value: object, path: Path_, *, zero: bool = False) -> float:
        out: float = self.checked(validation.number, value, path, exclusive_minimum=not zero)
        return out

    def number(self, value: object, path: Path_, *, upper: float = 7 * 86400) -> float:
        """Seconds > 0, finite, at most ``upper``."""
        seconds = self.seconds(value, path)
        if not math.isfinite(seconds) or seconds > upper:
            raise self.fail(path, f"must be finite and at most {upper:g}, got {value}")
        return seconds

    def policy_settings(self, value: object, path: Path_) -> PolicySettings:
        """A ``[policy]`` table (fleet files and scenarios alike)."""
        raw = self.table(value, path, POLICY_SETTING_KEYS)

        def seconds(key: str) -> float | None:
            return None if raw.get(key) is None else self.number(raw[key], (*path, key))

        threshold = raw.get("breaker_threshold")
        return PolicySettings(
            backoff_base=seconds("backoff_base"),
            backoff_cap=seconds("backoff_cap"),
            breaker_threshold=None
            if threshold is None
            else self.integer(threshold, (*path, "breaker_threshold")),
            breaker_window=seconds("breaker_window"),
            usage_limit_horizon=seconds("usage_limit_horizon"),
        )

    def relative_path(self, value: object, path: Path_) -> str:
        out: str = self.checked(validation.relative_path, value, path)
        return out

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
                raise self.fail(path, f"item {i + 1} {text!r} is not one of " + ", ".join(choices))
            out.append(text)
        return tuple(out)

    def paths(self, value: object, path: Path_) -> tuple[str, ...]:
        """A list of relative paths, each inside the repository, none repeated."""
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list of file paths, not {type(value).__name__}")
        out: dict[str, int] = {}
        for i, item in enumerate(value):
            normal = self.relative_path(item, (*path, i))
            if normal in out:
                raise self.fail((*path, i), f"{normal!r} repeats item {out[normal] + 1}")
            out[normal] = i
        return tuple(out)

    def task_table(self, raw: Mapping[str, Any], path: Path_) -> tuple[Task, str | None]:
        """A task table's task and its agent name (None: the coordinator names it)."""
        for required in ("id", "title", "deliverables"):
            if required not in raw:
                raise self.fail(path, f"missing required key {required!r}")
        deliverables = self.paths(raw["deliverables"], (*path, "deliverables"))
        if not deliverables:
            raise self.fail((*path, "deliverables"), "must list at least one file")
        tests = None if raw.get("tests") is None else self.string(raw["tests"], (*path, "tests"))
        task = Task(
            task_id=self.checked(validation.name, raw["id"], (*path, "id"), what="task id"),
            title=self.string(raw["title"], (*path, "title")),
            deliverables=deliverables,
            tests=tests,
            agent_type=self.checked(
                validation.name,
                raw.get("agent_type", "claude-code"),
                (*path, "agent_type"),
                what="agent type",
            ),
            wants_pr=self.boolean(raw.get("pr", True), (*path, "pr")),
            prompt=self.checked(validation.prompt, raw.get("prompt", ""), (*path, "prompt")),
        )
        agent = (
            None
            if raw.get("agent") is None
            else self.checked(validation.agent_name, raw["agent"], (*path, "agent"))
        )
        return task, agent
