"""tmux runtime costs: launch overhead, and exit-detection latency against a polling baseline.

Run ``python benchmarks/bench_tmux.py``; prints one JSON object (times in milliseconds).

- ``launch``: ``true`` launched N times one after another; ``call`` is the time inside
  ``launch()`` (worktree, spec file, tmux new-session + pipe-pane), ``cycle`` is launch until
  ``next_exit`` has reported the exit (the whole round trip of one attempt).
- ``detection``: the agent prints ``date +%s.%N`` as its very last act; latency is from that
  instant until the exit is known. ``event_driven`` is ``next_exit`` (pidfd + FIFO + tmux
  hook); ``polling_1s`` is, in the same run, a loop asking tmux for ``#{pane_dead}`` every
  second, the way a simple supervisor would. The agents exit at staggered offsets so the
  baseline is not flattered or punished by phase alignment with its poll.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_orch_recovery.doubles.sandbox import Sandbox
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.ports import LaunchSpec
from pytest_orch_recovery.report.stats import mean, percentile
from pytest_orch_recovery.runtime.tmux import TmuxRuntime

SCHEMA_VERSION = 1
_BOUND = 60.0
_POLL_INTERVAL = 1.0
_TASK = Task("bench", "benchmark", wants_pr=False)


def _spec(agent: str, n: int, script: str) -> LaunchSpec:
    return LaunchSpec(
        task=_TASK,
        agent=agent,
        attempt=n,
        agent_type="command",
        strategy=None,
        prompt=script,
        work=(),
        key=f"{agent}#{n}",
    )


def _shell(spec: LaunchSpec) -> Sequence[str]:
    return ["sh", "-c", spec.prompt]


def _summary(values_s: list[float]) -> dict[str, float | int]:
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(mean(ms), 2),
        "max_ms": round(max(ms), 2),
    }


def _printed_time(output: str) -> float:
    return float(output.strip().splitlines()[-1])


def _bench_launch(rt: TmuxRuntime, n: int) -> dict[str, Any]:
    calls, cycles = [], []
    for i in range(1, n + 1):
        t0 = time.perf_counter()
        rt.launch(_spec("launch", i, "true"))
        t1 = time.perf_counter()
        got = rt.next_exit(rt.clock.now() + _BOUND)
        t2 = time.perf_counter()
        if got is None or not got.exit.clean:
            raise SystemExit(f"launch {i}: no clean exit reported ({got})")
        calls.append(t1 - t0)
        cycles.append(t2 - t0)
    return {"call": _summary(calls), "cycle": _summary(cycles)}


def _stagger(i: int, n: int) -> str:
    return f"{(i % n) / n:.3f}"


def _bench_event_driven(rt: TmuxRuntime, n: int) -> list[float]:
    latencies = []
    for i in range(1, n + 1):
        rt.launch(_spec("event", i, f"sleep {_stagger(i, n)}; date +%s.%N"))
        got = rt.next_exit(rt.clock.now() + _BOUND)
        seen = time.time()
        if got is None:
            raise SystemExit(f"event-driven sample {i}: no exit within {_BOUND} s")
        latencies.append(seen - _printed_time(got.output))
    return latencies


def _bench_polling(rt: TmuxRuntime, box: Sandbox, n: int) -> list[float]:
    latencies = []
    for i in range(1, n + 1):
        rt.launch(_spec("poll", i, f"sleep {_stagger(i, n)}; date +%s.%N"))
        target = rt.pane_id("poll")  # the baseline asks tmux itself, as a poller would
        deadline = time.time() + _BOUND
        while time.time() < deadline:
            dead = subprocess.run(
                ["tmux", "-L", box.tmux_socket, "display", "-p", "-t", target, "#{pane_dead}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            if dead == "1":
                break
            time.sleep(_POLL_INTERVAL)  # the baseline's nature: it polls
        seen = time.time()
        got = rt.next_exit(rt.clock.now() + _BOUND)  # keep the runtime's books straight
        if got is None:
            raise SystemExit(f"polling sample {i}: no exit within {_BOUND} s")
        latencies.append(seen - _printed_time(got.output))
    return latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--launches", type=int, default=30, help="launches of `true`")
    parser.add_argument("--samples", type=int, default=20, help="event-driven samples")
    parser.add_argument("--poll-samples", type=int, default=10, help="1 s polling samples")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        with Sandbox.create(base_dir=Path(tmp)) as box, TmuxRuntime(box, _shell) as rt:
            launch = _bench_launch(rt, args.launches)
            event = _bench_event_driven(rt, args.samples)
            polling = _bench_polling(rt, box, args.poll_samples)
        leftovers = box.leftovers()
    event_s, polling_s = _summary(event), _summary(polling)
    report = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": "tmux_runtime",
        "tmux": subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip(),
        "launch": launch,
        "detection": {
            "event_driven": event_s,
            "polling_1s": polling_s,
            "p50_speedup": round(float(polling_s["p50_ms"]) / float(event_s["p50_ms"]), 1),
        },
        "leftovers_after_teardown": leftovers,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
