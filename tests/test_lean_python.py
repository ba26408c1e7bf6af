"""The package's short-lived programs start without ``site`` and still behave as ``python -m``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_orch_recovery.doubles.simagent.version import VERSION_LINE
from pytest_orch_recovery.infra.lean_python import SCRIPT, lean_python_argv

# Every program the harness and runtimes start once per attempt, tool call or gh call.
LEAN_PROGRAMS = (
    "pytest_orch_recovery",  # orch-recovery checkpoint --from-hook
    "pytest_orch_recovery.chaos.faulthook",
    "pytest_orch_recovery.doubles.simagent",
    "pytest_orch_recovery.doubles.forge_cli",
    "pytest_orch_recovery.runtime.wrapper",
)


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, **env})


def test_a_program_runs_as_python_dash_m_would() -> None:
    out = _run(lean_python_argv("pytest_orch_recovery.doubles.simagent", "--version"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == VERSION_LINE


def test_exit_status_and_usage_errors_come_through() -> None:
    out = _run(lean_python_argv("pytest_orch_recovery.runtime.wrapper"))
    assert out.returncode == 2
    assert "usage: python -m pytest_orch_recovery.runtime.wrapper" in out.stderr


def test_no_site_module_runs_in_a_lean_process() -> None:
    out = _run(lean_python_argv("pytest_orch_recovery.doubles.simagent", "--version"),
               PYTHONPROFILEIMPORTTIME="1")
    assert out.returncode == 0, out.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")}
    assert "pytest_orch_recovery.doubles.simagent.cli" in imported
    assert "site" not in imported


@pytest.mark.parametrize("module", LEAN_PROGRAMS)
def test_every_lean_program_needs_only_the_standard_library(module: str) -> None:
    # Without site, nothing from site-packages is importable: a module-level import of a
    # third-party library would fail here before it failed in an agent's pane.
    code = f"import sys; sys.path.insert(0, sys.argv[1]); import {module}"
    root = os.path.dirname(os.path.dirname(os.path.dirname(SCRIPT)))
    out = _run([sys.executable, "-S", "-P", "-c", code, root], PYTHONPATH="")
    assert out.returncode == 0, out.stderr


def test_only_the_package_s_own_programs_start_lean() -> None:
    with pytest.raises(ValueError, match="only the package's own programs"):
        lean_python_argv("pytest", "--version")
