"""Thirty tasks over three hosts through a host loss, a partition and a database outage, end
to end: three ``orch-recovery supervise --host`` processes (own clones, tmux servers and
state directories) over one PostgreSQL store and one bare origin, running the sim agent.

Alpha and beta each hold three tasks mid-attempt when gamma starts on twenty-four more.
Alpha is then SIGKILLed with its agents and its tmux server, beta is frozen (SIGSTOP) and the
database is stopped for ten seconds. Gamma waits the outage out and, when the leases run out,
takes the six tasks over from their history and the work they pushed; beta, thawed at the
end, finds its leases lost and stops its agents. Every task completes, no (task, attempt) is
launched twice -- the database's launches and the agents' own start logs agree -- nothing is
left running on the surviving hosts, and ``status`` says which host did what. The same with
the real Claude Code CLI (marked ``claude``) for a smaller fleet: two held tasks per host and
four more, eight in all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from test_supervise import _BOUND, Fleet, Supervisor, fleet
from test_supervise_partition import freeze
from test_supervise_store import _all_done, _another_host, _fleet_over_store
from test_supervise_takeover import _agents, _assert_starts_match, _kill_agents_of
from waiting import wait_until

from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.infra.agents import claude_code_missing
from pytest_orch_recovery.infra.postgres_server import LocalPostgres
from pytest_orch_recovery.infra.processes import pids_with_env, process_start_time, wait_gone
from pytest_orch_recovery.runtime.server import kill_tmux_server, session_names
from pytest_orch_recovery.store.postgres import PostgresStore

__all__ = ["fleet"]  # the fixture, shared with test_supervise

# Long enough that gamma keeps its own leases through the ten-second outage and the store
# client's retry backoff after it (up to 5 s); the fleet's loop renews it many times over.
LEASE = 20.0
OUTAGE = 10.0  # seconds the database is stopped: the fault's own length


def _held(task_id: str, gate: Path, socket: str) -> Task:
    """A task whose tests wait, after writing its file, on a tmux server of the test's own
    (it outlives the hosts' servers) until ``gate`` exists; they signal ``at-<task_id>``."""
    tmux = f"tmux -L {socket}"
    tests = f"test -e {gate} || {{ {tmux} wait-for -S at-{task_id}; {tmux} wait-for gate; }}"
    return Task(task_id, f"Write the held note {task_id}", (f"{task_id}.md",), tests=tests)


def _at_gates(socket: str, tasks: list[Task]) -> None:
    for task in tasks:
        subprocess.run(
            ["tmux", "-L", socket, "wait-for", f"at-{task.task_id}"], check=True, timeout=_BOUND
        )


def _describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        out.append(f"{pid}: {cmd}")
    return out


def _live(results: Path, agents: list[str]) -> list[int]:
    """The live processes of ``agents`` on the host whose results directory is ``results``
    (not its tmux server, whose environment names that directory too)."""
    since = process_start_time(os.getpid())
    host = set(pids_with_env("ORCH_RESULTS_DIR", str(results.resolve()), started_since=since))
    return sorted(
        pid
        for agent in agents
        for pid in set(pids_with_env("ORCH_AGENT", agent, started_since=since)) & host
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("agent", "per_host", "plain_count"),
    [
        ("sim", 3, 24),
        # The real Claude Code CLI, a smaller fleet: 2 + 2 held, 4 more (8 tasks).
        pytest.param(
            "claude-code",
            2,
            4,
            marks=[
                pytest.mark.claude,
                pytest.mark.skipif(
                    claude_code_missing() is not None, reason=str(claude_code_missing())
                ),
            ],
        ),
    ],
)
def test_thirty_tasks_over_three_hosts_through_a_kill_a_partition_and_an_outage(
    fleet: Fleet,
    store_url: str,
    postgres_server: LocalPostgres,
    agent: str,
    per_host: int,
    plain_count: int,
) -> None:
    gate = fleet.root / "gate-open"
    gate_socket = f"{fleet.socket}-gate"[:80]
    subprocess.run(
        ["tmux", "-L", gate_socket, "-f", "/dev/null", "new-session", "-d", "-s", "keep",
         "sleep 3600"],
        check=True, timeout=_BOUND,
    )  # fmt: skip
    on_alpha = [_held(f"a-held{n}", gate, gate_socket) for n in range(per_host)]
    on_beta = [_held(f"b-held{n}", gate, gate_socket) for n in range(per_host)]
    plain = [
        Task(f"t-{n:02d}", f"Write note number {n}", (f"note{n:02d}.md",))
        for n in range(plain_count)
    ]
    everything = [*on_alpha, *on_beta, *plain]
    _fleet_over_store(fleet, store_url, *everything, max_live_agents=per_host, lease=LEASE)
    if agent != "sim":  # the counting sim agent's fleet file, with the real CLI instead
        fleet.write_config(agent=agent)
    beta_config, beta_socket = _another_host(fleet, "beta", max_live_agents=per_host)
    gamma_config, gamma_socket = _another_host(fleet, "gamma", max_live_agents=6)
    beta_results = fleet.root / ".orch-beta" / "results"

    alpha = Supervisor(fleet, "--host", "alpha")
    beta: Supervisor | None = None
    gamma: Supervisor | None = None
    frozen = False
    try:
        # Alpha and beta fill up with their held tasks, every one mid-attempt and its
        # work in progress pushed at its checkpoint.
        fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in on_alpha))
        _at_gates(gate_socket, on_alpha)
        beta = Supervisor(fleet, "--config", str(beta_config), "--host", "beta")
        fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in on_beta))
        _at_gates(gate_socket, on_beta)
        agents = _agents(store_url)
        for sup, held in ((alpha, on_alpha), (beta, on_beta)):
            for task in held:
                sup.wait_for("checkpoint of", agents[task.task_id], "pushed to")
        gamma = Supervisor(fleet, "--config", str(gamma_config), "--host", "gamma")
        gamma.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in plain))
        gamma.wait_for("attempt_launched", "t-")

        # Alpha dies with its agents; beta is cut off; the database goes away for a while.
        assert alpha.stop(signal.SIGKILL) == -signal.SIGKILL
        _kill_agents_of(fleet.root / ".orch-fleet" / "results")
        kill_tmux_server(fleet.socket)
        frozen = True
        frozen_at = freeze(beta.proc)
        gate.touch()  # the relaunched attempts pass their tests at once; beta's wait on
        stopped_at = time.monotonic()
        postgres_server.stop()
        try:
            gamma.wait_for("unreachable", "retry")
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - stopped_at)))
        finally:
            postgres_server.start()
        gamma.wait_for("reachable again")

        wait_until(
            lambda: _all_done(store_url, len(everything)), "every task done", timeout=3 * _BOUND
        )
        beta_agents = [agents[t.task_id] for t in on_beta]
        assert _live(beta_results, beta_agents), "beta's agents ran on through the partition"
        beta.proc.send_signal(signal.SIGCONT)
        frozen = False
        for task in on_beta:
            beta.wait_for("lost the lease of", task.task_id, "decisions for it belong to")
        running = wait_gone(_live(beta_results, beta_agents), _BOUND)
        assert running == [], f"beta left running: {_describe(running)}"
        wait_until(
            lambda: not set(beta_agents) & set(session_names(beta_socket)),
            "beta's sessions removed",
        )
        assert beta.proc.poll() is None
    finally:
        if frozen and beta is not None:
            beta.proc.send_signal(signal.SIGCONT)
        if alpha.proc.poll() is None:
            alpha.stop(signal.SIGKILL)
        codes = {
            name: sup.stop() for name, sup in (("beta", beta), ("gamma", gamma)) if sup is not None
        }
        left = {name: session_names(socket) for name, socket in (("gamma", gamma_socket),)}
        for socket in (beta_socket, gamma_socket, gate_socket):
            kill_tmux_server(socket)
    assert codes == {"beta": 0, "gamma": 0}

    with PostgresStore(store_url) as store:
        launches = store.launches()
        events = list(store.events())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    by_task: dict[str, list[tuple[int, str]]] = {}
    for task_id, attempt, _, host, _ in launches:
        by_task.setdefault(task_id, []).append((attempt, host))
    expected = {t.task_id: [(1, "alpha"), (2, "gamma")] for t in on_alpha}
    expected |= {t.task_id: [(1, "beta"), (2, "gamma")] for t in on_beta}
    expected |= {t.task_id: [(1, "gamma")] for t in plain}
    assert {t: sorted(a) for t, a in by_task.items()} == expected
    agents = {e.task_id: e.agent for e in events if e.agent and e.task_id}
    if agent == "sim":  # the sim agent behind a start counter
        _assert_starts_match(fleet, (".orch-fleet", ".orch-beta", ".orch-gamma"), agents, launches)
    with psycopg.connect(store_url) as conn:
        late = conn.execute(
            "SELECT count(*) FROM orch_events WHERE host = 'beta' AND appended_at > "
            "to_timestamp(%s)",
            (frozen_at,),
        ).fetchone()
    assert late == (0,), "beta recorded nothing after its freeze"
    assert gamma is not None
    taken = [line for line in gamma.seen if "taking over" in line and "events)" in line]
    assert len(taken) == 2 * per_host, taken
    assert sum("from host alpha" in line for line in taken) == per_host
    assert sum("from host beta" in line for line in taken) == per_host
    # No orphan on the surviving hosts: every agent's session went with its success.
    assert {name: set(agents.values()) & set(s) for name, s in left.items()} == {"gamma": set()}
    status = json.loads(fleet.cli("status", "--config", "fleet.toml", "--format", "json").stdout)
    assert {r["task_id"]: (r["host"], r["phase"]) for r in status["tasks"]} == {
        t: ("gamma", "succeeded") for t in expected
    }
    failures = fleet.cli("failures", "--store", store_url).stdout
    assert "alpha" in failures and "beta" in failures
