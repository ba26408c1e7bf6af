"""Several hosts over the fleet store, end to end: failover time and supervisor CPU. Prints JSON.

Each run builds an operator's world from scratch, as ``bench_fleet.py`` does (a repository
with a bare origin, the forge's ``gh``, the sim agent talking to the model double), plus a
private PostgreSQL server (``LocalPostgres``) and one clone, tmux server and state directory
per host; every host is ``orch-recovery supervise --host NAME`` as a subprocess.

- ``failover``, per lease length: alpha holds one task whose agent is mid-attempt (thinking);
  beta waits with room. Alpha's machine goes down at once (SIGKILL of the supervisor and of
  every process of its agents, its tmux server killed); the figure is from that moment to the
  database's ``launched_at`` of attempt 2 on beta: the lease running out, beta's next claim,
  the takeover (fetching the rescue ref, the workspace) and the relaunch.
- ``cpu``: the same N tasks (each thinks ``--think`` seconds, then writes, commits, pushes and
  opens its PR) on one host with room for all, then on three hosts with a third each; the
  supervisors' own CPU (``utime + stime``, summed over hosts) per task and per live
  agent-second, from the submission to the last success.

Run: ``python benchmarks/bench_hosts.py [--leases 2,4,8] [--tasks 12] [--think 20]``.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from bench_fleet import _cpu, _plan, _tasks  # noqa: E402
from bench_store import _database  # noqa: E402

from pytest_orch_recovery.doubles.forge import Forge, install_gh_shim  # noqa: E402
from pytest_orch_recovery.doubles.modeldouble import ModelDouble  # noqa: E402
from pytest_orch_recovery.engine.model import Task  # noqa: E402
from pytest_orch_recovery.infra.git import create_repo_with_origin, run_git  # noqa: E402
from pytest_orch_recovery.infra.postgres_server import LocalPostgres  # noqa: E402
from pytest_orch_recovery.infra.processes import pids_with_env, wait_gone  # noqa: E402
from pytest_orch_recovery.runtime.server import kill_tmux_server  # noqa: E402

BOUND = 600.0


@dataclass
class World:
    root: Path
    store: str
    env: dict[str, str]
    double: ModelDouble
    origin: Path
    repo: Path
    hosts: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def fleet_file(self, name: str, capacity: int, lease: float) -> Path:
        repo = self.repo
        if name != "alpha":
            repo = self.root / name / "repo"
            run_git(["clone", "--quiet", str(self.origin), str(repo)], cwd=self.root)
            for key in ("user.name", "user.email"):
                value = run_git(["config", key], cwd=self.repo).stdout.strip()
                run_git(["config", key, value], cwd=repo)
        config = self.root / f"{name}.toml"
        lines = [
            f"repository = {json.dumps(str(repo))}",
            'agent = "sim"',
            f"tmux_socket = {json.dumps(self.socket(name))}",
            f"state_dir = {json.dumps(str(self.root / f'.orch-{name}'))}",
            f"store = {json.dumps(self.store)}",
            f"lease = {lease:g}",
            f"max_live_agents = {capacity}",
            "attempt_timeout = 1800",
            "intake_interval = 0.5",
            'env_allow = ["PATH", "HOME", "LANG", "LC_*", "TMPDIR", "PYTHONPATH", "GH_*"]',
            "",
            "[env]",
            f"ANTHROPIC_BASE_URL = {json.dumps(self.double.url)}",
            'ANTHROPIC_API_KEY = "sk-ant-api03-double-not-a-real-key"',
            'IS_SANDBOX = "1"',
            "",
        ]
        config.write_text("\n".join(lines))
        return config

    def socket(self, name: str) -> str:
        return f"bench-hosts-{os.getpid()}-{name}"

    def start(self, name: str, config: Path) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest_orch_recovery", "supervise", "--config", str(config),
             "--host", name],
            cwd=self.root, env=self.env, stdin=subprocess.DEVNULL, stdout=log.open("w"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait(lambda: "supervising" in log.read_text(), f"{name} supervising", proc)
        self.hosts[name] = proc
        return proc

    def submit(self, config: Path, tasks: list[Task]) -> None:
        task_file = self.root / f"tasks-{time.monotonic_ns()}.toml"
        task_file.write_text(
            "".join(
                f'[[tasks]]\nid = "{t.task_id}"\ntitle = "{t.title}"\n'
                f"deliverables = {json.dumps(list(t.deliverables))}\n\n"
                for t in tasks
            )
        )
        subprocess.run(
            [sys.executable, "-m", "pytest_orch_recovery", "submit", "--config", str(config),
             str(task_file)],
            cwd=self.root, env=self.env, check=True, capture_output=True,
        )  # fmt: skip

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.store) as conn:
            return conn.execute(sql).fetchall()

    def close(self) -> None:
        for name, proc in self.hosts.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
            kill_tmux_server(self.socket(name))
        self.double.stop()


def _wait(ready: Any, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    end = time.monotonic() + BOUND
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited {proc.returncode}")
        if time.monotonic() > end:
            raise RuntimeError(f"no {what} in {BOUND:.0f} s")
        time.sleep(0.05)


@contextlib.contextmanager
def _world(server: LocalPostgres, tasks: list[Task], think: float, name: str) -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="bench-hosts-") as tmp:
        root = Path(tmp)
        repo, origin = create_repo_with_origin(root / "project")
        Forge(root / "forge", origin=origin)
        install_gh_shim(root / "bin", root / "forge")
        (root / "home").mkdir()
        env = {
            **os.environ,
            "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(root / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "PYTHONPATH": str(ROOT),
        }
        env.pop("TMUX", None)
        double = ModelDouble(_plan(tasks, think)).start()
        world = World(root, _database(server, name), env, double, origin, repo)
        try:
            yield world
        finally:
            world.close()


def failover(server: LocalPostgres, lease: float, index: int) -> dict[str, Any]:
    task = Task("t-held", "Write the held note", ("held.md",))
    with _world(server, [task], 600.0, f"failover{index}") as world:
        alpha_config = world.fleet_file("alpha", 1, lease)
        beta_config = world.fleet_file("beta", 1, lease)
        alpha = world.start("alpha", alpha_config)
        world.submit(alpha_config, [task])
        _wait(lambda: world.query("SELECT 1 FROM orch_launches"), "attempt 1", alpha)
        results = world.root / ".orch-alpha" / "results"
        _wait(lambda: pids_with_env("ORCH_RESULTS_DIR", str(results.resolve())), "alpha's agent")
        world.start("beta", beta_config)
        time.sleep(1.0)  # the agent is mid-attempt (it thinks for 600 s)
        killed_at = time.time()
        alpha.send_signal(signal.SIGKILL)
        agents = pids_with_env("ORCH_RESULTS_DIR", str(results.resolve()))
        for pid in agents:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kill_tmux_server(world.socket("alpha"))
        alpha.wait(timeout=60)
        wait_gone(agents, 60)
        _wait(
            lambda: world.query("SELECT 1 FROM orch_launches WHERE attempt = 2"),
            "attempt 2 on beta",
        )
        ((relaunched, host),) = world.query(
            "SELECT extract(epoch FROM launched_at), host FROM orch_launches WHERE attempt = 2"
        )
        return {
            "lease_s": lease,
            "relaunched_on": host,
            "kill_to_relaunch_s": round(float(relaunched) - killed_at, 2),
            "beyond_lease_s": round(float(relaunched) - killed_at - lease, 2),
        }


def cpu(server: LocalPostgres, n: int, think: float, hosts: int, index: int) -> dict[str, Any]:
    tasks = _tasks(n)
    names = ["alpha", "beta", "gamma"][:hosts]
    with _world(server, tasks, think, f"cpu{index}") as world:
        configs = {name: world.fleet_file(name, -(-n // hosts), 30.0) for name in names}
        procs = {name: world.start(name, configs[name]) for name in names}
        before = {name: _cpu(p.pid)[0] for name, p in procs.items()}
        submitted = time.time()
        world.submit(configs[names[0]], tasks)
        _wait(
            lambda: world.query("SELECT count(*) FROM orch_tasks WHERE state = 'done'")[0][0] == n,
            "every task done",
        )
        wall = time.time() - submitted
        used = sum(_cpu(p.pid)[0] - before[name] for name, p in procs.items())
        by_host = world.query("SELECT host, count(*) FROM orch_launches GROUP BY host")
        agent_seconds = float(
            world.query(
                "SELECT sum(extract(epoch FROM e.appended_at - l.launched_at)) "
                "FROM orch_launches l JOIN orch_events e ON e.task_id = l.task_id "
                "AND e.attempt = l.attempt AND e.kind = 'attempt_exited'"
            )[0][0]
        )
        return {
            "hosts": hosts,
            "tasks": n,
            "launches_by_host": dict(sorted((str(h), int(c)) for h, c in by_host)),
            "wall_s": round(wall, 1),
            "supervisor_cpu_s": round(used, 2),
            "cpu_ms_per_task": round(1000 * used / n, 1),
            "cpu_ms_per_agent_second": round(1000 * used / agent_seconds, 2),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leases", default="2,4,8", help="lease lengths, seconds")
    parser.add_argument("--tasks", type=int, default=12, help="tasks of the CPU runs")
    parser.add_argument("--think", type=float, default=20.0, help="each task's think, seconds")
    args = parser.parse_args()
    out: dict[str, Any] = {"loadavg_start": round(os.getloadavg()[0], 2)}
    with LocalPostgres() as server:
        server.start()
        out["failover"] = [
            failover(server, float(lease), i) for i, lease in enumerate(args.leases.split(","))
        ]
        out["cpu"] = [cpu(server, args.tasks, args.think, hosts, hosts) for hosts in (1, 3)]
    one, three = out["cpu"]
    out["cpu_per_agent_second_three_over_one"] = round(
        three["cpu_ms_per_agent_second"] / one["cpu_ms_per_agent_second"], 2
    )
    out["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
