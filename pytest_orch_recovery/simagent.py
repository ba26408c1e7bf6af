"""``python -m pytest_orch_recovery.simagent``: the bundled sim agent's documented command.

The agent lives in :mod:`pytest_orch_recovery.doubles.simagent`; this module is only its
stable ``-m`` name, so agent command templates written for earlier releases keep working.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from pytest_orch_recovery.doubles.simagent.cli import main

    sys.exit(main())
