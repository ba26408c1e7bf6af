"""``python -m pytest_orch_recovery.doubles.simagent``."""

from __future__ import annotations

import sys

from pytest_orch_recovery.doubles.simagent.cli import main

if __name__ == "__main__":
    sys.exit(main())
