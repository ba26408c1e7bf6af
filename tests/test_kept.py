"""The frame of the files read commands keep beside a journal (``report/kept.py``): what a
command stores comes back section by section, in task order with the open tasks' live rows,
and a file that does not fit its journal is not used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from events import JournalBuilder, first_try_success
from keptfiles import DAMAGES, damage

from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.report import kept
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import JournalError, journal_text, replay

SUFFIX = ".toy"
CODE = kept.code_hash()


def _journal() -> JournalBuilder:
    j = JournalBuilder()
    first_try_success(j, "done-1", "agent-1")
    t = j.task("open", "agent-o")
    t.launch()
    first_try_success(j, "done-2", "agent-2")
    return j


def _toy(history: History) -> kept.Sections:
    """A command that keeps each ended task's id, and its agent in a second section."""
    ended = [t for t in history.tasks.values() if kept.ended(t)]
    ids = [f"{t.task_id}{kept.SEP}row\n".encode() for t in ended]
    agents = [f"{t.current_agent}\n".encode() for t in ended]
    return kept.Sections({"note": "mine"}, {"ids": ids, "agents": agents})


def _save(path: Path, j: JournalBuilder) -> History:
    path.write_text(journal_text(j.events))
    history = History(replay(path))
    size = path.stat().st_size
    kept.save(path, SUFFIX, CODE, history, size, j.events[-1].seq, lambda: _toy(history))
    return history


def _frame(path: Path) -> tuple[Path, dict[str, Any], bytes]:
    """The kept file beside ``path``, its header's fields and what follows the header."""
    file = kept.kept_path(path, SUFFIX)
    header, rest = file.read_bytes().split(b"\n", 1)
    return file, json.loads(header), rest


def _rewrite(file: Path, fields: dict[str, Any], rest: bytes) -> None:
    file.write_bytes(json.dumps(fields).encode() + b"\n" + rest)


def test_sections_come_back_in_task_order_with_the_tail_folded(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = _journal()
    _save(path, j)
    j.task("later", "agent-l").launch()  # appended after the file was written
    path.write_text(journal_text(j.events))
    loaded = kept.load(path, SUFFIX, CODE)
    assert loaded is not None
    try:
        assert loaded.header["note"] == "mine"
        assert list(loaded.history.tasks) == ["open", "later"]
        assert loaded.ordinals() == [1, 3]
        assert list(loaded.lines("agents")) == ["agent-1", "agent-2"]
        merged = list(kept.in_task_order(loaded, "ids", ["OPEN", "LATER"]))
        assert merged == [
            (0, "done-1\x00row"),
            (1, "OPEN"),
            (2, "done-2\x00row"),
            (3, "LATER"),
        ]
    finally:
        loaded.close()


def test_a_tail_naming_an_ended_task_gives_the_file_up(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    j = _journal()
    _save(path, j)
    j.operator_action("look again", ["done-1"])
    path.write_text(journal_text(j.events))
    assert kept.load(path, SUFFIX, CODE) is None


def test_a_tail_longer_than_the_limit_gives_the_file_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"
    j = _journal()
    _save(path, j)
    t = j.task("more", "agent-m")
    t.launch().fail_with(Reason.SIGINT)
    path.write_text(journal_text(j.events))
    monkeypatch.setattr(kept, "MAX_TAIL", 1)
    assert kept.load(path, SUFFIX, CODE) is None
    monkeypatch.setattr(kept, "MAX_TAIL", 100)
    loaded = kept.load(path, SUFFIX, CODE)
    assert loaded is not None
    loaded.close()


@pytest.mark.parametrize("how", DAMAGES)
def test_a_file_that_does_not_fit_is_not_used(tmp_path: Path, how: str) -> None:
    path = tmp_path / "journal.jsonl"
    _save(path, _journal())
    damage(path, kept.kept_path(path, SUFFIX), how)
    assert kept.load(path, SUFFIX, CODE) is None


def test_positions_that_do_not_add_up_are_not_used(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _save(path, _journal())
    file, fields, rest = _frame(path)
    fields["open_at"] = [7]
    _rewrite(file, fields, rest)
    assert kept.load(path, SUFFIX, CODE) is None


def test_sections_that_do_not_fit_their_sizes_are_an_error_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.jsonl"
    _save(path, _journal())
    file, fields, rest = _frame(path)
    fields["ids_bytes"] += 1  # the sizes still add up to the file's, the sections do not
    fields["agents_bytes"] -= 1
    _rewrite(file, fields, rest)
    loaded = kept.load(path, SUFFIX, CODE)
    assert loaded is not None
    with pytest.raises(JournalError, match=f"{file}: a row of an ended task is cut short"):
        list(loaded.lines("ids"))
    loaded.close()


def test_a_foreign_control_character_is_escaped_when_read(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _save(path, _journal())
    file, fields, rest = _frame(path)
    forged = rest.replace(b"agent-1\n", b"a\x1b]52;c;aGk=\x07\xe2\x80\xae\xc2\x9b\n")
    fields["agents_bytes"] += len(forged) - len(rest)
    _rewrite(file, fields, forged)
    loaded = kept.load(path, SUFFIX, CODE)
    assert loaded is not None
    assert next(loaded.lines("agents")) == "a\\u001b]52;c;aGk=\\u0007\\u202e\\u009b"
    assert next(loaded.lines("ids")) == "done-1\x00row"  # its own separators stay
    loaded.close()


def test_a_command_field_may_not_take_a_name_of_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(journal_text(_journal().events))
    history = History(replay(path))
    size = path.stat().st_size
    clash = kept.Sections({"tasks": 1}, {})
    kept.save(path, SUFFIX, CODE, history, size, 1, lambda: clash)
    assert not kept.kept_path(path, SUFFIX).exists()
