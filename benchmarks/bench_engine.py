"""Engine throughput and decision latency on the in-process simulation. Prints JSON.

- ``attempts_per_second``: simulated agent attempts through the real coordinator (classify,
  analyze, policy, journal in memory), against the simulation runtime driving the same attempts
  with no coordinator (the baseline, same run): the ratio is the engine's own cost.
- ``decision_latency``: with 1,000 agents live at once, the time from an attempt's exit reaching
  the coordinator to its decision being journaled (p50 / p99), against the time to ``json.dumps``
  one journal event (baseline, same run).

Run: ``python benchmarks/bench_engine.py [--tasks N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from pytest_orch_recovery.chaos.faults import FaultSpec, Trigger
from pytest_orch_recovery.chaos.tiers.sim import simulate
from pytest_orch_recovery.chaos.tiers.simruntime import SimRuntime
from pytest_orch_recovery.engine.coordinator import Coordinator
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import Strategy, Task, full_plan
from pytest_orch_recovery.engine.policy import CircuitBreaker, Policy
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.report.stats import percentile
from pytest_orch_recovery.store.journal import Journal


def _tasks(n: int) -> list[Task]:
    return [
        Task(f"t{i}", f"Task {i}", tuple(f"f{i}_{j}.py" for j in range(1 + i % 6)))
        for i in range(n)
    ]


def _faults() -> list[FaultSpec]:
    # One task in five fails once (SIGINT after its first file), the rest succeed first try.
    return [
        FaultSpec("sigint", Trigger("file_written", n=1), task=f"t{i}") for i in range(0, 10_000, 5)
    ]


def _no_breaker(seed: int) -> Policy:
    # Independent failures spread over thousands of agents: keep the breaker out of the way
    # so every failure takes the full classify -> analyze -> decide -> relaunch path.
    return Policy(seed=seed, breaker=CircuitBreaker(threshold=10**9))


def attempts_per_second(n: int) -> dict[str, Any]:
    tasks = _tasks(n)
    start, cpu_start = time.perf_counter(), time.process_time()
    out = simulate(tasks, _faults(), seed=1, policy_factory=_no_breaker)
    engine_s = time.perf_counter() - start
    engine_cpu_s = time.process_time() - cpu_start
    attempts = sum(1 for e in out.events if e.kind is EventKind.ATTEMPT_LAUNCHED)

    runtime = SimRuntime(seed=1, faults=_faults())
    start, cpu_start = time.perf_counter(), time.process_time()
    for t in tasks:
        runtime.launch(
            LaunchSpec(t, f"a-{t.task_id}", 1, "claude-code", None, "", full_plan(t), key=t.task_id)
        )
    bare = 0
    while runtime.next_exit(None) is not None:
        bare += 1
    bare_s = time.perf_counter() - start
    bare_cpu_s = time.process_time() - cpu_start
    return {
        "tasks": n,
        "attempts": attempts,
        "engine_attempts_per_s": round(attempts / engine_s),
        "baseline_runtime_only_attempts_per_s": round(bare / bare_s),
        "engine_cost_ratio": round((engine_s / attempts) / (bare_s / bare), 2),
        # Per CPU second of this process: what a loaded machine (other processes taking turns
        # on the cores) changes least.
        "engine_attempts_per_cpu_s": round(attempts / engine_cpu_s),
        "baseline_runtime_only_attempts_per_cpu_s": round(bare / bare_cpu_s),
    }


def decision_latency(n: int = 1000) -> dict[str, Any]:
    runtime = SimRuntime(seed=2, faults=[FaultSpec("kill", Trigger("tool_call", n=1))])
    journal = Journal(None)
    coordinator = Coordinator(runtime, journal, policy=_no_breaker(2))
    for task in _tasks(n):
        coordinator.submit(task)
    samples: list[float] = []
    original = coordinator._on_exit

    def timed(exited: Any) -> None:
        start = time.perf_counter()
        original(exited)
        samples.append(time.perf_counter() - start)

    coordinator._on_exit = timed  # type: ignore[method-assign]
    coordinator.run()
    decisions = [e for e in journal.events() if e.kind is EventKind.DECISION]
    baseline = []
    sample_event = journal.events()[-1].to_json()
    for _ in range(2000):
        start = time.perf_counter()
        json.dumps(sample_event)
        baseline.append(time.perf_counter() - start)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return {
        "live_agents": n,
        "decisions": len(decisions),
        "resumes": sum(
            1 for d in decisions if d.payload.to_json()["decision"]["strategy"] == Strategy.RESUME
        ),
        "p50_ms": round(p50 * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "baseline_json_dumps_p50_ms": round(statistics.median(baseline) * 1000, 4),
        "p99_over_baseline": round(p99 / statistics.median(baseline), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks for the throughput run")
    args = parser.parse_args()
    print(
        json.dumps(
            {
                "benchmark": "engine",
                "attempts": attempts_per_second(args.tasks),
                "decision_latency": decision_latency(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
