"""The declared public API: the README's table, each module's ``__all__``, and what exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _table() -> dict[str, list[str]]:
    """README's "Public API" rows: module -> the names the row mentions in backticks."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Public API", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        found = re.match(r"\| `(pytest_orch_recovery(?:\.\w+)+)` \| (.*) \|$", line)
        if found:
            rows[found.group(1)] = re.findall(r"`(\w+)(?:`|\()", found.group(2))
    return rows


def test_every_public_module_declares_all_and_every_name_exists() -> None:
    rows = _table()
    assert len(rows) >= 8, rows
    for module_name in rows:
        module = importlib.import_module(module_name)
        declared = getattr(module, "__all__", None)
        assert declared, f"{module_name} declares no __all__"
        missing = [name for name in declared if not hasattr(module, name)]
        assert missing == [], f"{module_name}.__all__ names what it lacks: {missing}"


def test_the_readme_names_only_what_the_modules_export() -> None:
    for module_name, names in _table().items():
        declared = set(importlib.import_module(module_name).__all__)
        unknown = [name for name in names if name not in declared]
        assert unknown == [], f"README's row for {module_name}: {unknown}"
