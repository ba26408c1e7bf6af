"""The main job (``pytest --orch-chaos`` on the bundled scenarios), serially and with xdist, in
one run. Prints JSON.

Both runs use the same seed, so they must reach the same verdict: the gate's criteria (observed
figures, sample counts, pass/fail) and each scenario's outcome are compared and the benchmark
says whether they agree. For each run: wall time, CPU seconds of the whole process tree, and
(with ``perf`` and ``strace`` on the machine) the CPU and the process count of each role — the
pytest controller and workers, the sim agents, the PostToolUse hooks, the ``gh`` stand-in, the
launch wrappers, git, tmux, the tasks' own test runs — see ``benchmarks/proctrace.py``.
``speedup`` is serial wall time over parallel wall time, both measured in this run; with
``--repeat N`` the two modes alternate N times and the medians are compared (these machines
are noisy). Each run also lists every scenario's duration (its JUnit ``time``).

The package's bytecode is compiled first, as ``.ci/run`` does after installing: where
``PYTHONDONTWRITEBYTECODE=1`` is set (these machines, CI), a source file edited since the last
compile is compiled again by every hook, wrapper and agent process that imports it, which made
a run on a freshly edited tree ~20% slower than the same run on an installed one.

Run: ``python benchmarks/bench_main_job.py [--workers 2] [--seed N] [--repeat N] [--no-profile]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proctrace

ROOT = Path(__file__).resolve().parent.parent


def _verdict(report: Path, junit: Path) -> tuple[dict[str, Any], dict[str, float]]:
    data = json.loads(report.read_text())
    criteria = {
        c["name"]: {k: c.get(k) for k in ("observed", "n", "successes", "verdict")}
        for c in data["criteria"]
    }
    scenarios: dict[str, str] = {}
    durations: dict[str, float] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        durations[case.get("name", "?")] = round(float(case.get("time", "nan")), 2)
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        scenarios[case.get("name", "?")] = outcome
    metrics = data["metrics"]
    return {
        "gate_passed": not data["failed_criteria"],
        "criteria": criteria,
        "scenarios": dict(sorted(scenarios.items())),
        "attempts": metrics.get("attempts"),
        "failures": metrics.get("failures"),
        "confusion_matrix": data["campaign"].get("confusion_matrix"),
    }, durations


def main_job_argv(workers: int, seed: int, *options: str) -> list[str]:
    """The main job's command line as the benchmarks run it: no cache, ``--orch-seed``, the
    given options, and ``-p xdist -n workers`` when ``workers`` is not 0."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "--orch-chaos",
        "-p",
        "no:cacheprovider",
        "-q",
        "--orch-seed",
        str(seed),
        *options,
    ]
    return argv + (["-p", "xdist", "-n", str(workers)] if workers else [])


def run_campaign(
    workers: int, seed: int, work: Path, profile: bool, run: int = 0
) -> dict[str, Any]:
    tag = f"n{workers}-{run}"
    report, junit = work / f"{tag}.json", work / f"{tag}.xml"
    argv = main_job_argv(workers, seed, f"--orch-report={report}", f"--junitxml={junit}")
    load = [round(x, 2) for x in os.getloadavg()]
    breakdown = proctrace.run(argv, cwd=ROOT, env=dict(os.environ), profile=profile)
    out = breakdown.to_json()
    out["load_average_before"] = load
    out["verdict"], out["scenario_s"] = (
        _verdict(report, junit) if report.exists() and junit.exists() else (None, {})
    )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="xdist workers of the 2nd run")
    parser.add_argument("--seed", type=int, default=20250723, help="--orch-seed of both runs")
    parser.add_argument(
        "--no-profile", action="store_true", help="time only: no perf / strace breakdown"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="alternate serial and parallel runs N times; compare medians",
    )
    args = parser.parse_args(argv)
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "pytest_orch_recovery")], check=True
    )
    serial: list[dict[str, Any]] = []
    parallel: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-main-job-") as tmp:
        work = Path(tmp)
        for run in range(max(1, args.repeat)):
            serial.append(run_campaign(0, args.seed, work, not args.no_profile, run))
            parallel.append(run_campaign(args.workers, args.seed, work, not args.no_profile, run))
    verdicts = [r["verdict"] for r in serial + parallel]
    same = all(v is not None and v == verdicts[0] for v in verdicts)
    serial_wall = statistics.median(r["wall_s"] for r in serial)
    parallel_wall = statistics.median(r["wall_s"] for r in parallel)
    print(
        json.dumps(
            {
                "benchmark": "main_job",
                "cpus": os.cpu_count(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "seed": args.seed,
                "repeat": len(serial),
                "serial_wall_s": {"median": serial_wall, "runs": [r["wall_s"] for r in serial]},
                f"xdist_n{args.workers}_wall_s": {
                    "median": parallel_wall,
                    "runs": [r["wall_s"] for r in parallel],
                },
                "speedup": round(serial_wall / parallel_wall, 2),
                "speedup_per_pair": [
                    round(a["wall_s"] / b["wall_s"], 2)
                    for a, b in zip(serial, parallel, strict=True)
                ],
                "same_verdict_and_figures": same,
                "serial": serial,
                f"xdist_n{args.workers}": parallel,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
