"""The test suite's Hypothesis profile.

Hypothesis' timing checks (``deadline``, ``HealthCheck.too_slow``) measure the machine, not the
code: on a loaded 2-core runner they fail tests that are correct. The suite asserts behaviour
only, so its profile switches them off everywhere, on top of whatever profile is active.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "orch-suite",
    parent=settings.get_profile(settings.get_current_profile_name()),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("orch-suite")
