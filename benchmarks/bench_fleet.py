"""``orch-recovery supervise`` at fleet scale: N fault-free tasks submitted at once. Prints JSON.

Each run is an operator's world built from scratch: a git repository with a bare origin, the
forge's ``gh`` first on PATH, the sim agent talking to the model double, and ``supervise`` as
a subprocess on its own tmux server. Each task's plan is: think (``sleep``, default 10 s), write
its file, commit, push, open the PR. All N are submitted in one task file, and the run ends
when every task has succeeded (or a bound passes).

Per run it prints:

- ``exit_to_decision`` p50 / p95 / max: from the agent's own end (the launch wrapper's
  ``ended_at`` in its exit file, the same clock as the journal) to the journal's decision on
  that attempt (``task_succeeded``, or ``decision``);
- ``wall``: from the submission to the last task's success;
- the supervisor's CPU per task: its own (``utime + stime``), and with the subprocesses it
  waited for (git, tmux clients, ``gh``), read from ``/proc`` just before it is stopped;
- the invariants: every task first try, no attempt launched twice, nothing left behind (no
  live session, no agent process) after the fleet finished;
- the load average at the start and the end (the machine may be shared).

``--baseline REV`` runs the same sizes with the package as it is at git revision ``REV``
(extracted with ``git archive`` into a temporary directory, and put first on ``PYTHONPATH``
of the supervisor and every agent), alternating with the working tree's, so the two loops are
compared under the same load; ``ratio_p95`` is baseline over current. The world is this
tree's in both: the forge's ``gh`` shim starts the forge from the tree that installed it (the
sim agents, the wrapper and the supervisor are REV's).

Run: ``python benchmarks/bench_fleet.py [--sizes 10,40,100,200] [--baseline REV]
[--think 10] [--bound 900]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_orch_recovery.doubles.forge import Forge, install_gh_shim  # noqa: E402
from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, plan_for_task  # noqa: E402
from pytest_orch_recovery.doubles.modeldouble.plan import Step, TaskPlan  # noqa: E402
from pytest_orch_recovery.engine.model import Task  # noqa: E402
from pytest_orch_recovery.infra.git import create_repo_with_origin  # noqa: E402
from pytest_orch_recovery.runtime.server import kill_tmux_server  # noqa: E402

_DECIDED = ("task_succeeded", "decision")


def _tasks(n: int) -> list[Task]:
    return [Task(f"t{i:04d}", f"Write note number {i}", (f"note{i:04d}.md",)) for i in range(n)]


def _plan(tasks: list[Task], think: float) -> Plan:
    plans = []
    for task in tasks:
        standard = plan_for_task(task)
        think_step = Step("bash", f"sleep {think:g}", "free", description="Think")
        plans.append(TaskPlan(standard.match, (think_step, *standard.steps), standard.final))
    return Plan(tuple(plans))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 3)


def _cpu(pid: int) -> tuple[float, float]:
    """(own, own + waited-for children) CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime) / tick, (utime + stime + cutime + cstime) / tick


def _events(journal: Path) -> list[dict[str, Any]]:
    if not journal.exists():
        return []
    out = []
    for line in journal.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


@contextlib.contextmanager
def _code_at(rev: str | None) -> Iterator[Path]:
    """The package source at ``rev`` (None: this working tree)."""
    if rev is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="bench-fleet-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "pytest_orch_recovery"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def run_fleet(n: int, code: Path, *, label: str, **settings: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-fleet-{n}-") as tmp:
        return _run_in(Path(tmp), n, code, label=label, **settings)


def _run_in(
    root: Path,
    n: int,
    code: Path,
    *,
    think: float,
    bound: float,
    label: str,
    fleet_settings: dict[str, Any],
) -> dict[str, Any]:
    repo, origin = create_repo_with_origin(root / "project")
    Forge(root / "forge", origin=origin)
    install_gh_shim(root / "bin", root / "forge")
    home = root / "home"
    home.mkdir()
    socket = f"bench-fleet-{os.getpid()}-{n}-{label}"
    tasks = _tasks(n)
    double = ModelDouble(_plan(tasks, think)).start()
    env = {
        **os.environ,
        "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "PYTHONPATH": str(code),
    }
    env.pop("TMUX", None)
    config = root / "fleet.toml"
    config.write_text(
        "\n".join(
            [
                f"repository = {json.dumps(str(repo))}",
                'agent = "sim"',
                f"tmux_socket = {json.dumps(socket)}",
                "attempt_timeout = 1800",
                "intake_interval = 0.5",
                'env_allow = ["PATH", "HOME", "LANG", "LC_*", "TMPDIR", "PYTHONPATH", "GH_*"]',
                *(f"{k} = {json.dumps(v)}" for k, v in fleet_settings.items()),
                "",
                "[env]",
                f"ANTHROPIC_BASE_URL = {json.dumps(double.url)}",
                'ANTHROPIC_API_KEY = "sk-ant-api03-double-not-a-real-key"',
                'IS_SANDBOX = "1"',
                "",
            ]
        )
    )
    task_file = root / "tasks.toml"
    task_file.write_text(
        "".join(
            f'[[tasks]]\nid = "{t.task_id}"\ntitle = "{t.title}"\n'
            f"deliverables = {json.dumps(list(t.deliverables))}\n\n"
            for t in tasks
        )
    )
    journal = root / ".orch-fleet" / "journal.jsonl"
    results = root / ".orch-fleet" / "results"
    log = (root / "supervise.log").open("w")
    load_start = os.getloadavg()
    profile = (
        ["-m", "cProfile", "-o", os.environ["BENCH_FLEET_PROFILE"]]
        if os.environ.get("BENCH_FLEET_PROFILE")
        else []
    )
    proc = subprocess.Popen(
        [sys.executable, *profile, "-m", "pytest_orch_recovery", "supervise", "--config",
         str(config)],
        cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own session, as under systemd (see supervisor_nice)
    )  # fmt: skip
    try:
        while "supervising" not in (root / "supervise.log").read_text():
            if proc.poll() is not None:
                raise RuntimeError((root / "supervise.log").read_text())
            time.sleep(0.1)
        submitted = time.time()
        subprocess.run(
            [sys.executable, "-m", "pytest_orch_recovery", "submit", "--config", str(config),
             str(task_file)],
            cwd=root, env=env, check=True, capture_output=True,
        )  # fmt: skip
        done = 0
        while time.time() - submitted < bound:
            events = _events(journal)
            done = sum(1 for e in events if e["kind"] in ("task_succeeded", "task_escalated"))
            if done >= n or proc.poll() is not None:
                break
            time.sleep(0.5)
        finished = time.time()
        own, with_children = _cpu(proc.pid)
        time.sleep(1.0)  # the pass that saw the last success cleans its session up
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        log.close()
        sessions = subprocess.run(
            ["tmux", "-L", socket, "list-sessions", "-F", "#{session_name}"],
            capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        kill_tmux_server(socket)
        double.stop()
    load_end = os.getloadavg()
    events = _events(journal)
    launched: dict[str, int] = {}
    for e in events:
        if e["kind"] == "attempt_launched":
            launched[e["task_id"]] = launched.get(e["task_id"], 0) + 1
    succeeded = [e for e in events if e["kind"] == "task_succeeded"]
    delays: list[float] = []
    noticed: list[float] = []
    for e in events:
        if e["kind"] not in (*_DECIDED, "attempt_exited"):
            continue
        record = results / f"{e['agent']}.{e['attempt']}.exit.json"
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
            ended = float(json.loads(record.read_text())["ended_at"])
            (noticed if e["kind"] == "attempt_exited" else delays).append(e["time"] - ended)
    alive_agents = subprocess.run(
        ["pgrep", "-f", f"{root}/.orch-fleet"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "code": label,
        "tasks": n,
        "succeeded": len(succeeded),
        "first_try": sum(1 for e in succeeded if e["data"].get("first_try")),
        "launched_twice": sorted(t for t, k in launched.items() if k > 1),
        "left_behind": {"sessions": sessions, "processes": alive_agents},
        "exit_to_decision_s": {
            "n": len(delays),
            "p50": _percentile(delays, 0.5),
            "p95": _percentile(delays, 0.95),
            "max": _percentile(delays, 1.0),
        },
        "exit_to_journaled_exit_s": {
            "p50": _percentile(noticed, 0.5),
            "p95": _percentile(noticed, 0.95),
        },
        "wall_s": round(finished - submitted, 1),
        "supervisor_cpu_ms_per_task": {
            "own": round(1000 * own / n, 1),
            "with_subprocesses": round(1000 * with_children / n, 1),
        },
        "loadavg_start_end": [round(load_start[0], 2), round(load_end[0], 2)],
    }


def _settings(pairs: list[str]) -> dict[str, Any]:
    return {k: json.loads(v) for k, _, v in (p.partition("=") for p in pairs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,40,100,200", help="comma-separated fleet sizes")
    parser.add_argument("--baseline", metavar="REV", help="also run the package at git REV")
    parser.add_argument("--think", type=float, default=10.0, help="seconds each agent thinks")
    parser.add_argument("--bound", type=float, default=900.0, help="seconds per run at most")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a fleet file setting for every run, e.g. --set agent_nice=10",
    )
    parser.add_argument(
        "--set-current",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a fleet file setting for the working tree's runs only (a key the baseline "
        "does not know, e.g. supervisor_nice=10)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    fleet_settings = _settings(args.set)
    current_settings = {**fleet_settings, **_settings(args.set_current)}
    runs = []
    with _code_at(args.baseline) as base_code:
        for n in sizes:
            modes = [("current", ROOT)]
            if args.baseline:
                modes.append((f"baseline {args.baseline}", base_code))
            pair = {}
            for label, code in modes:
                run = run_fleet(
                    n,
                    code,
                    think=args.think,
                    bound=args.bound,
                    label=label[:8],
                    fleet_settings=current_settings if code == ROOT else fleet_settings,
                )
                run["code"] = label
                print(json.dumps(run), file=sys.stderr, flush=True)
                pair[label] = run
                runs.append(run)
            if args.baseline:
                base_p95 = pair[f"baseline {args.baseline}"]["exit_to_decision_s"]["p95"]
                cur_p95 = pair["current"]["exit_to_decision_s"]["p95"]
                if base_p95 and cur_p95:
                    runs.append({"tasks": n, "ratio_p95": round(base_p95 / cur_p95, 2)})
    print(
        json.dumps({"cores": os.cpu_count(), "settings": current_settings, "runs": runs}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
