"""A host cut off past its lease, end to end: host alpha's supervisor is frozen (SIGSTOP) with
two agents mid-attempt, one of which dies while it is frozen; beta claims both tasks when the
leases run out and finishes them. Thawed (SIGCONT), alpha wakes where it stopped: the store
refuses what it writes about those tasks, its heartbeat finds them lost, it stops the agent it
still runs and goes on running -- without launching, recording or pushing anything for them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from test_supervise import _BOUND, Fleet, Supervisor, fleet
from test_supervise_store import _all_done, _another_host, _fleet_over_store
from test_supervise_takeover import (
    _assert_starts_match,
    _held,
    _rescue_refs,
    _submit_held,
)
from waiting import wait_until

from pytest_orch_recovery.infra.git import run_git
from pytest_orch_recovery.infra.processes import freeze as infra_freeze
from pytest_orch_recovery.infra.processes import pids_with_env, process_start_time, wait_gone
from pytest_orch_recovery.runtime.server import kill_tmux_server, session_names
from pytest_orch_recovery.store.postgres import PostgresStore

__all__ = ["fleet"]  # the fixture, shared with test_supervise

LEASE = 3.0  # seconds


def _agent_pids(results: Path, agent: str) -> list[int]:
    """The live processes of ``agent`` on the host whose results directory is ``results``."""
    since = process_start_time(os.getpid())
    mine = set(pids_with_env("ORCH_RESULTS_DIR", str(results.resolve()), started_since=since))
    return sorted(mine & set(pids_with_env("ORCH_AGENT", agent, started_since=since)))


def freeze(proc: subprocess.Popen[str]) -> float:
    """SIGSTOP ``proc`` and wait until it is stopped; returns the time it was seen stopped:
    nothing it writes can come after that."""
    assert infra_freeze(proc.pid, _BOUND), f"process {proc.pid} never stopped"
    return time.time()


def _rescue_ref_sha(origin: Path, agent: str) -> str | None:
    shown = run_git(
        ["rev-parse", "--verify", "--quiet", f"refs/orch/rescue/{agent}-work"],
        cwd=origin,
        check=False,
    )
    return shown.stdout.strip() or None


@pytest.mark.slow
def test_a_host_thawed_after_its_leases_ran_out_stops_their_agents_and_decides_nothing(
    fleet: Fleet, store_url: str
) -> None:
    gate = fleet.root / "gate-open"
    held = [_held(fleet, f"t-held{n}", gate) for n in range(2)]
    _fleet_over_store(fleet, store_url, *held, max_live_agents=2, lease=LEASE)
    beta_config, beta_socket = _another_host(fleet, "beta", max_live_agents=2)
    results = fleet.root / ".orch-fleet" / "results"

    alpha = Supervisor(fleet, "--host", "alpha")
    beta: Supervisor | None = None
    frozen = False
    try:
        agents = _submit_held(fleet, alpha, store_url, held)
        beta = Supervisor(fleet, "--config", str(beta_config), "--host", "beta")
        beta.wait_for("supervising")

        # Alpha is cut off: frozen, its agents running on. One of them dies meanwhile; its
        # exit waits for alpha, who will wake up holding no lease to record it under.
        frozen = True
        frozen_at = freeze(alpha.proc)
        dying = _agent_pids(results, agents["t-held1"])
        assert dying, "t-held1's agent was running"
        for pid in dying:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert wait_gone(dying, _BOUND) == []
        survivor = _agent_pids(results, agents["t-held0"])
        assert survivor, "t-held0's agent was running"
        # The agent alpha still runs goes on working and checkpoints: alpha sees that work
        # when it wakes, but the task is no longer its own to push to the origin.
        state = fleet.root / ".orch-fleet"
        (state / "worktrees" / agents["t-held0"] / "more.md").write_text("after the cut\n")
        checkpoint = state / "checkpoints" / f"{agents['t-held0']}.json"
        checkpoint.write_text(checkpoint.read_text() + " ")
        gate.touch()  # beta's attempts pass their tests at once; alpha's agent waits on

        wait_until(lambda: _all_done(store_url, len(held)), "beta finished both", timeout=_BOUND)
        # The finished tasks' rescue refs are gone from the origin: nothing of alpha's after.
        wait_until(lambda: not _rescue_refs(fleet.origin), "rescue refs deleted", timeout=_BOUND)

        # Alpha's agent goes on past its gate: it commits and pushes the branch beta
        # finished. Its host's lease ran out, so the push fence refuses the push.
        agent0 = agents["t-held0"]
        subprocess.run(
            ["tmux", "-L", fleet.socket, "wait-for", "-S", "gate"], check=True, timeout=_BOUND
        )
        log = fleet.root / ".orch-fleet" / "logs" / f"{agent0}.1.log"
        wait_until(
            lambda: log.exists() and "push refused" in log.read_text(errors="replace"),
            f"{agent0}'s push refused",
            timeout=_BOUND,
        )
        stale = run_git(["rev-parse", "HEAD"], cwd=state / "worktrees" / agent0).stdout.strip()
        pushed = run_git(["rev-parse", f"refs/heads/{agent0}-work"], cwd=fleet.origin)
        assert stale != pushed.stdout.strip()
        contains = run_git(
            ["merge-base", "--is-ancestor", stale, pushed.stdout.strip()],
            cwd=fleet.origin,
            check=False,
        )
        assert contains.returncode != 0, "alpha's agent's commit reached the origin"

        alpha.proc.send_signal(signal.SIGCONT)
        frozen = False
        for task in held:
            alpha.wait_for("lost the lease of", task.task_id, "decisions for it belong to")
        # The agent alpha still ran for t-held0 is gone (ended or stopped), and its session.
        assert wait_gone(survivor, _BOUND) == []
        wait_until(
            lambda: not set(agents.values()) & set(session_names(fleet.socket)), "sessions gone"
        )
        assert alpha.proc.poll() is None, "alpha goes on running"
        # Its first pass after the thaw pushed no work in progress for them either.
        for agent in agents.values():
            assert _rescue_ref_sha(fleet.origin, agent) is None
    finally:
        if frozen:
            alpha.proc.send_signal(signal.SIGCONT)
        code = alpha.stop()
        beta_code = beta.stop() if beta is not None else None
        kill_tmux_server(beta_socket)
    assert (code, beta_code) == (0, 0)

    with PostgresStore(store_url) as store:
        launches = store.launches()
    assert sorted((t, a, h) for t, a, _, h, _ in launches) == [
        (task.task_id, attempt, host)
        for task in held
        for attempt, host in ((1, "alpha"), (2, "beta"))
    ]
    with psycopg.connect(store_url) as conn:
        late = conn.execute(
            "SELECT count(*) FROM orch_events WHERE host = 'alpha' AND appended_at > "
            "to_timestamp(%s)",
            (frozen_at,),
        ).fetchone()
    assert late == (0,), "alpha recorded nothing after its freeze"
    _assert_starts_match(fleet, (".orch-fleet", ".orch-beta"), agents, launches)
