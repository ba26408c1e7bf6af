"""``orch-recovery supervise --host NAME`` over the PostgreSQL fleet store, one host, end to
end: real supervisor processes, real tmux, real git, the sim agent, the session's private
PostgreSQL server. Tasks come through the store's queue; the server is stopped and started
while an agent runs; the supervisor is SIGKILLed mid-attempt and started again. Nothing is
launched twice, by the database's launches and by the agents' own start log alike."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from events import JournalBuilder, sigint_resumed
from test_supervise import _BOUND, _COUNTING_AGENT, PERM_TASK, Fleet, Supervisor, fleet
from waiting import wait_until

from pytest_orch_recovery.cli.failures import render as failures_render
from pytest_orch_recovery.doubles.modeldouble import ModelDouble, Plan, plan_for_task
from pytest_orch_recovery.engine.events import EventKind
from pytest_orch_recovery.engine.model import ExitInfo, Reason, Strategy, Task
from pytest_orch_recovery.infra.git import remote_sha, run_git
from pytest_orch_recovery.infra.postgres_server import LocalPostgres
from pytest_orch_recovery.report.fleetview import FleetView
from pytest_orch_recovery.runtime.server import kill_tmux_server
from pytest_orch_recovery.store.postgres import PostgresStore

__all__ = ["fleet"]  # the fixture, shared with test_supervise


def _held_task(fleet: Fleet) -> tuple[Task, Path]:
    """A task whose tests wait, mid-attempt, until the test opens its gate (and pass after):
    the agent signals ``at-gate`` on the fleet's tmux server when it gets there."""
    gate = fleet.root / "gate-open"
    tmux = f"tmux -L {fleet.socket}"
    tests = f"test -e {gate} || {{ {tmux} wait-for -S at-gate; {tmux} wait-for gate; }}"
    return Task("t-held", "Create the held file", ("held.md",), tests=tests), gate


def _fleet_over_store(fleet: Fleet, store_url: str, *tasks: Task, **settings: Any) -> None:
    """The sim agent behind a start counter (``results/starts.log``), the model double
    planned for ``tasks``, and the fleet file pointing at the store."""
    agent_script = fleet.root / "counting-agent.sh"
    agent_script.write_text(_COUNTING_AGENT.replace("{python}", sys.executable))
    agent_script.chmod(0o755)
    fleet.double.stop()
    fleet.double = ModelDouble(Plan(tuple(plan_for_task(t) for t in tasks))).start()
    fleet.write_config(agent=f"{agent_script} {{prompt_file}}", store=store_url, **settings)


def _at_gate(fleet: Fleet) -> None:
    subprocess.run(["tmux", "-L", fleet.socket, "wait-for", "at-gate"], check=True, timeout=_BOUND)


def _has_session(fleet: Fleet, agent: str) -> bool:
    shown = subprocess.run(
        ["tmux", "-L", fleet.socket, "has-session", "-t", f"={agent}"],
        capture_output=True, check=False, timeout=_BOUND,
    )  # fmt: skip
    return shown.returncode == 0


def _children(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes, from every one of its threads."""
    out = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out.append(
                    Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
    return out


def _pane_dead(fleet: Fleet, agent: str) -> bool:
    shown = subprocess.run(
        ["tmux", "-L", fleet.socket, "display-message", "-p", "-t", agent, "#{pane_dead}"],
        capture_output=True, text=True, check=True, timeout=_BOUND,
    )  # fmt: skip
    return shown.stdout.strip() == "1"


@pytest.mark.slow
def test_one_host_over_the_store_survives_an_outage_and_a_supervisor_kill(
    fleet: Fleet, store_url: str, postgres_server: LocalPostgres
) -> None:
    held, gate = _held_task(fleet)
    plain = Task("t-plain", "Write the plain notes", ("plain.md",))
    _fleet_over_store(fleet, store_url, held, plain)

    first = Supervisor(fleet, "--host", "alpha")
    submitted = fleet.cli(
        "submit", "--config", "fleet.toml", fleet.task_file(held), fleet.task_file(plain)
    )
    assert submitted.stdout.splitlines() == ["submitted t-held", "submitted t-plain"]
    first.wait_for("task_succeeded", "t-plain")
    first.wait_for("attempt_launched", "t-held")
    _at_gate(fleet)  # the agent is mid-attempt, inside its test step

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


@pytest.mark.slow
def test_two_hosts_share_one_queue_and_launch_each_attempt_once(
    fleet: Fleet, store_url: str
) -> None:
    """Two supervisors, each with its own checkout, tmux server and state, over one store:
    they split the queue by capacity, every task succeeds once, and every agent's branch (a
    fleet-wide name) reaches the shared origin."""
    tasks = [Task(f"t-{n}", f"Write note number {n}", (f"note{n}.md",)) for n in range(6)]
    _fleet_over_store(fleet, store_url, *tasks, max_live_agents=2)
    beta_config, beta_socket = _another_host(fleet, "beta")
    alpha = Supervisor(fleet, "--host", "alpha")
    beta = Supervisor(fleet, "--config", str(beta_config), "--host", "beta")  # the last wins
    try:
        alpha.wait_for("supervising")
        beta.wait_for("supervising")
        fleet.cli("submit", "--config", "fleet.toml", *(fleet.task_file(t) for t in tasks))
        wait_until(lambda: _all_done(store_url, len(tasks)), "every task done in the store")
    finally:
        assert alpha.stop() == 0
        assert beta.stop() == 0
        kill_tmux_server(beta_socket)
    with PostgresStore(store_url) as store:
        launches = store.launches()
        events = list(store.events())
    assert sorted(t for t, _, _, _, _ in launches) == sorted(t.task_id for t in tasks)
    assert {a for _, a, _, _, _ in launches} == {1}  # each task's one attempt, launched once
    hosts = {h for _, _, _, h, _ in launches}
    assert hosts == {"alpha", "beta"}, launches  # both hosts took work from the queue
    agents = {e.task_id: e.agent for e in events if e.kind is EventKind.TASK_SUBMITTED}
    assert len(set(agents.values())) == len(tasks)  # fleet-wide agent names
    for host, state_dir in (("alpha", ".orch-fleet"), ("beta", ".orch-beta")):
        starts = (fleet.root / state_dir / "results" / "starts.log").read_text().splitlines()
        assert sorted(starts) == sorted(
            f"start {agents[t]} attempt {a}" for t, a, _, h, _ in launches if h == host
        ), f"{host}'s agents' start log and the database's launches disagree"
    for task_id, agent in agents.items():
        assert agent is not None
        assert remote_sha(fleet.repo, "origin", f"{agent}-work") is not None, task_id
    # status over the store (the fleet file names it): which host did what
    status = json.loads(fleet.cli("status", "--config", "fleet.toml", "--format", "json").stdout)
    assert {r["task_id"]: (r["host"], r["phase"]) for r in status["tasks"]} == {
        t: (h, "succeeded") for t, _, _, h, _ in launches
    }
    alpha_only = json.loads(
        fleet.cli("status", "--store", store_url, "--host", "alpha", "--format", "json").stdout
    )
    assert sorted(r["task_id"] for r in alpha_only["tasks"]) == sorted(
        t for t, _, _, h, _ in launches if h == "alpha"
    )
    table = fleet.cli("status", "--store", store_url).stdout.splitlines()
    assert table[0].split()[:3] == ["TASK", "HOST", "AGENT"]
    assert len(table) == 1 + len(tasks)
    failures = fleet.cli("failures", "--store", store_url)
    assert failures.stdout == "no failed attempts in the journal\n"
    both = fleet.cli("status", "--store", store_url, "--journal", "x.jsonl", check=False)
    assert both.returncode == 2 and "--journal and --store are two sources" in both.stderr


def _another_host(fleet: Fleet, name: str, **settings: Any) -> tuple[Path, str]:
    """Another machine of the fleet on this one: its own clone of the origin, tmux server and
    state directory, and the fleet file with those (and ``settings``) changed; returns that
    file and the tmux socket."""
    repo = fleet.root / name / "repo"
    run_git(["clone", "--quiet", str(fleet.origin), str(repo)], cwd=fleet.root)
    for key in ("user.name", "user.email"):
        value = run_git(["config", key], cwd=fleet.repo).stdout.strip()
        run_git(["config", key, value], cwd=repo)
    socket = f"{fleet.socket}-{name}"
    config = fleet.root / f"{name}.toml"
    own = {
        "repository": f"{name}/repo",
        "tmux_socket": socket,
        "state_dir": f".orch-{name}",
        **settings,
    }
    lines = [
        line for line in fleet.config.read_text().splitlines() if line.split(" =")[0] not in own
    ]
    config.write_text(
        "".join(f"{k} = {json.dumps(v)}\n" for k, v in own.items()) + "\n".join(lines) + "\n"
    )
    return config, socket


def _all_done(url: str, count: int) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM orch_tasks WHERE state = 'done'").fetchone()
    return row is not None and row[0] == count


def test_a_lease_the_loop_cannot_renew_in_time_is_refused_at_load(fleet: Fleet) -> None:
    (fleet.root / "bad.toml").write_text(
        'repository = "project/repo"\nagent = "sim"\nstore = "postgresql://o@/f"\nlease = 1.5\n'
    )
    proc = fleet.cli("supervise", "--config", "bad.toml", "--host", "alpha", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(
        "bad.toml:4: lease: intake_interval (1 s) must be under half the lease (1.5 s) so "
        "that heartbeats renew it in time"
    )


def _expire(store_url: str, host: str) -> None:
    """As if ``host``'s supervisor had been frozen past its lease: the database's clock decides
    expiry, so the lease is moved into the past."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE orch_tasks SET lease_until = now() - interval '1 second' "
            "WHERE host = %s AND state = 'claimed'",
            (host,),
        )


@pytest.mark.slow
def test_a_host_that_lost_a_lease_stops_that_agent_and_goes_on_with_its_other_tasks(
    fleet: Fleet, store_url: str
) -> None:
    held, _ = _held_task(fleet)
    later = Task("t-later", "Write the later notes", ("later.md",))
    _fleet_over_store(fleet, store_url, held, later)
    alpha = Supervisor(fleet, "--host", "alpha")
    try:
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(held))
        alpha.wait_for("attempt_launched", "t-held")
        _at_gate(fleet)
        _expire(store_url, "alpha")
        with PostgresStore(store_url, host="beta") as beta:
            beta.register(capacity=None)
            taken = wait_until(lambda: beta.claim() or None, "beta's claim of the lapsed task")
            assert [(c.task.task_id, c.epoch) for c in taken] == [("t-held", 2)]
            line = alpha.wait_for("lost the lease of t-held and stopped")
            agent = line.split(" and stopped ")[1].split(":")[0]
            assert line.endswith("decisions for it belong to beta")
            # The agent and its session go (removed off the loop, by the runtime's worker
            # pool): no second live attempt beside beta's.
            wait_until(lambda: not _has_session(fleet, agent), f"{agent}'s session removed")
            # Alpha goes on: a task submitted now is claimed and finished there.
            fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(later))
            alpha.wait_for("task_succeeded", "t-later")
            assert alpha.proc.poll() is None
            # The stopped attempt's exit is nobody's to judge: alpha does not probe its
            # workspace (the probe would run the held task's tests, waiting at the gate).
            assert not [c for c in _children(alpha.proc.pid) if "gate-open" in c]
            assert beta.heartbeat() == {"t-held": 2}
            with psycopg.connect(store_url) as conn:
                after = conn.execute(
                    "SELECT count(*) FROM orch_events WHERE task_id = 't-held' AND epoch <> 1"
                ).fetchone()
            assert after == (0,)  # alpha wrote nothing more for it (nor could it)
    finally:
        assert alpha.stop() == 0


@pytest.mark.slow
def test_a_supervisor_fenced_by_a_newer_one_of_its_host_leaves_the_agent_running(
    fleet: Fleet, store_url: str
) -> None:
    held, _ = _held_task(fleet)
    _fleet_over_store(fleet, store_url, held)
    old = Supervisor(fleet, "--host", "alpha")
    try:
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(held))
        line = old.wait_for("attempt_launched", "t-held")
        _at_gate(fleet)
        # A newer supervisor of the same host takes the task back (as at its start) while
        # the old one still runs: the old one is fenced, and the agent is the new one's.
        with PostgresStore(store_url, host="alpha") as newer:
            assert newer.resume_leases() == {"t-held": 2}
            old.wait_for("lost the lease of t-held to a newer supervisor of this host")
            assert old.proc.wait(timeout=_BOUND) == 1
    finally:
        old.stop()
    agent = next(w for w in line.split() if w.startswith("task-agent-"))
    assert not _pane_dead(fleet, agent)


def test_failures_name_the_host_of_each_failed_attempt() -> None:
    journal = JournalBuilder()
    sigint_resumed(journal)  # attempt 1 fails (SIGINT), attempt 2 succeeds
    view = FleetView(journal.events)
    hosts = {("fake3", 1): "alpha", ("fake3", 2): "beta"}
    table = failures_render(view.failures(), "table", 1, hosts).splitlines()
    assert table[0].split()[:4] == ["TIME", "TASK", "HOST", "AGENT"]
    assert table[1].split()[2:5] == ["fake3", "alpha", "task-agent-5030"]  # after date, time
    document = json.loads(failures_render(view.failures(), "json", 1, hosts))
    assert [f["host"] for f in document["failures"]] == ["alpha"]
    assert "HOST" not in failures_render(view.failures(), "table", 1).splitlines()[0]


def test_a_host_filter_needs_a_store(fleet: Fleet) -> None:
    for command in ("status", "failures"):
        proc = fleet.cli(command, "--journal", "j.jsonl", "--host", "alpha", check=False)
        assert proc.returncode == 2
        assert "--host needs a fleet store" in proc.stderr


@pytest.mark.slow
def test_a_task_escalated_on_a_store_host_is_released_from_another_machine(
    fleet: Fleet, store_url: str
) -> None:
    """The permission flag left out: the task escalates on alpha; the operator fixes the
    fleet file and runs release on another machine (beta's clone and fleet file, no
    supervisor there). The store's events are checked and the request goes through the store
    to alpha, the holder, whose supervisor carries it out under its lease."""
    fleet.write_config(store=store_url, skip_permissions=False)
    supervisor = Supervisor(fleet, "--host", "alpha")
    try:
        fleet.cli("submit", "--config", "fleet.toml", fleet.task_file(PERM_TASK))
        supervisor.wait_for("task_escalated", "t-perm")
        fleet.write_config(skip_permissions=True)
        beta_config, _ = _another_host(fleet, "beta")
        released = fleet.cli("release", "--config", str(beta_config), "t-perm", "--note", "flag")
        assert released.stdout.strip() == (
            "release of incident permission-1 (permission) requested from host alpha: frees t-perm"
        )
        supervisor.wait_for("task_succeeded", "t-perm")
    finally:
        assert supervisor.stop() == 0
    assert not list((fleet.root / ".orch-beta").glob("spool/*.json"))  # nothing spooled there
    with PostgresStore(store_url) as store:
        launches = store.launches()
    assert [(t, a, h) for t, a, _, h, _ in launches] == [
        ("t-perm", 1, "alpha"),
        ("t-perm", 2, "alpha"),
    ]
    with psycopg.connect(store_url) as conn:
        requests = conn.execute(
            "SELECT host, kind, done_at IS NOT NULL FROM orch_requests"
        ).fetchall()
    assert requests == [("alpha", "release", True)]
    unknown = fleet.cli("release", "--config", "fleet.toml", "t-nope", check=False)
    assert unknown.returncode == 2 and "t-nope" in unknown.stderr


def test_a_release_nobody_can_take_is_refused(fleet: Fleet, store_url: str) -> None:
    """An escalated task whose host's lease ran out, unclaimed since: no supervisor would
    take the request, so release says so and leaves nothing behind."""
    journal = JournalBuilder()
    lone = journal.task("t-lone", "task-agent-1", title="Write the lone note")
    lone.launch().exit(ExitInfo(0), after=30.0).attribute(Reason.PERMISSION, detail="denied")
    lone.decide(Strategy.ESCALATE).escalate("permission denied")
    with PostgresStore(store_url, host="alpha") as alpha:
        alpha.register(capacity=None)
        assert alpha.submit(Task("t-lone", "Write the lone note", ("lone.md",)))
        assert [c.task.task_id for c in alpha.claim()] == ["t-lone"]
        for event in journal.events:
            alpha.append(event)
    _expire(store_url, "alpha")
    fleet.write_config(store=store_url)
    refused = fleet.cli("release", "--config", "fleet.toml", "t-lone", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith(
        "t-lone: no host holds it now (its lease ran out); release it again once a host has "
        "claimed it"
    )
    with psycopg.connect(store_url) as conn:
        assert conn.execute("SELECT count(*) FROM orch_requests").fetchone() == (0,)
