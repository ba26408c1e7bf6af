"""pytest entry point (``pytest11``). Holds hooks and options only.

With ``--orch-chaos`` off the plugin registers its options and nothing else: no engine import,
no collection, no fixtures that start processes.
"""

from __future__ import annotations

import pytest

OPTION_CHAOS = "--orch-chaos"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "orch-recovery", "chaos testing of agent recovery (pytest-orch-recovery)"
    )
    group.addoption(
        OPTION_CHAOS,
        action="store_true",
        default=False,
        help="run the agent-recovery chaos campaign: collect scenarios/*.toml, inject faults, "
        "let the engine recover, gate on the success criteria",
    )
