"""Time to recover the task-agent-5030 incident end to end, real processes. Prints JSON.

The seed reports the recovery took 5 minutes by hand. Here the whole incident runs for real: a
sim agent in tmux writes fake3.md, gets SIGINT, the engine attributes it, resumes, and the
continuation commits, pushes and opens the PR. Measured: the engine's recovery time (from the
interrupted attempt's exit to the task's success, from the journal) and the whole run's wall
time, against a fault-free run of the same task in the same process (the baseline).

Run: ``python benchmarks/bench_recovery.py [--runs N] [--agent sim|claude-code]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.tmux import run_tmux
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import Task

FAKE3 = Task("task-5030", "Create /fake3 command", ("fake3.md",))
SIGINT = FaultSpec("sigint", Trigger("file_written", path="fake3.md"), task="task-5030")


def _once(agent: str, faults: list[FaultSpec]) -> tuple[float, float | None]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        out = run_tmux([FAKE3], faults, agent=agent, agents=["task-agent-5030"], base_dir=Path(tmp))
        wall = time.perf_counter() - start
    assert out.leftovers == [], out.leftovers
    done = [e for e in out.events if e.kind is EventKind.TASK_SUCCEEDED]
    assert done, "the task did not succeed"
    return wall, done[0].payload.to_json().get("recovery_time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement")
    parser.add_argument("--agent", default="sim", help="sim or claude-code")
    args = parser.parse_args()
    baseline = [_once(args.agent, [])[0] for _ in range(args.runs)]
    incident = [_once(args.agent, [SIGINT]) for _ in range(args.runs)]
    recovery = [r for _, r in incident if r is not None]
    print(
        json.dumps(
            {
                "benchmark": "recover task-agent-5030 end to end",
                "agent": args.agent,
                "runs": args.runs,
                "recovery_time_s_median": round(statistics.median(recovery), 3),
                "incident_wall_s_median": round(statistics.median(w for w, _ in incident), 3),
                "baseline_fault_free_wall_s_median": round(statistics.median(baseline), 3),
                "incident_over_baseline": round(
                    statistics.median(w for w, _ in incident) / statistics.median(baseline), 2
                ),
                "seed_manual_recovery_s": 300,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
