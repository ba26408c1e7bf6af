"""The PostgreSQL server a multi-host campaign on the tmux tier runs its fleet stores on.

``pytest --orch-chaos --orch-hosts N`` (N >= 2, tmux tier) starts a private server
(:class:`~pytest_orch_recovery.infra.postgres_server.LocalPostgres`: a temporary folder, a
unix socket, no TCP, run as the ``postgres`` user when root) the first time a host scenario
needs one, and removes it at the end of the session; ``--orch-store URL`` names a server the
user runs instead. Either way each scenario gets a database of its own, created, initialised
and dropped around the run, so that no scenario sees another's queue, leases or events and
nothing of a run is left in the user's server. Only a private server can be stopped, so only
it carries out ``store_outage``.

psycopg is imported when a database is made, never by a single-host campaign.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pytest_orch_recovery.engine.errors import OrchRecoveryError

if TYPE_CHECKING:
    from pytest_orch_recovery.infra.postgres_server import LocalPostgres

log = logging.getLogger(__name__)


class FleetDatabaseError(OrchRecoveryError):
    """The campaign's fleet store could not be made (no server binaries, no CREATEDB right)."""


class FleetDatabase:
    """Where a multi-host scenario's fleet store lives: ``url`` (a server the user runs) or,
    without one, a private server started on first use. :meth:`close` removes what it made."""

    def __init__(self, url: str | None = None) -> None:
        self._given = url
        self._server: LocalPostgres | None = None

    @property
    def own_server(self) -> bool:
        """Whether the database is ours to stop (the ``store_outage`` fault)."""
        return self._given is None

    def _admin_url(self) -> str:
        if self._given is not None:
            return self._given
        if self._server is None:
            from pytest_orch_recovery.infra.postgres_server import LocalPostgres

            server = LocalPostgres()
            try:
                server.start()
            except BaseException:
                server.close()
                raise
            self._server = server
        return self._server.url

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str]:
        """A new, initialised fleet store for one run, dropped afterwards (``WITH (FORCE)``:
        a supervisor killed mid-run may still hold a connection)."""
        import psycopg
        from psycopg import sql

        from pytest_orch_recovery.store import schema
        from pytest_orch_recovery.store.postgres import display_url

        admin = self._admin_url()
        name = f"orch_chaos_{secrets.token_hex(6)}"
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FleetDatabaseError(
                f"cannot create a scenario's database on {display_url(admin)}: {detail} "
                "(--orch-store needs a role with CREATEDB)"
            ) from None
        url = database_url(admin, name)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                schema.upgrade(conn, create=True)
            yield url
        finally:
            self.start()  # an outage's end, if a failure cut it short
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )

    def stop(self) -> None:
        """Stop the private server (an outage); clients see it go as from a real one."""
        if self._server is None:
            raise FleetDatabaseError("only the campaign's own server can be stopped")
        self._server.stop()

    def start(self) -> None:
        """Start the private server again after :meth:`stop` (a no-op when it runs)."""
        if self._server is not None and not self._server.running:
            self._server.start()

    def close(self) -> None:
        """Stop and remove the private server, if one was started. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            log.info("removed the campaign's PostgreSQL server in %s", server.root)


def database_url(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead (its user, host, port and query kept).

    >>> database_url("postgresql://postgres@/postgres?host=/tmp/s&port=5432", "d1")
    'postgresql://postgres@/d1?host=/tmp/s&port=5432'
    >>> database_url("postgresql://orch@db.example:5433", "d2")
    'postgresql://orch@db.example:5433/d2'
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))
