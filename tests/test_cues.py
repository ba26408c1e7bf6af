"""The cause model (cue words read with what a line is about), structured CLI output, and the
evidence each verdict cites."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.engine import cues
from pytest_orch_recovery.engine.classify import LogText, Observation, classify
from pytest_orch_recovery.engine.matcher import TABLE, Table, match_lines, read_lines
from pytest_orch_recovery.engine.model import ExitInfo, Reason
from pytest_orch_recovery.engine.needles import needles_of, required_needles
from pytest_orch_recovery.engine.patterns import PATTERNS

# A table with no rows at all: every verdict below comes from the cause model alone.
NO_ROWS = Table.of(())


def _reason(text: str, table: Table = NO_ROWS, **obs: object) -> Reason:
    return classify(Observation(logs=(LogText("log", text),), **obs), table=table).reason  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cue x subject


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        # one cue word, three causes: the subject decides
        ("git@gitlab.example.com: Permission denied (publickey).", Reason.GIT_ERROR),
        (
            "gh: Resource not accessible by integration (HTTP 403) api.github.com",
            Reason.GITHUB_ERROR,
        ),
        ("The Bash tool call was denied: running rm needs your approval", Reason.PERMISSION),
        ("EACCES: permission denied, open '/srv/app/config.json'", Reason.PERMISSION),
        # limits: the model provider's, unless the line is about GitHub
        ("Throttled by the provider: too many tokens per minute, retry in 20s", Reason.API_ERROR),
        ("GitHub secondary rate limit hit while listing pull requests", Reason.GITHUB_ERROR),
        # time: the run's limit, an API request's deadline, a test's own timeout
        ("watchdog: no output for 600 seconds, stopping the agent", Reason.TIMEOUT),
        ("upstream model request timed out after 120s (anthropic)", Reason.API_ERROR),
        ("ssh: connect to host git.example.org port 22: Connection timed out", Reason.GIT_ERROR),
        ("it('renders') exceeded its 5000 ms test timeout", Reason.TEST_FAILURE),
        # interruptions, caps, kills, test verdicts
        ("Run cancelled by the user (Ctrl-C)", Reason.SIGINT),
        ("Stopping: the agent hit its step budget (40 of 40 steps)", Reason.INCOMPLETE),
        ("worker 3 was OOM-killed by the kernel", Reason.KILLED),
        ("== 3 failed, 120 passed ==", Reason.TEST_FAILURE),
        ("AssertionError: expected 'a-b' but got 'a_b'", Reason.TEST_FAILURE),
        # caps stated as actions or tool calls; kills by exit status or a lost CI agent
        (
            "I've reached the maximum number of actions I can do without user input.",
            Reason.INCOMPLETE,
        ),
        ("Note: we default stop the agent after 25 tool calls.", Reason.INCOMPLETE),
        ("error: Agent exited with code 137", Reason.KILLED),
        ("Exited with status -1 (agent lost).", Reason.KILLED),
        # a build's limit, a run that did not finish within its limit, a bare count of fails
        ("Maximum build time exceeded", Reason.TIMEOUT),
        ('PipelineRun "nightly-7" failed to finish within "5m0s"', Reason.TIMEOUT),
        (" 0 pass\n 1001 fail\nRan 1001 tests across 2 files.", Reason.TEST_FAILURE),
        # "not authorised to write" is a refusal, not a failed login; a GitHub App's limit
        ('WRITE BLOCKED: Agent "docs" is not authorised to write to "src/".', Reason.PERMISSION),
        ("HttpError: API rate limit exceeded for installation ID 7125406", Reason.GITHUB_ERROR),
        # a results table: zero interruptions are none, a count of fails is the verdict
        ("Summary: interrupted: 0, cancelled: 0, fail: 2", Reason.TEST_FAILURE),
    ],
)
def test_a_cue_means_what_its_subject_makes_it(line: str, reason: Reason) -> None:
    assert _reason(line) is reason, line


def test_weak_cues_give_a_low_confidence_verdict_that_names_the_cue() -> None:
    attribution = classify(
        Observation(logs=(LogText("log", "deploy: could not push the branch"),)), table=NO_ROWS
    )
    assert attribution.reason is Reason.GIT_ERROR
    assert 0 < attribution.confidence < 0.5
    assert "cue" in attribution.evidence[0].detail
    assert attribution.evidence[0].line == 1


def test_nothing_pointing_anywhere_is_unknown() -> None:
    assert _reason("wrote fake3.md\nall good") is Reason.UNKNOWN
    assert _reason("== 12 passed in 0.3s ==\n0 failed") is Reason.UNKNOWN


def test_the_last_error_line_outweighs_an_earlier_one() -> None:
    text = "warning: API rate limit reached, retrying in 2s\nok\nFAIL src/app.test.ts\n1 failed"
    assert _reason(text) is Reason.TEST_FAILURE
    text = "1 test failed\nthen: the run was interrupted by the user"
    assert _reason(text) is Reason.SIGINT


def test_a_kill_right_after_a_time_limit_is_the_limits() -> None:
    text = "app.service: State 'stop-sigterm' timed out. Killing.\napp.service: Killing process 7"
    assert _reason(text) is Reason.TIMEOUT


def test_settings_and_echoed_commands_are_not_events() -> None:
    text = "Timeout: 900s\nExecuting: claude --dangerously-skip-permissions -p x\nrate_limited=0"
    assert read_lines(text, "log", NO_ROWS).matches == []


def test_stack_frames_and_a_bare_aborted_say_where_not_why() -> None:
    text = "FATAL ERROR: JavaScript heap out of memory\n 1: 0xb8d11b node::Abort() [node]\nAborted"
    assert _reason(text) is Reason.KILLED


def test_exact_rows_win_over_cues_on_their_lines() -> None:
    (m,) = read_lines("  ⎿  API Error: Operation aborted", "x").matches
    assert m.exact and m.reason is Reason.SIGINT


@given(st.text(max_size=300))
def test_reading_any_line_never_raises(line: str) -> None:
    reading = cues.read_line(line)
    assert reading is None or 0 < reading.weight <= 1


# --------------------------------------------------------------------------- the lexicon index

_CORPUS_LINES = [
    line.lower()
    for row in (Path(__file__).parent / "corpus" / "attribution.jsonl").read_text().splitlines()
    if row.strip()
    for line in json.loads(row)["text"].splitlines()
]
_LEXICON_WORDS = sorted(
    {
        w
        for regex in cues.LEXICON_FAMILIES.values()
        for w in re.findall(r"[a-z0-9_]+", regex.pattern)
    }
)


def _families_one_by_one(lowered: str) -> set[str]:
    return {
        name
        for name, regex in cues.LEXICON_FAMILIES.items()
        if re.compile(regex.pattern, re.MULTILINE).search(lowered)
    }


@pytest.mark.parametrize("line", _CORPUS_LINES[::7])
def test_the_index_finds_what_each_family_finds_on_corpus_lines(line: str) -> None:
    assert cues.families_in(line) == _families_one_by_one(line)


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_LEXICON_WORDS),
            st.sampled_from(_CORPUS_LINES),
            st.text(alphabet="ab01 -_./:'\"()[]~#=!^\t", max_size=6),
        ),
        max_size=8,
    ),
    st.sampled_from([" ", "", "-", ": ", "/"]),
)
def test_the_index_finds_what_each_family_finds(parts: list[str], glue: str) -> None:
    """The word-start index (leads, their literal prefixes, one regex per lead) and the
    gated alternatives outside it are a faster way to the same answer, never another."""
    line = glue.join(parts)
    assert cues.families_in(line) == _families_one_by_one(line)


# --------------------------------------------------------------------------- needles


@given(
    st.lists(
        st.one_of(st.sampled_from([row.sample for row in PATTERNS]), st.text(max_size=40)),
        max_size=4,
    )
)
def test_needles_are_a_necessary_condition_of_every_row(parts: list[str]) -> None:
    text = "\n".join(parts)
    for row in PATTERNS:
        needles = required_needles(row.regex)
        if needles is not None and row.regex.search(text):
            assert any(n in text for n in needles), row.name


def test_needles_read_the_regex_source_without_the_private_parser() -> None:
    import pytest_orch_recovery.engine.matcher as matcher_module
    import pytest_orch_recovery.engine.needles as needles_module

    for module in (needles_module, matcher_module):
        assert "_parser" not in Path(str(module.__file__)).read_text(encoding="utf-8")
    assert needles_of(r"\bgh0\d\d\b") == ("gh0",)
    assert needles_of(r"(?:a|b)c") is None  # no literal of three characters
    assert needles_of(r"foo(?=bar)baz") in (("foo",), ("baz",))  # the lookahead needs nothing


@given(
    st.lists(
        st.one_of(
            st.sampled_from([row.sample for row in PATTERNS]),
            st.sampled_from([row.sample.upper() for row in PATTERNS]),
            st.text(max_size=40),
        ),
        max_size=4,
    )
)
def test_the_table_prefilter_keeps_every_row_that_matches(parts: list[str]) -> None:
    text = "\n".join(parts)
    possible = set(TABLE.rows_possible_in(text))
    for index, row in enumerate(TABLE.rows):
        if row.regex.search(text):
            assert index in possible, row.name


def test_a_table_without_some_rows_no_longer_matches_them() -> None:
    line = "fatal: not a git repository (or any of the parent directories): .git"
    (m,) = match_lines(line, "x")
    assert not match_lines(line, "x", TABLE.without([m.pattern.name]))


# --------------------------------------------------------------------------- structure


def _stream(*events: dict[str, object]) -> str:
    return "\n".join(json.dumps(e) for e in events)


def test_stream_json_result_in_a_log_is_read_as_the_result() -> None:
    text = _stream(
        {"type": "system", "subtype": "init"},
        {"type": "result", "subtype": "error_max_turns", "is_error": True, "num_turns": 30},
    )
    assert _reason(text, TABLE, exit=ExitInfo(1)) is Reason.INCOMPLETE


def test_exit_zero_whose_result_stopped_mid_tool_use_is_incomplete() -> None:
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "terminal_reason": "completed",
        "stop_reason": "tool_use",
        "result": "",
    }
    attribution = classify(Observation(exit=ExitInfo(0), result=result))
    assert attribution.reason is Reason.INCOMPLETE
    assert "stop_reason tool_use" in attribution.evidence[0].detail


def test_terminal_reason_max_turns_and_a_hook_stop() -> None:
    capped = {"type": "result", "subtype": "success", "terminal_reason": "max_turns"}
    assert classify(Observation(exit=ExitInfo(0), result=capped)).reason is Reason.INCOMPLETE
    hooked = {"type": "result", "subtype": "success", "terminal_reason": "hook_stopped"}
    assert classify(Observation(exit=ExitInfo(0), result=hooked)).reason is Reason.PERMISSION


def test_codex_turn_failed_event_is_read_by_its_message() -> None:
    text = _stream(
        {"type": "thread.started", "thread_id": "th_1"},
        {"type": "turn.started"},
        {"type": "error", "message": "Reconnecting... 1/5"},
        {"type": "turn.failed", "error": {"message": "You've exceeded your usage quota."}},
    )
    attribution = classify(Observation(exit=ExitInfo(0), logs=(LogText("out", text),)))
    assert attribution.reason is Reason.API_ERROR
    cited = [e for e in attribution.evidence if e.reason is Reason.API_ERROR]
    assert any(e.line == 4 and "{" not in e.detail for e in cited), cited


def test_gemini_json_error_object_gives_reason_and_status() -> None:
    text = json.dumps(
        {
            "response": "",
            "stats": {},
            "error": {"type": "ApiError", "message": "Quota exceeded for requests", "code": 429},
        },
        indent=2,
    )
    attribution = classify(Observation(exit=ExitInfo(1), logs=(LogText("out", text),)))
    assert attribution.reason is Reason.API_ERROR
    assert attribution.api_status == 429


def test_evidence_quotes_the_error_line_not_the_raw_json() -> None:
    # A stream-json result whose ``result`` text carries the error: the evidence quotes
    # that text, so status, failures and the report's root cause show the error itself.
    event = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "result": "API Error: 529 Overloaded · the service is at capacity",
    }
    text = _stream({"type": "system", "subtype": "init"}, event)
    attribution = classify(Observation(exit=ExitInfo(1), logs=(LogText("out", text),)))
    assert attribution.reason is Reason.API_ERROR
    top = attribution.evidence[0]
    assert "API Error: 529" in top.detail
    assert not re.search(r'\{"type"', top.detail)
    (m,) = match_lines(text, "out")
    assert m.text.startswith("API Error: 529") and m.line == 2


def test_the_generic_rate_limit_row_leaves_a_github_installation_to_the_cause_model() -> None:
    # Without GitHub's own row (as when GitHub's family is left out), the model provider's
    # generic row must not claim a limit that names a GitHub App installation.
    line = "Error: init action failed: HttpError: API rate limit exceeded for installation ID 7"
    table = TABLE.without({"gh_api_rate_limit"})
    assert "generic_rate_limit" not in {m.pattern.name for m in match_lines(line, "log", table)}
    assert _reason(line, table) is Reason.GITHUB_ERROR
    assert _reason("API Error: rate limit exceeded, retry later", table) is Reason.API_ERROR
