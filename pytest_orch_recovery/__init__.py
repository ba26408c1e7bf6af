"""pytest-orch-recovery: recover failed AI coding agents, and prove it under injected faults."""

from __future__ import annotations

__version__ = "0.1.0"
