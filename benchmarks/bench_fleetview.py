"""Fleet views (``status``/``failures``/``partial``) over a realistic journal. Prints JSON.

Folds ``--events`` events of ``bench_journal.realistic_events`` into the three views, against a
baseline measured in the same run on the same events: ``metrics.compute`` (the dashboard's fold,
which the ``status`` command's reader also runs once per event to validate it).

Run: ``python benchmarks/bench_fleetview.py [--events N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_journal import realistic_events

from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.report.fleetview import FleetView
from pytest_orch_recovery.report.metrics import compute


def _best(repeat: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def _views(events: list[Event]) -> None:
    view = FleetView(events, budget=4)
    view.statuses(now=events[-1].time)
    view.failures()
    view.partial_work()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000, help="journal events to fold")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    args = parser.parse_args()
    events = list(realistic_events(args.events))
    views = _best(args.repeat, lambda: _views(events))
    metrics = _best(args.repeat, lambda: compute(events))
    print(
        json.dumps(
            {
                "events": len(events),
                "views_seconds": round(views, 4),
                "views_events_per_second": round(len(events) / views),
                "baseline_metrics_seconds": round(metrics, 4),
                "views_over_metrics": round(views / metrics, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
