"""When each scenario of the main job ran, on which xdist worker, and how busy the CPUs were
meanwhile. Prints JSON.

``python benchmarks/timeline.py [--workers 2] [--seed N] [--interval 0.5]`` runs
``pytest --orch-chaos`` (with ``-p xdist -n N`` when N > 0) with this file loaded as a pytest
plugin (``-p timeline``; xdist workers load it too): each process appends its milestones
(configured, collected, each scenario's start and finish, session end) to a JSON-lines file.
Meanwhile the parent samples ``/proc/stat`` every ``--interval`` seconds. The output lists
both on one clock (seconds since the run started) and, for each sample, the cores busy and the
scenarios running: it shows where a parallel run leaves a core idle (a worker still starting,
two latency-bound scenarios side by side, one worker finishing alone).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_LOG = "ORCH_TIMELINE_LOG"
_T0 = "ORCH_TIMELINE_T0"


# --------------------------------------------------------------------------- pytest plugin


def _mark(what: str, **fields: Any) -> None:
    path = os.environ.get(_LOG)
    if not path:
        return
    record = {
        "t": round(time.time() - float(os.environ[_T0]), 3),
        "process": os.environ.get("PYTEST_XDIST_WORKER", "controller"),
        "what": what,
        **fields,
    }
    with open(path, "a", encoding="utf-8") as log:  # one short line per write: O_APPEND
        log.write(json.dumps(record) + "\n")


def pytest_configure(config: Any) -> None:
    _mark("configured")


def pytest_collection_finish(session: Any) -> None:
    _mark("collected")


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ or not _under_xdist():
        _mark("start", item=nodeid.rpartition("::")[2])


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ or not _under_xdist():
        _mark("finish", item=nodeid.rpartition("::")[2])


def pytest_sessionfinish(session: Any) -> None:
    _mark("session_finished")


def _under_xdist() -> bool:
    # The controller of xdist workers sees their items' logstart/logfinish too.
    return os.environ.get("ORCH_TIMELINE_WORKERS", "0") != "0"


# --------------------------------------------------------------------------- the run


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]  # all, idle + iowait


def run(workers: int, seed: int, interval: float) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="orch-timeline-") as tmp:
        log = Path(tmp, "milestones.jsonl")
        t0 = time.time()
        env = {
            **os.environ,
            _LOG: str(log),
            _T0: repr(t0),
            "ORCH_TIMELINE_WORKERS": str(workers),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p
            ),
        }
        # Imported here, not at the top: every pytest process of the run loads this file as a
        # plugin, and the bench's imports would add to the start-up this measures.
        from bench_main_job import main_job_argv

        argv = main_job_argv(
            workers, seed, "-p", "timeline", f"--orch-report={Path(tmp, 'report.json')}"
        )
        output = Path(tmp, "pytest.out")
        with output.open("wb") as sink:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        samples: list[dict[str, Any]] = []
        total, idle = _cpu_times()
        while proc.poll() is None:
            time.sleep(interval)
            now_total, now_idle = _cpu_times()
            busy = 1 - (now_idle - idle) / max(1, now_total - total)
            total, idle = now_total, now_idle
            samples.append({"t": round(time.time() - t0, 2), "busy_cores": round(cores * busy, 2)})
        wall = time.time() - t0
        if proc.returncode not in (0, 1):  # 1: the gate or a scenario failed; still a timeline
            lines = output.read_text(errors="replace").splitlines()
            said = [ln for ln in lines if "error" in ln.lower()] or lines[-1:] or ["no output"]
            sys.exit(f"timeline: pytest exited {proc.returncode}: {said[-1].strip()}")
        marks = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    starts = {(m["process"], m["item"]): m["t"] for m in marks if m["what"] == "start"}
    spans = sorted(
        (
            {
                "item": m["item"],
                "process": m["process"],
                "start": starts[(m["process"], m["item"])],
                "end": m["t"],
            }
            for m in marks
            if m["what"] == "finish"
        ),
        key=lambda s: s["start"],
    )
    for sample in samples:
        sample["running"] = sorted(
            f"{s['process']}:{s['item']}" for s in spans if s["start"] <= sample["t"] < s["end"]
        )
    first_start = min((s["start"] for s in spans), default=None)
    last_end = max((s["end"] for s in spans), default=None)
    return {
        "returncode": proc.returncode,
        "wall_s": round(wall, 2),
        "first_scenario_start_s": first_start,
        "last_scenario_end_s": last_end,
        "mean_busy_cores": round(sum(s["busy_cores"] for s in samples) / len(samples), 2)
        if samples
        else None,
        "milestones": [m for m in marks if m["what"] not in ("start", "finish")],
        "scenarios": spans,
        "cpu": samples,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="xdist workers (0: serial)")
    parser.add_argument("--seed", type=int, default=20250723, help="--orch-seed of the run")
    parser.add_argument("--interval", type=float, default=0.5, help="CPU sample period, s")
    args = parser.parse_args(argv)
    if args.workers < 0 or not 0.05 <= args.interval <= 10:
        parser.error("--workers must be >= 0 and --interval within 0.05..10 s")
    out = {
        "benchmark": "timeline",
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "seed": args.seed,
        **run(args.workers, args.seed, args.interval),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
