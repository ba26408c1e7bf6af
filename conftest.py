"""Repository-level pytest configuration: pytester for end-to-end plugin tests."""

from __future__ import annotations

pytest_plugins = ["pytester"]
