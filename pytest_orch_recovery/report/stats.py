"""Small, dependency-free statistics for the dashboard and the merge gate.

Rates observed over a handful of chaos runs are noisy; the gate can judge them by the lower
end of a Wilson score interval instead of the point estimate, so that 3 recoveries out of 3 do
not "prove" a recovery rate above 90%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_orch_recovery.engine.errors import InvalidValue

# Two-sided 95%: the 0.975 quantile of the standard normal distribution.
Z_95 = 1.959964


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    With no trials nothing is known, so the interval is the whole of ``[0, 1]``. The bounds
    are exact at the edges (0 successes -> lower bound 0, all successes -> upper bound 1).

    >>> low, high = wilson_interval(3, 4)
    >>> round(low, 3), round(high, 3)
    (0.301, 0.954)
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    >>> wilson_interval(0, 5)[0], wilson_interval(5, 5)[1]
    (0.0, 1.0)
    """
    if n < 0 or successes < 0 or successes > n:
        raise InvalidValue(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # Rounding can push the bounds a hair past the estimate at the edges; pin them there.
    low = 0.0 if successes == 0 else max(0.0, min(p, centre - half))
    high = 1.0 if successes == n else min(1.0, max(p, centre + half))
    return (low, high)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean; an empty sequence has none.

    >>> mean([300.0, 600.0])
    450.0
    """
    if not values:
        raise InvalidValue("mean of an empty sequence")
    return math.fsum(values) / len(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 <= q <= 100) by linear interpolation between order statistics.

    This is the "linear" method (Hyndman & Fan type 7, NumPy's default): with the values sorted
    as ``x[0] <= ... <= x[n-1]``, the percentile sits at fractional rank ``h = q/100 * (n-1)``
    and is ``x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] - x[floor(h)])``.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([10.0, 20.0, 30.0], 95)
    29.0
    >>> percentile([7.0], 95)
    7.0
    """
    if not values:
        raise InvalidValue("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise InvalidValue(f"percentile q must be within [0, 100], got {q}")
    ordered = sorted(values)
    rank = q / 100.0 * (len(ordered) - 1)
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    fraction = rank - below
    low, high = ordered[below], ordered[above]
    if low == high:
        return low
    # Keep the result within [low, high] despite float rounding.
    return min(high, max(low, low + fraction * (high - low)))
