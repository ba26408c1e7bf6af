"""One exception base: every exception class the package defines is an OrchRecoveryError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

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
