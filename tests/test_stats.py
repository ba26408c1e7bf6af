from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_orch_recovery.report.stats import mean, percentile, wilson_interval

trials = st.integers(min_value=1, max_value=10_000)


@st.composite
def _counts(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(trials)
    return draw(st.integers(min_value=0, max_value=n)), n


@given(_counts())
def test_wilson_bounds_are_ordered_within_unit_interval_and_contain_estimate(
    counts: tuple[int, int],
) -> None:
    successes, n = counts
    low, high = wilson_interval(successes, n)
    assert 0.0 <= low <= successes / n <= high <= 1.0
    assert low < high


@given(_counts(), st.integers(min_value=2, max_value=50))
def test_wilson_width_shrinks_as_n_grows_at_a_fixed_rate(
    counts: tuple[int, int], factor: int
) -> None:
    successes, n = counts
    low, high = wilson_interval(successes, n)
    big_low, big_high = wilson_interval(successes * factor, n * factor)
    assert big_high - big_low < high - low


def test_wilson_with_no_trials_is_the_whole_interval() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_matches_the_textbook_figures() -> None:
    # Wilson (1927) / Newcombe (1998) method 3: 81 of 263 -> (0.2553, 0.3662).
    low, high = wilson_interval(81, 263)
    assert round(low, 4) == 0.2553
    assert round(high, 4) == 0.3662


def test_wilson_wider_z_gives_wider_interval() -> None:
    narrow = wilson_interval(7, 10, z=1.0)
    wide = wilson_interval(7, 10, z=2.5758)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


@pytest.mark.parametrize("successes, n", [(-1, 3), (4, 3), (0, -1)])
def test_wilson_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(successes, n)


def test_percentile_interpolates_linearly() -> None:
    values = [15.0, 20.0, 35.0, 40.0, 50.0]
    assert percentile(values, 0) == 15.0
    assert percentile(values, 100) == 50.0
    assert percentile(values, 50) == 35.0
    assert percentile(values, 40) == pytest.approx(29.0)  # rank 1.6 -> 20 + 0.6 * 15
    assert percentile(list(reversed(values)), 40) == pytest.approx(29.0)


def test_percentile_and_mean_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        percentile([1.0], 101)
    with pytest.raises(ValueError, match="empty"):
        mean([])


finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=50), st.floats(min_value=0, max_value=100))
def test_percentile_lies_between_min_and_max_and_is_monotone(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert min(values) <= p <= max(values)
    assert percentile(values, 0) <= p <= percentile(values, 100)
    assert percentile(values, q / 2) <= p


@given(st.lists(finite, min_size=1, max_size=50))
def test_mean_lies_between_min_and_max(values: list[float]) -> None:
    m = mean(values)
    assert min(values) - 1e-6 <= m <= max(values) + 1e-6
    assert math.isclose(mean([m] * 3), m, rel_tol=1e-12, abs_tol=1e-9)
