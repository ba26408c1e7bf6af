"""``partial`` from the rows of ended tasks kept beside the journal prints what the whole
journal's fold prints, byte for byte, for every format and option, wherever the file was
written and whatever was appended since; the checkpoint files are read live every time; a
file that does not fit is ignored."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from events import JournalBuilder, first_try_success, random_journal
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

from pytest_orch_recovery.cli import partial, partialcache, partialrows
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import Checkpoint, Reason, Strategy
from pytest_orch_recovery.infra.checkpoint import save_checkpoint
from pytest_orch_recovery.report.fleetview import FleetView
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import journal_text, replay

AGENTS = (None, "task-agent-1", "gemini-7", "nobody")


def _save_at(path: Path, text: str, lines: int) -> None:
    save_at(path, text, lines, partialcache.save)


def _expected(path: Path, fmt: str, agent: str | None, directory: Path | None) -> str:
    reports = FleetView(History(replay(path))).partial_work(agent=agent)
    actions = [partialrows.next_actions(directory, r.agent) for r in reports]
    return partial.render(reports, actions, fmt)


def _cached(path: Path, fmt: str, agent: str | None, directory: Path | None) -> str | None:
    chunks = partialcache.render_cached(path, fmt, agent, directory)
    return None if chunks is None else "".join(chunks)


def _checkpoints(directory: Path, which: int) -> None:
    """Checkpoint files for some agents of :func:`random_journal`: good ones, a torn one."""
    directory.mkdir(exist_ok=True)
    for name in directory.iterdir():
        name.unlink()
    if which & 1:
        steps = ("push", "open the PR \x1b]52;c;aGk=\x07 \u202e")
        save_checkpoint(directory, Checkpoint("task-agent-1", "t0", next_actions=steps))
    if which & 2:
        (directory / "gemini-7.json").write_text("{torn")
    if which & 4:
        save_checkpoint(directory, Checkpoint("task-agent-3", "t1", next_actions=("x",)))


@given(
    events=random_journal(),
    cut=st.floats(0.0, 1.0),
    before=st.integers(0, 7),
    after=st.integers(0, 7),
)
@settings(max_examples=60, deadline=None)
def test_rows_kept_plus_the_tail_print_as_the_whole_journal(
    events: list[Event], cut: float, before: int, after: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.jsonl"
        directory = Path(tmp) / "cp"
        _checkpoints(directory, before)
        text = journal_text(events)
        _save_at(path, text, int(len(events) * cut))
        _checkpoints(directory, after)  # checkpoint files change between reads
        for where in (directory, Path(tmp) / "none"):
            for fmt in ("table", "json"):
                for agent in AGENTS:
                    got = _cached(path, fmt, agent, where)
                    if got is None:  # only when an event since names an ended task
                        assert partialcache.cache_path(path).exists()
                        continue
                    assert got == _expected(path, fmt, agent, where)


def _mixed() -> JournalBuilder:
    return mixed_journal(pr=12)


def test_a_whole_journal_is_read_from_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    cps = tmp_path / "cp"
    save_checkpoint(cps, Checkpoint("agent-late", "late", next_actions=("done",)))
    (cps / "task-agent-5030.json").write_text("{torn")
    for fmt in ("table", "json"):
        for agent in (None, "agent-late", "task-agent-5030", "nobody"):
            assert _cached(path, fmt, agent, cps) == _expected(path, fmt, agent, cps)
    table = _cached(path, "table", None, cps) or ""
    assert "checkpoint unusable" in table and "done" in table


def test_a_wider_live_row_pads_the_kept_rows_again(tmp_path: Path) -> None:
    j = _mixed()
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    wide = j.task("a-task-with-a-much-longer-id-than-any-before", "an-agent-with-a-long-name")
    wide.launch().fail_with(Reason.API_ERROR).decide(Strategy.RESTART)
    path.write_text(journal_text(j.events))
    expected = _expected(path, "table", None, tmp_path)
    assert _cached(path, "table", None, tmp_path) == expected
    assert "a-task-with-a-much-longer-id-than-any-before" in expected


def test_an_agent_name_no_file_can_have_says_so_as_without_the_file(tmp_path: Path) -> None:
    j = JournalBuilder()
    first_try_success(j, "t1", "agent with spaces")
    j.task("t2", "$(touch pwned)").launch().fail_with(Reason.SIGINT)
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    for fmt in ("table", "json"):
        got = _cached(path, fmt, None, tmp_path)
        assert got == _expected(path, fmt, None, tmp_path)
        assert got is not None and "<agent>.json" in got


@pytest.mark.parametrize("how", DAMAGES)
def test_a_file_that_does_not_fit_is_ignored(tmp_path: Path, how: str) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    damage(path, partialcache.cache_path(path), how)
    assert _cached(path, "table", None, tmp_path) is None


def test_the_command_writes_the_file_once_the_journal_is_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_text(journal_text(_mixed().events))
    cps = tmp_path / "cp"
    base = ["partial", "--journal", str(path), "--checkpoint-dir", str(cps)]
    reads = [base, [*base, "--format", "json"], [*base, "--agent", "task-agent-5030"]]
    first, outputs, used = writes_then_reads(monkeypatch, capsys, partialcache, path, reads)
    # A checkpoint written since is read: the kept rows hold no next actions.
    save_checkpoint(cps, Checkpoint("task-agent-5030", "fake3", next_actions=("go on",)))
    again = outputs()
    assert used[3:] == [True, True, True]
    assert "go on" in again[0] and "go on" not in first[0]


def test_hostile_text_is_escaped_as_without_the_file(tmp_path: Path) -> None:
    j = JournalBuilder()
    first_try_success(j, "t-\u202e\x9b", "agent-\x1b]52;c;aGk=\x07", title="a\u202eb")
    o = j.task("open\x85", "agent-\u2066", deliverables=["x\x9by.py"])
    o.launch().fail_with(Reason.SIGINT)
    gave = j.task("gave\u202e", "agent-g", deliverables=["\u2066z.py"])
    gave.launch().fail_with(Reason.PERMISSION).decide(Strategy.ESCALATE).escalate()
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    cps = tmp_path / "cp"
    steps = ("push \x1b]52;c;aGk=\x07", "\u202eevil\x9b")
    save_checkpoint(cps, Checkpoint("agent-g", "gave", next_actions=steps))
    for fmt in ("table", "json"):
        for agent in (None, "agent-\x1b]52;c;aGk=\x07", "agent-g"):
            got = _cached(path, fmt, agent, cps)
            assert got == _expected(path, fmt, agent, cps)
            assert got is not None and "\x9b" not in got and "\u202e" not in got
            assert "\x1b" not in got


def test_a_forged_row_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(_mixed().events)
    _save_at(path, text, len(text.splitlines()))
    kept = partialcache.cache_path(path)
    assert_forged_rows_escaped(kept, b"succeeded", lambda fmt: _cached(path, fmt, None, tmp_path))
