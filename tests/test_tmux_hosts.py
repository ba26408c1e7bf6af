"""Several hosts on the tmux tier (chaos/tiers/tmuxhosts.py): ``pytest --orch-chaos --orch-hosts
N`` runs the host scenarios over N real ``orch-recovery supervise --host`` processes sharing a
PostgreSQL fleet store -- a private server the plugin starts for the session, or the one
``--orch-store`` names -- and carries the host faults out for real: the host killed with its
tmux server and agents, its supervisor frozen past its lease and thawed, the database stopped.
Also the options' usage errors, and what is left afterwards: nothing."""

from __future__ import annotations

import glob
import json
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from pytest_orch_recovery.chaos import BUNDLED_HOST_SCENARIOS
from pytest_orch_recovery.chaos.faults import FaultSpec
from pytest_orch_recovery.chaos.fleetdb import FleetDatabase
from pytest_orch_recovery.chaos.scenario import load_scenario
from pytest_orch_recovery.chaos.tiers.simhosts import LEASE as SIM_LEASE
from pytest_orch_recovery.chaos.tiers.tmuxhosts import (
    LEASE,
    OUTAGE_MARGIN,
    freeze_seconds,
    lease_for,
    unsupported,
)
from pytest_orch_recovery.doubles.sandbox import default_base_dir
from pytest_orch_recovery.infra.postgres_server import LocalPostgres
from pytest_orch_recovery.runtime.server import tmux_socket_path

# ---------------------------------------------------------------- pure rules


def test_the_lease_outlasts_every_store_outage_and_a_freeze_counts_in_leases() -> None:
    outage = FaultSpec("store_outage", task="t", params={"seconds": 25})
    assert lease_for([]) == LEASE
    assert lease_for([outage]) == 25 + OUTAGE_MARGIN
    partition = FaultSpec("host_partition", task="t", params={"seconds": 3 * SIM_LEASE})
    assert freeze_seconds(partition, LEASE) == 3 * LEASE  # three leases, on either tier
    assert freeze_seconds(FaultSpec("host_partition", task="t"), LEASE) == 2 * LEASE


def test_what_the_hosts_harness_does_not_inject_is_refused_with_the_reason() -> None:
    down = load_scenario(BUNDLED_HOST_SCENARIOS / "host-down.toml")
    outage = load_scenario(BUNDLED_HOST_SCENARIOS / "store-outage.toml")
    own, given = FleetDatabase(), FleetDatabase("postgresql://orch@db.example/fleet")
    assert unsupported(down, "sim", own) is None
    assert unsupported(outage, "sim", own) is None
    assert "only the campaign's own server" in str(unsupported(outage, "sim", given))
    assert "sim agent" in str(unsupported(down, "claude-code", own))
    api = down.__class__(**{**down.__dict__, "faults": (*down.faults, FaultSpec("api_overloaded"))})
    assert "api_overloaded" in str(unsupported(api, "sim", own))


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orch-store=sqlite:///fleet.db"], "store URL must start with postgresql://"),
        (
            ["--orch-hosts=2", "--orch-store=postgresql://orch:s3cret@db/fleet?colour=blue"],
            'store URL is not valid: invalid URI query parameter: "colour"',
        ),
        (["--orch-store=postgresql://orch@db/fleet"], "add --orch-hosts 2 or more"),
        (
            ["--orch-tier=sim", "--orch-hosts=2", "--orch-store=postgresql://orch@db/fleet"],
            "the sim tier models the store in memory",
        ),
        (["--orch-hosts=0"], "'0' must be from 1 to 64"),
    ],
)
def test_bad_host_options_are_one_usage_error_that_never_shows_the_password(
    pytester: pytest.Pytester, args: list[str], message: str
) -> None:
    result = pytester.runpytest("--orch-chaos", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert message in err
    assert "s3cret" not in err + result.stdout.str()
    assert sum(message in line for line in err.splitlines()) == 1  # one line says it


# ---------------------------------------------------------------- end to end


def _pg_dirs() -> set[str]:
    return set(glob.glob(str(Path(tempfile.gettempdir()) / "orch-pg-*")))


def _host_sandboxes() -> set[str]:
    return set(glob.glob(str(default_base_dir() / "hosts-*")))


def _host_sockets() -> set[str]:
    return set(glob.glob(str(tmux_socket_path("x").parent / "orch-*-host*")))


def _gate(stdout: str) -> str:
    return stdout.split("orch-chaos recovery gate")[1]


@pytest.mark.slow
def test_orch_hosts_3_runs_host_scenarios_over_real_supervisors_and_leaves_nothing(
    pytester: pytest.Pytester,
) -> None:
    before = (_pg_dirs(), _host_sandboxes(), _host_sockets())
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orch-chaos", "--orch-hosts", "3", "--orch-seed", "7",
        "-k", "host-partition or store-outage", "--orch-report=run.json",
        "--orch-report=run.jsonl",
    )  # fmt: skip
    out = result.stdout.str()
    assert result.ret == 0, out
    result.assert_outcomes(passed=2, deselected=19)
    gate = _gate(out)
    assert "FAIL" not in gate
    assert "PASS recovery_rate: observed 1.000 (1/1)" in gate
    assert "PASS orphaned_workspaces: observed 0" in gate
    assert "PASS unattributed_failures: observed 0" in gate
    assert "replay: pytest --orch-chaos --orch-seed 7 --orch-hosts 3" in out
    # The server, the sandboxes and the hosts' tmux servers went with the session.
    assert (_pg_dirs(), _host_sandboxes(), _host_sockets()) == before

    ledger = {
        e["kind"]: e
        for e in json.loads((pytester.path / "run.json").read_text())["campaign"]["ledger"]
    }
    frozen = ledger["host_partition"]["hits"]  # every task the frozen host held
    assert "cut-1" in {h["task"] for h in frozen}
    assert all("frozen" in h["detail"] for h in frozen)
    assert "store stopped 10 s" in ledger["store_outage"]["hits"][0]["detail"]
    events = [json.loads(line) for line in (pytester.path / "run.jsonl").read_text().splitlines()]
    launched = Counter(e["task_id"] for e in events if e["kind"] == "attempt_launched")
    # cut-1: attempt 1 on the frozen host, 2 on another (the frozen host's other task may
    # have gone the same way); the outage cost no task an attempt
    assert launched["host-partition/cut-1"] == 2
    assert {t: n for t, n in launched.items() if t.startswith("store-outage/")} == {
        f"store-outage/db-{n}": 1 for n in (1, 2, 3)
    }


@pytest.mark.slow
def test_orch_store_puts_each_scenario_in_a_database_of_its_own_and_drops_it(
    pytester: pytest.Pytester, postgres_server: LocalPostgres
) -> None:
    import psycopg

    def databases() -> set[str]:
        with psycopg.connect(postgres_server.url) as conn:
            rows = conn.execute("SELECT datname FROM pg_database").fetchall()
        return {str(name) for (name,) in rows}

    before, dirs = databases(), _pg_dirs()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orch-chaos", "--orch-hosts=2",
        f"--orch-store={postgres_server.url}", "-k", "host-down or store-outage", "-rs",
    )  # fmt: skip
    out = result.stdout.str()
    assert result.ret == 0, out
    result.assert_outcomes(passed=1, skipped=1, deselected=19)
    assert "store_outage stops the database: only the campaign's own server" in out
    assert "orch-bundled/hosts/host-down.toml ." in out
    assert f"--orch-store={postgres_server.url}" in out  # the replay line (no password here)
    assert databases() == before  # the scenario's database dropped
    assert _pg_dirs() == dirs  # and no private server started


@pytest.mark.slow
def test_the_single_host_campaign_starts_no_database(pytester: pytest.Pytester) -> None:
    """Without --orch-hosts nothing of the fleet store is imported or started."""
    pytester.makeconftest(
        """
        import sys

        def pytest_unconfigure(config):
            with open("imported.txt", "w") as out:
                out.write(str(sorted(m for m in sys.modules if m.startswith("psycopg"))))
        """
    )
    dirs = _pg_dirs()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--orch-chaos", "-k", "control", "--orch-seed=3"
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=1, deselected=17)
    assert (pytester.path / "imported.txt").read_text() == "[]"
    assert _pg_dirs() == dirs
