"""``report`` (Markdown and JSON) from the totals kept beside the journal prints what the
whole journal's fold prints, byte for byte, wherever the file was written and whatever was
appended since; a file that does not fit is ignored."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from events import JournalBuilder, first_try_success, interleaved_journal, sigint_resumed
from hypothesis import given, settings
from hypothesis import strategies as st
from keptfiles import DAMAGES, damage, forge_rows, mixed_journal, save_at

from pytest_orch_recovery.cli import reportcache
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import ExitInfo, Reason, Strategy
from pytest_orch_recovery.report import kept
from pytest_orch_recovery.report.dashboard import render_json, render_markdown
from pytest_orch_recovery.report.jsondoc import document_chunks
from pytest_orch_recovery.report.metrics import Metrics, compute, evaluate
from pytest_orch_recovery.report.safetext import json_document
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import journal_text, replay

HOSTILE = ("a\u202eb\x9bc\n[x] | *y* <b>", "\x1b]52;c;aGk=\x07 lesson", "plain")


def _save_at(path: Path, text: str, lines: int) -> None:
    save_at(path, text, lines, reportcache.save)


def _render(m: Metrics, fmt: str, most: int) -> str:
    results = evaluate(m)
    if fmt == "json":
        return "".join(document_chunks(render_json(m, results, stream=True)))
    return render_markdown(m, results, max_events=most)


def _expected(path: Path, fmt: str, most: int = 20, orphans: int | None = None) -> str:
    m = compute(History(replay(path)), orphaned_workspaces=orphans)
    if fmt == "json":  # as json.dumps writes it, made terminal-safe
        text = json.dumps(render_json(m, evaluate(m)), indent=2, ensure_ascii=False)
        return json_document(text) + "\n"
    return _render(m, fmt, most)


def _cached(path: Path, fmt: str, most: int = 20, orphans: int | None = None) -> str | None:
    with reportcache.kept_metrics(path, orphaned_workspaces=orphans) as m:
        return None if m is None else _render(m, fmt, most)


@given(
    events=interleaved_journal(texts=HOSTILE),
    cut=st.floats(0.0, 1.0),
    most=st.sampled_from([0, 1, 3, 20]),
    orphans=st.sampled_from([None, 2]),
)
@settings(max_examples=150, deadline=None)
def test_totals_kept_plus_the_tail_report_as_the_whole_journal(
    events: list[Event], cut: float, most: int, orphans: int | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.jsonl"
        text = journal_text(events)
        _save_at(path, text, int(len(events) * cut))
        for fmt in ("md", "json"):
            got = _cached(path, fmt, most, orphans)
            if got is None:  # only when an event since names a task that had ended
                assert _file(path).exists()
                continue
            assert got == _expected(path, fmt, most, orphans)


def _file(path: Path) -> Path:
    return kept.kept_path(path, reportcache.SUFFIX)


def test_a_whole_journal_is_reported_from_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(mixed_journal().events)
    _save_at(path, text, len(text.splitlines()))
    for fmt in ("md", "json"):
        assert _cached(path, fmt) == _expected(path, fmt)
    header = json.loads(_file(path).read_bytes().split(b"\n", 1)[0])
    assert header["open"] == 1 and len(header["recent_tasks"]) == 4  # seed's 4 recoveries


def test_the_markdown_reads_only_the_newest_kept_events(tmp_path: Path) -> None:
    j = JournalBuilder()
    for n in range(30):
        sigint_resumed(j, f"t{n}", f"agent-{n}")
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    read: list[int] = []
    original = reportcache._StoredEvents.event

    def spy(self: reportcache._StoredEvents, index: int) -> object:
        read.append(index)
        return original(self, index)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reportcache._StoredEvents, "event", spy)
        assert _cached(path, "md", 3) == _expected(path, "md", 3)
    assert read == [0, 1, 2]


def test_kept_and_live_events_interleave_in_time_with_ties(tmp_path: Path) -> None:
    from dataclasses import replace

    j = JournalBuilder()
    for n in range(40):
        t = j.task(f"t{n}", f"task-agent-{n % 7}")
        t.launch().fail_with(list(Reason)[n % len(Reason)])
        if n % 5 == 4 and n >= 20:
            continue  # still recovering at the end
        t.decide(Strategy.RESUME, systematic_cause="quota" if n % 9 == 0 else None)
        t.launch(Strategy.RESUME).exit(ExitInfo(0)).succeed()
    cut = next(i for i, e in enumerate(j.events) if e.task_id == "t20")
    # The later half's times fall among the earlier half's, some on the same second.
    back = (j.events[cut].time - j.events[0].time) * 0.6
    events = [
        replace(e, time=(e.time - (back if i >= cut else 0.0)) // 300 * 300)
        for i, e in enumerate(j.events)
    ]
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(events), cut)
    with reportcache.kept_metrics(path) as m:
        assert m is not None and m.recent.stored is not None
        assert len(m.recent.stored.keys) == 20 and len(m.recent.live) == 20
        times = [e.time for e in m.recent]
        assert len(set(times)) < len(times)  # ties
    for most in (0, 5, 20, 50):
        assert _cached(path, "md", most) == _expected(path, "md", most)
    assert _cached(path, "json") == _expected(path, "json")


def test_a_release_of_an_ended_task_is_read_from_the_whole_journal(tmp_path: Path) -> None:
    j = JournalBuilder()
    t = j.task("gave-up", "agent-g")
    t.launch().fail_with(Reason.PERMISSION)
    t.decide(Strategy.ESCALATE).escalate()
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    assert _cached(path, "md") is not None
    j.operator_action("fix permissions", ["gave-up"])
    path.write_text(journal_text(j.events))
    assert _cached(path, "md") is None  # its kept totals are no longer its totals


@pytest.mark.parametrize("how", DAMAGES)
def test_a_file_that_does_not_fit_is_ignored(tmp_path: Path, how: str) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(mixed_journal().events)
    _save_at(path, text, len(text.splitlines()))
    damage(path, _file(path), how)
    assert _cached(path, "md") is None
    assert _cached(path, "json") is None


def test_a_forged_row_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(mixed_journal().events)
    _save_at(path, text, len(text.splitlines()))
    forge_rows(
        _file(path),
        lambda rows: rows.replace(b"task-agent-5030", b"\x1b]52;c;aGk=\x07\xe2\x80\xae"),
    )
    for fmt in ("md", "json"):
        got = _cached(path, fmt)
        assert got is not None and "]52;c;aGk=" in got
        assert "\x1b" not in got and "\x07" not in got and "\u202e" not in got


@pytest.mark.parametrize(
    ("name", "value"),
    [("first_reasons", {"not a reason": [1, 0]}), ("times", [[0, "an hour"]]), ("agents", [])],
)
def test_totals_that_are_not_totals_are_ignored(tmp_path: Path, name: str, value: object) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(mixed_journal().events)
    _save_at(path, text, len(text.splitlines()))
    file = _file(path)
    header, rest = file.read_bytes().split(b"\n", 1)
    fields = json.loads(header)
    fields["totals"][name] = value
    file.write_bytes(json.dumps(fields).encode() + b"\n" + rest)
    assert _cached(path, "md") is None


def _report(path: Path, *options: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from pytest_orch_recovery.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["report", "--journal", str(path), *options])
    return code, out.getvalue(), err.getvalue()


def test_the_report_command_writes_the_file_once_the_journal_is_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"
    events = mixed_journal().events
    path.write_text(journal_text(events))
    options = [(), ("--format", "json"), ("--max-events", "1", "--gate", "lower-bound")]
    monkeypatch.setattr(reportcache, "KEEP_FROM", len(events) + 1)
    first = [_report(path, *o) for o in options]
    assert not _file(path).exists()  # too short to keep one
    monkeypatch.setattr(reportcache, "KEEP_FROM", len(events))
    assert [_report(path, *o) for o in options] == first
    assert _file(path).exists()
    used: list[bool] = []
    original = reportcache.kept_metrics.__wrapped__  # type: ignore[attr-defined]

    def spy(journal: Path, **kwargs: object) -> Iterator[Metrics | None]:
        for metrics in original(journal, **kwargs):
            used.append(metrics is not None)
            yield metrics

    import contextlib

    monkeypatch.setattr(reportcache, "kept_metrics", contextlib.contextmanager(spy))
    assert [_report(path, *o) for o in options] == first
    assert used == [True, True, True]
    # Two journals, a store, or HTML read as before, never from the file.
    used.clear()
    other = tmp_path / "other.jsonl"
    first_try_success(JournalBuilder(), "x", "agent-x").journal.write_jsonl(other)
    assert _report(path, "--journal", str(other))[0] == 0
    assert used == [] and not _file(other).exists()


def test_a_damaged_row_past_the_header_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = journal_text(mixed_journal().events)
    _save_at(path, text, len(text.splitlines()))
    file = _file(path)
    data = file.read_bytes()
    fields = json.loads(data.split(b"\n", 1)[0])
    size = int(fields["recent_bytes"])
    rows = data[len(data) - size :].replace(b'"task_id"', b'"task_ix"')
    file.write_bytes(data[: len(data) - size] + rows)
    code, _, err = _report(path)
    assert code == 2
    assert f"{file}: a recovery event of an ended task is bad" in err and "delete it" in err


def test_hostile_text_of_ended_and_open_tasks_is_escaped_as_without_the_file(
    tmp_path: Path,
) -> None:
    j = JournalBuilder()
    for n, text in enumerate(HOSTILE):
        t = j.task(f"t-\u202e\x9b{n}", f"agent-\x1b]52;c;aGk=\x07{n}", title=text)
        t.launch().fail_with(Reason.SIGINT)
        t.decide(Strategy.RESUME, lesson=text, systematic_cause=text if n else None)
        t.launch(Strategy.RESUME).exit(ExitInfo(0))
        t.succeed()
    t = j.task("open\x85", "agent-\u2066", title="still \x7f open")
    t.launch().fail_with(Reason.TIMEOUT)
    path = tmp_path / "journal.jsonl"
    _save_at(path, journal_text(j.events), len(j.events))
    for fmt in ("md", "json"):
        got = _cached(path, fmt)
        assert got == _expected(path, fmt)
        assert got is not None and "\x9b" not in got and "\u202e" not in got
        assert "\x1b" not in got
