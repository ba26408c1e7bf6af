"""chaos: faults, scenarios, generated runs, the oracle and the tiers they run on.

:data:`BUNDLED_SCENARIOS` is the bundled campaign, shipped as package data, so that an
installed plugin runs it in any repository; a project's own scenarios run beside it or
instead of it (``--orch-project-scenarios``).
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_SCENARIOS = Path(__file__).resolve().parent / "scenarios"
