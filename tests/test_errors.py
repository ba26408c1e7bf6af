"""One exception base: every exception class the package defines is an OrchRecoveryError."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest_orch_recovery
from pytest_orch_recovery.engine.errors import OrchRecoveryError, UsageError


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(pytest_orch_recovery.__path__, "pytest_orch_recovery."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_exception_class_of_the_package_derives_from_one_base() -> None:
    classes = _exception_classes()
    assert len(classes) >= 20, sorted(classes)  # the walk reached the whole package
    outside = sorted(
        name for name, cls in classes.items() if not issubclass(cls, OrchRecoveryError)
    )
    assert outside == []


def test_errors_that_mean_a_builtin_kind_keep_it() -> None:
    from pytest_orch_recovery.chaos.scenario import ScenarioError
    from pytest_orch_recovery.infra.checkpoint import CheckpointError
    from pytest_orch_recovery.plugin.items import ScenarioFailed

    assert issubclass(CheckpointError, ValueError) and issubclass(ScenarioError, ValueError)
    assert issubclass(ScenarioFailed, AssertionError)
    assert issubclass(UsageError, OrchRecoveryError)


_BUILTIN_ERRORS = frozenset({"ValueError", "RuntimeError", "TypeError"})  # KeyError: a lookup


def test_the_package_raises_no_bare_builtin_error() -> None:
    # A bare ValueError escapes `except OrchRecoveryError`; InvalidValue / InvalidState keep
    # the built-in kind and the one base.
    package = Path(pytest_orch_recovery.__file__).parent
    bare = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                if isinstance(func, ast.Name) and func.id in _BUILTIN_ERRORS:
                    bare.append(f"{path.relative_to(package)}:{node.lineno}: {func.id}")
    assert bare == []
