"""Where the CPU of a process tree goes, by the role each process plays. Used by the benchmarks.

A command is run under ``perf record -e task-clock`` (CPU samples of every process forked from
it, wherever it is reparented: the tmux server daemonises) and ``strace -f -e trace=execve``
(which program each pid runs). Joining the two on pid gives CPU seconds and process counts per
role: the pytest controller, the sim agent, the PostToolUse hook, the ``gh`` stand-in, the
launch wrapper, git, tmux, the shell. Both tools are optional: without them the run is timed
and nothing more.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_HZ = 250

# First match wins; tested against " ".join(argv).
_ROLES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("tmux", re.compile(r"^(\S*/)?tmux( |$)")),
    ("git", re.compile(r"^(\S*/)?git(-[a-z-]+)?( |$)")),
    ("hook (checkpoint + faults)", re.compile(r"chaos\.faulthook|checkpoint --from-hook")),
    ("sim agent", re.compile(r"pytest_orch_recovery(\.doubles)?\.simagent|orch-sim-agent")),
    ("gh (forge stand-in)", re.compile(r"forge_cli|^(\S*/)?gh( |$)")),
    ("launch wrapper", re.compile(r"runtime\.wrapper")),
    ("pytest (controller, xdist workers)", re.compile(r"--orch-chaos|execnet|exec\(eval\(")),
    ("task tests (pytest in a worktree)", re.compile(r"(^|/)pytest( |$)|-m pytest")),
    (
        "pyenv shims (bash)",
        re.compile(r"/\.pyenv/(shims|libexec|plugins)/|^(\S*/)?pyenv(-[a-z-]+)?( |$)"),
    ),
    ("sh", re.compile(r"^(\S*/)?(sh|dash|bash)( |$)")),
    ("claude (real CLI)", re.compile(r"claude")),
)
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def role_of(argv: Sequence[str]) -> str:
    """The role a process plays, from its command line.

    >>> role_of(["/usr/bin/python3", "-P", "-m", "pytest_orch_recovery.chaos.faulthook"])
    'hook (checkpoint + faults)'
    >>> role_of(["git", "commit", "-m", "x"])
    'git'
    >>> role_of(["/usr/lib/git-core/git-receive-pack", "/tmp/origin.git"])
    'git'
    """
    line = " ".join(argv)
    for name, pattern in _ROLES:
        if pattern.search(line):
            return name
    return Path(argv[0]).name if argv else "?"


@dataclass
class Breakdown:
    wall_s: float
    returncode: int
    cpu_s: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds
    processes: dict[str, int] = field(default_factory=dict)  # role -> execs
    profiled: bool = False

    def to_json(self) -> dict[str, Any]:
        total = sum(self.cpu_s.values())
        return {
            "wall_s": round(self.wall_s, 2),
            "returncode": self.returncode,
            "profiled": self.profiled,
            "cpu_s_total": round(total, 2),
            "by_role": {
                role: {
                    "cpu_s": round(cpu, 2),
                    "processes": self.processes.get(role, 0),
                    "cpu_ms_per_process": (
                        round(1000 * cpu / self.processes[role], 1)
                        if self.processes.get(role)
                        else None
                    ),
                }
                for role, cpu in sorted(self.cpu_s.items(), key=lambda kv: -kv[1])
            },
        }


def available() -> bool:
    return shutil.which("perf") is not None and shutil.which("strace") is not None


def run(
    argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, profile: bool = True
) -> Breakdown:
    """Run ``argv`` to completion; with ``profile``, under perf and strace."""
    if not (profile and available()):
        start = time.perf_counter()
        proc = subprocess.run(list(argv), cwd=cwd, env=env, check=False, stdout=subprocess.DEVNULL)
        return Breakdown(time.perf_counter() - start, proc.returncode)
    with tempfile.TemporaryDirectory(prefix="proctrace-") as tmp:
        perf_data, trace = Path(tmp) / "perf.data", Path(tmp) / "exec.trace"
        wrapped = [
            "perf",
            "record",
            "-q",
            "-e",
            "task-clock",
            "-F",
            str(SAMPLE_HZ),
            "-o",
            str(perf_data),
            "--",
            "strace",
            "-f",
            "--seccomp-bpf",
            "-e",
            "trace=execve",
            "-qq",
            "-s",
            "300",
            "-o",
            str(trace),
            "--",
            *argv,
        ]
        start = time.perf_counter()
        proc = subprocess.run(
            wrapped,
            cwd=cwd,
            env=env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        roles, processes = _roles(trace)
        cpu = _cpu_by_pid(perf_data)
    out = Breakdown(wall, proc.returncode, profiled=True, processes=processes)
    by_role: dict[str, float] = collections.defaultdict(float)
    for (pid, comm), seconds in cpu.items():
        role = roles.get(pid)
        if role is None:
            # A fork that never exec'd (a Python subprocess before exec, strace itself).
            role = comm if comm in ("strace", "perf") else f"{comm} (no exec seen)"
        by_role[role] += seconds
    out.cpu_s = dict(by_role)
    return out


def _roles(trace: Path) -> tuple[dict[int, str], dict[str, int]]:
    roles: dict[int, str] = {}
    counts: dict[str, int] = collections.Counter()
    pending: dict[int, list[str]] = {}  # pid -> argv of an execve strace split in two lines
    for line in trace.read_text(errors="replace").splitlines():
        pid_text, _, rest = line.partition(" ")
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        rest = rest.lstrip()
        if rest.startswith("execve("):
            argv = _argv(rest)
            if rest.endswith("<unfinished ...>"):
                pending[pid] = argv
                continue
            if not rest.endswith("= 0"):
                continue  # a PATH search that missed
        elif rest.startswith("<... execve resumed>"):
            argv = pending.pop(pid, [])
            if not rest.endswith("= 0") or not argv:
                continue
        else:
            continue
        role = role_of(argv)
        if roles.get(pid) == role:
            continue  # the same program re-exec'd
        roles[pid] = role  # the last program a pid runs owns its CPU
        counts[role] += 1
    return roles, dict(counts)


def _argv(call: str) -> list[str]:
    start = call.find("[")
    end = call.find("], ", start)
    if start < 0:
        return []
    inner = call[start + 1 : end if end > 0 else len(call)]
    return [_unescape(a) for a in _ARG.findall(inner)]


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def _cpu_by_pid(perf_data: Path) -> dict[tuple[int, str], float]:
    proc = subprocess.run(
        ["perf", "script", "-F", "comm,pid,period", "-i", str(perf_data)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, PAGER="cat"),
    )
    out: dict[tuple[int, str], float] = collections.defaultdict(float)
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            pid, period = int(parts[-2]), int(parts[-1])
        except ValueError:
            continue
        out[(pid, " ".join(parts[:-2]))] += period / 1e9
    return dict(out)
