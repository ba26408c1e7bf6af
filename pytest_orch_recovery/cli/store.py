"""``orch-recovery store ACTION --store URL``: the fleet store's schema and its hosts.

- ``init`` creates the schema in an empty database. On a database already at this program's
  version it does nothing.
- ``migrate`` brings an initialised store to this program's version. It refuses a database
  that was never initialised, so a mistyped URL creates nothing. Both ``init`` and ``migrate``
  are safe to run from several hosts at once.
- ``version`` prints the store's version and the program's.
- ``hosts`` lists the registered hosts and their health: state, capacity, the tasks each
  holds, and the seconds since its last heartbeat.
- ``drain NAME`` stops a host from claiming more tasks; it keeps the ones it holds.
- ``retire NAME`` retires a host that holds nothing (its supervisor is then refused).
- ``activate NAME`` undoes ``drain`` or ``retire``.

Exit 0 on success. Exit 2 on a bad URL or name, a schema this program cannot use, or a
refused host change. Exit 1 when the database cannot be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from pytest_orch_recovery.cli.fleet_output import fail
from pytest_orch_recovery.infra import argtypes

PROG = "orch-recovery store"
URL_ENV = "ORCH_STORE"
PATIENCE = 10.0  # seconds a host command retries an unreachable store
_HOST_ACTIONS = {"drain": "draining", "retire": "retired", "activate": "active"}


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create or migrate the fleet store (PostgreSQL) that several supervisors "
        "share, and drain or retire its hosts (docs/multi-host.md).",
    )
    parser.add_argument(
        "action",
        choices=("init", "migrate", "version", "hosts", *_HOST_ACTIONS),
        help="init: create the schema in an empty database; migrate: bring an initialised "
        "store to this program's schema version; version: print both versions; hosts: the "
        "hosts and their health; drain NAME: claim no more tasks; retire NAME: a drained "
        "host that holds nothing leaves the fleet; activate NAME: undo drain or retire",
    )
    parser.add_argument(
        "host",
        nargs="?",
        type=argtypes.host_name,
        metavar="NAME",
        help="the host, for drain, retire and activate",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get(URL_ENV),
        help="the database, as a libpq URL: postgresql://USER@HOST:PORT/DB (a password is "
        "better kept in ~/.pgpass or PGPASSWORD than in the URL); default: $" + URL_ENV,
    )
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="for hosts: a table, or one JSON object with schema_version (default: table)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    if not args.store:
        return fail(PROG, f"--store URL is required (or set ${URL_ENV})")
    if (args.action in _HOST_ACTIONS) != (args.host is not None):
        need = "needs a host NAME" if args.action in _HOST_ACTIONS else "takes no host NAME"
        return fail(PROG, f"{args.action} {need}")
    # psycopg is an optional dependency (the 'postgres' extra): imported only here.
    try:
        from pytest_orch_recovery.store.postgres import StoreUrlError, check_url
    except ImportError as exc:
        return fail(
            PROG,
            f"PostgreSQL support is not installed ({exc.name}): "
            "pip install 'pytest-orch-recovery[postgres]'",
        )
    try:
        url = check_url(args.store)
    except StoreUrlError as exc:
        return fail(PROG, str(exc))
    if args.action in ("init", "migrate", "version"):
        return _schema(args.action, url)
    return _hosts(args, url)


def _schema(action: str, url: str) -> int:
    import psycopg

    from pytest_orch_recovery.store import schema
    from pytest_orch_recovery.store.postgres import CONNECT_TIMEOUT, display_url

    shown = display_url(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            if action == "version":
                version = schema.current_version(conn)
                have = "none (not initialised)" if version is None else version
                print(f"{shown}: store version {have}, program version {schema.latest_version()}")
                return 0
            applied = schema.upgrade(conn, create=action == "init")
            version = schema.current_version(conn)
    except schema.SchemaError as exc:
        return fail(PROG, f"{shown}: {exc}")
    except psycopg.OperationalError as exc:
        text = str(exc).strip().splitlines()
        print(
            f"{PROG}: {shown}: cannot reach the database: {text[0] if text else exc}",
            file=sys.stderr,
        )
        return 1
    for migration in applied:
        print(f"{shown}: applied {migration.version:04d}_{migration.name}")
    print(f"{shown}: store at version {version}")
    return 0


def _hosts(args: argparse.Namespace, url: str) -> int:
    from pytest_orch_recovery.store.postgres import (
        PostgresStore,
        StoreError,
        StoreUnavailableError,
    )
    from pytest_orch_recovery.store.schema import SchemaError

    try:
        with PostgresStore(url, outage_limit=PATIENCE) as store:
            if args.action in _HOST_ACTIONS:
                info = store.set_host_state(args.host, _HOST_ACTIONS[args.action])
                print(f"host {info.name}: {info.state}, holds {info.held} task(s)")
                return 0
            hosts = store.hosts()
            now = store.now()
    except (StoreUnavailableError, OSError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except (StoreError, SchemaError) as exc:
        return fail(PROG, str(exc))
    rows: list[dict[str, Any]] = [
        {
            "host": h.name,
            "state": h.state,
            "capacity": h.capacity,
            "held": h.held,
            "heartbeat_age": round((now - h.last_heartbeat).total_seconds(), 1),
        }
        for h in hosts
    ]
    if args.format == "json":
        print(json.dumps({"schema_version": 1, "kind": "hosts", "hosts": rows}, indent=2))
        return 0
    print(f"{'HOST':<20} {'STATE':<9} {'CAPACITY':>8} {'HELD':>5} {'HEARTBEAT':>12}")
    for row in rows:
        capacity = "-" if row["capacity"] is None else str(row["capacity"])
        print(
            f"{row['host']:<20} {row['state']:<9} {capacity:>8} {row['held']:>5} "
            f"{_age(row['heartbeat_age']):>12}"
        )
    return 0


def _age(seconds: float) -> str:
    """``12.5 s ago``; the store's clock against itself, so hosts' clocks never matter.

    >>> _age(3.25), _age(125.0)
    ('3.2 s ago', '2 min ago')
    """
    return f"{seconds:.1f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
