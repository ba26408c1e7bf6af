"""Time to recover task-agent-5030 end to end: the real Claude Code CLI against the sim agent.

Each repetition runs the conformance case ``task-agent-5030-sigint`` (Ctrl-C typed into the
pane right after fake3.md is written; the engine attributes SIGINT, resumes, the continuation
commits, pushes and opens the PR) once with each agent, alternating so both see the same
machine load. Measured: wall time of the whole :func:`run_tmux` call (sandbox to teardown) and
the engine's own recovery time (first failure to success, from the journal).

    python benchmarks/bench_conformance.py [--repetitions N]

Prints one JSON object; exits 2 when the real CLI is not installed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from pytest_orch_recovery.chaos.conformance import BY_NAME, real_driver, run_case
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import Phase
from pytest_orch_recovery.infra.agents import claude_code_missing, find_claude_code

CASE = "task-agent-5030-sigint"


def _once(real: bool) -> tuple[float, float]:
    started = time.monotonic()
    out = run_case(BY_NAME[CASE], real_driver if real else None)
    wall = time.monotonic() - started
    if out.outcomes != {"task-5030": Phase.SUCCEEDED} or out.leftovers:
        raise RuntimeError(f"run did not recover cleanly: {out.outcomes} {out.leftovers}")
    done = [e for e in out.events if e.kind is EventKind.TASK_SUCCEEDED]
    recovery = done[0].payload.to_json().get("recovery_time") if done else None
    if recovery is None:
        raise RuntimeError("no recovery recorded: the fault did not take effect")
    return wall, float(recovery)


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    missing = claude_code_missing()
    if missing is not None:
        print(json.dumps({"error": missing}))
        return 2
    walls: dict[str, list[float]] = {"sim": [], "claude-code": []}
    recoveries: dict[str, list[float]] = {"sim": [], "claude-code": []}
    for _ in range(args.repetitions):
        for label in ("sim", "claude-code"):
            wall, recovery = _once(label == "claude-code")
            walls[label].append(wall)
            recoveries[label].append(recovery)
    report = {
        "schema_version": 1,
        "scenario": CASE,
        "repetitions": args.repetitions,
        "claude_code": str(find_claude_code()),
        "end_to_end_s": {k: _summary(v) for k, v in walls.items()},
        "recovery_time_s": {k: _summary(v) for k, v in recoveries.items()},
        "ratio_real_over_sim": {
            "end_to_end": round(
                statistics.median(walls["claude-code"]) / statistics.median(walls["sim"]), 2
            ),
            "recovery_time": round(
                statistics.median(recoveries["claude-code"]) / statistics.median(recoveries["sim"]),
                2,
            ),
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
