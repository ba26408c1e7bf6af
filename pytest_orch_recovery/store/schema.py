"""The fleet store's schema: ordered SQL migrations shipped in ``store/migrations``.

``NNNN_name.sql`` files apply in number order, each in its own transaction together with its
row in ``orch_schema_migrations``, so a database is always at one whole version. Two programs
migrating at once are serialized by a transaction-level advisory lock; the second finds the
work done. A database newer than the program is refused rather than used: its rules (triggers,
constraints) may be ones this program does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from pytest_orch_recovery.engine.errors import UsageError

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK = 0x6F72636873746F72  # pg_advisory_xact_lock key, the ASCII of "orchstor"
_TABLE = "orch_schema_migrations"


class SchemaError(UsageError):
    """The database's schema is missing, older or newer than this program's: the message
    names the command that fixes it."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> tuple[Migration, ...]:
    """The package's migrations, oldest first; numbers must run 1, 2, 3 ... without a gap."""
    found = []
    for entry in resources.files("pytest_orch_recovery.store").joinpath("migrations").iterdir():
        match = _NAME.fullmatch(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations are not numbered 1..n: {[m.version for m in found]}")
    return tuple(found)


def latest_version() -> int:
    return len(migrations())


def current_version(conn: psycopg.Connection[tuple[Any, ...]]) -> int | None:
    """The version the database is at, or None when the store was never initialised."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_TABLE,)).fetchone()
    if row is None or not row[0]:
        return None
    version = conn.execute(f"SELECT coalesce(max(version), 0) FROM {_TABLE}").fetchone()
    return int(version[0]) if version is not None else 0


def upgrade(conn: psycopg.Connection[tuple[Any, ...]], *, create: bool) -> list[Migration]:
    """Bring the database to :func:`latest_version`; returns the migrations applied.

    ``create`` (``store init``) may start from an empty database; without it (``store
    migrate``) an uninitialised database is an error, so a typo in the URL does not quietly
    create a fleet store in the wrong database. ``conn`` must be in autocommit mode.
    """
    known = migrations()
    applied: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        version = current_version(conn)
        if version is None:
            if not create:
                raise SchemaError("the store is not initialised: run 'orch-recovery store init'")
            conn.execute(
                f"CREATE TABLE {_TABLE} (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            version = 0
        check_not_newer(version, len(known))
        for migration in known[version:]:
            # Nested transaction: a savepoint per migration inside the locked one. All of
            # them commit together; a failing one leaves the database where it was.
            with conn.transaction():
                conn.execute(migration.sql.encode("utf-8"))
                conn.execute(
                    f"INSERT INTO {_TABLE} (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
            applied.append(migration)
    return applied


def check_not_newer(version: int, latest: int) -> None:
    if version > latest:
        raise SchemaError(
            f"the store's schema is version {version}; this program knows versions up to "
            f"{latest}: upgrade pytest-orch-recovery"
        )


def require_current(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """The database's version, when it is the program's; else the command that fixes it."""
    version = current_version(conn)
    latest = latest_version()
    if version is None:
        raise SchemaError("the store is not initialised: run 'orch-recovery store init'")
    check_not_newer(version, latest)
    if version < latest:
        raise SchemaError(
            f"the store's schema is version {version}, this program needs {latest}: run "
            "'orch-recovery store migrate'"
        )
    return version
