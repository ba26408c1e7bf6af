"""The sim agent's version string, as ``--version`` prints it."""

from __future__ import annotations

VERSION = "0.1.0"
VERSION_LINE = f"{VERSION} (sim-agent)"
