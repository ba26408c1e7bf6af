"""The main job (``pytest --orch-chaos`` on the bundled scenarios), serially and with xdist, in
one run. Prints JSON.

Both runs use the same seed, so they must reach the same verdict: the gate's criteria (observed
figures, sample counts, pass/fail) and each scenario's outcome are compared and the benchmark
says whether they agree. For each run: wall time, CPU seconds of the whole process tree, and
(with ``perf`` and ``strace`` on the machine) the CPU and the process count of each role — the
pytest controller and workers, the sim agents, the PostToolUse hooks, the ``gh`` stand-in, the
launch wrappers, git, tmux, the tasks' own test runs — see ``benchmarks/proctrace.py``.
``speedup`` is serial wall time over parallel wall time, both measured in this run.

Run: ``python benchmarks/bench_main_job.py [--workers 2] [--seed N] [--no-profile]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import proctrace

ROOT = Path(__file__).resolve().parent.parent


def _verdict(report: Path, junit: Path) -> dict[str, Any]:
    data = json.loads(report.read_text())
    criteria = {
        c["name"]: {k: c.get(k) for k in ("observed", "n", "successes", "verdict")}
        for c in data["criteria"]
    }
    scenarios: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
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
    }


def run_campaign(workers: int, seed: int, work: Path, profile: bool) -> dict[str, Any]:
    tag = f"n{workers}"
    report, junit = work / f"{tag}.json", work / f"{tag}.xml"
    argv = [sys.executable, "-m", "pytest", "--orch-chaos", "-p", "no:cacheprovider", "-q",
            "--orch-seed", str(seed), f"--orch-report={report}", f"--junitxml={junit}"]
    if workers:
        argv += ["-p", "xdist", "-n", str(workers)]
    breakdown = proctrace.run(argv, cwd=ROOT, env=dict(os.environ), profile=profile)
    out = breakdown.to_json()
    out["verdict"] = _verdict(report, junit) if report.exists() and junit.exists() else None
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="xdist workers of the 2nd run")
    parser.add_argument("--seed", type=int, default=20250723, help="--orch-seed of both runs")
    parser.add_argument("--no-profile", action="store_true",
                        help="time only: no perf / strace breakdown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-main-job-") as tmp:
        work = Path(tmp)
        serial = run_campaign(0, args.seed, work, not args.no_profile)
        parallel = run_campaign(args.workers, args.seed, work, not args.no_profile)
    same = (serial["verdict"] is not None and parallel["verdict"] is not None
            and serial["verdict"] == parallel["verdict"])
    print(json.dumps({
        "benchmark": "main_job",
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "seed": args.seed,
        "serial": serial,
        f"xdist_n{args.workers}": parallel,
        "speedup": round(serial["wall_s"] / parallel["wall_s"], 2),
        "same_verdict_and_figures": same,
    }, indent=2))


if __name__ == "__main__":
    main()
