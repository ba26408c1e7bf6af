"""The test suite's Hypothesis profile, and a check that no test leaves a server thread behind.

Hypothesis' timing checks (``deadline``, ``HealthCheck.too_slow``) measure the machine, not the
code: on a loaded 2-core runner they fail tests that are correct. The suite asserts behaviour
only, so its profile switches them off everywhere, on top of whatever profile is active.
"""

from __future__ import annotations

import threading

import pytest

from pytest_orch_recovery.plugin.options import campaign_only


def pytest_configure(config: pytest.Config) -> None:
    # Hypothesis is imported only by sessions that run tests: ``pytest --orch-chaos`` (the
    # campaign alone) would load all of it in each of its processes for nothing.
    if campaign_only(config):
        return
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
