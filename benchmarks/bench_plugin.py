"""Benchmarks of the pytest plugin, printed as JSON.

- pytest start-up with the plugin installed but off, against ``-p no:orch_recovery``
  (``pytest --co -q`` on an empty test file, several runs each, interleaved in the same run);
- in-process generated runs per second (draw + simulate + judge, no pytest);
- the bundled campaign's wall time, serial and ``-n 2``.

Usage: ``python benchmarks/bench_plugin.py [--runs 7] [--campaign 300]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _pytest(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 5):
        raise SystemExit(f"pytest {' '.join(args)} failed ({done.returncode}):\n{done.stdout}")
    return elapsed


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 4),
        "min_s": round(min(samples), 4),
        "runs": len(samples),
    }


def startup(runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "test_empty.py").write_text("def test_nothing():\n    pass\n")
        off: list[float] = []
        disabled: list[float] = []
        for _ in range(runs):  # interleaved so machine noise hits both alike
            off.append(_pytest(["--co", "-q"], cwd))
            disabled.append(_pytest(["--co", "-q", "-p", "no:orch_recovery"], cwd))
    return {
        "plugin_off": _summary(off),
        "plugin_disabled": _summary(disabled),
        "overhead_ms": round(1000 * (statistics.median(off) - statistics.median(disabled)), 1),
    }


def generated_runs(count: int) -> dict[str, object]:
    from pytest_orch_recovery.chaos.campaign import run_scenario
    from pytest_orch_recovery.chaos.generate import generated_scenarios
    from pytest_orch_recovery.chaos.oracle import invariant_violations

    start = time.perf_counter()
    scenarios = generated_scenarios(1, count)
    drawn = time.perf_counter()
    for scenario in scenarios:
        invariant_violations(run_scenario(scenario, tier="sim", seed=1, agent="sim"))
    end = time.perf_counter()
    return {
        "runs": count,
        "draw_s": round(drawn - start, 3),
        "run_s": round(end - drawn, 3),
        "runs_per_s": round(count / (end - start), 1),
        "simulated_runs_per_s": round(count / (end - drawn), 1),
    }


def campaign_wall_time(runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        base = ["--orch-chaos", "--orch-seed=1", f"--orch-report={tmp}/r.md", "-q"]
        serial = [_pytest(base, REPO) for _ in range(runs)]
        dist = [_pytest([*base, "-p", "xdist", "-n", "2"], REPO) for _ in range(runs)]
    return {"serial": _summary(serial), "xdist_n2": _summary(dist)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--campaign", type=int, default=300)
    args = parser.parse_args()
    print(
        json.dumps(
            {
                "startup": startup(args.runs),
                "generated_in_process": generated_runs(args.campaign),
                "bundled_campaign": campaign_wall_time(max(1, args.runs // 2)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
