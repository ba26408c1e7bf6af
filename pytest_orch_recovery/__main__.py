from __future__ import annotations

import sys

from pytest_orch_recovery.cli.main import main

sys.exit(main())
