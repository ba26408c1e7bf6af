"""The journal's typed events: every kind round-trips through its JSON line, old (schema 1)
lines still read, bad fields are refused by name, and docs/journal.md's table names exactly the
fields the classes write."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from events import PAYLOADS, any_event
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.engine.events import (
    AttemptExited,
    Event,
    EventFormatError,
    EventKind,
    FailureAttributed,
    TaskEscalated,
    TaskSubmitted,
    payload_class,
    payload_classes,
)
from pytest_orch_recovery.engine.model import Complexity, Reason, Task

DOCS = Path(__file__).resolve().parent.parent / "docs" / "journal.md"


def _line(event: Event) -> str:
    return json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def test_every_kind_has_one_payload_class_and_a_strategy() -> None:
    assert [c.KIND for c in payload_classes()] == list(EventKind)
    assert set(PAYLOADS) == set(EventKind)
    assert all(payload_class(k).KIND is k for k in EventKind)


@pytest.mark.parametrize("kind", list(EventKind))
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_every_event_kind_round_trips_through_its_json_line(
    kind: EventKind, data: st.DataObject
) -> None:
    event = data.draw(any_event(kind))
    line = _line(event)
    back = Event.from_json(json.loads(line))
    assert back == event
    assert _line(back) == line  # and writes the very same line again


def test_a_schema_1_line_reads_as_it_was_written() -> None:
    # Lines as the coordinator has written them since schema 1.
    submitted = (
        '{"seq":1,"kind":"task_submitted","time":1753257600.0,"task_id":"fake3",'
        '"agent":"task-agent-5030","data":{"task":{"task_id":"fake3","title":"Create /fake3",'
        '"deliverables":["fake3.md"],"tests":null,"agent_type":"claude-code","wants_pr":true,'
        '"prompt":""},"complexity":"simple"}}'
    )
    exited = (
        '{"seq":3,"kind":"attempt_exited","time":1753257840.5,"task_id":"fake3",'
        '"agent":"task-agent-5030","attempt":1,"data":{"exit":{"status":null,"signal":"SIGINT",'
        '"code":130,"timed_out":false,"source":"tmux"},"started_at":1753257601.0,'
        '"ended_at":1753257840.5,"output_tail":"^C","result":null,"session_id":null,'
        '"signals_delivered":["SIGINT"]}}'
    )
    event = Event.from_json(json.loads(submitted))
    assert isinstance(event.payload, TaskSubmitted)
    assert event.payload.task == Task("fake3", "Create /fake3", ("fake3.md",))
    assert event.payload.complexity is Complexity.SIMPLE
    assert _line(event) == submitted
    event = Event.from_json(json.loads(exited))
    assert isinstance(event.payload, AttemptExited) and event.payload.exit is not None
    assert event.payload.exit.signal == 2 and event.payload.signals_delivered == ("SIGINT",)
    assert _line(event) == exited


def test_missing_fields_take_their_defaults() -> None:
    event = Event.from_json({"seq": 1, "kind": "failure_attributed", "time": 0, "task_id": "t"})
    assert isinstance(event.payload, FailureAttributed)
    assert event.payload.attribution.reason is Reason.UNKNOWN and event.payload.partial is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "decision", "data": []}, "field 'data': must be an object, not a list"),
        (
            {"kind": "task_succeeded", "data": {"pr": "7"}},
            "task_succeeded event: field 'pr': must be an integer, not a string",
        ),
        (
            {"kind": "decision", "data": {"decision": {"strategy": "x"}}},
            "decision event: 'x' is not a valid Strategy",
        ),
        (
            {"kind": "operator_action", "data": {"tasks": "t1"}},
            "operator_action event: field 'tasks': must be a list of task ids",
        ),
        (
            {"kind": "attempt_exited", "data": {"ended_at": -1}},
            "attempt_exited event: field 'ended_at': must be a finite number",
        ),
    ],
)
def test_a_bad_field_is_refused_by_name(data: dict[str, object], message: str) -> None:
    with pytest.raises(EventFormatError, match=re.escape(message)):
        Event.from_json({"seq": 1, "time": 0.0, **data})


def _documented() -> dict[str, set[str]]:
    """kind -> the data fields the table's row names (the backquoted words before any
    parenthesis)."""
    rows: dict[str, set[str]] = {}
    text = DOCS.read_text()
    table = text[text.index("| kind | data |") : text.index("\n\n", text.index("| kind | data |"))]
    for line in table.splitlines()[2:]:
        kind, data = (cell.strip() for cell in line.strip("|").split("|", 1))
        flat = re.sub(r"\([^()]*(\([^()]*\)[^()]*)*\)", "", data)
        rows[kind.strip("`")] = set(re.findall(r"`(\w+)`", flat)) - {"key"}
    return rows


def test_docs_journal_table_names_every_field_of_every_kind() -> None:
    documented = _documented()
    assert set(documented) == {str(k) for k in EventKind}
    for kind in EventKind:
        # Each payload field is written under its own name (Event.to_json).
        fields = {f.name for f in dataclasses.fields(payload_class(kind))}  # type: ignore[arg-type]
        assert documented[str(kind)] == fields, kind


CAMPAIGN_LINES = Path(__file__).resolve().parent / "corpus" / "journal-schema1-campaign.jsonl"


def test_a_campaign_journal_written_before_typed_events_reads_and_writes_back_identically() -> None:
    # One line of each kind from `pytest --orch-chaos --orch-seed 1234
    # --orch-report=x.jsonl` on the commit before typed events (compact: no output tails,
    # prompts or result JSON).
    lines = CAMPAIGN_LINES.read_text().splitlines()
    assert {json.loads(line)["kind"] for line in lines} >= {
        "task_submitted",
        "attempt_launched",
        "attempt_exited",
        "failure_attributed",
        "decision",
        "task_succeeded",
        "task_escalated",
        "operator_action",
        "workspace_cleaned",
    }
    for line in lines:
        event = Event.from_json(json.loads(line))
        again = json.dumps(event.to_compact_json(), separators=(",", ":"), ensure_ascii=False)
        assert again == line


def test_a_schema_1_task_failed_line_reads_as_an_escalation() -> None:
    """Schema 1 listed ``task_failed``; the engine never wrote it, and a line of it (by hand,
    by another tool) still reads: as the escalation it amounts to."""
    line = {
        "seq": 7,
        "kind": "task_failed",
        "time": 1753257600.0,
        "task_id": "t1",
        "agent": "task-agent-1",
        "attempt": 2,
        "data": {"why": "recovery budget exhausted", "reason": "timeout"},
    }
    event = Event.from_json(line)
    assert event.kind is EventKind.TASK_ESCALATED
    assert event.payload == TaskEscalated("recovery budget exhausted", None, Reason.TIMEOUT)
    assert event.to_json()["kind"] == "task_escalated"
    assert "task_failed" not in {str(kind) for kind in EventKind}
