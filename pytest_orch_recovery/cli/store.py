"""``orch-recovery store init|migrate|version --store URL``: the fleet store's schema.

``init`` creates the schema in an empty database (and is a no-op on one already at this
program's version); ``migrate`` brings an initialised store to this program's version and
refuses a database that was never initialised, so a mistyped URL creates nothing. Both are
safe to run from several hosts at once. ``version`` prints the store's version and the
program's. Exit 0 on success, 2 on a bad URL or a schema this program cannot use, 1 when the
database cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys

from pytest_orch_recovery.cli.fleet_output import fail

PROG = "orch-recovery store"
URL_ENV = "ORCH_STORE"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Create or migrate the fleet store (PostgreSQL) that several supervisors "
        "share (docs/multi-host.md).",
    )
    parser.add_argument(
        "action",
        choices=("init", "migrate", "version"),
        help="init: create the schema in an empty database; migrate: bring an initialised "
        "store to this program's schema version; version: print both versions",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        default=os.environ.get(URL_ENV),
        help="the database, as a libpq URL: postgresql://USER@HOST:PORT/DB (a password is "
        "better kept in ~/.pgpass or PGPASSWORD than in the URL); default: $" + URL_ENV,
    )
    return parser


def run(args: argparse.Namespace) -> int:
    if not args.store:
        return fail(PROG, f"--store URL is required (or set ${URL_ENV})")
    # psycopg is an optional dependency (the 'postgres' extra): imported only here.
    try:
        import psycopg

        from pytest_orch_recovery.store import schema
        from pytest_orch_recovery.store.postgres import (
            CONNECT_TIMEOUT,
            StoreUrlError,
            check_url,
            display_url,
        )
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
    shown = display_url(url)
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            if args.action == "version":
                version = schema.current_version(conn)
                have = "none (not initialised)" if version is None else version
                print(f"{shown}: store version {have}, program version {schema.latest_version()}")
                return 0
            applied = schema.upgrade(conn, create=args.action == "init")
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
    if applied:
        for migration in applied:
            print(f"{shown}: applied {migration.version:04d}_{migration.name}")
    print(f"{shown}: store at version {version}")
    return 0
