"""The HTML page drawn from the fold kept beside the journal (``journal.jsonl.page``) is the
page drawn from every event, byte for byte, wherever the file was written and whatever was
appended since; a file that does not fit is ignored and written again."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from events import JournalBuilder, first_try_success, random_journal
from hypothesis import given, settings
from hypothesis import strategies as st
from keptfiles import mixed_journal

from pytest_orch_recovery.cli import pagecache
from pytest_orch_recovery.cli.main import main
from pytest_orch_recovery.engine.events import Event, OperatorAction
from pytest_orch_recovery.engine.model import ExitInfo, Reason, Strategy
from pytest_orch_recovery.report import htmltimeline, kept, pagefacts
from pytest_orch_recovery.report.htmlreport import render_html
from pytest_orch_recovery.report.metrics import compute, evaluate
from pytest_orch_recovery.report.pagefacts import PageFacts, PageFold, page_facts
from pytest_orch_recovery.report.timeline import task_lanes
from pytest_orch_recovery.store.history import History
from pytest_orch_recovery.store.journal import journal_text, read_events, replay


def _whole_facts(events: Sequence[Event]) -> PageFacts:
    """What the page drew before it had a fold: every task's lane, every event's time."""
    times = [e.time for e in events]
    lanes = task_lanes(History(events))[: htmltimeline.MAX_TIMELINE_TASKS]
    first, last = (min(times), max(times)) if times else (None, None)
    return PageFacts(len(events), first, last, tuple(lanes))


def _page(facts: PageFacts, events: Sequence[Event], campaign: Any = None) -> str:
    metrics = compute(events)
    return render_html(facts, metrics, evaluate(metrics), campaign=campaign, journals=["j"])


def _save_at(path: Path, text: str, lines: int) -> None:
    """The file as a read of the journal's first ``lines`` lines writes it; then the
    journal is whole again."""
    path.write_text("".join(text.splitlines(keepends=True)[:lines]))
    fold, offset, seq = PageFold(), 0, 0
    for event, end in read_events(path):
        fold.add(event)
        offset, seq = end, event.seq
    pagecache.save(path, fold, offset, seq)
    path.write_text(text)


@contextlib.contextmanager
def _lanes(count: int) -> Iterator[None]:
    """A timeline of ``count`` lanes, so that small journals have tasks it does not draw."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pagefacts, "LANES", count)
        patch.setattr(htmltimeline, "MAX_TIMELINE_TASKS", count)
        yield


@st.composite
def _interleaved(draw: st.DrawFn) -> list[Event]:
    """Random stories whose events are interleaved across tasks (each task's, and each
    operator action after its task's, in order): later tasks appear between an early task's
    events, and an early task is released after later ones began."""
    streams: dict[str, list[Event]] = {}
    for event in draw(random_journal(max_tasks=9)):
        payload = event.payload
        owner = payload.tasks[0] if isinstance(payload, OperatorAction) else event.task_id
        streams.setdefault(owner or "", []).append(event)
    queues = [list(s) for s in streams.values()]
    merged: list[Event] = []
    while queues:
        queue = queues[draw(st.integers(0, len(queues) - 1))]
        merged.append(queue.pop(0))
        queues = [q for q in queues if q]
    return merged


def _journal(path: Path, events: Sequence[Event]) -> tuple[str, list[Event]]:
    text = journal_text(events)
    path.write_text(text)
    return text, replay(path)


@given(
    events=_interleaved(),
    cut=st.floats(0.0, 1.0),
    lanes=st.sampled_from([1, 2, 3, 120]),
)
@settings(max_examples=80, deadline=None)
def test_the_fold_kept_at_any_cut_plus_the_tail_draws_the_whole_page(
    events: list[Event], cut: float, lanes: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp, _lanes(lanes):
        path = Path(tmp) / "journal.jsonl"
        text, events = _journal(path, events)
        whole = _whole_facts(events)
        assert page_facts(events) == whole
        _save_at(path, text, int(len(events) * cut))
        assert pagecache.load(path) is not None
        facts = pagecache.read_facts(path)
        assert facts == whole
        assert _page(facts, events) == _page(whole, events)


def test_a_campaign_page_from_the_kept_fold_has_the_same_fault_marks(tmp_path: Path) -> None:
    j = mixed_journal()
    path = tmp_path / "journal.jsonl"
    text, events = _journal(path, j.events)
    first = events[0].task_id
    campaign = {
        "seed": 7,
        "tier": "sim",
        "agent": "sim",
        "runs": 1,
        "replay": "pytest --orch-chaos --orch-seed 7",
        "control_tasks": 1,
        "ledger": [
            {
                "scenario": "",
                "id": "f1",
                "kind": "sigint",
                "trigger": {"event": "attempt_launched", "n": 1},
                "hits": [
                    {"task": first, "attempt": 1, "status": "exercised", "detail": "<b>x</b>"},
                    {"task": "*", "attempt": 0, "status": "exercised"},
                ],
            }
        ],
    }
    _save_at(path, text, len(events) // 2)
    page = _page(pagecache.read_facts(path), events, campaign)
    assert page == _page(_whole_facts(events), events, campaign)
    assert 'class="fault"' in page and "&lt;b&gt;x&lt;/b&gt;" in page


def _release_early_task_late() -> JournalBuilder:
    """Four tasks; the first escalates, the others succeed, then the first is released and
    recovers: the tail changes a drawn lane and adds one not drawn."""
    j = JournalBuilder()
    early = j.task("early", "agent-e")
    early.launch()
    early.fail_with(Reason.SIGINT)
    early.decide(Strategy.ESCALATE).escalate()
    for n in range(3):
        first_try_success(j, f"later-{n}", f"agent-{n}")
    j.operator_action("fixed the permissions", ["early", "later-0", "nobody"])
    early.launch(Strategy.RESTART)
    early.exit(ExitInfo(0)).succeed()
    first_try_success(j, "last", "agent-last")
    return j


def test_a_release_in_the_tail_redraws_the_early_lane(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text, events = _journal(path, _release_early_task_late().events)
    for lanes in (1, 2, 120):
        with _lanes(lanes):
            for cut in range(len(events) + 1):
                _save_at(path, text, cut)
                facts = pagecache.read_facts(path)
                assert facts == _whole_facts(events), (lanes, cut)
                assert _page(facts, events) == _page(_whole_facts(events), events)
    assert "recovered" in _page(pagecache.read_facts(path), events)


def test_the_tail_is_kept_again_once_it_is_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagecache, "REWRITE_AFTER", 5)
    monkeypatch.setattr(kept, "KEEP_FROM", 1)
    path = tmp_path / "journal.jsonl"
    text, events = _journal(path, mixed_journal().events)
    _save_at(path, text, 3)
    facts = pagecache.read_facts(path)
    stored = pagecache.load(path)
    assert stored is not None and stored[2] == len(events)  # written again at the end
    assert stored[0].facts() == facts == _whole_facts(events)
    _save_at(path, text, len(events) - 2)
    before = pagecache.page_path(path).read_bytes()
    pagecache.read_facts(path)  # two events: read, not written
    assert pagecache.page_path(path).read_bytes() == before


def _damage(path: Path, damage: str) -> None:
    page = pagecache.page_path(path)
    if damage == "cut short":
        page.write_bytes(page.read_bytes()[:-3])
    elif damage == "longer":
        page.write_bytes(page.read_bytes() + b'{"v":1}\n')
    elif damage in ("other code", "other lanes", "more events than the journal"):
        lines = page.read_bytes().split(b"\n", 1)
        header = json.loads(lines[0])
        if damage == "other code":
            header["code"] = "0" * 16
        elif damage == "other lanes":
            header["lanes"] += 1
        else:
            header["events"] += 1
        page.write_bytes(json.dumps(header).encode() + b"\n" + lines[1])
    elif damage == "a time that is text":
        lines = page.read_bytes().split(b"\n", 1)
        header = json.loads(lines[0])
        header["first_time"] = "0"
        page.write_bytes(json.dumps(header).encode() + b"\n" + lines[1])
    elif damage == "another journal":
        # The same length, one time changed in the last line before the file's offset.
        data = path.read_bytes()
        at = data.rindex(b'"time":17', 0, json.loads(page.read_bytes().split(b"\n")[0])["bytes"])
        path.write_bytes(data[:at] + b'"time":16' + data[at + 9 :])
    elif damage == "journal cut back":
        path.write_bytes(path.read_bytes()[:40])
    elif damage == "not json":
        page.write_bytes(b"\x00\xffnot json\n")
    elif damage == "fifo":
        page.unlink()
        os.mkfifo(page)
    else:
        raise AssertionError(damage)


DAMAGE = [
    "cut short",
    "longer",
    "other code",
    "other lanes",
    "more events than the journal",
    "a time that is text",
    "another journal",
    "journal cut back",
    "not json",
    "fifo",
]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_file_that_does_not_fit_is_ignored_and_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.setattr(kept, "KEEP_FROM", 1)
    path = tmp_path / "journal.jsonl"
    text, _ = _journal(path, mixed_journal().events)
    _save_at(path, text, len(text.splitlines()) // 2)
    _damage(path, damage)
    events = replay(path) if damage != "journal cut back" else []
    assert pagecache.load(path) is None
    facts = pagecache.read_facts(path)
    assert facts == _whole_facts(events)
    if events:  # written again, and read next time
        stored = pagecache.load(path)
        assert stored is not None and stored[0].facts() == facts


def test_a_directory_in_its_place_leaves_the_page_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kept, "KEEP_FROM", 1)
    path = tmp_path / "journal.jsonl"
    _, events = _journal(path, mixed_journal().events)
    pagecache.page_path(path).mkdir()
    assert pagecache.read_facts(path) == _whole_facts(events)
    assert pagecache.page_path(path).is_dir()


HOSTILE = (
    "<script>alert(1)</script>\"'><img src=x onerror=alert(2)> \u202e\u2066 \x85\x9b"
    " \x1b]52;c;aGk=\x07"
)


def test_hostile_text_is_escaped_as_without_the_file(tmp_path: Path) -> None:
    j = JournalBuilder()
    first_try_success(j, f"done-{HOSTILE}", f"agent-{HOSTILE}", title=HOSTILE)
    t = j.task(f"open/{HOSTILE}", f"agent-{HOSTILE}", title=HOSTILE)
    t.launch()
    t.fail_with(Reason.SIGINT)
    j.operator_action(HOSTILE, [t.task.task_id])
    path = tmp_path / "journal.jsonl"
    text, events = _journal(path, j.events)
    _save_at(path, text, len(events))
    facts = pagecache.read_facts(path)
    page = _page(facts, events)
    assert page == _page(_whole_facts(events), events)
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page


def test_a_title_json_cannot_keep_leaves_no_file_and_the_same_page(tmp_path: Path) -> None:
    j = JournalBuilder()
    first_try_success(j, "t1", "agent-1", title="half a pair \ud800")
    path = tmp_path / "journal.jsonl"
    j.write_jsonl(path)  # as a journal line says it: an escaped lone surrogate is valid JSON
    events = replay(path)
    fold = PageFold().add_all(events)
    pagecache.save(path, fold, path.stat().st_size, len(events))
    assert not pagecache.page_path(path).exists()
    assert pagecache.read_facts(path) == _whole_facts(events)


def test_the_command_keeps_the_file_once_the_journal_is_long_and_then_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.jsonl"
    _, events = _journal(path, mixed_journal().events)
    args = ["report", "--journal", str(path), "--format", "html"]
    assert main(args) == 0
    whole = capsys.readouterr().out
    assert not pagecache.page_path(path).exists()  # too short to keep one
    monkeypatch.setattr(kept, "KEEP_FROM", len(events))
    used: list[bool] = []
    original = pagecache.load

    def spy(journal: Path) -> Any:
        kept = original(journal)
        used.append(kept is not None)
        return kept

    monkeypatch.setattr(pagecache, "load", spy)
    for _ in range(2):
        assert main(args) == 0
        assert capsys.readouterr().out == whole
    assert used == [False, True]
    # Several journals, or a fleet store, are folded whole: no file beside either.
    other = tmp_path / "other.jsonl"
    other.write_text(journal_text(JournalBuilder().events))
    assert main([*args, "--journal", str(other)]) == 0
    assert not pagecache.page_path(other).exists()
    assert used == [False, True]
