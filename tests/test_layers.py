"""The package's walls: the import contract holds, the checker catches a breach, and every module
name handed to a subprocess or an entry point still imports."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import itertools
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from importcontract import breaches, cycles

import pytest_orch_recovery

PACKAGE = "pytest_orch_recovery"
PACKAGE_DIR = Path(pytest_orch_recovery.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
_MODULE = re.compile(rf"{PACKAGE}(?:\.\w+)*")
_DASH_M = re.compile(rf"-m\s+({_MODULE.pattern})")


def test_every_import_of_the_package_points_down() -> None:
    found = breaches(ROOT, PACKAGE)
    assert not found, "\n".join(map(str, found))


def test_no_modules_import_each_other_round_a_circle() -> None:
    assert cycles(ROOT, PACKAGE) == []


def _write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_the_checker_reports_imports_that_cross_a_wall(tmp_path: Path) -> None:
    for layer in ("engine", "infra", "runtime", "doubles", "fleet", "chaos", "plugin", "cli"):
        _write(tmp_path, f"fake/{layer}/__init__.py")
    _write(tmp_path, "fake/__init__.py")
    _write(tmp_path, "fake/__main__.py", "from fake.cli import main\n")  # entry point: exempt
    _write(
        tmp_path,
        "fake/engine/model.py",
        (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    import pytest\n"
            "def later():\n"
            "    from fake.chaos import faults\n"
        ),
    )
    _write(
        tmp_path,
        "fake/infra/git.py",
        (
            "import importlib\n"
            "from fake.engine import model\n"  # down: fine
            "def plugin():\n"
            "    return importlib.import_module('fake.plugin.hooks')\n"
            "from ..runtime import tmux\n"
        ),
    )
    _write(tmp_path, "fake/doubles/sandbox.py", "import fake.fleet.supervisor\n")
    _write(tmp_path, "fake/cli/main.py", "from fake.plugin import hooks\nfrom fake import chaos\n")
    _write(tmp_path, "fake/chaos/faults.py", "from fake.doubles import sandbox\n")
    _write(tmp_path, "fake/tools.py", "")

    found = {(b.importer, b.imported, b.line) for b in breaches(tmp_path, "fake")}

    assert found == {
        ("fake.engine.model", "pytest", 3),
        ("fake.engine.model", "fake.chaos", 5),
        ("fake.infra.git", "fake.plugin.hooks", 4),
        ("fake.infra.git", "fake.runtime", 5),
        ("fake.doubles.sandbox", "fake.fleet.supervisor", 1),
        ("fake.cli.main", "fake.plugin", 1),
        ("fake.tools", "fake.tools", 1),
    }
    text = {str(b) for b in breaches(tmp_path, "fake")}
    assert any(
        line.endswith(
            "fake/engine/model.py:5: import: fake.engine.model imports "
            "fake.chaos (engine is below chaos)"
        )
        for line in text
    )


def test_the_circle_check_sees_through_lazy_imports(tmp_path: Path) -> None:
    _write(tmp_path, "fake/__init__.py")
    _write(tmp_path, "fake/chaos/__init__.py")
    _write(tmp_path, "fake/chaos/a.py", "from fake.chaos import b\n")
    _write(tmp_path, "fake/chaos/b.py", "def f():\n    from fake.chaos.c import x\n")
    _write(tmp_path, "fake/chaos/c.py", "def g():\n    import fake.chaos.a\n")
    _write(tmp_path, "fake/chaos/d.py", "import fake.chaos.a\n")
    assert cycles(tmp_path, "fake") == [["fake.chaos.a", "fake.chaos.b", "fake.chaos.c"]]


def _subprocess_modules() -> dict[str, str]:
    """Module names the package hands to ``python -m``: as the argv word after ``-m``, or in a
    command line written as text (a wrapper script), with where each was found."""
    found: dict[str, str] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.List | ast.Tuple | ast.Call):
                words = node.args if isinstance(node, ast.Call) else node.elts
                for before, word in itertools.pairwise(words):
                    if (
                        isinstance(before, ast.Constant)
                        and before.value == "-m"
                        and isinstance(word, ast.Constant)
                        and isinstance(word.value, str)
                        and _MODULE.fullmatch(word.value)
                    ):
                        found[word.value] = f"{path}:{word.lineno}"
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                for match in _DASH_M.finditer(node.value):
                    found[match.group(1)] = f"{path}:{node.lineno}"
    return found


def test_every_module_run_as_a_subprocess_still_imports() -> None:
    modules = _subprocess_modules()
    # The launch wrapper, the fault hook, the checkpoint hook, the sim agent, the gh stand-in.
    assert len(modules) >= 5, modules
    for name, where in modules.items():
        spec = importlib.util.find_spec(name)
        assert spec is not None, f"{where}: -m {name}: no such module"
        if spec.submodule_search_locations is not None:  # a package runs its __main__
            assert importlib.util.find_spec(f"{name}.__main__") is not None, (
                f"{where}: -m {name}: the package has no __main__"
            )


def test_every_entry_point_names_an_importable_object() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    targets = dict(project.get("scripts", {}))
    for group in project.get("entry-points", {}).values():
        targets.update(group)
    assert "orch-recovery" in targets and "orch_recovery" in targets
    for name, target in targets.items():
        module, _, attribute = target.partition(":")
        loaded = importlib.import_module(module)
        if attribute:
            assert callable(getattr(loaded, attribute, None)), f"{name} = {target!r}"


def test_the_sim_agent_keeps_its_documented_dash_m_name() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest_orch_recovery.doubles.simagent", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip().endswith("(sim-agent)")


def test_only_infra_processes_reads_proc() -> None:
    readers = set()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and (node.value == "/proc" or node.value.startswith("/proc/"))
            ):
                readers.add(path.relative_to(PACKAGE_DIR).as_posix())
    assert readers == {"infra/processes.py"}


def test_every_data_file_of_the_package_is_declared_package_data() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    globs = tool["setuptools"]["package-data"][PACKAGE]
    data = [
        p.relative_to(PACKAGE_DIR).as_posix()
        for p in PACKAGE_DIR.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc")
    ]
    assert "chaos/templates/deliverables_exist.py.tmpl" in data
    assert [d for d in data if not any(fnmatch.fnmatchcase(d, g) for g in globs)] == []


def test_no_library_module_carries_test_material() -> None:
    """What pytest would collect (``test_*`` functions, ``Test*`` classes, a test file's text
    in a string) or is told not to (``__test__``) belongs in tests/ or in package data."""
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = getattr(node, "name", None) or getattr(node, "id", None)
            if (
                (
                    isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    and node.name.startswith("test")
                )
                or (isinstance(node, ast.ClassDef) and node.name.startswith("Test"))
                or (isinstance(node, ast.Name) and name == "__test__")
                or (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and re.search(r"^\s*def test_", node.value, re.MULTILINE)
                )
            ):
                found.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}: {name}")
    assert found == []


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _resolves(dotted: str) -> bool:
    """``pkg.module[.attribute...]``: the longest importable prefix, then attributes."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            found = importlib.util.find_spec(".".join(parts[:end])) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj: object = importlib.import_module(".".join(parts[:end]))
            for attribute in parts[end:]:
                if not hasattr(obj, attribute):
                    return False
                obj = getattr(obj, attribute)
            return True
    return False


def test_the_documents_name_modules_and_files_that_exist() -> None:
    folders = {p.name for p in PACKAGE_DIR.iterdir() if p.is_dir()}
    stale = []
    for document in _documents():
        text = document.read_text(encoding="utf-8")
        for match in _MODULE.finditer(text):
            if not _resolves(match.group(0)):
                stale.append(f"{document.name}: {match.group(0)}")
        for match in re.finditer(r"`((\w+)(?:\.\w+)+)`", text):  # `chaos.record.ScenarioRun`
            if match.group(2) in folders and not _resolves(f"{PACKAGE}.{match.group(1)}"):
                stale.append(f"{document.name}: {match.group(1)}")
        for match in re.finditer(r"`((\w+)/[\w/]*\.py)`", text):
            path, top = match.group(1), match.group(2)
            where = PACKAGE_DIR if top in folders else ROOT
            if (top in folders or top in ("tests", "benchmarks")) and not (where / path).is_file():
                stale.append(f"{document.name}: {path}")
    assert stale == []


def test_one_public_class_name_means_one_thing() -> None:
    defined: dict[str, list[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                defined.setdefault(node.name, []).append(path.relative_to(PACKAGE_DIR).as_posix())
    twice = {name: where for name, where in defined.items() if len(where) > 1}
    assert twice == {}


_HISTORY = re.compile(r"\bissue \d+\b|\bDESIGN\.md\b|\bsession \d+\b|\bthe seed's\b", re.IGNORECASE)


def test_the_code_speaks_of_why_not_of_its_history() -> None:
    # History belongs in commit messages; the code's reader cannot open an issue tracker,
    # another session's notes or a document outside the repository.
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _HISTORY.search(line)
    ]
    assert found == []
