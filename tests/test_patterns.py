"""The pattern table: every row matches its own real sample, and the scanner's mechanics."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.engine.matcher import TABLE as _PREFILTER
from pytest_orch_recovery.engine.matcher import TAIL_BYTES, match_lines
from pytest_orch_recovery.engine.model import Reason
from pytest_orch_recovery.engine.needles import required_needles
from pytest_orch_recovery.engine.patterns import PATTERNS, Pattern, pattern_named


@pytest.mark.parametrize("row", PATTERNS, ids=[row.name for row in PATTERNS])
def test_sample_matches_its_own_row_and_reason(row: Pattern) -> None:
    assert row.regex.search(row.sample), f"{row.name}: regex does not match its sample"
    matches = match_lines(row.sample, "sample")
    assert len(matches) == 1
    assert matches[0].pattern is row, f"{row.name} shadowed by {matches[0].pattern.name}"
    assert matches[0].reason is row.reason
    assert matches[0].line == 1


@pytest.mark.parametrize("row", PATTERNS, ids=[row.name for row in PATTERNS])
def test_row_is_well_formed(row: Pattern) -> None:
    assert 0.0 < row.weight <= 1.0
    assert row.source.strip() and row.sample.strip()
    assert row.reason in Reason


def test_names_are_unique() -> None:
    names = [row.name for row in PATTERNS]
    assert len(names) == len(set(names))


def test_every_failure_family_has_rows() -> None:
    covered = {row.reason for row in PATTERNS}
    expected = set(Reason) - {Reason.INCOMPLETE, Reason.UNKNOWN}
    assert expected <= covered


def test_retry_lines_do_not_stop_the_run() -> None:
    assert not pattern_named("cc_api_retrying").stops_run
    assert pattern_named("cc_api_error_status").stops_run


def test_line_numbers_are_one_based_and_ordered() -> None:
    text = "starting\n\nfatal: not a git repository (or any of the parent directories): .git\n"
    text += "ok\nerror connecting to api.github.com\n"
    found = [(m.line, m.reason) for m in match_lines(text, "pane")]
    assert found == [(3, Reason.GIT_ERROR), (5, Reason.GITHUB_ERROR)]


def test_match_does_not_leak_onto_previous_blank_line() -> None:
    text = "\n\nKeyboardInterrupt\n  ⎿  Interrupted by user\n"
    assert [m.line for m in match_lines(text, "x")] == [3, 4]


def test_status_and_retry_after_are_extracted() -> None:
    retry = match_lines(pattern_named("cc_api_retrying").sample, "x")[0]
    assert retry.api_status == 529
    body = match_lines(pattern_named("anthropic_error_body").sample, "x")[0]
    assert body.api_status == 429
    header = match_lines("Retry-After: 17\n", "x")[0]
    assert header.retry_after == 17.0
    constant = match_lines("Invalid API key · Please run /login", "x")[0]
    assert constant.api_status == 401


def test_error_type_without_status_maps_to_documented_status() -> None:
    line = '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    (m,) = match_lines(line, "x")
    assert (m.reason, m.api_status) == (Reason.API_ERROR, 529)


def test_operation_aborted_is_an_interrupt_not_an_api_error() -> None:
    (m,) = match_lines("  ⎿  API Error: Operation aborted", "x")
    assert m.reason is Reason.SIGINT


def test_one_row_per_line_first_in_table_wins() -> None:
    line = "pull request create failed: GraphQL: No commits between main and b (createPullRequest)"
    (m,) = match_lines(line, "x")
    assert m.pattern.name == "gh_no_commits_between"


def test_only_the_tail_of_a_long_log_is_scanned_but_lines_count_from_the_start() -> None:
    head = "fatal: not a git repository\n"
    filler = "x" * 99 + "\n"
    lines_of_filler = (TAIL_BYTES // len(filler)) + 10
    text = head + filler * lines_of_filler + "error connecting to api.github.com\n"
    found = match_lines(text, "big")
    assert [m.reason for m in found] == [Reason.GITHUB_ERROR]
    assert found[0].line == 1 + lines_of_filler + 1


def test_empty_and_plain_text_match_nothing() -> None:
    assert match_lines("", "x") == []
    assert match_lines("all good\nwrote fake3.md\n", "x") == []


def test_passing_pytest_summary_is_not_a_failure() -> None:
    assert match_lines("============================== 5 passed in 0.12s ==============", "x") == []


@given(st.text(max_size=2000))
def test_arbitrary_text_never_raises_and_lines_are_in_range(text: str) -> None:
    found = match_lines(text, "fuzz")
    total_lines = text.count("\n") + 1
    assert all(1 <= m.line <= total_lines for m in found)
    assert [m.line for m in found] == sorted({m.line for m in found})


# --------------------------------------------------------------------------- prefilter

_SAMPLES = [row.sample for row in PATTERNS]


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_SAMPLES),
            st.text(max_size=60),
            # a sample with a random cut: the prefilter must not keep rows that cannot match
            # nor drop rows that still can
            st.tuples(st.sampled_from(_SAMPLES), st.integers(0, 200)).map(lambda p: p[0][p[1] :]),
        ),
        max_size=6,
    )
)
def test_prefilter_never_drops_a_row_that_matches(parts: list[str]) -> None:
    text = "\n".join(parts)
    possible = set(_PREFILTER.rows_possible_in(text))
    for index, row in enumerate(PATTERNS):
        if row.regex.search(text):
            assert index in possible, f"{row.name} matches but was filtered out"


def test_prefilter_rejects_text_without_any_rows_words() -> None:
    assert _PREFILTER.rows_possible_in("all good\nwrote fake3.md\n") == list(_PREFILTER.always)


def test_required_needles_come_from_the_regex_source() -> None:
    assert required_needles(re.compile(r"fatal: (?:not a git|bad) repo")) == ("fatal: ",)
    assert required_needles(re.compile(r"(?:alpha one|beta two)\d")) == ("alpha one", "beta two")
    assert required_needles(re.compile(r"x?y*")) is None
    # Flags this reader does not follow: no needle, the row is tried everywhere.
    assert required_needles(re.compile(r"Retry-After", re.IGNORECASE)) is None
    assert required_needles(re.compile(r"(?i)Retry-After")) is None
    assert required_needles(re.compile(r"a\d{0,3}bcd|x(?=yz)abc")) == ("bcd", "abc")


def test_every_row_but_few_is_prefiltered() -> None:
    # Rows tried on every text cost a regex scan each; keep them rare.
    assert len(_PREFILTER.always) <= 3


def test_zero_failures_are_not_failures() -> None:
    for line in (
        "test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
        "[INFO] Tests run: 5, Failures: 0, Errors: 0, Skipped: 0",
        "Tests:       15 passed, 15 total",
        "ok  \tgithub.com/acme/fake3\t0.005s",
    ):
        assert match_lines(line, "x") == [], line


def test_ssh_publickey_is_git_not_agent_permission() -> None:
    (m,) = match_lines("git@github.com: Permission denied (publickey).", "x")
    assert m.reason is Reason.GIT_ERROR
    (m,) = match_lines("mkdir: cannot create directory '/opt/x': Permission denied", "x")
    assert m.reason is Reason.PERMISSION


def test_github_rate_limit_is_github_but_a_bare_one_is_the_model_api() -> None:
    (m,) = match_lines("API rate limit exceeded for user ID 95043299", "x")
    assert m.reason is Reason.GITHUB_ERROR
    (m,) = match_lines('"message": "API rate limit exceeded"', "x")
    assert m.reason is Reason.API_ERROR


def test_retried_errors_of_other_clis_do_not_stop_the_run() -> None:
    for name in ("codex_stream_retrying", "aider_rate_limited", "gemini_quota_fallback"):
        assert not pattern_named(name).stops_run, name


def test_litellm_class_names_map_to_statuses() -> None:
    (m,) = match_lines("litellm.AuthenticationError: AnthropicException - invalid x-api-key", "x")
    assert m.api_status == 401
    (m,) = match_lines("litellm.APIConnectionError: connection refused", "x")
    assert (m.reason, m.api_status) == (Reason.API_ERROR, None)


def _first_row_by_line_reference(text: str) -> list[tuple[int, str]]:
    """The table's meaning, written plainly: each line, searched alone, goes to the first row
    (table order) whose regex finds something in it."""
    out: list[tuple[int, str]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        for row in PATTERNS:
            if row.regex.search(line):
                out.append((number, row.name))
                break
    return out


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_SAMPLES),
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
            st.tuples(st.sampled_from(_SAMPLES), st.sampled_from(_SAMPLES)).map(" ".join),
        ),
        max_size=8,
    )
)
def test_match_lines_agrees_with_the_plain_line_by_line_reading(parts: list[str]) -> None:
    text = "\n".join(parts)
    got = [(m.line, m.pattern.name) for m in match_lines(text, "x")]
    assert got == _first_row_by_line_reference(text)
