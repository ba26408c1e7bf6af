"""``failures`` from the rows of ended tasks kept beside the journal prints what the whole
journal's fold prints, byte for byte, for every format and option, wherever the file was
written and whatever was appended since; a file that does not fit is ignored."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
from events import SEED_DAY, JournalBuilder, random_journal
from hypothesis import given, settings
from hypothesis import strategies as st
from keptfiles import (
    DAMAGES,
    assert_forged_rows_escaped,
    damage,
    mixed_journal,
    save_at,
    writes_then_reads,
)

from pytest_orch_recovery.cli import failures, failurescache
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import Reason, Strategy
from pytest_orch_recovery.report.fleetview import FleetView
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import journal_text, replay

# "Today" for the TIME cells: the day of the journals' first events (only the time shown)
# or long after (the date shown too).
TODAYS = (SEED_DAY + 3600.0, 1_900_000_000.0)
AGENTS = (None, "task-agent-1", "gemini-7", "nobody")


def _save_at(path: Path, text: str, lines: int) -> None:
    save_at(path, text, lines, failurescache.save)


def _expected(path: Path, fmt: str, evidence: int, agent: str | None) -> str:
    rows = FleetView(History(replay(path))).failures()
    rows = [f for f in rows if agent is None or f.agent == agent]
    return failures.render(rows, fmt, evidence)


def _cached(path: Path, fmt: str, evidence: int, agent: str | None) -> str | None:
    chunks = failurescache.render_cached(path, fmt, evidence, agent)
    return None if chunks is None else "".join(chunks)


def _scrambled(events: list[Event], spread: int) -> list[Event]:
    """The same events at times that tie across tasks, go back and forth, and span days:
    the order of failures is then by time, ties in task order."""
    return [
        replace(e, time=SEED_DAY + ((e.seq * 7919) % spread) * 20_000.0) if spread else e
        for e in events
    ]


@given(
    events=random_journal(),
    cut=st.floats(0.0, 1.0),
    spread=st.sampled_from([0, 3, 23]),
)
@settings(max_examples=60, deadline=None)
def test_rows_kept_plus_the_tail_print_as_the_whole_journal(
    events: list[Event], cut: float, spread: int
) -> None:
    events = _scrambled(events, spread)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.jsonl"
        text = journal_text(events)
        _save_at(path, text, int(len(events) * cut))
        for today in TODAYS:
            with mock.patch("time.time", return_value=today):
                for fmt in ("table", "json"):
                    for evidence in (0, 1, 2, 10) if fmt == "table" else (1,):
                        for agent in AGENTS:
                            got = _cached(path, fmt, evidence, agent)
                            if got is None:  # only when an event since names an ended task
                                assert failurescache.cache_path(path).exists()
                                continue
                            assert got == _expected(path, fmt, evidence, agent)


def _mixed() -> JournalBuilder:
    return mixed_journal()


def test_a_whole_journal_is_read_from_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    for fmt in ("table", "json"):
        for agent in AGENTS:
            assert _cached(path, fmt, 3, agent) == _expected(path, fmt, 3, agent)
    document = json.loads(_cached(path, "json", 1, None) or "")
    assert len(document["failures"]) == len(FleetView(History(replay(path))).failures()) > 3


def test_a_wider_live_row_pads_the_kept_rows_again(tmp_path: Path) -> None:
    j = _mixed()
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    wide = j.task("a-task-with-a-much-longer-id-than-any-before", "an-agent-with-a-long-name")
    wide.launch().fail_with(Reason.API_ERROR).decide(Strategy.RESTART)
    path.write_text(journal_text(j.events))
    for evidence in (0, 1, 2):
        expected = _expected(path, "table", evidence, None)
        assert _cached(path, "table", evidence, None) == expected
        assert "a-task-with-a-much-longer-id-than-any-before" in expected


@pytest.mark.parametrize("how", DAMAGES)
def test_a_file_that_does_not_fit_is_ignored(tmp_path: Path, how: str) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    damage(path, failurescache.cache_path(path), how)
    assert _cached(path, "table", 1, None) is None


def test_the_command_writes_the_file_once_the_journal_is_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("time.time", lambda: TODAYS[0])
    path = tmp_path / "journal.jsonl"
    path.write_text(journal_text(_mixed().events))
    base = ["failures", "--journal", str(path)]
    reads = [
        [*base, "--evidence", "2"],
        [*base, "--format", "json"],
        [*base, "--agent", "task-agent-5030"],
    ]
    first, outputs, used = writes_then_reads(monkeypatch, capsys, failurescache, path, reads)
    assert outputs() == first
    assert used[3:] == [True, True, True]


def test_hostile_text_is_escaped_as_without_the_file(tmp_path: Path) -> None:
    j = JournalBuilder()
    hostile = "x\x1b]52;c;aGk=\x07 \u202e\x9b y"
    t = j.task("t-\u202e\x9b", "agent-\x1b]52;c;aGk=\x07")
    t.launch().fail_with(Reason.API_ERROR, detail=hostile).decide(Strategy.ESCALATE).escalate()
    o = j.task("open\x85", "agent-\u2066")
    o.launch().fail_with(Reason.SIGINT, detail=hostile)
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    for fmt in ("table", "json"):
        for agent in (None, "agent-\x1b]52;c;aGk=\x07"):
            got = _cached(path, fmt, 2, agent)
            assert got == _expected(path, fmt, 2, agent)
            assert got is not None and "\x9b" not in got and "\u202e" not in got
            assert "\x1b" not in got


def test_a_forged_row_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    kept = failurescache.cache_path(path)
    assert_forged_rows_escaped(kept, b"sigint", lambda fmt: _cached(path, fmt, 1, None))
