"""The test suite's Hypothesis profile, a check that no test leaves a server thread behind, the
PostgreSQL fixtures (a private server per session, a fresh fleet store per test) and ``box``,
a sandbox that must be left with nothing behind.

Hypothesis' timing checks (``deadline``, ``HealthCheck.too_slow``) measure the machine, not the
code: on a loaded 2-core runner they fail tests that are correct. The suite asserts behaviour
only, so its profile switches them off everywhere, on top of whatever profile is active.
"""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_orch_recovery.plugin.options import campaign_only

if TYPE_CHECKING:
    from pytest_orch_recovery.doubles.sandbox import Sandbox
    from pytest_orch_recovery.infra.postgres_server import LocalPostgres


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis is imported only by sessions that run tests: ``pytest --orch-chaos`` (the
    # campaign alone) would load all of it in each of its processes for nothing.
    if campaign_only(config):
        return
    # A suite started as a background job of a non-interactive shell (``cmd &`` in a script)
    # inherits SIGINT ignored, and so would every process its tests start: the tests that
    # interrupt an agent, a wrapper or ``status --watch`` would wait for an exit that never
    # comes. The tests need the default disposition, so the suite sets it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "orch-suite",
        parent=settings.get_profile(settings.get_current_profile_name()),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("orch-suite")


_BACKGROUND = "model-double"  # the serving thread of doubles.modeldouble.ModelDouble


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A model double still serving when the session ends was started by a test or fixture
    that never stopped it (once such a leak kept CI's pytest from exiting at all)."""
    leaked = [t.name for t in threading.enumerate() if t.name == _BACKGROUND and t.is_alive()]
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAIL {len(leaked)} model double(s) never stopped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox (tmux socket, worktrees, logs) whose teardown must leave nothing behind."""
    from pytest_orch_recovery.doubles.sandbox import Sandbox

    sb = Sandbox.create(base_dir=tmp_path / "sandboxes")
    try:
        yield sb
    finally:
        sb.teardown()
        assert sb.leftovers() == []


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A private PostgreSQL server for this test session (each xdist worker its own), from
    the installed binaries; stopped and its folder removed at the end."""
    psycopg = pytest.importorskip("psycopg", reason="pip install -e '.[test]' installs psycopg")
    del psycopg
    from pytest_orch_recovery.infra.postgres_server import (
        LocalPostgres,
        PostgresServerError,
        find_bin_dir,
    )

    try:
        find_bin_dir()
    except PostgresServerError as exc:
        pytest.skip(str(exc))
    with LocalPostgres() as server:
        server.start()
        yield server


@pytest.fixture
def store_url(postgres_server: LocalPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, initialised fleet store: a database of its own in the session's server."""
    import psycopg

    from pytest_orch_recovery.store import schema

    name = f"t{next(_DATABASES)}"
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url.replace("/postgres?", f"/{name}?")
    with psycopg.connect(url, autocommit=True) as conn:
        schema.upgrade(conn, create=True)
    yield url
    if postgres_server.running:
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


_DATABASES = itertools.count(1)
