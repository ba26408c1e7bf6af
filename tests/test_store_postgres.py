"""The PostgreSQL fleet store against a real server (the session's private one, see
conftest.py): the queue hands each task to one host, leases fence stale writers, launches are
unique across hosts, and an outage costs time, never an event."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import wait_until

from pytest_orch_recovery.engine.events import (
    AttemptExited,
    AttemptLaunched,
    DecisionMade,
    Event,
    EventKind,
    OperatorAction,
    TaskSucceeded,
    WorkspaceCleaned,
    WorkspaceOrphaned,
)
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.infra.postgres_server import LocalPostgres, reap_stale
from pytest_orch_recovery.infra.processes import process_alive, process_start_time
from pytest_orch_recovery.store import schema
from pytest_orch_recovery.store.postgres import (
    DuplicateLaunchError,
    PostgresStore,
    StaleLeaseError,
    StoreError,
    StoreUnavailableError,
    StoreUrlError,
    check_url,
)

ROOT = Path(__file__).resolve().parent.parent
WAIT = 60.0  # generous bound on anything that waits for a lease to run out


def task(n: int | str) -> Task:
    return Task(f"task-{n}", f"Task {n}", (f"out-{n}.md",))


@pytest.fixture
def hosts(store_url: str) -> Iterator[dict[str, PostgresStore]]:
    opened: dict[str, PostgresStore] = {}

    def close() -> None:
        for store in opened.values():
            store.close()

    try:
        for name in ("alpha", "beta"):
            opened[name] = PostgresStore(store_url, host=name, lease=30.0)
            opened[name].register(capacity=None)
        yield opened
    finally:
        close()


def launched(t: Task, attempt: int, *, time_: float = 1.0) -> Event:
    return Event(
        AttemptLaunched("sim", prompt="p", timeout=60.0),
        time_,
        t.task_id,
        "agent-1",
        attempt,
        key=f"{t.task_id}:{attempt}:initial",
    )


def expire_leases(url: str, host: str) -> None:
    """Move the host's leases into the past, as if its heartbeats had stopped that long ago:
    the database's clock decides expiry, so this is what a lost host looks like to it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE orch_tasks SET lease_until = now() - interval '1 second' "
            "WHERE host = %s AND state = 'claimed'",
            (host,),
        )


# ---------------------------------------------------------------------- schema and CLI


def _store_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery.cli.main", "store", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_store_init_creates_the_schema_once_and_migrate_refuses_an_empty_database(
    postgres_server: LocalPostgres,
) -> None:
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE cli_init")
    url = postgres_server.url.replace("/postgres?", "/cli_init?")
    migrate = _store_cli("migrate", "--store", url)
    assert migrate.returncode == 2
    assert "not initialised: run 'orch-recovery store init'" in migrate.stderr
    first = _store_cli("init", "--store", url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_fleet_store" in first.stdout
    assert f"store at version {schema.latest_version()}" in first.stdout
    again = _store_cli("init", "--store", url)
    assert again.returncode == 0 and "applied" not in again.stdout
    version = _store_cli("version", "--store", url)
    assert f"store version {schema.latest_version()}, program version" in version.stdout


def test_store_cli_refuses_a_bad_url_and_reports_an_unreachable_database(tmp_path: Path) -> None:
    bad = _store_cli("init", "--store", "mysql://db/x")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "orch-recovery store: error: store URL must start with postgresql:// (got 'mysql:')"
    ]
    missing = _store_cli("init", "--store", f"postgresql://u:secret@/db?host={tmp_path}")
    assert missing.returncode == 1
    assert "cannot reach the database" in missing.stderr
    assert "secret" not in missing.stderr  # the password never reaches a log line


def test_store_migrate_brings_an_older_store_to_the_programs_version(store_url: str) -> None:
    with psycopg.connect(store_url, autocommit=True) as conn:  # the store as version 1 left it
        conn.execute("DROP INDEX orch_tasks_agent")
        conn.execute("DROP TABLE orch_requests")
        conn.execute("DELETE FROM orch_schema_migrations WHERE version > 1")
    with pytest.raises(schema.SchemaError, match="version 1, this program needs"):
        PostgresStore(store_url, host="alpha")
    migrated = _store_cli("migrate", "--store", store_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0002_fleet_agent_names" in migrated.stdout
    assert "applied 0003_fleet_requests" in migrated.stdout
    assert "applied 0001" not in migrated.stdout
    with PostgresStore(store_url, host="alpha") as store:
        assert store.submit(task(1))


def test_a_store_newer_than_the_program_is_refused(store_url: str) -> None:
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("INSERT INTO orch_schema_migrations (version, name) VALUES (99, 'future')")
    with pytest.raises(schema.SchemaError, match="version 99; this program knows versions up"):
        PostgresStore(store_url, host="alpha")


def test_check_url_accepts_libpq_urls_only() -> None:
    assert check_url("postgresql://orch@db:5432/fleet")
    for bad in ("", "file:///tmp/x", "postgresql://a@b/c?nonsense_option=1"):
        with pytest.raises(StoreUrlError):
            check_url(bad)


# ---------------------------------------------------------------------- the queue


def test_submit_is_idempotent_and_claims_go_in_submission_order(
    hosts: dict[str, PostgresStore],
) -> None:
    alpha = hosts["alpha"]
    assert [alpha.submit(task(n)) for n in (3, 1, 2)] == [True, True, True]
    assert alpha.submit(task(1)) is False
    claims = alpha.claim(room=2)
    assert [c.task.task_id for c in claims] == ["task-3", "task-1"]
    assert [c.epoch for c in claims] == [1, 1]
    assert claims[0].task == task(3)  # the task round-trips whole
    assert [c.agent for c in claims] == ["task-agent-1", "task-agent-2"]  # fleet-wide names
    assert [c.task.task_id for c in hosts["beta"].claim(room=5)] == ["task-2"]
    assert hosts["beta"].claim(room=5) == []


def test_agent_names_are_unique_across_the_fleet(hosts: dict[str, PostgresStore]) -> None:
    alpha = hosts["alpha"]
    assert alpha.submit(task(1), agent="task-agent-2")  # an operator's own name
    assert alpha.submit(task(2))  # position 2: its usual name is taken, so it gets another
    for taken in ("task-agent-2", "task-agent-2-2"):
        with pytest.raises(StoreError, match=f"agent name '{taken}' is already another task's"):
            alpha.submit(task(3), agent=taken)
    assert alpha.submit(task(3))
    names = {c.task.task_id: c.agent for c in alpha.claim(room=5)}
    assert names["task-1"] == "task-agent-2"
    assert names["task-2"] == "task-agent-2-2"
    assert str(names["task-3"]).startswith("task-agent-")
    assert len(set(names.values())) == 3


def test_a_host_claims_no_more_than_its_capacity(store_url: str) -> None:
    with PostgresStore(store_url, host="small") as small:
        small.register(capacity=2)
        for n in range(5):
            small.submit(task(n))
        assert len(small.claim(room=10)) == 2
        assert small.claim(room=10) == []  # full until a task is done or lost
        info = {h.name: h for h in small.hosts()}["small"]
        assert (info.capacity, info.held, info.state) == (2, 2, "active")


def test_concurrent_claimers_never_claim_the_same_task(store_url: str) -> None:
    tasks = 60
    with PostgresStore(store_url, host="submitter") as submitter:
        for n in range(tasks):
            submitter.submit(task(n))
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            with PostgresStore(store_url, host=name) as store:
                store.register(capacity=None)
                mine = claimed.setdefault(name, [])
                start.wait()
                while batch := store.claim(room=3):
                    mine.extend(c.task.task_id for c in batch)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"host-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    every = [t for mine in claimed.values() for t in mine]
    assert sorted(every) == sorted(f"task-{n}" for n in range(tasks))  # each exactly once
    assert len(set(every)) == len(every)
    assert sum(1 for mine in claimed.values() if mine) >= 2  # they really competed


@settings(
    max_examples=15,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["alpha", "beta"]), st.sampled_from(["claim", "expire"])),
        min_size=1,
        max_size=12,
    )
)
def test_any_sequence_of_claims_and_expiries_leaves_one_holder_per_task_at_rising_epochs(
    store_url: str, steps: list[tuple[str, str]]
) -> None:
    """Whatever order hosts claim and lose their leases in, a task has one holder, its
    epoch only rises, and the holder the database names is the one whose writes it takes."""
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("TRUNCATE orch_launches, orch_events, orch_tasks, orch_hosts")
    stores = {n: PostgresStore(store_url, host=n, lease=30.0) for n in ("alpha", "beta")}
    try:
        for store in stores.values():
            store.register(capacity=None)
        stores["alpha"].submit(task(0))
        stores["alpha"].submit(task(1))
        last_epoch = {"task-0": 0, "task-1": 0}
        for host, step in steps:
            if step == "claim":
                for claim in stores[host].claim(room=1):
                    assert claim.epoch > last_epoch[claim.task.task_id]
                    last_epoch[claim.task.task_id] = claim.epoch
            else:
                expire_leases(store_url, host)
            for name, store in stores.items():
                held = store.heartbeat()
                for task_id in held:
                    other = stores["beta" if name == "alpha" else "alpha"]
                    assert task_id not in other.heartbeat()
                for task_id in ("task-0", "task-1"):
                    ok = task_id in held
                    event = Event(WorkspaceOrphaned("x"), 1.0, task_id)
                    if ok:
                        store.append(event)
                    else:
                        with pytest.raises(StaleLeaseError):
                            store.append(event)
    finally:
        for store in stores.values():
            store.close()


# ---------------------------------------------------------------------- leases and fencing


def test_lease_expiry_makes_a_task_reclaimable_at_a_higher_epoch_and_fences_the_old_holder(
    store_url: str,
) -> None:
    with (
        PostgresStore(store_url, host="alpha", lease=0.5) as alpha,
        PostgresStore(store_url, host="beta", lease=30.0) as beta,
    ):
        alpha.register(capacity=None)
        beta.register(capacity=None)
        alpha.submit(task(1))
        [first] = alpha.claim()
        assert first.epoch == 1
        assert alpha.append(launched(task(1), 1)).seq == 1
        assert beta.claim() == []  # alpha's lease is live
        # alpha stops beating (frozen, partitioned); beta polls until the lease runs out
        taken = wait_until(lambda: beta.claim() or None, "claim after alpha's lease ran out")
        assert [(c.task.task_id, c.epoch) for c in taken] == [("task-1", 2)]
        # alpha wakes up: its heartbeat says the lease is gone, and its writes are refused
        assert alpha.heartbeat() == {}
        exited = Event(AttemptExited(), 2.0, "task-1", "agent-1", 1)
        with pytest.raises(StaleLeaseError, match="stale lease: host 'alpha' epoch"):
            alpha.append(exited)
        beta_event = beta.append(Event(DecisionMade(), 3.0, "task-1", "agent-1", 1))
        assert beta_event.seq == 2  # the refused write took no seq
        assert [e.kind for e in beta.events()] == [
            EventKind.ATTEMPT_LAUNCHED,
            EventKind.DECISION,
        ]


def test_a_write_with_a_stale_epoch_is_refused_even_from_the_same_host(
    hosts: dict[str, PostgresStore], store_url: str
) -> None:
    alpha = hosts["alpha"]
    alpha.submit(task(1))
    alpha.claim()
    expire_leases(store_url, "alpha")
    [again] = alpha.claim()  # the same host takes it back, at a new epoch
    assert again.epoch == 2
    with psycopg.connect(store_url, autocommit=True) as conn:  # a writer still at epoch 1
        with pytest.raises(psycopg.errors.DatabaseError, match="stale lease") as refused:
            conn.execute(
                "INSERT INTO orch_events (append_id, kind, task_id, host, epoch, body) "
                "VALUES (gen_random_uuid(), 'decision', 'task-1', 'alpha', 1, '{}')"
            )
        assert refused.value.sqlstate == "OR409"
    assert alpha.append(Event(DecisionMade(), 1.0, "task-1")).seq == 1


def test_a_host_cannot_write_about_a_task_it_never_claimed(
    hosts: dict[str, PostgresStore],
) -> None:
    hosts["alpha"].submit(task(1))
    hosts["alpha"].claim()
    with pytest.raises(StaleLeaseError):
        hosts["beta"].append(Event(DecisionMade(), 1.0, "task-1"))
    with pytest.raises(StoreError, match="not in the store's queue"):
        hosts["beta"].append(Event(DecisionMade(), 1.0, "task-unknown"))


def test_a_finished_task_leaves_the_queue_and_takes_only_workspace_records(
    hosts: dict[str, PostgresStore], store_url: str
) -> None:
    alpha = hosts["alpha"]
    alpha.submit(task(1))
    alpha.claim()
    alpha.append(launched(task(1), 1))
    alpha.append(Event(TaskSucceeded(), 2.0, "task-1", "agent-1", 1))
    alpha.append(Event(WorkspaceCleaned("w"), 3.0, "task-1", "agent-1"))
    with pytest.raises(StaleLeaseError):
        alpha.append(launched(task(1), 2))
    expire_leases(store_url, "alpha")
    assert hosts["beta"].claim() == []  # done is done, lease or not


def test_a_heartbeat_keeps_the_epoch_of_a_task_the_host_finished_for_its_cleanup(
    hosts: dict[str, PostgresStore],
) -> None:
    alpha = hosts["alpha"]
    alpha.submit(task(1))
    alpha.submit(task(2))
    alpha.claim()
    alpha.append(Event(TaskSucceeded(), 2.0, "task-1", "agent-1", 1))
    assert alpha.heartbeat() == {"task-2": 1}  # the live leases
    assert alpha.leases() == {"task-1": 1, "task-2": 1}  # task-1 is done, still its own
    alpha.append(Event(WorkspaceCleaned("w"), 3.0, "task-1", "agent-1"))


def test_resume_leases_takes_the_hosts_tasks_back_at_new_epochs_and_fences_the_old_process(
    store_url: str,
) -> None:
    with PostgresStore(store_url, host="alpha") as old:
        old.register(capacity=None)
        old.submit(task(1))
        old.claim()
        expire_leases(store_url, "alpha")  # the old process stopped beating long ago
        with PostgresStore(store_url, host="alpha") as new:
            assert new.resume_leases() == {"task-1": 2}
            with pytest.raises(StaleLeaseError):  # the old process, thawed
                old.append(Event(DecisionMade(), 1.0, "task-1"))
            assert old.heartbeat() == {}
            assert new.append(Event(DecisionMade(), 1.0, "task-1")).seq == 1


def test_a_launch_is_unique_per_task_attempt_across_hosts(
    hosts: dict[str, PostgresStore], store_url: str
) -> None:
    alpha, beta = hosts["alpha"], hosts["beta"]
    alpha.submit(task(1))
    alpha.claim()
    alpha.append(launched(task(1), 1))
    with pytest.raises(DuplicateLaunchError, match="attempt 1"):
        alpha.append(launched(task(1), 1, time_=2.0))
    expire_leases(store_url, "alpha")
    [taken] = beta.claim()
    assert taken.epoch == 2
    # the new holder may not launch the attempt the old one launched, only the next one
    with pytest.raises(DuplicateLaunchError):
        beta.append(launched(task(1), 1, time_=3.0))
    beta.append(launched(task(1), 2, time_=4.0))
    assert [(t, a, h, e) for t, a, _, h, e in beta.launches()] == [
        ("task-1", 1, "alpha", 1),
        ("task-1", 2, "beta", 2),
    ]
    assert [e.seq for e in beta.events()] == [1, 2]  # refused launches took no seq


# ---------------------------------------------------------------------- the event log


def test_events_round_trip_exactly_in_seq_order(hosts: dict[str, PostgresStore]) -> None:
    alpha = hosts["alpha"]
    alpha.submit(task(1))
    alpha.claim()
    written = [
        Event(OperatorAction("fix"), 0.25),
        launched(task(1), 1, time_=1.5),
        Event(
            AttemptExited(output_tail="nul \x00 esc \x1b[31m é 🙂", result={"n": 10**18}),
            2.0000000000000004,
            "task-1",
            "agent-1",
            1,
        ),
    ]
    stored = [alpha.append(e) for e in written]
    assert [e.seq for e in stored] == [1, 2, 3]
    assert list(hosts["beta"].events()) == stored
    assert list(alpha.events(["task-1"])) == stored[1:]
    assert len(alpha) == 3


def test_an_event_replay_would_refuse_is_refused_at_append(hosts: dict[str, PostgresStore]) -> None:
    with pytest.raises(StoreError, match="field 'time'"):
        hosts["alpha"].append(Event(OperatorAction(), float("nan")))
    assert len(hosts["alpha"]) == 0


def test_a_store_opened_without_a_host_may_submit_but_not_write_events(store_url: str) -> None:
    with PostgresStore(store_url) as anonymous:
        assert anonymous.submit(task(1))
        with pytest.raises(StoreError, match="without a host name"):
            anonymous.append(Event(OperatorAction(), 1.0))


# ---------------------------------------------------------------------- outage


class _Records(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


@pytest.fixture
def store_log() -> Iterator[list[logging.LogRecord]]:
    """The store's warnings, taken at its own logger: ``orch-recovery supervise`` run in this
    process (other tests) stops the package's records from propagating to pytest's caplog."""
    records: list[logging.LogRecord] = []
    handler = _Records(records)
    logger = logging.getLogger("pytest_orch_recovery.store.postgres")
    level = logger.level
    logger.setLevel(logging.WARNING)  # whatever level such a run left on the package
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_store_outage_costs_time_and_no_event_is_lost_doubled_or_reordered(
    postgres_server: LocalPostgres, store_url: str, store_log: list[logging.LogRecord]
) -> None:
    """The server is stopped while a host appends, and started again: the appender retries
    with backoff, says so in its log, and the log ends up holding every event once, in the
    order they were written, with gap-free seqs."""
    count = 120
    with PostgresStore(store_url, host="alpha", lease=600.0) as alpha:
        alpha.register(capacity=None)
        alpha.submit(task(1))
        alpha.claim()
        half = threading.Event()
        stored: list[Event] = []
        failures: list[BaseException] = []

        def writer() -> None:
            try:
                for n in range(count):
                    event = Event(WorkspaceOrphaned(f"p{n}"), float(n), "task-1")
                    stored.append(alpha.append(event))
                    if n == count // 3:
                        half.set()
            except BaseException as exc:
                failures.append(exc)
                half.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert half.wait(WAIT)
        postgres_server.stop()
        retried_before = alpha.retries
        # the writer is now retrying against a stopped server; let it fail a few times
        wait_until(
            lambda: alpha.retries >= retried_before + 2 or not thread.is_alive(),
            "retries against the stopped server",
        )
        postgres_server.start()
        thread.join(WAIT)
        assert not thread.is_alive()
        assert failures == []
        assert alpha.retries >= 2
        assert any("unreachable" in r.getMessage() for r in store_log)
        events = list(alpha.events())
    assert [e.seq for e in events] == list(range(1, count + 1))
    assert [e.payload for e in events] == [WorkspaceOrphaned(f"p{n}") for n in range(count)]
    assert [e.seq for e in stored] == list(range(1, count + 1))


def test_an_outage_past_the_limit_is_an_error_naming_the_store(
    postgres_server: LocalPostgres, store_url: str
) -> None:
    slept: list[float] = []
    with PostgresStore(store_url, host="alpha", outage_limit=1.0, sleep=slept.append) as alpha:
        alpha.register(capacity=None)
        postgres_server.stop()
        try:
            # every wait is skipped (sleep is a recorder), so the limit is reached by the
            # connection attempts themselves; the backoff delays are still drawn and bounded
            with pytest.raises(StoreUnavailableError, match="store unreachable for"):
                alpha.claim()
        finally:
            postgres_server.start()
    assert slept and all(0.0 <= s <= 5.0 for s in slept)


class _LostAcknowledgement(PostgresStore):
    """A store whose first commit succeeds in the database but whose answer is lost, as when
    the connection drops between COMMIT and its reply."""

    lose_next = True

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = super()._connection()
        store = self
        real = conn.transaction

        @contextlib.contextmanager
        def transaction() -> Iterator[object]:
            with real() as tx:
                yield tx
            if store.lose_next:
                store.lose_next = False
                raise psycopg.OperationalError("server closed the connection unexpectedly")

        conn.transaction = transaction  # type: ignore[method-assign, assignment]
        return conn


def test_a_retried_append_or_claim_whose_commit_was_not_acknowledged_is_not_repeated(
    store_url: str,
) -> None:
    alpha = _LostAcknowledgement(store_url, host="alpha", sleep=lambda _: None)
    with alpha:
        alpha.register(capacity=None)  # this commit's answer is lost: retried, harmless
        for n in range(3):
            alpha.submit(task(n))
        alpha.lose_next = True
        claims = alpha.claim(room=1)
        assert [(c.task.task_id, c.epoch) for c in claims] == [("task-0", 1)]
        alpha.lose_next = True
        assert alpha.append(launched(task(0), 1)).seq == 1  # not a DuplicateLaunchError
        assert alpha.retries == 3
        assert len(alpha.events()) == 1
    with PostgresStore(store_url, host="beta") as beta:
        beta.register(capacity=None)
        assert [c.task.task_id for c in beta.claim(room=5)] == ["task-1", "task-2"]


# ---------------------------------------------------------------------- hosts


def test_an_operator_drains_then_retires_a_host_and_its_supervisor_is_refused(
    hosts: dict[str, PostgresStore],
) -> None:
    alpha, beta = hosts["alpha"], hosts["beta"]
    alpha.submit(task(1))
    alpha.submit(task(2))
    [held] = alpha.claim(room=1)
    url = alpha.url
    drained = _store_cli("drain", "alpha", "--store", url)
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.strip() == "host alpha: draining, holds 1 task(s)"
    assert alpha.claim() == []  # draining: nothing more
    assert alpha.heartbeat() == {held.task.task_id: 1}  # and it keeps what it holds
    refused = _store_cli("retire", "alpha", "--store", url)
    assert refused.returncode == 2
    assert "host 'alpha' still holds 1 task(s)" in refused.stderr
    alpha.append(Event(TaskSucceeded(), 2.0, held.task.task_id, "agent-1", 1))
    assert _store_cli("retire", "alpha", "--store", url).returncode == 0
    with pytest.raises(StoreError, match="host 'alpha' is retired"):
        alpha.register(capacity=None)  # a supervisor started again under the name
    assert [c.task.task_id for c in beta.claim()] == ["task-2"]
    listed = _store_cli("hosts", "--store", url, "--format", "json")
    rows = {r["host"]: r for r in json.loads(listed.stdout)["hosts"]}
    assert (rows["alpha"]["state"], rows["alpha"]["held"]) == ("retired", 0)
    assert (rows["beta"]["state"], rows["beta"]["held"]) == ("active", 1)
    assert all(0 <= r["heartbeat_age"] < WAIT for r in rows.values())
    table = _store_cli("hosts", "--store", url).stdout.splitlines()
    assert table[0].split() == ["HOST", "STATE", "CAPACITY", "HELD", "HEARTBEAT"]
    assert _store_cli("activate", "alpha", "--store", url).returncode == 0
    alpha.register(capacity=3)


def test_host_commands_name_what_is_wrong(store_url: str) -> None:
    assert "drain needs a host NAME" in _store_cli("drain", "--store", store_url).stderr
    assert "hosts takes no host NAME" in _store_cli("hosts", "x", "--store", store_url).stderr
    missing = _store_cli("drain", "gamma", "--store", store_url)
    assert missing.returncode == 2 and "no host 'gamma' in the store" in missing.stderr
    bad = _store_cli("drain", "gamma;x", "--store", store_url)
    assert bad.returncode == 2 and "host name 'gamma;x' must use" in bad.stderr


def test_report_over_the_store_is_the_fleet_s_dashboard(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from events import JournalBuilder, sigint_resumed

    from pytest_orch_recovery.cli import main as cli
    from pytest_orch_recovery.store.journal import Journal

    journal = JournalBuilder()
    sigint_resumed(journal)
    with PostgresStore(store_url, host="alpha") as alpha:
        alpha.register(capacity=None)
        assert alpha.submit(Task("fake3", "Create /fake3 command", ("fake3.md",)))
        assert [c.task.task_id for c in alpha.claim()] == ["fake3"]
        for event in journal.events:
            alpha.append(event)
    path = tmp_path / "journal.jsonl"
    with Journal(path) as file:
        for event in journal.events:
            file.append(event)
    assert cli.main(["report", "--store", store_url, "--format", "json"]) == 0
    over_store = json.loads(capsys.readouterr().out)
    assert cli.main(["report", "--journal", str(path), "--format", "json"]) == 0
    assert over_store == json.loads(capsys.readouterr().out)
    assert over_store["metrics"]["recovered"] == 1
    # The page over the store: every host's events folded at once, the store named.
    assert cli.main(["report", "--store", store_url, "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert "Journal fleet store " in page and 'data-attempt="2"' in page
    assert cli.main(["report", "--store", store_url, "--journal", str(path)]) == 2
    assert "--journal and --store are two sources" in capsys.readouterr().err
    assert cli.main(["report"]) == 2
    assert "one of the arguments --journal or --store is required" in capsys.readouterr().err


def test_reap_stale_removes_only_folders_of_owners_that_are_gone(tmp_path: Path) -> None:
    def folder(name: str, owner: str | None) -> Path:
        root = tmp_path / name
        root.mkdir()
        if owner is not None:
            (root / "owner").write_text(owner)
        return root

    me = os.getpid()
    gone = folder("orch-pg-gone", "2147483646 1\n")  # no such process (pid_max is lower)
    mine = folder("orch-pg-mine", f"{me} {process_start_time(me)}\n")
    reused = folder("orch-pg-reused", f"{me} 1\n")  # this pid, but another process's start
    unowned = folder("orch-pg-making", None)  # being made: not ours to judge
    garbled = folder("orch-pg-garbled", "x y\n")
    target = folder("elsewhere", "2147483646 1\n")
    (tmp_path / "orch-pg-link").symlink_to(target)
    reaped = reap_stale(tmp_path, bin_dir=tmp_path / "no-binaries")
    assert reaped == [gone, reused]
    assert not gone.exists() and not reused.exists()
    assert all(p.exists() for p in (mine, unowned, garbled, target))


@pytest.mark.slow
def test_a_server_left_by_a_killed_owner_is_stopped_and_removed_by_the_next(
    postgres_server: LocalPostgres,
) -> None:
    # pg_ctl detaches the server: SIGKILL its owner and it runs on, until the next
    # LocalPostgres in the same parent folder stops it and removes its folder.
    parent = Path(tempfile.mkdtemp(prefix="orch-reap-"))
    parent.chmod(0o755)  # the server user (as root: postgres) must reach its folder
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from pytest_orch_recovery.infra.postgres_server import LocalPostgres\n"
        "server = LocalPostgres(parent=Path(sys.argv[1]))\n"
        "server.start()\n"
        "print(server.root, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(parent)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        root = Path(owner.stdout.readline().strip())
        postmaster = int((root / "data" / "postmaster.pid").read_text().split()[0])
        owner.kill()
        owner.wait()
        assert process_alive(postmaster)  # left behind
        with LocalPostgres(parent=parent):
            assert not root.exists()
        wait_until(lambda: not process_alive(postmaster), "stale server stopped")
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        reap_stale(parent)  # whatever failed above, no server is left
        shutil.rmtree(parent, ignore_errors=True)
