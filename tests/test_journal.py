"""The journal: round trips, replay after restart, torn lines, corruption, locking, crashes."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from events import JournalBuilder, any_event, first_try_success, random_journal, seed_incident
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.cli import failurescache, pagecache, partialcache, statuscache
from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    Payload,
    TaskSubmitted,
    TaskSucceeded,
)
from pytest_orch_recovery.engine.model import Reason, Strategy, Task
from pytest_orch_recovery.report.fleetview import FleetView
from pytest_orch_recovery.report.metrics import compute
from pytest_orch_recovery.report.pagefacts import PageFold
from pytest_orch_recovery.report.timeline import task_lanes
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import (
    Journal,
    JournalError,
    journal_text,
    read_events,
    replay,
)
from pytest_orch_recovery.store.snapshot import HistoryFollower, read_history, snapshot_path

_CHILD_TIMEOUT = 60  # seconds; generous bound for a subprocess to start and answer


def _event(payload: Payload | None = None, **kw: Any) -> Event:
    base: dict[str, Any] = {"time": 1.0, "task_id": "fake3", "agent": "task-agent-5030"}
    base.update(kw)
    return Event(DecisionMade() if payload is None else payload, **base)


def _fill(path: Path, n: int) -> list[Event]:
    with Journal(path, fsync=False) as j:
        return [j.append(_event(time=float(i), key=f"fake3:{i}")) for i in range(n)]


def test_in_memory_journal_indexes_events() -> None:
    j = Journal(None)
    a = j.append(_event(TaskSubmitted.of(Task("fake3", "Fake 3"))))
    b = j.append(_event(AttemptLaunched(), task_id="other", key="other:1"))
    c = j.append(_event(DecisionMade(), key="fake3:2"))
    assert [e.seq for e in j.events()] == [1, 2, 3] and len(j) == 3
    assert j.events_for("fake3") == [a, c] and j.events_for("nobody") == []
    assert j.has_key("other:1") and j.has_key("fake3:2") and not j.has_key("fake3:1")
    assert b.seq == 2 and j.path is None


def test_round_trip_writes_one_compact_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    written = _fill(path, 3)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert lines[0] == json.dumps(written[0].to_json(), separators=(",", ":"))
    assert replay(path) == written


def test_reopen_replays_and_continues_seq(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    first = _fill(path, 5)
    with Journal(path) as j:
        assert list(j.events()) == first
        assert j.has_key("fake3:4") and len(j.events_for("fake3")) == 5
        nxt = j.append(_event(TaskSucceeded(first_try=False)))
    assert nxt.seq == 6
    assert [e.seq for e in replay(path)] == [1, 2, 3, 4, 5, 6]


def test_torn_last_line_is_ignored_by_replay_and_cut_on_open(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    written = _fill(path, 3)
    whole = path.read_bytes()
    with path.open("ab") as handle:
        handle.write(b'{"seq":4,"kind":"attempt_ex')  # a crash mid-write
    assert replay(path) == written
    assert path.read_bytes() == whole + b'{"seq":4,"kind":"attempt_ex'  # replay is read-only
    with Journal(path) as j:
        assert list(j.events()) == written
        assert path.read_bytes() == whole  # repaired
        assert j.append(_event(AttemptExited())).seq == 4
    assert [e.seq for e in replay(path)] == [1, 2, 3, 4]
    assert all(json.loads(line) for line in path.read_text().splitlines())


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"seq":2,"kind":"coffee_break","time":1}', "unknown event kind 'coffee_break'"),
        (b'{"seq":2,"time":1}', "missing or unknown field 'kind'"),
        (b"[2]", "not a journal event"),
        (b'{"seq":7,"kind":"decision","time":1}', "field 'seq' is 7, expected 2"),
        (b'{"seq":"2","kind":"decision","time":1}', "field 'seq' is '2'"),
        (b"", "invalid JSON"),
    ],
)
def test_bad_line_in_the_middle_names_file_and_line(
    tmp_path: Path, bad: bytes, fragment: str
) -> None:
    path = tmp_path / "journal.jsonl"
    _fill(path, 3)
    lines = path.read_bytes().split(b"\n")
    lines[1] = bad
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match=f"^{path}:2: ") as info:
        replay(path)
    assert fragment in str(info.value)
    with pytest.raises(JournalError, match=f"^{path}:2: "):
        Journal(path)
    assert path.read_bytes() == b"\n".join(lines)  # an error never truncates anything


def test_non_utf8_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    _fill(path, 2)
    path.write_bytes(path.read_bytes() + b'{"x":"\xff"}\n')
    with pytest.raises(JournalError, match=f"^{path}:3: not UTF-8"):
        replay(path)


def test_unserialisable_event_is_refused_without_using_a_seq(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.jsonl") as j:
        with pytest.raises(JournalError, match="seq 1 is not JSON"):
            j.append(_event(AttemptExited(result={"files": {"a.md"}})))
        with pytest.raises(JournalError, match="seq 1: field 'time': must be a finite number"):
            j.append(_event(time=math.nan))
        assert j.append(_event()).seq == 1
    assert len(replay(tmp_path / "j.jsonl")) == 1


def test_failed_write_leaves_no_partial_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    real_write = os.write
    with Journal(path) as j:
        j.append(_event())

        def half_then_enospc(fd: int, data: Any) -> int:
            if fd == j._fd and len(data) > 10:
                real_write(fd, bytes(data[:10]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", half_then_enospc)
        with pytest.raises(JournalError, match="No space left on device"):
            j.append(_event(TaskSucceeded()))
        monkeypatch.setattr(os, "write", real_write)
        assert j.append(_event(TaskSucceeded())).seq == 2
    assert [e.kind for e in replay(path)] == [EventKind.DECISION, EventKind.TASK_SUCCEEDED]


def test_fsync_flag_controls_syncing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    with Journal(tmp_path / "on.jsonl") as j:
        j.append(_event())
        j.append(_event())
    assert len(synced) == 2
    with Journal(tmp_path / "off.jsonl", fsync=False) as j:
        j.append(_event())
    assert len(synced) == 2


def test_closed_journal_refuses_appends(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.close()
    j.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        j.append(_event())


def test_replay_of_a_missing_journal_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="cannot read journal"):
        replay(tmp_path / "missing.jsonl")


def test_second_journal_in_this_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path), pytest.raises(JournalError, match="locked by another process"):
        Journal(path)
    with Journal(path) as again:  # released on close
        assert again.events() == ()


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_lock_refusal_from_a_second_process(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    _fill(path, 2)
    with _child(
        """
        import sys
        from pathlib import Path
        from pytest_orch_recovery.store.journal import Journal
        with Journal(Path(sys.argv[1])) as j:
            print(len(j.events()), flush=True)
            sys.stdin.readline()  # hold the lock until the parent says so
        """,
        str(path),
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "2"
            with pytest.raises(JournalError, match=f"^{path}: journal is locked by another"):
                Journal(path)
            assert len(replay(path)) == 2  # reading needs no lock
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=_CHILD_TIMEOUT) == 0
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(timeout=_CHILD_TIMEOUT)
    with Journal(path) as j:
        assert j.append(_event()).seq == 3


@pytest.mark.parametrize("fsync", [False, True])
def test_sigkill_mid_append_leaves_a_replayable_journal(tmp_path: Path, fsync: bool) -> None:
    path = tmp_path / "j.jsonl"
    acknowledged = 0
    with _child(
        """
        import sys
        from pathlib import Path
        from pytest_orch_recovery.store.journal import Journal
        from pytest_orch_recovery.engine.events import AttemptExited, Event
        with Journal(Path(sys.argv[1]), fsync=sys.argv[2] == "1") as j:
            for i in range(1_000_000):
                e = j.append(Event(AttemptExited(output_tail="x" * (i % 3000)), float(i),
                                   task_id=f"t{i % 7}"))
                print(e.seq, flush=True)
        """,
        str(path),
        "1" if fsync else "0",
    ) as writer:
        try:
            assert writer.stdout is not None
            while acknowledged < 200:
                line = writer.stdout.readline()
                assert line, "the writer died before it was killed"
                acknowledged = int(line)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=_CHILD_TIMEOUT)
    assert writer.returncode == -signal.SIGKILL
    events = replay(path)
    assert len(events) >= acknowledged  # nothing acknowledged is lost
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    with Journal(path) as j:
        assert len(j.events()) == len(events)
        assert j.append(_event()).seq == len(events) + 1
    for line in path.read_text().splitlines():
        assert json.loads(line)["kind"] in {k.value for k in EventKind}


_events = any_event().map(lambda e: dataclasses.replace(e, seq=0))


@given(events=st.lists(_events, max_size=12))
@settings(max_examples=80, deadline=None)
def test_any_event_sequence_round_trips_identically(events: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.jsonl"
        with Journal(path, fsync=False) as j:
            stored = [j.append(e) for e in events]
        assert [(s.seq, s) for s in stored] == [
            (i, dataclasses.replace(e, seq=i)) for i, e in enumerate(events, 1)
        ]
        assert replay(path) == stored
        with Journal(path, fsync=False) as again:
            assert list(again.events()) == stored
            keys = {e.key for e in events if e.key is not None}
            assert all(again.has_key(k) for k in keys)


# ------------------------------------------------------------------- streaming and snapshots


def _story_journal(path: Path, events: list[Event]) -> Path:
    path.write_text(journal_text(events))
    return path


@given(events=random_journal(), cut=st.floats(0.0, 1.0))
@settings(max_examples=40, deadline=None)
def test_a_snapshot_plus_the_tail_folds_like_the_whole_journal(
    events: list[Event], cut: float
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "journal.jsonl"
        split = int(len(events) * cut)
        text = journal_text(events)
        lines = text.splitlines(keepends=True)
        path.write_text("".join(lines[:split]))
        read_history(path, every=1)  # writes the snapshot at ``split`` events
        assert snapshot_path(path).exists() == (split > 0)
        path.write_text(text)
        whole = History(replay(path))
        history = read_history(path, every=None)
        assert compute(history) == compute(whole)
        assert FleetView(history).statuses(now=2e9) == FleetView(whole).statuses(now=2e9)
        assert FleetView(history).partial_work() == FleetView(whole).partial_work()
        assert task_lanes(history) == task_lanes(whole)


def test_read_events_resumes_at_an_offset(tmp_path: Path) -> None:
    written = _fill(tmp_path / "j.jsonl", 5)
    streamed = list(read_events(tmp_path / "j.jsonl"))
    assert [e for e, _ in streamed] == written
    event, offset = streamed[1]
    rest = list(read_events(tmp_path / "j.jsonl", start=offset, seq=event.seq))
    assert [e for e, _ in rest] == written[2:]
    with pytest.raises(JournalError, match=r"field 'seq' is 3, expected 5"):
        list(read_events(tmp_path / "j.jsonl", start=offset, seq=4))


def test_a_stale_snapshot_is_rebuilt_from_the_whole_journal(tmp_path: Path) -> None:
    path = _story_journal(tmp_path / "j.jsonl", seed_incident().events)
    read_history(path, every=1)
    # The journal is replaced by another one: the snapshot no longer matches it.
    j = JournalBuilder()
    first_try_success(j, "other", "agent-other")
    _story_journal(path, j.events)
    history = read_history(path, every=None)
    assert list(history.tasks) == ["other"]


def test_a_pickle_snapshot_is_refused_and_rebuilt(tmp_path: Path) -> None:
    """Snapshots were pickles once (format 1); one that asks for code runs none of it."""
    path = _story_journal(tmp_path / "j.jsonl", seed_incident().events)
    read_history(path, every=1)
    header = json.loads(snapshot_path(path).read_bytes().split(b"\n", 1)[0])
    marker = tmp_path / "ran"
    for fmt in (1, header["format"]):
        evil = pickle.dumps(_Evil(str(marker)))
        line = json.dumps({**header, "format": fmt}).encode()
        snapshot_path(path).write_bytes(line + b"\n" + evil)
        history = read_history(path, every=None)
        assert not marker.exists()
        assert compute(history) == compute(History(replay(path)))


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mknod, (self.path,))


def _snapshot_lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in snapshot_path(path).read_text().splitlines()]


@pytest.mark.parametrize(
    "damage",
    [
        "a string where a time belongs",
        "an unknown phase",
        "a shared value of another class",
        "a missing task",
        "a class it never holds",
    ],
)
def test_a_snapshot_row_that_does_not_fit_the_fold_is_refused(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _story_journal(tmp_path / "j.jsonl", seed_incident().events)
    read_history(path, every=1)
    lines = _snapshot_lines(path)
    task_rows = [i for i, row in enumerate(lines) if isinstance(row, list) and i > 1]
    values = [i for i, row in enumerate(lines) if isinstance(row, dict) and i > 0]
    first = lines[task_rows[0]]
    if damage == "a string where a time belongs":
        first[1] = "1753257600"
    elif damage == "an unknown phase":
        first[first.index("succeeded")] = "exploded"
    elif damage == "a shared value of another class":
        value = lines[values[0]]["v"]
        value[0] = "WorkItem" if value[0] != "WorkItem" else "ExitInfo"
    elif damage == "a missing task":
        del lines[task_rows[-1]]
    else:
        lines[values[0]]["v"][0] = "Popen"
    snapshot_path(path).write_text("".join(json.dumps(row) + "\n" for row in lines))
    with caplog.at_level("INFO", logger="pytest_orch_recovery.store.snapshot"):
        history = read_history(path, every=None)
    assert "snapshot not used, rebuilding" in caplog.text
    assert compute(history) == compute(History(replay(path)))


def test_equal_values_are_written_once_and_read_back_shared(tmp_path: Path) -> None:
    j = JournalBuilder()
    for n in range(6):
        first_try_success(j, f"t{n}", f"agent-{n}")
    path = _story_journal(tmp_path / "j.jsonl", j.events)
    read_history(path, every=1)
    lines = _snapshot_lines(path)
    values = [row["v"] for row in lines[1:] if isinstance(row, dict)]
    exits = [value for value in values if value[0] == "ExitInfo"]
    assert len(exits) == 1  # six clean exits, one value
    history = read_history(path, every=None)
    tasks = list(history.tasks.values())
    assert tasks[0].last_exit is tasks[5].last_exit
    assert tasks[0].last_exit == History(replay(path)).tasks["t0"].last_exit


def _schema1_journal(path: Path) -> Path:
    """The schema-1 corpus (one line of each kind a campaign wrote), renumbered as one
    journal."""
    corpus = Path(__file__).resolve().parent / "corpus" / "journal-schema1-campaign.jsonl"
    events = [Event.from_json(json.loads(line)) for line in corpus.read_text().splitlines()]
    path.write_text(journal_text(events))
    return path


def _seed_journal(path: Path) -> Path:
    return _story_journal(path, seed_incident().events)


def _mixed_journal(path: Path) -> Path:
    """Every outcome and an operator's release, interleaved with orphaned workspaces."""
    j = seed_incident()
    first_try_success(j, "late", "agent-late")
    j.orphaned("/w/a")
    t = j.task("gave-up", "agent-g", deliverables=["a.py", "b.py"])
    t.launch()
    t.fail_with(Reason.PERMISSION)
    t.decide(Strategy.ESCALATE).escalate()
    t = j.task("open", "agent-o", deliverables=["c.py"])
    t.launch()
    t.fail_with(Reason.SIGINT)
    return _story_journal(path, j.events)


_CLI_READS = [
    ["status"],
    ["status", "--format", "json"],
    ["status", "--budget", "9"],
    ["failures"],
    ["failures", "--format", "json"],
    ["failures", "--evidence", "3", "--agent", "task-agent-5030"],
    ["partial"],
    ["partial", "--format", "json"],
    ["partial", "--agent", "task-agent-5030"],
    ["report"],
    ["report", "--format", "json"],
    ["report", "--format", "html"],
]


@pytest.mark.parametrize("journal", [_schema1_journal, _seed_journal, _mixed_journal])
def test_the_read_commands_print_the_same_with_and_without_a_snapshot(
    tmp_path: Path,
    journal: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pytest_orch_recovery.cli.main import main

    monkeypatch.setattr("time.time", lambda: 1_900_000_000.0)  # elapsed of open tasks
    path = journal(tmp_path / "journal.jsonl")

    def outputs() -> list[str]:
        printed = []
        for words in _CLI_READS:
            assert main([words[0], "--journal", str(path), *words[1:]]) == 0
            printed.append(capsys.readouterr().out)
        return printed

    whole = outputs()
    assert not snapshot_path(path).exists()  # too short to write one of its own
    keepers = {"status": statuscache, "failures": failurescache, "partial": partialcache}
    assert not any(k.cache_path(path).exists() for k in keepers.values())
    assert not pagecache.page_path(path).exists()
    kept_rows_used: list[tuple[str, bool]] = []
    for name, keeper in keepers.items():

        def spy(*args: Any, name: str = name, original: Any = keeper.render_cached) -> Any:
            chunks = original(*args)
            kept_rows_used.append((name, chunks is not None))
            return chunks

        monkeypatch.setattr(keeper, "render_cached", spy)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    for cut in sorted({1, len(lines) // 2, len(lines)}):
        path.write_text("".join(lines[:cut]))
        follower = HistoryFollower(path, every=1)
        history = follower.refresh()
        for keeper in keepers.values():
            keeper.save(path, history, follower.offset, follower.seq)
        page = PageFold().add_all(event for event, _ in read_events(path))
        pagecache.save(path, page, follower.offset, follower.seq)
        path.write_text(text)
        follower = HistoryFollower(path, every=None)
        follower.refresh()
        assert follower.snapshot_seq == cut  # the reads below start from it
        assert pagecache.load(path) is not None  # and so does the HTML report's
        kept_rows_used.clear()
        assert outputs() == whole, f"snapshot after {cut} of {len(lines)} lines"
        if cut == len(lines):  # every status, failures and partial read used its kept rows
            expected = [(words[0], True) for words in _CLI_READS if words[0] in keepers]
            assert kept_rows_used == expected


def test_a_follower_reads_only_what_was_appended(tmp_path: Path) -> None:
    j = seed_incident()
    events = j.events
    path = tmp_path / "j.jsonl"
    lines = journal_text(events).splitlines(keepends=True)
    path.write_text("".join(lines[:10]))
    follower = HistoryFollower(path, every=None)
    follower.refresh()
    assert follower.seq == 10
    # Scribble over the lines already folded: a follower never reads them again.
    with open(path, "r+b") as handle:
        handle.write(b"#" * 20)
    with open(path, "a") as handle:
        handle.write("".join(lines[10:]))
    history = follower.refresh()
    assert follower.seq == len(events)
    assert compute(history) == compute(events)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_snapshot_that_is_no_regular_file_is_ignored(tmp_path: Path, kind: str) -> None:
    path = _story_journal(tmp_path / "j.jsonl", seed_incident().events)
    if kind == "fifo":
        os.mkfifo(snapshot_path(path))
    else:
        snapshot_path(path).symlink_to("/dev/zero")
    history = read_history(path, every=None)
    assert compute(history) == compute(History(replay(path)))


def test_reads_leave_the_garbage_collector_as_they_found_it(tmp_path: Path) -> None:
    import gc

    path = _story_journal(tmp_path / "j.jsonl", seed_incident().events)
    assert gc.isenabled()
    read_history(path, every=1)
    replay(path)
    Journal(path).close()
    assert gc.isenabled()
    gc.disable()
    try:
        read_history(path, every=None)
        Journal(path).close()
        assert not gc.isenabled()
    finally:
        gc.enable()
