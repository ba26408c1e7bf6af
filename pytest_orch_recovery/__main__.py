"""``python -m pytest_orch_recovery``: the ``orch-recovery`` command."""

from __future__ import annotations

import sys

from pytest_orch_recovery.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
