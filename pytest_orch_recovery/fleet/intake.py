"""Task intake while the supervisor runs: task files, and the spool directory.

A task file holds one task as top-level keys, or several as ``[[tasks]]`` tables, in the task
schema of the chaos scenarios (``id``, ``title``, ``deliverables``, optional ``tests``,
``agent_type``, ``pr``, ``agent``, ``prompt``): one parser, :meth:`TomlReader.task_table`.

``orch-recovery submit`` and ``release`` never talk to the supervisor directly: they write one
request file into the spool (atomically, named so they sort in arrival order), and the
supervisor takes requests in that order, carries each out, and moves it to ``spool/done``.
Carrying out is idempotent (a task submitted twice is one task; a release of a task that is
not escalated releases nothing), so a supervisor killed between the two steps is harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.infra.tomlread import (
    TASK_KEYS,
    Path_,
    TomlReader,
    parse_document,
)
from pytest_orch_recovery.store import atomic
from pytest_orch_recovery.store.validation import InputError

SCHEMA_VERSION = 1


class TaskFileError(InputError):
    """A task file that cannot be submitted: ``file:line: key: message``."""


class _TaskReader(TomlReader):
    error = TaskFileError


@dataclass(frozen=True)
class Submission:
    task: Task
    agent: str | None = None


def parse_tasks(text: str, *, source: str) -> tuple[Submission, ...]:
    """The tasks of one task file (see the module doc).

    >>> [s.task.task_id for s in parse_tasks('id = "t1"\\ntitle = "Docs"\\n'
    ...                                       'deliverables = ["a.md"]\\n', source="t.toml")]
    ['t1']
    """
    doc = parse_document(text, source, TaskFileError)
    reader = _TaskReader(source, text)
    tables: list[tuple[Mapping[str, Any], Path_]]
    if "tasks" in doc:
        raw = reader.table(doc, (), frozenset({"tasks"}))["tasks"]
        if not isinstance(raw, list) or not raw:
            raise reader.fail(("tasks",), "must be one or more [[tasks]] tables")
        tables = [
            (reader.table(item, ("tasks", i), TASK_KEYS), ("tasks", i))
            for i, item in enumerate(raw)
        ]
    else:
        tables = [(reader.table(doc, (), TASK_KEYS), ())]
    out: list[Submission] = []
    seen: set[str] = set()
    for table, path in tables:
        task, agent = reader.task_table(table, path)
        if task.task_id in seen:
            raise reader.fail((*path, "id"), f"task id {task.task_id!r} repeats")
        seen.add(task.task_id)
        out.append(Submission(task, agent))
    return tuple(out)


def load_tasks(path: Path) -> tuple[Submission, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(str(path), 1, "", f"cannot read: {exc}") from None
    return parse_tasks(text, source=str(path))


@dataclass(frozen=True)
class Request:
    """One spooled request: ``submit`` (a task) or ``release`` (a task id and a note)."""

    path: Path
    kind: str
    data: dict[str, Any]


class Spool:
    """The intake directory: ``<root>/*.json`` waiting, ``<root>/done/`` carried out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done_dir = root / "done"

    def _put(self, kind: str, name: str, data: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        stem = f"{time.time_ns():020d}-{secrets.token_hex(3)}-{kind}-{name}"
        path = self.root / f"{stem}.json"
        atomic.write_json(path, {"schema_version": SCHEMA_VERSION, "kind": kind, **data})
        return path

    def submit(self, submission: Submission) -> Path:
        return self._put(
            "submit",
            submission.task.task_id,
            {
                "task": submission.task.to_json(),
                "agent": submission.agent,
            },
        )

    def release(self, task_id: str, note: str | None) -> Path:
        return self._put("release", task_id, {"task_id": task_id, "note": note})

    def pending(self) -> Iterator[Request]:
        """Waiting requests, oldest first; a file that is not a request is set aside."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                self.finish(path, suffix=".rejected")
                continue
            kind = data.get("kind") if isinstance(data, dict) else None
            if kind not in ("submit", "release"):
                self.finish(path, suffix=".rejected")
                continue
            yield Request(path, str(kind), data)

    def finish(self, path: Path, *, suffix: str = "") -> None:
        """Move a request to ``done/`` (it was carried out, or rejected)."""
        self.done_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, self.done_dir / (path.name + suffix))
        atomic.fsync_dir(self.root)
