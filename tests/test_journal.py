"""The journal: round trips, replay after restart, torn lines, corruption, locking, crashes."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from events import any_event
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    Payload,
    TaskFailed,
    TaskSubmitted,
    TaskSucceeded,
)
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.store.journal import Journal, JournalError, replay

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
            j.append(_event(TaskFailed()))
        monkeypatch.setattr(os, "write", real_write)
        assert j.append(_event(TaskFailed())).seq == 2
    assert [e.kind for e in replay(path)] == [EventKind.DECISION, EventKind.TASK_FAILED]


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
