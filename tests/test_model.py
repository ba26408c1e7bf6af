"""The domain vocabulary: exit normalisation, signal parsing, tasks, and JSON round trips."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_orch_recovery.engine.events import Event, PartialSummary, TaskSubmitted
from pytest_orch_recovery.engine.model import (
    COMPLEX_TASK_MIN_FILES,
    TIMEOUT_EXIT_STATUS,
    Attribution,
    Checkpoint,
    Complexity,
    Decision,
    Evidence,
    ExitInfo,
    PartialWork,
    PullRequest,
    Reason,
    Strategy,
    Task,
    WorkItem,
    WorkKind,
    full_plan,
    signal_number,
)

# Signals Python names (the ones the journal can write as a name and read back).
NAMED_SIGNALS = sorted(int(s) for s in signal.Signals)


def _via_json_text(data: dict[str, Any]) -> Any:
    """What a journal line holds: the object written as JSON text and read back."""
    return json.loads(json.dumps(data))


# --------------------------------------------------------------------------- from_returncode


@pytest.mark.parametrize(
    ("returncode", "sig", "name"),
    [(-2, 2, "SIGINT"), (-9, 9, "SIGKILL"), (-15, 15, "SIGTERM"), (-1, 1, "SIGHUP")],
)
def test_negative_returncode_is_a_signal(returncode: int, sig: int, name: str) -> None:
    info = ExitInfo.from_returncode(returncode)
    assert info.status is None
    assert info.signal == sig
    assert info.signal_name == name
    assert info.source == "returncode"
    assert not info.timed_out
    assert not info.clean
    assert info.display_code == 128 + sig


def test_returncode_zero_is_clean() -> None:
    info = ExitInfo.from_returncode(0)
    assert info == ExitInfo(status=0, source="returncode")
    assert info.clean
    assert info.display_code == 0
    assert info.signal_name is None


def test_returncode_one_is_a_plain_failure() -> None:
    info = ExitInfo.from_returncode(1)
    assert info.status == 1 and info.signal is None and not info.timed_out
    assert not info.clean
    assert info.display_code == 1


def test_positive_returncode_uses_shell_rules_but_keeps_its_source() -> None:
    # A shell wrapper's returncode of 130 means its child died of SIGINT.
    info = ExitInfo.from_returncode(130)
    assert info == ExitInfo(status=130, signal=2, source="returncode")
    info = ExitInfo.from_returncode(TIMEOUT_EXIT_STATUS)
    assert info.timed_out and info.source == "returncode"


# --------------------------------------------------------------------------- from_shell_status


@pytest.mark.parametrize(
    ("status", "sig", "name"),
    [(130, 2, "SIGINT"), (137, 9, "SIGKILL"), (143, 15, "SIGTERM"), (129, 1, "SIGHUP")],
)
def test_shell_128_plus_n_is_a_signal(status: int, sig: int, name: str) -> None:
    info = ExitInfo.from_shell_status(status)
    assert info.status == status
    assert info.signal == sig
    assert info.signal_name == name
    assert info.source == "shell"
    assert not info.timed_out
    assert not info.clean
    # What the person saw in the shell is what we display.
    assert info.display_code == status


def test_coreutils_timeout_124_is_timed_out_without_a_signal() -> None:
    assert TIMEOUT_EXIT_STATUS == 124
    info = ExitInfo.from_shell_status(124)
    assert info.timed_out
    assert info.signal is None
    assert info.status == 124
    assert info.display_code == 124
    assert not info.clean


@pytest.mark.parametrize("status", [123, 125, 126, 127])
def test_statuses_next_to_124_are_not_timeouts(status: int) -> None:
    info = ExitInfo.from_shell_status(status)
    assert info == ExitInfo(status=status, source="shell")


@pytest.mark.parametrize("status", [128, 200, 255])
def test_status_above_128_that_is_not_a_signal_stays_a_status(status: int) -> None:
    # 128 is 128+0 (no signal 0); 200-128=72 and 255-128=127 are no signals at all.
    info = ExitInfo.from_shell_status(status)
    assert info.signal is None
    assert info.status == status
    assert info.display_code == status
    assert not info.timed_out


def test_shell_status_source_can_be_named() -> None:
    assert ExitInfo.from_shell_status(1, source="wrapper").source == "wrapper"


@given(st.integers(min_value=0, max_value=255))
@settings(max_examples=100, deadline=None)
def test_shell_status_is_kept_and_signal_only_for_deliverable_signals(status: int) -> None:
    info = ExitInfo.from_shell_status(status)
    assert info.status == status
    assert info.display_code == status
    if info.signal is not None:
        assert info.signal == status - 128
        assert 1 <= info.signal <= signal.SIGRTMAX  # real-time signals count too
    else:
        assert status <= 128 or status - 128 > signal.SIGRTMAX
    assert info.timed_out == (status == 124)
    assert info.clean == (status == 0)


# --------------------------------------------------------------------------- from_tmux


def test_tmux_signal_wins_over_status() -> None:
    info = ExitInfo.from_tmux("", "2")
    assert info == ExitInfo(status=None, signal=2, source="tmux")
    assert info.display_code == 130


def test_tmux_signal_as_int() -> None:
    assert ExitInfo.from_tmux(None, 9) == ExitInfo(status=None, signal=9, source="tmux")


def test_tmux_status_only() -> None:
    assert ExitInfo.from_tmux("3", "") == ExitInfo(status=3, source="tmux")
    assert ExitInfo.from_tmux(3, None) == ExitInfo(status=3, source="tmux")


def test_tmux_status_zero_is_clean() -> None:
    info = ExitInfo.from_tmux("0", "")
    assert info.clean and info.source == "tmux"


def test_tmux_status_text_is_stripped() -> None:
    assert ExitInfo.from_tmux(" 1\n", " ") == ExitInfo(status=1, source="tmux")


def test_tmux_status_follows_shell_rules() -> None:
    # The pane ran a shell whose child died of SIGINT: tmux reports status 130, no signal.
    assert ExitInfo.from_tmux("130", "") == ExitInfo(status=130, signal=2, source="tmux")
    assert ExitInfo.from_tmux("124", "").timed_out


def test_tmux_signal_zero_means_no_signal() -> None:
    assert ExitInfo.from_tmux("1", "0") == ExitInfo(status=1, source="tmux")


@pytest.mark.parametrize(("status", "sig"), [("", ""), (None, None), ("", None), (" ", " ")])
def test_tmux_with_nothing_known(status: str | None, sig: str | None) -> None:
    info = ExitInfo.from_tmux(status, sig)
    assert info == ExitInfo(status=None, source="tmux")
    assert info.display_code is None
    assert info.signal_name is None
    assert not info.clean


def test_tmux_garbage_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ExitInfo.from_tmux("abc", "")


# --------------------------------------------------------------------------- derived values


def test_with_timeout_keeps_everything_else() -> None:
    info = ExitInfo.from_shell_status(143, source="tmux")
    timed = info.with_timeout()
    assert timed.timed_out
    assert (timed.status, timed.signal, timed.source) == (143, 15, "tmux")
    assert not info.timed_out  # frozen: the original is untouched


def test_with_timeout_makes_a_zero_exit_unclean() -> None:
    assert not ExitInfo.from_returncode(0).with_timeout().clean


def test_display_code_prefers_the_status() -> None:
    assert ExitInfo(status=1, signal=9).display_code == 1
    assert ExitInfo(status=None, signal=9).display_code == 137
    assert ExitInfo(status=None).display_code is None


def test_unnamed_signal_has_a_generic_name() -> None:
    assert ExitInfo(status=None, signal=40).signal_name == "SIG40"


def test_clean_needs_status_zero_and_nothing_else() -> None:
    assert ExitInfo(status=0).clean
    assert not ExitInfo(status=0, signal=2).clean
    assert not ExitInfo(status=0, timed_out=True).clean
    assert not ExitInfo(status=None).clean


# --------------------------------------------------------------------------- ExitInfo JSON


def test_exit_json_shape() -> None:
    assert ExitInfo.from_shell_status(130, source="tmux").to_json() == {
        "status": 130,
        "signal": "SIGINT",
        "code": 130,
        "timed_out": False,
        "source": "tmux",
    }
    assert ExitInfo.from_returncode(-9).to_json()["code"] == 137


def test_exit_from_json_defaults() -> None:
    assert ExitInfo.from_json({"status": 1}) == ExitInfo(status=1, source="returncode")
    assert ExitInfo.from_json({"signal": "INT"}) == ExitInfo(status=None, signal=2)


@pytest.mark.parametrize(
    "info",
    [
        ExitInfo.from_returncode(-2),
        ExitInfo.from_returncode(0),
        ExitInfo.from_shell_status(137),
        ExitInfo.from_shell_status(124),
        ExitInfo.from_shell_status(200),
        ExitInfo.from_tmux("", ""),
        ExitInfo.from_tmux("", "15").with_timeout(),
    ],
)
def test_exit_json_round_trip_examples(info: ExitInfo) -> None:
    assert ExitInfo.from_json(_via_json_text(info.to_json())) == info


exit_infos = st.builds(
    ExitInfo,
    status=st.none() | st.integers(min_value=0, max_value=255),
    signal=st.none() | st.sampled_from(NAMED_SIGNALS),
    timed_out=st.booleans(),
    source=st.sampled_from(["returncode", "shell", "tmux", "wrapper"]),
)


@given(exit_infos)
@settings(max_examples=150, deadline=None)
def test_exit_json_round_trip(info: ExitInfo) -> None:
    assert ExitInfo.from_json(_via_json_text(info.to_json())) == info


@given(st.integers(min_value=-64, max_value=255))
@settings(max_examples=150, deadline=None)
def test_exit_from_any_named_returncode_round_trips(returncode: int) -> None:
    info = ExitInfo.from_returncode(returncode)
    assert ExitInfo.from_json(_via_json_text(info.to_json())) == info


def test_exit_killed_by_a_realtime_signal_round_trips() -> None:
    info = ExitInfo.from_returncode(-40)
    assert ExitInfo.from_json(_via_json_text(info.to_json())) == info


# --------------------------------------------------------------------------- signal_number


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("INT", 2),
        ("SIGINT", 2),
        ("sigint", 2),
        ("int", 2),
        ("SigInt", 2),
        (" KILL ", 9),
        ("TERM", 15),
        ("2", 2),
        ("15", 15),
        ("-9", 9),
        (2, 2),
    ],
)
def test_signal_number_parses(text: str | int, number: int) -> None:
    assert signal_number(text) == number


@pytest.mark.parametrize("text", ["", "BOGUS", "SIGBOGUS", "sig", "SIG_DFL", "2x"])
def test_signal_number_rejects_unknown_names(text: str) -> None:
    with pytest.raises(ValueError, match="unknown signal name"):
        signal_number(text)


@given(st.sampled_from(list(signal.Signals)))
@settings(max_examples=50, deadline=None)
def test_signal_number_accepts_every_spelling_of_a_named_signal(sig: signal.Signals) -> None:
    name = sig.name
    for spelling in (name, name.lower(), name.removeprefix("SIG"), str(int(sig))):
        assert signal_number(spelling) == int(sig)


# --------------------------------------------------------------------------- tasks


def _task(n_files: int, **kw: Any) -> Task:
    return Task("t1", "title", tuple(f"f{i}.py" for i in range(n_files)), **kw)


@pytest.mark.parametrize(
    ("n_files", "complexity"),
    [
        (0, Complexity.SIMPLE),
        (1, Complexity.SIMPLE),
        (4, Complexity.SIMPLE),
        (5, Complexity.COMPLEX),
        (6, Complexity.COMPLEX),
        (20, Complexity.COMPLEX),
    ],
)
def test_task_complexity_boundary(n_files: int, complexity: Complexity) -> None:
    assert COMPLEX_TASK_MIN_FILES == 5
    assert _task(n_files).complexity is complexity


def test_full_plan_with_tests_and_pr() -> None:
    plan = full_plan(_task(2, tests="pytest -q"))
    assert plan == (
        WorkItem(WorkKind.WRITE, "f0.py"),
        WorkItem(WorkKind.WRITE, "f1.py"),
        WorkItem(WorkKind.TEST),
        WorkItem(WorkKind.COMMIT),
        WorkItem(WorkKind.PUSH),
        WorkItem(WorkKind.OPEN_PR),
    )


def test_full_plan_without_tests_or_pr() -> None:
    plan = full_plan(_task(1, wants_pr=False))
    assert plan == (
        WorkItem(WorkKind.WRITE, "f0.py"),
        WorkItem(WorkKind.COMMIT),
        WorkItem(WorkKind.PUSH),
    )


def test_full_plan_empty_tests_string_means_no_tests() -> None:
    assert WorkItem(WorkKind.TEST) not in full_plan(_task(1, tests=""))


def test_full_plan_with_no_deliverables() -> None:
    assert [w.kind for w in full_plan(_task(0))] == [
        WorkKind.COMMIT,
        WorkKind.PUSH,
        WorkKind.OPEN_PR,
    ]


def test_work_item_describe() -> None:
    assert WorkItem(WorkKind.WRITE, "a/b.py").describe() == "write a/b.py"
    assert WorkItem(WorkKind.OPEN_PR).describe() == "open the PR"
    assert {WorkItem(k).describe() for k in WorkKind if k is not WorkKind.WRITE} == {
        "run the tests",
        "make the failing tests pass",
        "git commit",
        "git push",
        "open the PR",
    }


def test_task_from_json_defaults() -> None:
    task = Task.from_json({"task_id": "t", "title": "x"})
    assert task == Task("t", "x")
    assert task.agent_type == "claude-code" and task.wants_pr and task.tests is None


# --------------------------------------------------------------------------- Hypothesis round trips

texts = st.text(max_size=30)
paths = st.text(alphabet="abcdefghij/._-", min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# to_json rounds weights, confidences and delays to 3 decimals: generate values it keeps.
three_decimals = st.integers(min_value=0, max_value=10**7).map(lambda n: n / 1000)

tasks = st.builds(
    Task,
    task_id=texts,
    title=texts,
    deliverables=st.lists(paths, max_size=8).map(tuple),
    tests=st.none() | texts,
    agent_type=texts,
    wants_pr=st.booleans(),
    prompt=texts,
)
work_items = st.one_of(
    st.builds(WorkItem, st.just(WorkKind.WRITE), paths),
    st.builds(WorkItem, st.sampled_from([k for k in WorkKind if k is not WorkKind.WRITE])),
)
evidences = st.builds(
    Evidence,
    kind=st.sampled_from(["exit", "result", "log", "deliverables", "supervisor", "checkpoint"]),
    reason=st.sampled_from(Reason),
    weight=three_decimals,
    detail=texts,
    source=st.none() | texts,
    line=st.none() | st.integers(min_value=1, max_value=10**6),
)
attributions = st.builds(
    Attribution,
    reason=st.sampled_from(Reason),
    confidence=three_decimals,
    evidence=st.lists(evidences, max_size=4).map(tuple),
    retry_after=st.none() | finite,
    api_status=st.none() | st.integers(min_value=100, max_value=599),
)
decisions = st.builds(
    Decision,
    strategy=st.sampled_from(Strategy),
    why=texts,
    rule=texts,
    delay=three_decimals,
    agent_type=st.none() | texts,
    work=st.lists(work_items, max_size=6).map(tuple),
    resume_session=st.none() | texts,
    systematic_cause=st.none() | texts,
    lesson=texts,
    remedies=st.lists(texts, max_size=3).map(tuple),
)


@given(tasks)
@settings(max_examples=100, deadline=None)
def test_task_round_trip(task: Task) -> None:
    assert Task.from_json(_via_json_text(task.to_json())) == task


@given(work_items)
@settings(max_examples=50, deadline=None)
def test_work_item_round_trip(item: WorkItem) -> None:
    assert WorkItem.from_json(_via_json_text(item.to_json())) == item


@given(decisions)
@settings(max_examples=100, deadline=None)
def test_decision_round_trip(decision: Decision) -> None:
    assert Decision.from_json(_via_json_text(decision.to_json())) == decision


@given(attributions)
@settings(max_examples=100, deadline=None)
def test_attribution_round_trip(attribution: Attribution) -> None:
    assert Attribution.from_json(_via_json_text(attribution.to_json())) == attribution


def test_to_json_rounds_to_three_decimals() -> None:
    # Documented lossy spots: the journal keeps milliseconds and three-digit confidences.
    d = Decision(Strategy.RESUME, "why", "rule", delay=1.23456)
    assert Decision.from_json(d.to_json()).delay == 1.235
    a = Attribution(Reason.SIGINT, 0.98765, (Evidence("exit", Reason.SIGINT, 0.44444, "130"),))
    back = Attribution.from_json(a.to_json())
    assert back.confidence == 0.988 and back.evidence[0].weight == 0.444


def test_event_json_omits_unset_fields() -> None:
    assert Event(TaskSubmitted(task=None), 1.5).to_json() == {
        "seq": 0,
        "kind": "task_submitted",
        "time": 1.5,
        "data": {"complexity": "simple"},
    }


def test_evidence_json_omits_unset_source_and_line() -> None:
    out = Evidence("log", Reason.API_ERROR, 0.5, "529").to_json()
    assert "source" not in out and "line" not in out


# ------------------------------------------------------------------- checkpoints, partial work


@pytest.mark.parametrize(
    ("checkpoint", "usable"),
    [
        (Checkpoint("a", "t"), False),
        (Checkpoint("a", "t", next_actions=("write b.py",)), False),
        (Checkpoint("a", "t", session_id=""), False),
        (Checkpoint("a", "t", updated_at="2025-07-23T00:00:00Z", attempt=3), False),
        (Checkpoint("a", "t", completed_subtasks=("wrote a.py",)), True),
        (Checkpoint("a", "t", created_files=("a.py",)), True),
        (Checkpoint("a", "t", session_id="0b5a0c8e"), True),
    ],
)
def test_checkpoint_usable(checkpoint: Checkpoint, usable: bool) -> None:
    assert checkpoint.usable is usable


def test_partial_work_defaults() -> None:
    p = PartialWork()
    assert p.code_complete
    assert not p.any_progress
    assert not p.usable_checkpoint


def test_partial_work_code_complete_depends_only_on_missing() -> None:
    assert not PartialWork(deliverables_present=("a",), deliverables_missing=("b",)).code_complete
    assert PartialWork(deliverables_present=("a", "b")).code_complete


@pytest.mark.parametrize(
    "partial",
    [
        PartialWork(deliverables_present=("a.py",)),
        PartialWork(uncommitted=("a.py",)),
        PartialWork(commits_ahead=1),
        PartialWork(pushed=True),
    ],
)
def test_partial_work_any_progress(partial: PartialWork) -> None:
    assert partial.any_progress


def test_partial_work_checkpoint_alone_is_not_progress() -> None:
    p = PartialWork(checkpoint=Checkpoint("a", "t", session_id="s"))
    assert not p.any_progress
    assert p.usable_checkpoint


def test_partial_work_unusable_checkpoint() -> None:
    p = PartialWork(checkpoint=Checkpoint("a", "t", next_actions=("x",)))
    assert not p.usable_checkpoint


def test_partial_work_json() -> None:
    p = PartialWork(
        deliverables_present=("a.py",),
        deliverables_missing=("b.py",),
        uncommitted=("a.py",),
        commits_ahead=2,
        pushed=True,
        pr=PullRequest(7, "agent/t1", "https://example.invalid/pr/7"),
        checkpoint=Checkpoint("a", "t"),
        checkpoint_problem=None,
        tests_passed=False,
    )
    assert _via_json_text(PartialSummary.of(p).to_json()) == {
        "deliverables_present": ["a.py"],
        "deliverables_missing": ["b.py"],
        "uncommitted": ["a.py"],
        "commits_ahead": 2,
        "pushed": True,
        "pr": 7,
        "checkpoint": True,
        "checkpoint_problem": None,
        "tests_passed": False,
    }
    assert PartialSummary.of(PartialWork()).to_json()["pr"] is None
    assert PartialSummary.of(PartialWork()).to_json()["checkpoint"] is False
