"""Ctrl-C (and SIGTERM) of a running ``pytest --orch-chaos`` campaign leaves nothing behind.

Each test starts the real plugin in a subprocess on the tmux tier with an isolated ``TMPDIR``,
waits until an agent is really running in a tmux session of the run's sandbox, signals pytest,
and then looks for what the run could have left: a tmux server on a socket it created, a process
it started (by the sandbox marker, and by the run's private ``TMPDIR`` which every process it
starts inherits), a sandbox or work directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from waiting import wait_until

from pytest_orch_recovery.chaos import BUNDLED_SCENARIOS
from pytest_orch_recovery.doubles.sandbox import LEDGER_NAME, Ledger, default_base_dir, reap_stale
from pytest_orch_recovery.infra.processes import pids_with_env
from pytest_orch_recovery.runtime.server import tmux_server_running, tmux_socket_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

REPO = Path(__file__).resolve().parent.parent
MARKER = "ORCH_SANDBOX_ID"
SANDBOX_BASE = default_base_dir().name  # orch-sandboxes, under the run's TMPDIR
START_DEADLINE = 120.0  # seconds for pytest to start and the agent to reach its stall
EXIT_DEADLINE = 60.0  # seconds for pytest to unwind after the signal (teardown has 5 s graces)

T = TypeVar("T")

# A second scenario that would run after the first: a run told to stop must not start it.
SECOND = """
name = "zz-after"

[[tasks]]
id = "later"
title = "Write the changelog"
deliverables = ["CHANGELOG.md"]
"""


@dataclass
class _Run:
    """One signalled campaign: the process, its private TMPDIR and what it was seen to own."""

    proc: subprocess.Popen[bytes]
    tmpdir: Path
    sockets_before: set[str]
    ledgers: dict[str, Ledger] = field(default_factory=dict)  # sandbox id -> ledger

    def watch_ledgers(self) -> None:
        # Sandboxes come and go while we look (the next run reaps stale ones): list the
        # sandbox base one level deep and take a vanished entry as gone, not as an error.
        try:
            roots = list((self.tmpdir / SANDBOX_BASE).iterdir())
        except OSError:
            return
        for root in roots:
            try:
                ledger = Ledger.load(root / LEDGER_NAME)
            except (OSError, ValueError):
                continue  # being created or replaced atomically, or gone already
            if ledger.owner_pid == self.proc.pid:  # not an earlier run's stale sandbox
                self.ledgers.setdefault(ledger.sandbox_id, ledger)


def _tmux_dir() -> Path:
    return tmux_socket_path("x").parent


def _sockets() -> set[str]:
    directory = _tmux_dir()
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _poll(what: str, check: Callable[[], T | None], run: _Run) -> T:
    """Poll ``check`` until it returns a value, with a bounded deadline.

    Polling, because nothing in the child tells us when its sandbox exists or when its agent
    has started: the ledger and the agent's /proc entry are the only evidence we can observe
    from outside. The interval is short and the deadline bounds the wait.
    """

    def look() -> T | None:
        if run.proc.poll() is not None:
            out = run.proc.stdout.read().decode(errors="replace") if run.proc.stdout else ""
            pytest.fail(f"pytest exited ({run.proc.returncode}) before {what}:\n{out}")
        run.watch_ledgers()
        return check()

    return wait_until(look, what, timeout=START_DEADLINE)


def _running_agent(run: _Run) -> int | None:
    """The pid of an agent process (not the tmux server) carrying a seen sandbox's marker."""
    for sandbox_id in run.ledgers:
        for pid in pids_with_env(MARKER, sandbox_id):
            agent = _environ(pid).get("ORCH_AGENT")
            if agent is not None and agent != "tmux-server":
                return pid
    return None


@pytest.fixture
def campaign(pytester: pytest.Pytester, tmp_path: Path) -> Iterator[Callable[[], _Run]]:
    """Start ``pytest --orch-chaos`` (tmux tier) on ``timeout.toml`` plus a second scenario;
    kill its process group at the end whatever happened, so a failing test leaks nothing."""
    scenarios = pytester.path / "scenarios"
    scenarios.mkdir()
    # timeout.toml: the agent stalls after its first tool call until the 15 s attempt timeout,
    # so there is a live agent in a tmux pane when the signal arrives.
    shutil.copy(BUNDLED_SCENARIOS / "timeout.toml", scenarios / "timeout.toml")
    (scenarios / "zz-after.toml").write_text(SECOND, encoding="utf-8")
    tmpdir = tmp_path / "run-tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "TMUX"))}
    env.update({"TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"})
    started: list[_Run] = []

    def start() -> _Run:
        before = _sockets()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "--orch-chaos",
                "--orch-tier=tmux",
                "--orch-seed=1",
                "--orch-project-scenarios=instead",
                "-p",
                "no:cacheprovider",
                "-v",
            ],
            cwd=pytester.path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a shell job
        )
        run = _Run(proc, tmpdir, before)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
            run.proc.wait()
        if run.proc.stdout is not None:
            run.proc.stdout.close()
    # A failing test leaks nothing either: reap what the (now dead) runs left.
    for ledger_path in list(tmpdir.rglob(LEDGER_NAME)):
        reap_stale(ledger_path.parent.parent)


def _leftovers(*runs: _Run) -> list[str]:
    """Everything of these runs (sharing one TMPDIR) still alive or on disk, one line each."""
    found: list[str] = []
    tmpdir = runs[0].tmpdir
    mine = str(tmpdir)
    ledgers = {k: v for run in runs for k, v in run.ledgers.items()}
    ours = {ledger.tmux_socket for ledger in ledgers.values()}
    for sandbox_id, ledger in ledgers.items():
        socket = ledger.tmux_socket
        if tmux_server_running(socket):
            found.append(f"tmux server alive on socket {socket} (sandbox {sandbox_id})")
        probe = subprocess.run(
            ["tmux", "-L", socket, "-f", "/dev/null", "has-session"],
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if probe.returncode == 0:
            found.append(f"tmux -L {socket} has-session still succeeds")
        for pid in pids_with_env(MARKER, sandbox_id):
            found.append(f"process {pid} carries {MARKER}={sandbox_id}: {_cmdline(pid)}")
    # Sockets that appeared during the runs: other runs on this machine may own some of them,
    # so a live one is ours when its server inherited our private TMPDIR.
    for name in sorted(_sockets() - runs[0].sockets_before):
        shown = subprocess.run(
            ["tmux", "-L", name, "-f", "/dev/null", "display-message", "-p", "#{pid}"],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if shown.returncode == 0:
            if _environ(int(shown.stdout.strip())).get("TMPDIR") == mine:
                found.append(f"tmux server {shown.stdout.strip()} alive on new socket {name}")
        elif name in ours:
            found.append(f"dead socket file left: {_tmux_dir() / name}")
    for pid in pids_with_env("TMPDIR", mine):
        found.append(f"process {pid} started by the run (TMPDIR={mine}): {_cmdline(pid)}")
    # The shared sandbox base may stay (empty); nothing else the runs made may.
    for path in sorted(tmpdir.iterdir()):
        if path.name == SANDBOX_BASE:
            found += [f"sandbox left: {root}" for root in sorted(path.iterdir())]
        else:
            found.append(f"left in TMPDIR: {path}")
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


def _interrupt(run: _Run, send: Callable[[int], None]) -> tuple[int, str]:
    agent = _poll("agent running in a tmux pane", lambda: _running_agent(run), run)
    assert agent > 0
    send(run.proc.pid)
    try:
        code = run.proc.wait(timeout=EXIT_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pytest still running {EXIT_DEADLINE:.0f} s after the signal")
    assert run.proc.stdout is not None
    return code, run.proc.stdout.read().decode(errors="replace")


def test_ctrl_c_leaves_no_tmux_server_process_or_workspace(
    campaign: Callable[[], _Run],
) -> None:
    run = campaign()
    # A terminal's ^C goes to the whole foreground process group.
    code, out = _interrupt(run, lambda pid: os.killpg(pid, signal.SIGINT))
    assert run.ledgers, "never saw the run's sandbox"
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out, out
    assert "zz-after.toml::zz-after" not in out, out
    assert _leftovers(run) == [], out


def test_sigterm_leaves_nothing_and_stops_the_campaign(campaign: Callable[[], _Run]) -> None:
    run = campaign()
    # `kill PID`, a CI runner cancelling the job: SIGTERM to pytest alone.
    code, out = _interrupt(run, lambda pid: os.kill(pid, signal.SIGTERM))
    assert run.ledgers, "never saw the run's sandbox"
    assert _leftovers(run) == [], out
    # Told to terminate, the campaign stops: it does not go on to the next scenario (where a
    # SIGKILL following the SIGTERM would leave a half-built sandbox behind).
    assert "zz-after.toml::zz-after" not in out, out
    assert code == 128 + signal.SIGTERM, out


def test_sigkilled_campaign_is_reaped_by_the_next_run(campaign: Callable[[], _Run]) -> None:
    first = campaign()
    _poll("agent running in a tmux pane", lambda: _running_agent(first), first)
    # SIGKILL: no unwinding at all. The tmux server and its agent run in sessions of their own
    # and survive the owner, and so does the sandbox directory.
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=EXIT_DEADLINE)
    stranded = _leftovers(first)
    assert any("tmux server alive" in line for line in stranded), stranded
    assert any(line.startswith(("sandbox left", "left in TMPDIR")) for line in stranded), stranded
    # The next campaign in the same TMPDIR reaps the stale sandbox when it builds its own.
    second = campaign()
    _poll("agent of the second run", lambda: _running_agent(second), second)
    assert first.ledgers and second.ledgers and not first.ledgers.keys() & second.ledgers.keys()
    code, out = _interrupt(second, lambda pid: os.killpg(pid, signal.SIGINT))
    assert code == pytest.ExitCode.INTERRUPTED, out
    assert _leftovers(first, second) == [], out
