"""argparse ``type=`` validators shared by the pytest options and the CLI: a bad value is a
usage error that names the value and what was expected. Standard library only, so the plugin
can import this while ``--orch-chaos`` is off."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def rate(text: str) -> float:
    """A fraction in [0, 1], written as a fraction (0.9) or a percentage (90%).

    >>> rate("0.9"), rate("1"), rate("95%")
    (0.9, 1.0, 0.95)
    """
    raw = text.strip()
    try:
        value = float(raw.removesuffix("%")) / (100.0 if raw.endswith("%") else 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: use 0.9 or 90%") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate within [0, 1] (0%..100%)")
    return value


def integer(minimum: int) -> Callable[[str], int]:
    """A whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        return value

    parse.__name__ = f"integer>={minimum}"
    return parse


count = integer(0)
positive_int = integer(1)
