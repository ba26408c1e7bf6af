"""``orch-recovery supervise --host NAME`` over the PostgreSQL fleet store, one host, end to
end: real supervisor processes, real tmux, real git, the sim agent, the session's private
PostgreSQL server. Tasks come through the store's queue; the server is stopped and started
while an agent runs; the supervisor is SIGKILLed mid-attempt and started again. Nothing is
launched twice, by the database's launches and by the agents' own start log alike."""

from __future__ import annotations

import signal
import subprocess
import sys

import psycopg
import pytest
from test_supervise import _BOUND, _COUNTING_AGENT, Fleet, Supervisor, fleet

from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, plan_for_task
from pytest_orch_recovery.engine.model import EventKind, Task
from pytest_orch_recovery.infra.postgres_server import LocalPostgres
from pytest_orch_recovery.store.postgres import PostgresStore

__all__ = ["fleet"]  # the fixture, shared with test_supervise


@pytest.mark.slow
def test_one_host_over_the_store_survives_an_outage_and_a_supervisor_kill(
    fleet: Fleet, store_url: str, postgres_server: LocalPostgres
) -> None:
    agent_script = fleet.root / "counting-agent.sh"
    agent_script.write_text(_COUNTING_AGENT.replace("{python}", sys.executable))
    agent_script.chmod(0o755)
    gate = fleet.root / "gate-open"
    tmux = f"tmux -L {fleet.socket}"
    # The held task's tests wait for the test to open the gate (and pass after).
    tests = f"test -e {gate} || {{ {tmux} wait-for -S at-gate; {tmux} wait-for gate; }}"
    held = Task("t-held", "Create the held file", ("held.md",), tests=tests)
    plain = Task("t-plain", "Write the plain notes", ("plain.md",))
    fleet.double.stop()
    fleet.double = ModelDouble(Plan((plan_for_task(held), plan_for_task(plain)))).start()
    fleet.write_config(agent=f"{agent_script} {{prompt_file}}", store=store_url)

    first = Supervisor(fleet, "--host", "alpha")
    submitted = fleet.cli(
        "submit", "--config", "fleet.toml", fleet.task_file(held), fleet.task_file(plain)
    )
    assert submitted.stdout.splitlines() == ["submitted t-held", "submitted t-plain"]
    first.wait_for("task_succeeded", "t-plain")
    first.wait_for("attempt_launched", "t-held")
    subprocess.run(
        ["tmux", "-L", fleet.socket, "wait-for", "at-gate"], check=True, timeout=_BOUND
    )  # the agent is mid-attempt, inside its test step

    # The database goes away while the agent works, and comes back.
    postgres_server.stop()
    try:
        first.wait_for("unreachable", "retry")
    finally:
        postgres_server.start()
    first.wait_for("reachable again")

    # The supervisor dies; the next one takes the host's task back at a new epoch.
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    second = Supervisor(fleet, "--host", "alpha")
    try:
        second.wait_for("took back 1 task")
        second.wait_for("recovering from the fleet store")
        gate.touch()
        subprocess.run(
            ["tmux", "-L", fleet.socket, "wait-for", "-S", "gate"], check=True, timeout=_BOUND
        )
        second.wait_for("task_succeeded", "t-held")
    finally:
        assert second.stop() == 0

    with PostgresStore(store_url) as store:
        events = list(store.events())
        launches = store.launches()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    agents = {e.task_id: e.agent for e in events if e.kind is EventKind.TASK_SUBMITTED}
    assert [(t, a, h) for t, a, _, h, _ in launches] == [
        ("t-held", 1, "alpha"),
        ("t-plain", 1, "alpha"),
    ]
    starts = (fleet.root / ".orch-fleet" / "results" / "starts.log").read_text().splitlines()
    assert sorted(starts) == sorted(
        f"start {agents[t]} attempt {a}" for t, a, _, _, _ in launches
    ), "the agents' start log and the database's launches disagree"
    outcomes = {e.task_id: e.kind for e in events if e.kind is EventKind.TASK_SUCCEEDED}
    assert outcomes == {"t-held": EventKind.TASK_SUCCEEDED, "t-plain": EventKind.TASK_SUCCEEDED}
    with psycopg.connect(store_url) as conn:
        rows = conn.execute(
            "SELECT task_id, state, host, epoch FROM orch_tasks ORDER BY task_id"
        ).fetchall()
        success_epoch = conn.execute(
            "SELECT epoch FROM orch_events WHERE task_id = 't-held' AND kind = 'task_succeeded'"
        ).fetchone()
    # t-held was taken back by the second supervisor (epoch 2), which recorded its success.
    assert rows == [("t-held", "done", "alpha", 2), ("t-plain", "done", "alpha", 1)]
    assert success_epoch == (2,)
    assert not (fleet.root / ".orch-fleet" / "journal.jsonl").exists()  # the store was it


def test_a_store_url_in_the_fleet_file_is_checked_at_load(fleet: Fleet) -> None:
    (fleet.root / "bad.toml").write_text(
        'repository = "project/repo"\nagent = "sim"\nstore = "mysql://db/fleet"\n'
    )
    proc = fleet.cli("supervise", "--config", "bad.toml", "--host", "alpha", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(
        "bad.toml:3: store: must start with postgresql:// (got 'mysql:')"
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--store", "postgresql://orch@/fleet"), "--host NAME is required with a fleet store"),
        (("--host", "alpha;rm", "--store", "postgresql://o@/f"), "host name 'alpha;rm' must use"),
        (("--host", "alpha", "--store", "file:///tmp/x"), "store URL must start with postgresql"),
    ],
)
def test_supervise_refuses_a_store_without_a_host_or_with_bad_values(
    fleet: Fleet, options: tuple[str, ...], expected: str
) -> None:
    proc = fleet.cli("supervise", "--config", "fleet.toml", *options, check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]  # after argparse's usage, when it is one
    assert last.startswith("orch-recovery supervise: error: ") and expected in last
    assert "Traceback" not in proc.stderr
