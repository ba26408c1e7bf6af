"""Several hosts on the simulation tier (chaos/tiers/simhosts.py): the fleet store's leases
and fence, and the host faults of the catalogue -- ``host_down``, ``host_partition``,
``store_outage`` -- carried out over simulated hosts, with the bundled host scenarios and
the ``--orch-hosts`` option of the plugin."""

from __future__ import annotations

import pytest

from pytest_orch_recovery.chaos import BUNDLED_HOST_SCENARIOS, BUNDLED_SCENARIOS
from pytest_orch_recovery.chaos.campaign import run_scenario
from pytest_orch_recovery.chaos.faults import FaultSpec
from pytest_orch_recovery.chaos.oracle import invariant_violations, mismatches
from pytest_orch_recovery.chaos.scenario import ScenarioError, load_scenario, parse_scenario
from pytest_orch_recovery.chaos.tiers.sim import simulate
from pytest_orch_recovery.chaos.tiers.simhosts import LEASE, FleetStore, SimFleet, StaleLease
from pytest_orch_recovery.chaos.tiers.simruntime import SIM_EPOCH
from pytest_orch_recovery.engine.coordinator import CoordinatorConfig
from pytest_orch_recovery.engine.errors import InvalidValue
from pytest_orch_recovery.engine.events import AttemptExited, Event, EventKind, TaskSubmitted
from pytest_orch_recovery.engine.model import HOST_LOST, Task
from pytest_orch_recovery.engine.policy import Policy

SEED = 265111536


def _fleet(scenario_name: str, hosts: int) -> tuple[SimFleet, list[Event]]:
    """The bundled host scenario run over ``hosts`` hosts, with the fleet kept to look at."""
    scenario = load_scenario(BUNDLED_HOST_SCENARIOS / f"{scenario_name}.toml")
    fleet = SimFleet(
        hosts,
        scenario.faults,
        seed=SEED,
        new_policy=lambda: Policy(seed=SEED),
        config=CoordinatorConfig(seed=SEED, attempt_timeout=1800.0),
        capacity=scenario.max_live_agents,
    )
    tasks = [t.task for t in scenario.tasks]
    out = fleet.run(tasks, [f"task-agent-{t.task_id}" for t in tasks], ())
    assert out.violations == []
    return fleet, out.events


def _lost_attempts(events: list[Event]) -> list[tuple[str | None, int | None]]:
    return [
        (e.task_id, e.attempt)
        for e in events
        if isinstance(e.payload, AttemptExited)
        and e.payload.exit is not None
        and e.payload.exit.source == HOST_LOST
    ]


def test_the_fence_refuses_a_write_from_a_host_whose_lease_ran_out() -> None:
    store = FleetStore()
    store.queue = [(Task("t1", "Write it", ("a.md",)), None)]
    submitted = Event(TaskSubmitted(), SIM_EPOCH, "t1")
    assert store.claim("alpha", "t1", SIM_EPOCH) == 1
    store.append("alpha", submitted, SIM_EPOCH + 1)
    with pytest.raises(StaleLease, match="host beta holds no live lease of t1"):
        store.append("beta", submitted, SIM_EPOCH + 1)
    # Alpha's lease lapses unrenewed; beta claims at the next epoch; alpha is fenced off.
    assert store.claimable(SIM_EPOCH + LEASE) and not store.claimable(SIM_EPOCH + 1)
    assert store.claim("beta", "t1", SIM_EPOCH + LEASE) == 2
    assert store.heartbeat("alpha", SIM_EPOCH + LEASE + 1) == set()
    with pytest.raises(StaleLease):
        store.append("alpha", submitted, SIM_EPOCH + LEASE + 1)
    assert store.heartbeat("beta", SIM_EPOCH + LEASE + 1) == {"t1"}
    assert store.refused == 2 and len(store.journal) == 1


def test_a_downed_host_s_tasks_are_taken_over_and_finished_elsewhere() -> None:
    fleet, events = _fleet("host-down", 3)
    down = [h for h in fleet.hosts if h.state == "down"]
    assert [h.name for h in down] == ["host1"]
    lost = _lost_attempts(events)
    assert ("down-1", 1) in lost
    for task_id, attempt in lost:  # each lost attempt's task finished on another host
        holders = fleet.store.holders[str(task_id)]
        assert holders[0] == "host1" and holders[-1] != "host1"
        assert attempt == 1
    outcomes = [e for e in events if e.kind is EventKind.TASK_SUCCEEDED]
    assert len(outcomes) == 6


def test_a_thawed_host_stops_the_agents_of_the_tasks_it_lost_and_writes_nothing_for_them() -> None:
    fleet, events = _fleet("host-partition", 2)
    assert [h.state for h in fleet.hosts] == ["up", "up"]
    stopped = [n for n in fleet.notes if n.startswith("host1 lost the lease of cut-1")]
    assert stopped and "and stopped task-agent-cut-1" in stopped[0]
    assert not any(a.live for a in fleet.hosts[0].runtime._attempts.values())
    # Host1 wrote cut-1's submission and first launch; everything from the lost attempt's
    # end on is host2's, the holder at epoch 2.
    writers = [(fleet.store.writers[e.seq], e.kind) for e in events if e.task_id == "cut-1"]
    assert writers[:2] == [
        ("host1", EventKind.TASK_SUBMITTED),
        ("host1", EventKind.ATTEMPT_LAUNCHED),
    ]
    assert {host for host, _ in writers[2:]} == {"host2"}
    assert ("cut-1", 1) in _lost_attempts(events)
    assert fleet.store.holders["cut-1"] == ["host1", "host2"]
    launches = [(e.task_id, e.attempt) for e in events if e.kind is EventKind.ATTEMPT_LAUNCHED]
    assert len(launches) == len(set(launches))


def test_a_store_outage_waits_and_loses_or_reorders_nothing() -> None:
    fleet, events = _fleet("store-outage", 2)
    assert fleet.store.waits > 0  # some host's loop waited for the database
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for task_id in ("db-1", "db-2", "db-3"):
        kinds = [e.kind for e in events if e.task_id == task_id]
        assert kinds[0] is EventKind.TASK_SUBMITTED and kinds[-1] is EventKind.TASK_SUCCEEDED
        times = [e.time for e in events if e.task_id == task_id]
        assert times == sorted(times)
    assert _lost_attempts(events) == []


@pytest.mark.parametrize("hosts", [1, 2, 3])
@pytest.mark.parametrize(
    "name",
    [
        *sorted(p.stem for p in BUNDLED_HOST_SCENARIOS.glob("*.toml")),
        *("control", "permission-systematic", "usage-limit", "coordinator-crash"),
    ],
)
def test_bundled_scenarios_meet_their_expectations_over_several_hosts(
    name: str, hosts: int
) -> None:
    path = BUNDLED_HOST_SCENARIOS / f"{name}.toml"
    scenario = load_scenario(path if path.exists() else BUNDLED_SCENARIOS / f"{name}.toml")
    run = run_scenario(scenario, tier="sim", seed=SEED, agent="sim", hosts=hosts)
    assert mismatches(scenario, run) == []
    assert invariant_violations(run) == []
    for spec in scenario.faults:
        assert run.ledger[spec.fault_id]["status"] == "exercised"


def test_a_host_fault_needs_several_hosts() -> None:
    text = (
        '[[tasks]]\nid = "t1"\ntitle = "Docs"\ndeliverables = ["a.md"]\n'
        '[[faults]]\nkind = "host_down"\ntask = "t1"\n'
    )
    with pytest.raises(
        ScenarioError, match=r"x.toml:6: faults\[1\].kind: host_down needs several hosts"
    ):
        parse_scenario(text, source="x.toml")
    with pytest.raises(ScenarioError, match=r"x\.toml:1: hosts: host_down needs several hosts"):
        parse_scenario("hosts = 1\n" + text, source="x.toml")
    with pytest.raises(ScenarioError, match="hosts: must be <= 64"):
        parse_scenario("hosts = 65\n" + text, source="x.toml")
    with pytest.raises(InvalidValue, match="host faults need several hosts"):
        simulate([Task("t1", "Docs", ("a.md",))], [FaultSpec("host_down", task="t1")])


def test_the_plugin_runs_the_host_scenarios_with_orch_hosts(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--orch-chaos", "--orch-tier=sim", "--orch-hosts", "2")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=21)  # the 18 bundled scenarios and the 3 host scenarios
    ran = result.stdout.str()
    for name in ("host-down", "host-partition", "store-outage"):
        assert f"orch-bundled/hosts/{name}.toml ." in ran
    assert "replay: pytest --orch-chaos --orch-seed" in ran and "--orch-hosts 2" in ran
    gate = ran.split("orch-chaos recovery gate")[1]
    assert "FAIL" not in gate and gate.count("PASS ") == 5
