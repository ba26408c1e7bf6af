"""Start one of the package's own programs in a lean interpreter, and the script that does it.

Every tool call of every agent runs the PostToolUse hook, every attempt the launch wrapper and
the sim agent, every ``gh`` call the forge stand-in: short programs that need the standard
library and this package, nothing from site-packages. Most of a bare ``python -c pass`` is the
``site`` module (every ``.pth`` file of the environment, an editable install's import finder):
measured 48 ms of CPU against 7.7 ms with ``python -S`` (``docs/performance.md``). So
:func:`lean_python_argv` starts them as ``python -S -P <this file> <module> <args>``: no
``site``, no script directory on ``sys.path``; this file, run as a script, puts the directory
that holds the package first on ``sys.path`` and runs ``<module>`` as ``python -m`` would. The
environment (``PYTHONPATH`` included) passes through untouched.

Imports here are the standard library's cheapest: this file runs before everything else in
each of those processes.
"""

from __future__ import annotations

import os
import sys

# The directory holding the pytest_orch_recovery package this file belongs to.
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.abspath(__file__)


def lean_python_argv(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -m module args`` without the ``site`` module.

    >>> argv = lean_python_argv("pytest_orch_recovery.runtime.wrapper", "spec.json")
    >>> argv[1:3], argv[4:]
    (['-S', '-P'], ['pytest_orch_recovery.runtime.wrapper', 'spec.json'])
    """
    if module.partition(".")[0] != "pytest_orch_recovery":
        raise ValueError(f"module {module!r}: only the package's own programs start lean")
    return [sys.executable, "-S", "-P", SCRIPT, module, *args]


def _main() -> None:
    import runpy

    if len(sys.argv) < 2:
        sys.exit(f"usage: python -S -P {SCRIPT} MODULE [ARG...]")
    sys.path.insert(0, _PACKAGE_PARENT)
    module = sys.argv[1]
    del sys.argv[0]  # run_module(alter_sys=True) puts the module's file in argv[0]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
