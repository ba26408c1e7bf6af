"""Conformance of the sim agent to the real Claude Code CLI over the conformance cases.

The comparison logic is tested without any agent; each case then runs with both agents
(slow; skips with the reason when the real CLI is not installed) and prints its table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_orch_recovery.chaos.conformance import (
    CASES,
    KNOWN_DIFFERENCES,
    ConformanceCase,
    KnownDifference,
    compare,
    run_both,
)
from pytest_orch_recovery.infra.agents import claude_code_missing

MISSING = claude_code_missing()


def test_equal_observations_compare_equal() -> None:
    seen = {"t.a1.exit": "exit 0", "t.outcome": "succeeded"}
    comparison = compare("any", seen, dict(seen))
    assert comparison.unexplained == []
    assert {r.status for r in comparison.rows} == {"same"}


def test_a_difference_fails_unless_a_known_difference_covers_it() -> None:
    sim = {"t.a1.exit": "exit 0", "t.reasons": "sigint"}
    real = {"t.a1.exit": "exit 0", "t.reasons": "-"}
    assert [r.field for r in compare("task-agent-5030-sigint", sim, real).unexplained] == [
        "t.reasons"
    ]
    known = [
        KnownDifference(
            "partial-files", "t.reasons", "sigint", "-", "an explained cause naming faulthook"
        )
    ]
    covered = compare("partial-files", sim, real, known_differences=known)
    assert covered.unexplained == [] and "faulthook" in covered.table()


def test_a_missing_observation_is_a_difference() -> None:
    comparison = compare("x", {"t.a2.exit": "exit 0"}, {})
    assert [(r.sim, r.real, r.status) for r in comparison.rows] == [("exit 0", "(absent)", "DIFF")]


def test_known_differences_are_few_and_explained() -> None:
    assert len(KNOWN_DIFFERENCES) <= 3
    names = {s.name for s in CASES}
    for known in KNOWN_DIFFERENCES:
        assert known.case in names and len(known.cause) > 40
    assert KnownDifference("a*", "t.*", "*", "x", "c").covers("ab", "t.exit", "1", "x")
    assert not KnownDifference("a*", "t.*", "*", "x", "c").covers("ab", "t.exit", "1", "y")


@pytest.mark.slow
@pytest.mark.claude
@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_conforms(
    case: ConformanceCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    comparison, outcomes = run_both(case, base_dir=tmp_path)
    with capsys.disabled():
        print("\n" + comparison.table())
    for label, out in outcomes.items():
        assert out.leftovers == [], (label, out.leftovers)
    assert comparison.unexplained == [], comparison.table()
