"""Helpers for tests of the files read commands keep beside a journal (``report/kept.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from events import JournalBuilder


def forge_rows(kept: Path, change: Callable[[bytes], bytes]) -> None:
    """The kept file with each section of rows changed by ``change`` (bytes -> bytes), the
    header's byte counts made to fit again: a file someone else wrote."""
    data = kept.read_bytes()
    header = json.loads(data.split(b"\n", 1)[0])
    sizes = [int(header[f"{name}_bytes"]) for name in header["sections"]]
    at = len(data) - sum(sizes)
    head, sections = data[:at], []
    for name, size in zip(header["sections"], sizes, strict=True):
        sections.append(change(data[at : at + size]))
        header[f"{name}_bytes"] = len(sections[-1])
        at += size
    rest = head.split(b"\n", 1)[1]
    kept.write_bytes(json.dumps(header).encode() + b"\n" + rest + b"".join(sections))


DAMAGES = ("cut short", "longer", "other code", "another journal", "not json", "fifo", "directory")


def damage(journal: Path, kept: Path, how: str) -> None:
    """Make the kept file beside ``journal`` one that does not fit it, ``how`` (one of
    :data:`DAMAGES`)."""
    from events import seed_incident

    from pytest_orch_recovery.store.journal import journal_text

    data = kept.read_bytes()
    if how == "cut short":
        kept.write_bytes(data[:-10])
    elif how == "longer":
        kept.write_bytes(data + b"x\x00y\n")
    elif how == "other code":
        header, rest = data.split(b"\n", 1)
        fields = json.loads(header)
        fields["code"] = "0" * 16
        kept.write_bytes(json.dumps(fields).encode() + b"\n" + rest)
    elif how == "another journal":
        journal.write_text(journal_text(seed_incident().events))
    elif how == "not json":
        kept.write_bytes(b"{" + data)
    elif how == "fifo":
        kept.unlink()
        os.mkfifo(kept)
    else:
        kept.unlink()
        kept.mkdir()


def save_at(path: Path, text: str, lines: int, save: Callable[..., None]) -> None:
    """The kept file as a read of the journal's first ``lines`` lines writes it (``save``:
    a command's ``save(journal, history, offset, seq)``); then the journal is whole again."""
    from pytest_orch_recovery.store.snapshot import HistoryFollower

    path.write_text("".join(text.splitlines(keepends=True)[:lines]))
    follower = HistoryFollower(path, every=None)
    follower.refresh()
    save(path, follower.history, follower.offset, follower.seq)
    path.write_text(text)


def mixed_journal(pr: int | None = None) -> JournalBuilder:
    """The seed's incident, a task that succeeded at once (with ``pr``), one still open."""
    from events import first_try_success, seed_incident

    from pytest_orch_recovery.engine.model import Reason

    j = seed_incident()
    first_try_success(j, "late", "agent-late", pr=pr)
    t = j.task("open", "agent-o", deliverables=["c.py"])
    t.launch()
    t.fail_with(Reason.SIGINT)
    return j


def spy_on_reads(monkeypatch: pytest.MonkeyPatch, keeper: Any) -> list[bool]:
    """Whether each call of ``keeper.render_cached`` from now on used the kept file."""
    used: list[bool] = []
    original = keeper.render_cached

    def spy(*args: Any) -> Any:
        chunks = original(*args)
        used.append(chunks is not None)
        return chunks

    monkeypatch.setattr(keeper, "render_cached", spy)
    return used


def writes_then_reads(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    keeper: Any,
    journal: Path,
    reads: list[list[str]],
) -> tuple[list[str], Callable[[], list[str]], list[bool]]:
    """Run each of ``reads`` (a command line) on ``journal`` with the file's threshold just
    above the journal's length (no file written), then just at it: the first read writes the
    file, the next ones read it, the output stays the same. Returns the outputs, a function
    that runs the reads again, and whether each read since used the file."""
    from pytest_orch_recovery.cli.main import main

    def outputs() -> list[str]:
        printed = []
        for words in reads:
            assert main(words) == 0
            printed.append(capsys.readouterr().out)
        return printed

    events = len(journal.read_text().splitlines())
    monkeypatch.setattr(keeper, "CACHE_FROM", events + 1)
    first = outputs()
    assert not keeper.cache_path(journal).exists()  # too short to keep one
    monkeypatch.setattr(keeper, "CACHE_FROM", events)
    used = spy_on_reads(monkeypatch, keeper)
    assert outputs() == first
    assert keeper.cache_path(journal).exists()
    assert used == [False] + [True] * (len(reads) - 1)  # the first read wrote it
    return first, outputs, used


def assert_forged_rows_escaped(kept: Path, word: bytes, read: Callable[[str], str | None]) -> None:
    """Put an OSC 52 sequence and a bidi override in place of ``word`` in the stored rows
    (as someone else would write them): ``read(fmt)`` (table and json) shows them escaped."""
    forge_rows(kept, lambda rows: rows.replace(word, b"\x1b]52;c;aGk=\x07\xe2\x80\xae"))
    for fmt in ("table", "json"):
        got = read(fmt)
        assert got is not None
        assert "\\u001b]52" in got
        assert "\x1b" not in got and "\x07" not in got and "\u202e" not in got
