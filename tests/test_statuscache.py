"""``status`` from the rows of ended tasks kept beside the journal prints what the whole
journal's fold prints, byte for byte, wherever the file was written and whatever was
appended since; a file that does not fit is ignored."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from events import JournalBuilder, first_try_success, random_journal
from hypothesis import given, settings
from hypothesis import strategies as st
from keptfiles import DAMAGES, damage, forge_rows, mixed_journal, save_at, spy_on_reads

from pytest_orch_recovery.cli import status, statuscache
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import ExitInfo, Reason, Strategy
from pytest_orch_recovery.report.fleetview import FleetView
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import journal_text, replay
from pytest_orch_recovery.store.snapshot import HistoryFollower

NOW = 1_900_000_000.0


def _save_at(path: Path, text: str, lines: int) -> None:
    save_at(path, text, lines, statuscache.save)


def _expected(path: Path, budget: int, fmt: str) -> str:
    view = FleetView(History(replay(path)), budget=budget)
    rows = view.statuses(now=NOW)
    return status.render(rows, None, fmt, NOW, view.usage_conditions(now=NOW))


def _cached(path: Path, budget: int, fmt: str) -> str | None:
    chunks = statuscache.render_cached(path, budget, fmt, NOW)
    return None if chunks is None else "".join(chunks)


@given(
    events=random_journal(),
    cut=st.floats(0.0, 1.0),
    budget=st.sampled_from([1, 4, 123456789]),
)
@settings(max_examples=60, deadline=None)
def test_rows_kept_plus_the_tail_print_as_the_whole_journal(
    events: list[Event], cut: float, budget: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.jsonl"
        text = journal_text(events)
        _save_at(path, text, int(len(events) * cut))
        for fmt in ("table", "json"):
            got = _cached(path, budget, fmt)
            if got is None:  # only when an event since names a task that had ended
                assert statuscache.cache_path(path).exists()
                continue
            assert got == _expected(path, budget, fmt)


def _mixed() -> JournalBuilder:
    return mixed_journal()


def test_a_whole_journal_is_read_from_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    for fmt in ("table", "json"):
        assert _cached(path, 4, fmt) == _expected(path, 4, fmt)
    document = json.loads(_cached(path, 7, "json") or "")
    assert {row["budget"] for row in document["tasks"]} == {7}


def test_a_task_wider_than_the_kept_rows_pads_them_again(tmp_path: Path) -> None:
    j = _mixed()
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    wide = j.task("a-task-with-a-much-longer-id-than-any-before", "an-agent-with-a-long-name")
    wide.launch().exit(ExitInfo(1), after=3600.0)
    path.write_text(journal_text(j.events))
    expected = _expected(path, 4, "table")
    assert _cached(path, 4, "table") == expected
    assert "a-task-with-a-much-longer-id-than-any-before" in expected


def test_a_release_of_an_ended_task_is_read_from_the_whole_journal(tmp_path: Path) -> None:
    j = JournalBuilder()
    t = j.task("gave-up", "agent-g")
    t.launch().fail_with(Reason.PERMISSION)
    t.decide(Strategy.ESCALATE).escalate()
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    assert _cached(path, 4, "table") is not None
    j.operator_action("fix permissions", ["gave-up"])
    path.write_text(journal_text(j.events))
    assert _cached(path, 4, "table") is None  # its stored row is no longer its row


@pytest.mark.parametrize("how", DAMAGES)
def test_a_file_that_does_not_fit_is_ignored(tmp_path: Path, how: str) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    damage(path, statuscache.cache_path(path), how)
    assert _cached(path, 4, "table") is None


def test_the_status_command_writes_the_file_once_the_journal_is_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_orch_recovery.cli.main import main

    monkeypatch.setattr("time.time", lambda: NOW)
    path = tmp_path / "journal.jsonl"
    events = _mixed().events
    path.write_text(journal_text(events))
    monkeypatch.setattr(statuscache, "CACHE_FROM", len(events) + 1)
    assert main(["status", "--journal", str(path)]) == 0
    first = capsys.readouterr().out
    assert not statuscache.cache_path(path).exists()  # too short to keep one
    monkeypatch.setattr(statuscache, "CACHE_FROM", len(events))
    assert main(["status", "--journal", str(path)]) == 0
    assert capsys.readouterr().out == first
    assert statuscache.cache_path(path).exists()
    used = spy_on_reads(monkeypatch, statuscache)
    assert main(["status", "--journal", str(path)]) == 0
    assert capsys.readouterr().out == first
    assert used == [True]


def test_a_directory_it_cannot_write_leaves_status_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(journal_text(_mixed().events))
    statuscache.cache_path(path).mkdir()  # the file cannot be put there
    follower = HistoryFollower(path, every=None)
    follower.refresh()
    statuscache.save(path, follower.history, follower.offset, follower.seq)
    assert statuscache.cache_path(path).is_dir()
    assert _cached(path, 4, "table") is None


def test_hostile_text_of_an_ended_task_is_escaped_as_without_the_file(tmp_path: Path) -> None:
    j = JournalBuilder()
    first_try_success(j, "t-\u202e\x9b", "agent-\x1b]52;c;aGk=\x07", title="a\u202eb\x9bc\n[x]")
    t = j.task("open\x85", "agent-\u2066", title="still \x7f open")
    t.launch()
    path = tmp_path / "journal.jsonl"
    text = journal_text(j.events)
    _save_at(path, text, len(j.events))
    for fmt in ("table", "json"):
        got = _cached(path, 4, fmt)
        assert got == _expected(path, 4, fmt)
        assert got is not None and "\x9b" not in got and "\u202e" not in got


def test_a_journal_naming_the_budget_stand_in_prints_as_without_the_file(tmp_path: Path) -> None:
    from dataclasses import replace

    from pytest_orch_recovery.engine.events import TaskSubmitted

    j = JournalBuilder()
    first_try_success(j, "t1", "agent-1")
    submitted = j.events[0]
    assert isinstance(submitted.payload, TaskSubmitted)
    mark = statuscache._BUDGET_MARK  # no budget a journal can give a task
    j.events[0] = replace(submitted, payload=replace(submitted.payload, budget=mark))
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    for fmt in ("table", "json"):
        assert _cached(path, 4, fmt) == _expected(path, 4, fmt)


def _forge_rows(path: Path, change: Callable[[bytes], bytes]) -> None:
    forge_rows(statuscache.cache_path(path), change)


def test_a_forged_row_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    _forge_rows(path, lambda rows: rows.replace(b"succeeded", b"\x1b]52;c;aGk=\x07\xe2\x80\xae"))
    for fmt in ("table", "json"):
        got = _cached(path, 4, fmt)
        assert got is not None
        assert "\\u001b]52" in got
        assert "\x1b" not in got and "\x07" not in got and "\u202e" not in got


def test_a_row_that_is_not_one_of_its_rows_is_an_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_orch_recovery.cli.main import main

    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    _forge_rows(path, lambda rows: rows.replace(b"\x00", b""))
    assert main(["status", "--journal", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{statuscache.cache_path(path)}: a row of an ended task is not one of its rows" in err
    assert "delete it" in err
