"""Start one of the package's own programs in a lean interpreter, and the script that does it.

Every tool call of every agent runs the PostToolUse hook, every attempt the launch wrapper and
the sim agent, every ``gh`` call the forge stand-in: short programs that need the standard
library and this package, nothing from site-packages. Most of a bare ``python -c pass`` is the
``site`` module (every ``.pth`` file of the environment, an editable install's import finder),
several times what ``python -S`` costs (``docs/performance.md``). So
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

TYPE_CHECKING = False
if TYPE_CHECKING:  # importlib's modules are for the type checker only: see _run_as_main
    from importlib.machinery import ModuleSpec

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
        # Imported here, not at the top: run as a script, this file executes before the
        # package is importable.
        from pytest_orch_recovery.engine.errors import InvalidValue

        raise InvalidValue(f"module {module!r}: only the package's own programs start lean")
    return [sys.executable, "-S", "-P", SCRIPT, module, *args]


def _main() -> None:
    if len(sys.argv) < 2:
        sys.exit(f"usage: python -S -P {SCRIPT} MODULE [ARG...]")
    sys.path.insert(0, _PACKAGE_PARENT)
    del sys.argv[0]  # argv[0] becomes the module's file, as with python -m
    _run_as_main(sys.argv[0])


def _find_spec(name: str) -> ModuleSpec:
    """The spec of module ``name`` (its parent packages imported), from ``sys.meta_path``
    as the import system finds it."""
    parent = name.rpartition(".")[0]
    if parent:
        try:
            __import__(parent)
        except ImportError as exc:
            sys.exit(
                f"{sys.executable}: Error while finding module specification for {name!r} "
                f"({type(exc).__name__}: {exc})"
            )
    path = sys.modules[parent].__path__ if parent else None
    for finder in sys.meta_path:
        spec = finder.find_spec(name, path)
        if spec is not None:
            return spec
    sys.exit(f"{sys.executable}: No module named {name}")


def _run_as_main(name: str) -> None:
    """Run module ``name`` as ``python -m`` does (a package runs its ``__main__``), without
    importing runpy: its importlib.util and contextlib weigh on each process's start-up.

    The module runs in a new ``__main__`` module that replaces this script's, with
    ``__name__``, ``__file__``, ``__spec__``, ``__package__``, ``__loader__`` and
    ``__cached__`` set as runpy sets them, and ``sys.argv[0]`` is its file.
    """
    spec = _find_spec(name)
    if spec.submodule_search_locations is not None:
        spec = _find_spec(f"{name}.__main__")
    loader = spec.loader
    code = None if loader is None else loader.get_code(spec.name)  # type: ignore[attr-defined]
    if code is None:
        sys.exit(f"{sys.executable}: No code object available for {spec.name}")
    main = type(sys)("__main__")
    main.__dict__.update(
        __name__="__main__",
        __file__=spec.origin,
        __cached__=spec.cached,
        __doc__=None,
        __loader__=loader,
        __package__=spec.parent,
        __spec__=spec,
    )
    sys.argv[0] = str(spec.origin)
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


if __name__ == "__main__":
    _main()
