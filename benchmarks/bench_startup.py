"""Start-up cost of every process an agent attempt starts, against the floor. Prints JSON.

Each tool call of each agent runs the PostToolUse hook (a Python process); each attempt starts
the launch wrapper and the sim agent; each ``gh`` call starts the forge stand-in. This times
each of them (CPU seconds of the process and what it waited for, from ``wait4``; wall time)
against the floors measured in the same run: a bare interpreter (``python -P -c pass``), a bare
``git commit`` and a bare tmux ``new-session`` — twice: from source, as the machines here run
(``PYTHONDONTWRITEBYTECODE=1``: nothing is cached unless the install compiled it), and from
bytecode compiled by ``python -m compileall`` (as ``.ci/run`` does after installing).

Run: ``python benchmarks/bench_startup.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_orch_recovery.runtime.server import kill_tmux_server

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_orch_recovery"


def _once(
    argv: Sequence[str], *, env: dict[str, str], cwd: Path, stdin: bytes
) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1, 2):  # 1, 2: a usage error, after every import
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, wall


def measure(
    argv: Sequence[str], *, repeat: int, env: dict[str, str], cwd: Path, stdin: bytes = b""
) -> dict[str, float]:
    _once(argv, env=env, cwd=cwd, stdin=stdin)  # warm the page cache
    cpu, wall = zip(
        *(_once(argv, env=env, cwd=cwd, stdin=stdin) for _ in range(repeat)), strict=True
    )
    return {
        "cpu_ms_median": round(1000 * statistics.median(cpu), 1),
        "cpu_ms_min": round(1000 * min(cpu), 1),
        "wall_ms_min": round(1000 * min(wall), 1),
    }


def _package_copy(root: Path, *, compiled: bool) -> Path:
    target = root / ("compiled" if compiled else "source")
    shutil.copytree(
        PACKAGE, target / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    if compiled:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(target / PACKAGE.name)], check=True
        )
    return target


def _entries(work: Path) -> dict[str, tuple[list[str], bytes, dict[str, str]]]:
    """name -> (module and arguments, stdin, extra environment)."""
    checkpoints = work / "checkpoints"
    checkpoints.mkdir()
    payload = json.dumps(
        {
            "session_id": "s1",
            "hook_event_name": "PostToolUse",
            "tool_name": "Write",
            "cwd": str(work),
            "tool_input": {"file_path": str(work / "fake3.md"), "content": "x"},
            "tool_response": {"filePath": str(work / "fake3.md"), "success": True},
        }
    ).encode()
    plan = work / "plan.json"
    state = work / "state"
    state.mkdir()
    plan.write_text(json.dumps({"state_dir": str(state), "faults": [], "context": {}}))
    spec = work / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "agent": "a",
                "attempt": 1,
                "key": "a:1",
                "argv": ["true"],
                "env": {"PATH": "/usr/bin:/bin"},
                "cwd": str(work),
                "exit_file": str(work / "exit.json"),
                "fifo": None,
            }
        )
    )
    hook_env = {
        "ORCH_AGENT": "task-agent-5030",
        "ORCH_ATTEMPT": "1",
        "ORCH_TASK_ID": "t1",
        "ORCH_CHECKPOINT_DIR": str(checkpoints),
    }
    return {
        "hook: checkpoint --from-hook": (
            [
                "pytest_orch_recovery",
                "checkpoint",
                "--from-hook",
                "--agent",
                "task-agent-5030",
                "--dir",
                str(checkpoints),
            ],
            payload,
            {},
        ),
        "hook: chaos.faulthook (checkpoint + faults)": (
            ["pytest_orch_recovery.chaos.faulthook", "--plan", str(plan)],
            payload,
            hook_env,
        ),
        "sim agent --version": (["pytest_orch_recovery.doubles.simagent", "--version"], b"", {}),
        "launch wrapper running true": (
            ["pytest_orch_recovery.runtime.wrapper", str(spec)],
            b"",
            {},
        ),
        "gh (forge stand-in), no forge root": (["pytest_orch_recovery.doubles.forge_cli"], b"", {}),
    }


def _argv(copy: Path, lean: bool, module_args: list[str]) -> list[str]:
    if lean:
        script = copy / PACKAGE.name / "infra" / "lean_python.py"
        return [sys.executable, "-S", "-P", str(script), *module_args]
    return [sys.executable, "-P", "-m", *module_args]


def floors(work: Path, repeat: int, env: dict[str, str]) -> dict[str, Any]:
    repo = work / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git_env = dict(
        env,
        GIT_AUTHOR_NAME="b",
        GIT_AUTHOR_EMAIL="b@example.invalid",
        GIT_COMMITTER_NAME="b",
        GIT_COMMITTER_EMAIL="b@example.invalid",
    )
    socket = f"bench-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", socket, "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "keep"], check=True, env=env)
    try:
        return {
            "floor: git commit --allow-empty": measure(
                ["git", "commit", "-q", "--allow-empty", "-m", "x"],
                repeat=repeat,
                env=git_env,
                cwd=repo,
            ),
            "floor: tmux new-session (server up)": measure(
                [
                    "sh",
                    "-c",
                    'tmux -L "$1" -f /dev/null new-session -d -s "s$$" true',
                    "sh",
                    socket,
                ],
                repeat=repeat,
                env=env,
                cwd=work,
            ),
        }
    finally:
        kill_tmux_server(socket)  # and its socket file


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each command")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {
        "benchmark": "startup",
        "repeat": args.repeat,
        "load_average": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        base_env["PYTHONDONTWRITEBYTECODE"] = "1"
        for compiled in (False, True):
            copy = _package_copy(root, compiled=compiled)
            env = dict(base_env, PYTHONPATH=str(copy))
            results: dict[str, Any] = {
                "floor: python -P -c pass": measure(
                    [sys.executable, "-P", "-c", "pass"], repeat=args.repeat, env=env, cwd=root
                ),
                "floor: python -S -P -c pass": measure(
                    [sys.executable, "-S", "-P", "-c", "pass"],
                    repeat=args.repeat,
                    env=env,
                    cwd=root,
                ),
            }
            entries = _entries(Path(tempfile.mkdtemp(dir=root)))
            for name, (module_args, stdin, extra) in entries.items():
                for lean in (False, True):
                    label = f"{name} [{'lean: -S -P lean_python.py' if lean else '-P -m'}]"
                    results[label] = measure(
                        _argv(copy, lean, module_args),
                        repeat=args.repeat,
                        env=dict(env, **extra),
                        cwd=root,
                        stdin=stdin,
                    )
            out["compiled_bytecode" if compiled else "from_source"] = results
        out["floors"] = floors(root, args.repeat, base_env)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
