"""chaos: faults, scenarios, generated runs, the oracle and the tiers they run on.

:data:`BUNDLED_SCENARIOS` is the bundled campaign, shipped as package data, so that an
installed plugin runs it in any repository; a project's own scenarios run beside it or
instead of it (``--orch-project-scenarios``). :data:`BUNDLED_HOST_SCENARIOS` join it with
``--orch-hosts N`` (N >= 2): their faults take a host, or the fleet store, away.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_SCENARIOS = Path(__file__).resolve().parent / "scenarios"
BUNDLED_HOST_SCENARIOS = BUNDLED_SCENARIOS / "hosts"
