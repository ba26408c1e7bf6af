"""A host lost mid-run, end to end: three ``orch-recovery supervise --host`` processes, each
with its own clone, tmux server and state directory, over one PostgreSQL store and one bare
origin, running the sim agent. Host alpha's supervisor is SIGKILLed and its tmux server (with
its agents) killed while three of its agents are mid-attempt. When alpha's leases run out,
beta and gamma claim those tasks, take them over from their history in the store (the lost
attempts end as ``host_lost``, the policy reassigns them) and finish them; every other task
completes too. No (task, attempt) is launched twice, by the database and by the agents' own
start logs alike, and ``status`` says which host did what."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_supervise import _BOUND, Fleet, Supervisor, fleet
from test_supervise_store import _all_done, _another_host, _fleet_over_store
from waiting import wait_until

from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    EventKind,
)
from pytest_orch_recovery.engine.model import HOST_LOST, Strategy, Task
from pytest_orch_recovery.infra.git import run_git
from pytest_orch_recovery.infra.processes import (
    kill_with_env,
    process_start_time,
    wait_gone,
)
from pytest_orch_recovery.runtime.server import kill_tmux_server, session_names
from pytest_orch_recovery.store.postgres import PostgresStore

__all__ = ["fleet"]  # the fixture, shared with test_supervise

LEASE = 3.0  # seconds; the fleet's intake_interval (0.5 s) renews it six times over


def _held(fleet: Fleet, task_id: str, gate: Path) -> Task:
    """A task whose tests wait mid-attempt, after writing its file and before committing or
    pushing, until ``gate`` exists; it signals ``at-<task_id>`` on alpha's tmux server when it
    gets there. Once the gate exists the tests pass at once, on any host."""
    tmux = f"tmux -L {fleet.socket}"
    tests = f"test -e {gate} || {{ {tmux} wait-for -S at-{task_id}; {tmux} wait-for gate; }}"
    return Task(task_id, f"Write the held note {task_id}", (f"{task_id}.md",), tests=tests)


def _kill_agents_of(results: Path) -> None:
    """SIGKILL every process a host's agents run (their environment names the host's results
    directory), as a machine that dies takes them along; the tmux server alone would not:
    an agent outlives its pane's hangup."""
    since = process_start_time(os.getpid())
    killed = kill_with_env("ORCH_RESULTS_DIR", str(results.resolve()), started_since=since,
                           timeout=_BOUND)  # fmt: skip
    assert killed, "the host's agents were running"
    assert wait_gone(killed, 0) == []


def _assert_starts_match(
    fleet: Fleet, hosts: tuple[str, ...], agents: Mapping[Any, Any], launches: list[Any]
) -> None:
    """The agents' own start logs on ``hosts`` (state directories) hold exactly the
    database's launches: no (task, attempt) started twice, or without its launch record."""
    starts: list[str] = []
    for state_dir in hosts:
        log = fleet.root / state_dir / "results" / "starts.log"
        starts += log.read_text().splitlines() if log.exists() else []
    assert sorted(starts) == sorted(
        f"start {agents[t]} attempt {a}" for t, a, _, _, _ in launches
    ), "the agents' start logs and the database's launches disagree"


def _rescue_refs(origin: Path) -> list[str]:
    return run_git(["for-each-ref", "--format=%(refname)", "refs/orch/"], cwd=origin).stdout.split()


def _agents(store_url: str) -> dict[str, str]:
    with psycopg.connect(store_url) as conn:
        rows = conn.execute("SELECT task_id, agent FROM orch_tasks").fetchall()
    return {str(task_id): str(agent) for task_id, agent in rows}


def _submit_held(
    fleet: Fleet, host: Supervisor, store_url: str, held: list[Task]
) -> dict[str, str]:
    """Submit the ``held`` tasks and wait until ``host`` runs each inside its test step, its
    work in progress pushed at its checkpoint. Returns each task's agent."""
    fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in held))
    for task in held:
        host.wait_for("attempt_launched", task.task_id)
        subprocess.run(
            ["tmux", "-L", fleet.socket, "wait-for", f"at-{task.task_id}"],
            check=True, timeout=_BOUND,
        )  # fmt: skip
    # Each agent's checkpoint after writing its file: the host pushed that work in progress.
    agents = _agents(store_url)
    for task in held:
        host.wait_for("checkpoint of", agents[task.task_id], "pushed to")
    return agents


@pytest.mark.slow
def test_a_host_killed_with_its_agents_has_its_tasks_finished_by_the_others(
    fleet: Fleet, store_url: str
) -> None:
    gate = fleet.root / "gate-open"
    held = [_held(fleet, f"t-held{n}", gate) for n in range(3)]
    plain = [Task(f"t-{n}", f"Write note number {n}", (f"note{n}.md",)) for n in range(4)]
    everything = [*held, *plain]
    _fleet_over_store(fleet, store_url, *everything, max_live_agents=3, lease=LEASE)
    others = {name: _another_host(fleet, name, max_live_agents=2) for name in ("beta", "gamma")}

    alpha = Supervisor(fleet, "--host", "alpha")
    survivors: dict[str, Supervisor] = {}
    try:
        agents_of = _submit_held(fleet, alpha, store_url, held)  # alpha is full: three agents
        for name, (config, _) in others.items():
            survivors[name] = Supervisor(fleet, "--config", str(config), "--host", name)
            survivors[name].wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in plain))

        # Host alpha goes down at once: supervisor, agents, tmux server.
        assert alpha.stop(signal.SIGKILL) == -signal.SIGKILL
        _kill_agents_of(fleet.root / ".orch-fleet" / "results")
        kill_tmux_server(fleet.socket)
        gate.touch()  # the relaunched attempts run their tests on beta or gamma: pass at once

        wait_until(lambda: _all_done(store_url, len(everything)), "every task done", timeout=_BOUND)
        # Each finished task's rescue ref is deleted from the origin by its last holder.
        wait_until(lambda: not _rescue_refs(fleet.origin), "no rescue ref left", timeout=_BOUND)
    finally:
        if alpha.proc.poll() is None:
            alpha.stop(signal.SIGKILL)
        codes = {name: sup.stop() for name, sup in survivors.items()}
        left = {name: session_names(socket) for name, (_, socket) in others.items()}
        for _, socket in others.values():
            kill_tmux_server(socket)
    assert codes == {"beta": 0, "gamma": 0}
    taken = [line for sup in survivors.values() for line in sup.seen if "taking over t-" in line]
    assert sorted(line.split("taking over ")[1].split()[0] for line in taken) == [
        t.task_id for t in held
    ]
    assert all("from host alpha" in line for line in taken), taken
    for task in held:  # each from the work in progress alpha pushed at its checkpoint
        agent = agents_of[task.task_id]
        assert any(
            f"taking over {agent}: refs/orch/rescue/{agent}-work at" in line
            for sup in survivors.values()
            for line in sup.seen
        ), task.task_id

    with PostgresStore(store_url) as store:
        launches = store.launches()
        events = list(store.events())
    # Each held task: attempt 1 on alpha, attempt 2 elsewhere; each plain task: one attempt.
    by_task: dict[str, list[tuple[int, str]]] = {}
    for task_id, attempt, _, host, _ in launches:
        by_task.setdefault(task_id, []).append((attempt, host))
    for task in held:
        assert len(by_task[task.task_id]) == 2, (
            by_task,
            [(e.kind, e.payload) for e in events if e.task_id == task.task_id],
        )
        (first, by_alpha), (second, by_other) = by_task[task.task_id]
        assert (first, by_alpha, second) == (1, "alpha", 2)
        assert by_other in ("beta", "gamma")
    for task in plain:
        assert [a for a, _ in by_task[task.task_id]] == [1]
        assert by_task[task.task_id][0][1] in ("beta", "gamma")
    agents = {e.task_id: e.agent for e in events if e.kind is EventKind.TASK_SUBMITTED}
    _assert_starts_match(fleet, (".orch-fleet", ".orch-beta", ".orch-gamma"), agents, launches)

    # The lost attempts ended as host_lost and were reassigned, by their new holder.
    for task in held:
        mine = [e for e in events if e.task_id == task.task_id]
        exits = [e.payload for e in mine if e.kind is EventKind.ATTEMPT_EXITED]
        lost = exits[0]
        assert isinstance(lost, AttemptExited) and lost.exit is not None
        assert lost.exit.source == HOST_LOST and "host alpha was lost" in lost.output_tail
        decided = next(e.payload for e in mine if e.kind is EventKind.DECISION)
        assert isinstance(decided, DecisionMade) and decided.decision is not None
        assert decided.decision.rule == "host_lost"
        assert decided.decision.strategy is Strategy.REASSIGN
        assert decided.decision.why.endswith("resuming with what is left.")
        # The file written on alpha came back through the rescue ref: not asked for again.
        relaunch = [e.payload for e in mine if e.kind is EventKind.ATTEMPT_LAUNCHED][-1]
        assert isinstance(relaunch, AttemptLaunched)
        done, remaining = relaunch.prompt.split("Remaining steps")
        assert f"wrote {task.task_id}.md" in done, relaunch.prompt
        assert f"write {task.task_id}.md" not in remaining, relaunch.prompt
        assert [e.kind for e in mine][-1] is EventKind.TASK_SUCCEEDED
    with psycopg.connect(store_url) as conn:
        writers = conn.execute(
            "SELECT e.task_id, e.host, e.epoch, l.host FROM orch_events e "
            "JOIN orch_launches l ON l.task_id = e.task_id AND l.attempt = 2 "
            "WHERE e.kind = 'decision'"
        ).fetchall()
    # Decided by the host that then launched attempt 2, at its claim's epoch (alpha's was 1).
    assert sorted(w[0] for w in writers) == [t.task_id for t in held]
    assert all(host == launcher and epoch == 2 for _, host, epoch, launcher in writers)

    # No orphan on the surviving hosts: every agent's session went with its success.
    agent_names = set(agents.values())
    assert {name: agent_names & set(sessions) for name, sessions in left.items()} == {
        "beta": set(),
        "gamma": set(),
    }
    # status over the store: which host did what
    status = json.loads(fleet.cli("status", "--config", "fleet.toml", "--format", "json").stdout)
    assert {r["task_id"]: (r["host"], r["phase"]) for r in status["tasks"]} == {
        t: (hosts[-1][1], "succeeded") for t, hosts in by_task.items()
    }
    failures = fleet.cli("failures", "--store", store_url).stdout
    for task in held:
        assert task.task_id in failures
    assert "alpha" in failures
