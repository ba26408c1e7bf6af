"""The fleet store on PostgreSQL: one fleet's queue, leases, hosts and journal, shared by hosts.

A :class:`PostgresStore` is one host's connection to it (``host`` names the host; a store
opened without one can only submit and read). It implements the coordinator's
:class:`~pytest_orch_recovery.engine.ports.EventLog` (``append``, ``events``, ``len``) and adds:

- **queue**: :meth:`submit` inserts a task once (by id); :meth:`claim` takes up to the host's
  room in submission order with ``FOR UPDATE SKIP LOCKED``, so concurrent hosts never take the
  same task, and a task whose lease ran out is taken again at a higher **epoch**;
- **hosts and leases**: :meth:`register` and :meth:`heartbeat`, which renews the leases the
  host still holds and says which it lost;
- **fencing**: every event about a task carries the writer's host and epoch, and the database
  refuses it, in the inserting transaction, unless that host holds the task's live lease at
  that epoch (:class:`StaleLeaseError`); an ``attempt_launched`` takes its (task, attempt) and
  its key in a table where each is unique (:class:`DuplicateLaunchError`).

The rules live in the schema (``migrations/0001_fleet_store.sql``, triggers and constraints),
not here: a client that forgets them is still refused.

**Outages**: every operation is one transaction, retried on a lost or refused connection with
exponential backoff and jitter, logged at WARNING, until ``outage_limit`` seconds have passed
(:class:`StoreUnavailableError`). A retried append is made idempotent by its ``append_id``, a
retried claim by its ``claim_id``: a commit whose acknowledgement was lost is found, not
repeated, so nothing is lost, doubled or reordered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo, errors
from psycopg.types.json import Json

from pytest_orch_recovery.engine.errors import OrchRecoveryError, UsageError
from pytest_orch_recovery.engine.events import Event
from pytest_orch_recovery.engine.model import Task
from pytest_orch_recovery.engine.policy import Backoff
from pytest_orch_recovery.store import schema, validation
from pytest_orch_recovery.store.journal import event_field_problem

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]

DEFAULT_LEASE = 30.0  # seconds a claim lasts without a heartbeat
DEFAULT_OUTAGE_LIMIT = 300.0  # seconds of retrying before an operation gives up
CONNECT_TIMEOUT = 5  # seconds per connection attempt (libpq's connect_timeout)
RETRY_BACKOFF = Backoff(base=0.2, factor=2.0, cap=5.0)
HOST_STATES = ("active", "draining", "retired")
CLAIM_BATCH = 100  # tasks one claim takes at most for a host without a capacity

_STALE = "OR409"  # SQLSTATEs raised by the schema's triggers
_UNKNOWN_TASK = "OR404"
_BAD_LAUNCH = "OR422"


class StoreError(OrchRecoveryError):
    """The fleet store refused an operation; the message says which and why."""


class StoreUrlError(StoreError, UsageError, ValueError):
    """A store URL that is not a PostgreSQL connection URL (exit 2)."""


class StaleLeaseError(StoreError):
    """A write about a task from a host that no longer holds its lease at that epoch."""

    def __init__(self, message: str, task_id: str) -> None:
        super().__init__(message)
        self.task_id = task_id


class DuplicateLaunchError(StoreError):
    """A second ``attempt_launched`` for the same (task, attempt) or the same key."""


class StoreUnavailableError(StoreError):
    """The database stayed unreachable past the outage limit."""


@dataclass(frozen=True)
class Claim:
    """A task this host now holds: its lease is ``epoch`` until renewed or lost."""

    task: Task
    agent: str | None
    epoch: int
    position: int


@dataclass(frozen=True)
class HostInfo:
    name: str
    capacity: int | None
    state: str
    last_heartbeat: datetime
    held: int  # tasks it holds a live lease on


def check_url(url: str) -> str:
    """``url`` when it is a PostgreSQL URL libpq can parse, else :class:`StoreUrlError`.

    >>> check_url("postgresql://orch@db/fleet?sslmode=require&colour=blue")
    Traceback (most recent call last):
    ...
    pytest_orch_recovery.store.postgres.StoreUrlError: store URL is not valid: invalid URI \
query parameter: "colour"
    """
    try:
        validation.store_url(url)
    except validation.RuleError as exc:
        raise StoreUrlError(f"store URL {exc}") from None
    try:
        conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreUrlError(f"store URL is not valid: {_first_line(exc)}") from None
    return url


def display_url(url: str) -> str:
    """``url`` for logs and messages: user, host and database, never a password.

    >>> display_url("postgresql://orch:s3cret@db.example:5433/fleet")
    'postgresql://orch@db.example:5433/fleet'
    """
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<invalid URL>"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host') or ''}{port}/{parts.get('dbname') or ''}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _body(event: Event) -> str:
    """The event as the JSONL journal writes it, without its seq (the database assigns it)."""
    data = event.to_json()
    data.pop("seq", None)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class PostgresStore:
    """One host's connection to the fleet store (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        host: str | None = None,
        lease: float = DEFAULT_LEASE,
        outage_limit: float = DEFAULT_OUTAGE_LIMIT,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.url = check_url(url)
        if host is not None:
            try:
                validation.name(host, what="host name")
            except validation.RuleError as exc:
                raise StoreUrlError(str(exc)) from None
        self.host = host
        self.lease = lease
        self.outage_limit = outage_limit
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._conn: Connection | None = None
        self._epochs: dict[str, int] = {}  # task id -> epoch of the lease this host holds
        # The leases the last heartbeat renewed, and when (this process's monotonic clock)
        # that heartbeat began: what :meth:`holds` answers from.
        self._renewed: frozenset[str] = frozenset()
        self._renewed_at = -float("inf")
        self._renewed_wall = -float("inf")  # the same moment by the wall clock
        self.retries = 0  # operations retried after a lost connection, for logs and tests
        self._closed = False
        try:
            self._do("open the store", schema.require_current)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ connection

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,  # each operation is one explicit transaction
                connect_timeout=CONNECT_TIMEOUT,
                application_name=f"orch-recovery {self.host or ''}".strip()[:63],
            )
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _do(self, what: str, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction; retry it whole while the database is unreachable.

        Retried: connection failures and their kind (``OperationalError``: refused, reset,
        admin shutdown), and the serialization/deadlock rollbacks a retry resolves.
        Everything else (a constraint, a fencing refusal) is an answer, not an outage.
        """
        if self._closed:
            raise StoreError(f"{display_url(self.url)}: {what}: the store is closed")
        started = time.monotonic()
        failures = 0
        while True:
            try:
                conn = self._connection()
                with conn.transaction():
                    result = work(conn)
                if failures:
                    log.warning(
                        "store %s reachable again (%s) after %d tries, %.1f s",
                        display_url(self.url),
                        what,
                        failures + 1,
                        time.monotonic() - started,
                    )
                return result
            except psycopg.OperationalError as exc:
                self._drop_connection()
                failures += 1
                waited = time.monotonic() - started
                if waited >= self.outage_limit:
                    raise StoreUnavailableError(
                        f"{display_url(self.url)}: {what}: store unreachable for "
                        f"{waited:.1f} s ({failures} tries): {_first_line(exc)}"
                    ) from None
                delay = min(RETRY_BACKOFF.delay(failures, self._rng), self.outage_limit - waited)
                self.retries += 1
                log.warning(
                    "store %s unreachable (%s): %s; retry %d in %.2f s",
                    display_url(self.url),
                    what,
                    _first_line(exc),
                    failures,
                    delay,
                )
                self._sleep(delay)

    def close(self) -> None:
        self._closed = True
        self._drop_connection()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _host(self, what: str) -> str:
        if self.host is None:
            raise StoreError(f"{what}: this store was opened without a host name")
        return self.host

    # ------------------------------------------------------------------ hosts

    def register(self, capacity: int | None) -> None:
        """Enter this host in the registry (or update its capacity) and beat once. A host an
        operator retired is refused: it must be activated before it works again."""
        host = self._host("register")
        row = self._do(
            "register",
            lambda conn: conn.execute(
                "INSERT INTO orch_hosts (name, capacity) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET capacity = EXCLUDED.capacity, "
                "last_heartbeat = now() RETURNING state",
                (host, capacity),
            ).fetchone(),
        )
        if row is not None and row[0] == "retired":
            raise StoreError(
                f"host {host!r} is retired: 'orch-recovery store activate {host}' first"
            )

    def set_host_state(self, name: str, state: str) -> HostInfo:
        """An operator's order: ``draining`` (claim nothing more, keep what it holds),
        ``retired`` (only once it holds nothing) or ``active``."""
        if state not in HOST_STATES:
            raise StoreError(f"host state must be one of {', '.join(HOST_STATES)}, not {state!r}")

        def change(conn: Connection) -> None:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM orch_tasks t WHERE t.host = h.name "
                "AND t.state = 'claimed' AND t.lease_until > now()) "
                "FROM orch_hosts h WHERE h.name = %s FOR UPDATE",
                (name,),
            ).fetchone()
            if row is None:
                raise StoreError(f"no host {name!r} in the store")
            if state == "retired" and row[0]:
                raise StoreError(
                    f"host {name!r} still holds {row[0]} task(s): drain it and wait until it "
                    "holds none, or let its leases run out"
                )
            conn.execute("UPDATE orch_hosts SET state = %s WHERE name = %s", (state, name))

        self._do(f"set host {name} {state}", change)
        return {h.name: h for h in self.hosts()}[name]

    def heartbeat(self) -> dict[str, int]:
        """Renew the leases this host still holds; returns them (task id -> epoch).

        A lease that already ran out is not renewed, even if no other host took the task
        yet: the host may have acted on a stale view in between, so it has to claim again.
        Tasks missing from the answer are lost; the host must stop their agents."""
        host = self._host("heartbeat")

        known = list(self._epochs)

        def beat(conn: Connection) -> tuple[dict[str, int], dict[str, int]]:
            conn.execute("UPDATE orch_hosts SET last_heartbeat = now() WHERE name = %s", (host,))
            rows = conn.execute(
                "UPDATE orch_tasks SET lease_until = now() + make_interval(secs => %s) "
                "WHERE host = %s AND state = 'claimed' AND lease_until > now() "
                "RETURNING task_id, epoch",
                (self.lease, host),
            ).fetchall()
            # Tasks this host finished keep its epoch: it may still record their cleanup.
            done = conn.execute(
                "SELECT task_id, epoch FROM orch_tasks WHERE host = %s AND state = 'done' "
                "AND task_id = ANY(%s)",
                (host, known),
            ).fetchall()
            return (
                {str(task_id): int(epoch) for task_id, epoch in rows},
                {str(task_id): int(epoch) for task_id, epoch in done},
            )

        started, started_wall = time.monotonic(), time.time()
        renewed, finished = self._do("heartbeat", beat)
        keep = {**finished, **renewed}
        for task_id in sorted(set(self._epochs) - set(keep)):
            log.warning("host %s lost the lease of %s", host, task_id)
        self._epochs = {t: e for t, e in keep.items() if self._epochs.get(t) == e}
        held = {t: e for t, e in self._epochs.items() if t in renewed}
        self._renewed, self._renewed_at = frozenset(held), started
        self._renewed_wall = started_wall
        return held

    def held_until(self) -> float:
        """The wall-clock time the leases :meth:`holds` answers for are good until, for
        what only knows that clock (the agents' push fence, fleet/pushfence.py)."""
        return self._renewed_wall + self.lease

    def holds(self, task_id: str) -> bool:
        """Whether this host's lease of ``task_id`` is live by this process's own clock: the
        last heartbeat renewed it, less than a lease ago (counted from before that heartbeat
        began, so never longer than the database's). After a freeze (SIGSTOP) or an outage
        it is not, until the next heartbeat says so. The database's fence refuses stale
        writes anyway; this guards what it cannot see, such as pushes to the origin."""
        return task_id in self._renewed and time.monotonic() < self._renewed_at + self.lease

    def resume_leases(self) -> dict[str, int]:
        """Take back, at a new epoch each, every task the registry says this host holds --
        also one whose lease ran out while no other host took it. For a supervisor starting
        on a host whose previous supervisor stopped or died: its agents are still this
        host's. The new epochs fence that previous process should it still be alive
        (frozen, then thawed): its next write is refused, and it stops."""
        host = self._host("resume leases")
        claim_id = uuid.uuid4()

        def take(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT task_id, epoch FROM orch_tasks WHERE claim_id = %s", (claim_id,)
            ).fetchall()
            if not rows:
                rows = conn.execute(
                    "UPDATE orch_tasks SET epoch = epoch + 1, claim_id = %s, "
                    "lease_until = now() + make_interval(secs => %s) "
                    "WHERE host = %s AND state = 'claimed' RETURNING task_id, epoch",
                    (claim_id, self.lease, host),
                ).fetchall()
            return {str(task_id): int(epoch) for task_id, epoch in rows}

        self._epochs = self._do("resume leases", take)
        return dict(self._epochs)

    def now(self) -> datetime:
        """The database's clock: the one every lease and heartbeat is measured by."""
        row = self._do("read the clock", lambda conn: conn.execute("SELECT now()").fetchone())
        assert row is not None
        clock: datetime = row[0]
        return clock

    def hosts(self) -> list[HostInfo]:
        rows = self._do(
            "list hosts",
            lambda conn: conn.execute(
                "SELECT h.name, h.capacity, h.state, h.last_heartbeat, "
                "(SELECT count(*) FROM orch_tasks t WHERE t.host = h.name "
                " AND t.state = 'claimed' AND t.lease_until > now()) "
                "FROM orch_hosts h ORDER BY h.name"
            ).fetchall(),
        )
        return [HostInfo(str(n), c, str(s), hb, int(held)) for n, c, s, hb, held in rows]

    # ------------------------------------------------------------------ queue

    def submit(self, task: Task, *, agent: str | None = None) -> bool:
        """Queue ``task``; False when a task with its id was submitted before (a no-op).

        Without ``agent`` the store names one, ``task-agent-<position>``, unique across the
        fleet (hosts' coordinators each pick names only they know of); a name another task
        has is refused."""

        def put(conn: Connection) -> bool:
            row = conn.execute(
                "INSERT INTO orch_tasks (task_id, task, agent) VALUES (%s, %s, %s) "
                "ON CONFLICT (task_id) DO NOTHING RETURNING position",
                (task.task_id, Json(task.to_json()), agent),
            ).fetchone()
            if row is None:
                return False
            if agent is None:
                base = name = f"task-agent-{row[0]}"
                suffix = 1
                while conn.execute("SELECT 1 FROM orch_tasks WHERE agent = %s", (name,)).fetchone():
                    suffix += 1
                    name = f"{base}-{suffix}"
                conn.execute(
                    "UPDATE orch_tasks SET agent = %s WHERE task_id = %s", (name, task.task_id)
                )
            return True

        try:
            return self._do(f"submit {task.task_id}", put)
        except errors.UniqueViolation:
            raise StoreError(
                f"submit {task.task_id}: agent name {agent!r} is already another task's"
            ) from None

    def claim(self, room: int | None = None) -> list[Claim]:
        """Take the oldest claimable tasks (queued, or whose lease ran out), at most ``room``
        and at most the host's free capacity; each at a new epoch. Never blocks on a task
        another host is claiming (``SKIP LOCKED``)."""
        host = self._host("claim")
        claim_id = uuid.uuid4()

        def take(conn: Connection) -> list[Claim]:
            # A retry after a commit whose answer was lost finds what it took.
            rows = conn.execute(
                "SELECT task_id, task, agent, epoch, position FROM orch_tasks WHERE claim_id = %s",
                (claim_id,),
            ).fetchall()
            if not rows:
                wanted = self._room(conn, host, room)
                if wanted <= 0:
                    return []
                rows = conn.execute(
                    "WITH picked AS ("
                    "  SELECT task_id FROM orch_tasks"
                    "  WHERE state = 'queued' OR (state = 'claimed' AND lease_until <= now())"
                    "  ORDER BY position LIMIT %s FOR UPDATE SKIP LOCKED) "
                    "UPDATE orch_tasks t SET state = 'claimed', host = %s, epoch = t.epoch + 1,"
                    "  lease_until = now() + make_interval(secs => %s), claim_id = %s "
                    "FROM picked WHERE t.task_id = picked.task_id "
                    "RETURNING t.task_id, t.task, t.agent, t.epoch, t.position",
                    (wanted, host, self.lease, claim_id),
                ).fetchall()
            return sorted(
                (
                    Claim(Task.from_json(task), agent, int(epoch), int(position))
                    for _, task, agent, epoch, position in rows
                ),
                key=lambda c: c.position,
            )

        claims = self._do("claim", take)
        for claim in claims:
            self._epochs[claim.task.task_id] = claim.epoch
        # Live from before the last heartbeat's start at the latest: counted from there.
        self._renewed |= {claim.task.task_id for claim in claims}
        return claims

    @staticmethod
    def _room(conn: Connection, host: str, room: int | None) -> int:
        # The host row is locked so two claims of one host count each other's tasks.
        row = conn.execute(
            "SELECT capacity, state FROM orch_hosts WHERE name = %s FOR UPDATE", (host,)
        ).fetchone()
        if row is None:
            raise StoreError(f"claim: host {host!r} is not registered")
        capacity, state = row
        if state != "active":
            return 0
        if capacity is None:
            return room if room is not None else CLAIM_BATCH
        held = conn.execute(
            "SELECT count(*) FROM orch_tasks WHERE host = %s AND state = 'claimed' "
            "AND lease_until > now()",
            (host,),
        ).fetchone()
        free = int(capacity) - int(held[0] if held else 0)
        return free if room is None else min(free, room)

    def send_request(self, host: str, kind: str, body: Mapping[str, Any]) -> int:
        """Leave a request (``release``) for ``host``'s supervisor; returns its id."""
        row = self._do(
            f"send a {kind} request to {host}",
            lambda conn: conn.execute(
                "INSERT INTO orch_requests (host, kind, body) VALUES (%s, %s, %s) RETURNING id",
                (host, kind, Json(dict(body))),
            ).fetchone(),
        )
        assert row is not None
        return int(row[0])

    def requests(self) -> list[tuple[int, str, dict[str, Any]]]:
        """This host's waiting requests, oldest first: (id, kind, body)."""
        host = self._host("read requests")
        rows = self._do(
            "read requests",
            lambda conn: conn.execute(
                "SELECT id, kind, body FROM orch_requests WHERE host = %s AND done_at IS NULL "
                "ORDER BY id",
                (host,),
            ).fetchall(),
        )
        return [(int(i), str(kind), dict(body)) for i, kind, body in rows]

    def finish_request(self, request_id: int) -> None:
        self._do(
            "finish a request",
            lambda conn: conn.execute(
                "UPDATE orch_requests SET done_at = now() WHERE id = %s", (request_id,)
            ),
        )

    def holders(self, task_ids: Iterable[str]) -> dict[str, str | None]:
        """Which host holds each task now (None: nobody, or its lease ran out)."""
        ids = list(task_ids)
        rows = self._do(
            "read holders",
            lambda conn: conn.execute(
                "SELECT task_id, CASE WHEN state = 'claimed' AND lease_until > now() "
                "THEN host END FROM orch_tasks WHERE task_id = ANY(%s)",
                (ids,),
            ).fetchall(),
        )
        return {str(task_id): host for task_id, host in rows}

    def epoch(self, task_id: str) -> int | None:
        """The epoch of this host's lease on ``task_id`` as far as it knows, or None."""
        return self._epochs.get(task_id)

    def leases(self) -> Mapping[str, int]:
        return dict(self._epochs)

    # ------------------------------------------------------------------ the event log

    def append(self, event: Event) -> Event:
        """Write ``event`` with this host's name and lease epoch; return it with the seq the
        database gave it. Refused (nothing written) when the lease is not this host's at
        that epoch, or when a launch repeats a (task, attempt) or key."""
        host = self._host("append")
        problem = event_field_problem(event)  # refuse to write what replay would refuse
        if problem is not None:
            raise StoreError(f"append {event.kind.value}: {problem}")
        try:
            body = _body(event)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"append {event.kind.value}: event is not JSON: {exc}") from None
        epoch = None if event.task_id is None else self._epochs.get(event.task_id)
        append_id = uuid.uuid4()

        def insert(conn: Connection) -> int:
            done = conn.execute(
                "SELECT seq FROM orch_events WHERE append_id = %s", (append_id,)
            ).fetchone()
            if done is not None:
                return int(done[0])
            row = conn.execute(
                "INSERT INTO orch_events (append_id, kind, task_id, attempt, key, host, epoch, "
                "body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq",
                (
                    append_id,
                    str(event.kind),
                    event.task_id,
                    event.attempt,
                    event.key,
                    host,
                    epoch,
                    body,
                ),
            ).fetchone()
            assert row is not None
            return int(row[0])

        try:
            seq = self._do(f"append {event.kind.value}", insert)
        except errors.UniqueViolation as exc:
            raise DuplicateLaunchError(
                f"launch refused: task {event.task_id!r} attempt {event.attempt} (key "
                f"{event.key!r}) was already launched: {_first_line(exc)}"
            ) from None
        except psycopg.DatabaseError as exc:
            if exc.sqlstate == _STALE and event.task_id is not None:
                self._epochs.pop(event.task_id, None)
                raise StaleLeaseError(_first_line(exc), event.task_id) from None
            if exc.sqlstate in (_UNKNOWN_TASK, _BAD_LAUNCH):
                raise StoreError(_first_line(exc)) from None
            raise
        return dataclasses.replace(event, seq=seq)

    def events(
        self, task_ids: Iterable[str] | None = None, *, fleet_events_of: str | None = None
    ) -> Sequence[Event]:
        """Every event, in seq order; or those of ``task_ids``, with the fleet-wide events
        (no task) that host ``fleet_events_of`` wrote."""
        ids = None if task_ids is None else list(task_ids)

        def read(conn: Connection) -> list[Event]:
            if ids is None:
                cur = conn.execute("SELECT seq, body FROM orch_events ORDER BY seq")
            else:
                cur = conn.execute(
                    "SELECT seq, body FROM orch_events WHERE task_id = ANY(%s) "
                    "OR (task_id IS NULL AND host = %s) ORDER BY seq",
                    (ids, fleet_events_of),
                )
            return [_event(seq, body) for seq, body in cur.fetchall()]

        return tuple(self._do("read events", read))

    def __len__(self) -> int:
        row = self._do(
            "count events",
            lambda conn: conn.execute("SELECT last_seq FROM orch_event_counter").fetchone(),
        )
        return int(row[0]) if row is not None else 0

    def task_hosts(self) -> dict[str, str]:
        """Each task's host: of its latest launch, else the one that holds or held it."""
        rows = self._do(
            "read task hosts",
            lambda conn: conn.execute(
                "SELECT t.task_id, coalesce((SELECT l.host FROM orch_launches l "
                "WHERE l.task_id = t.task_id ORDER BY l.attempt DESC LIMIT 1), t.host) "
                "FROM orch_tasks t WHERE t.host IS NOT NULL"
            ).fetchall(),
        )
        return {str(task_id): str(host) for task_id, host in rows}

    def taken_over(self) -> dict[str, tuple[str, str]]:
        """The tasks this host holds whose latest launch was another host's: task id ->
        (agent, that host). Their attempt there was lost with its lease; this host goes on."""
        host = self._host("read takeovers")
        rows = self._do(
            "read takeovers",
            lambda conn: conn.execute(
                "SELECT t.task_id, t.agent, l.host FROM orch_tasks t CROSS JOIN LATERAL "
                "(SELECT host FROM orch_launches WHERE task_id = t.task_id "
                " ORDER BY attempt DESC LIMIT 1) l "
                "WHERE t.host = %s AND t.state = 'claimed' AND l.host <> %s",
                (host, host),
            ).fetchall(),
        )
        return {str(task_id): (str(agent), str(by)) for task_id, agent, by in rows}

    def launches(self) -> list[tuple[str, int, str, str, int]]:
        """Every launch the database accepted: (task id, attempt, key, host, epoch)."""
        rows = self._do(
            "read launches",
            lambda conn: conn.execute(
                "SELECT task_id, attempt, key, host, epoch FROM orch_launches "
                "ORDER BY task_id, attempt"
            ).fetchall(),
        )
        return [(str(t), int(a), str(k), str(h), int(e)) for t, a, k, h, e in rows]


def _event(seq: int, body: Mapping[str, Any]) -> Event:
    return Event.from_json({**body, "seq": seq})


class HostJournal:
    """The :class:`~pytest_orch_recovery.engine.ports.EventLog` a host's coordinator writes
    through: appends go to the store under the host's leases; :meth:`events` are those of the
    tasks the host holds now, with the fleet-wide events (no task) it wrote itself, so a
    coordinator rebuilt from them (``Coordinator.recover``) takes up exactly its own tasks.

    ``len()`` is the highest seq this journal has seen (fleet-wide: other hosts' events count),
    kept without a round trip; the coordinator only uses it to number what it appends next.
    """

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self._last_seq = 0

    def append(self, event: Event) -> Event:
        stored = self.store.append(event)
        self._last_seq = max(self._last_seq, stored.seq)
        return stored

    def events(self) -> Sequence[Event]:
        found = self.store.events(self.store.leases(), fleet_events_of=self.store.host)
        if found:
            self._last_seq = max(self._last_seq, found[-1].seq)
        return found

    def __len__(self) -> int:
        if self._last_seq == 0:
            self._last_seq = len(self.store)
        return self._last_seq

    def close(self) -> None:
        self.store.close()
