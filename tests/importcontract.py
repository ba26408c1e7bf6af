"""The package's import contract, checked on the source (AST), not on what happens to load.

Every import counts: at module level, inside functions, under ``if TYPE_CHECKING:``, and
``importlib.import_module("pytest_orch_recovery....")`` / ``__import__`` with a literal name. A
lazy import may save start-up time; it may not cross a wall.

The layers, top to bottom (a module may import its own layer and any layer below it)::

    cli | plugin  ->  chaos  ->  doubles | fleet | ingest  ->  runtime  ->  infra | report
                  ->  store  ->  engine

Layers on one line are siblings: neither imports the other. The package's own ``__init__`` and
``__main__`` are entry points, outside the layers. The engine also
imports none of the test-time libraries (:data:`ENGINE_FORBIDDEN`).

Import it from a test module in ``tests/`` (``from importcontract import breaches``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "plugin"),
    ("chaos",),
    ("doubles", "fleet", "ingest"),
    ("runtime",),
    ("infra", "report"),
    ("store",),
    ("engine",),
)
ENTRY_POINTS = frozenset({"__init__", "__main__"})
ENGINE_FORBIDDEN = ("pytest", "_pytest", "hypothesis", "faker", "libtmux", "xdist")

_RANK = {layer: rank for rank, group in enumerate(LAYERS) for layer in group}


@dataclass(frozen=True)
class Breach:
    """One import that crosses a wall, as a ``file:line: field: message`` line."""

    path: Path
    line: int
    importer: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: import: {self.importer} imports {self.imported} "
            f"({self.rule})"
        )


def module_name(root: Path, path: Path) -> str:
    """``root/pkg/a/b.py`` -> ``pkg.a.b``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(tree: ast.AST, module: str, *, is_package: bool) -> Iterator[tuple[int, str]]:
    """Every module ``tree`` imports, with its line: ``import x``, ``from x import y`` (``x.y``
    too, since ``y`` may be a submodule), relative imports resolved, and literal names passed
    to ``importlib.import_module`` or ``__import__``."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("import_module", "__import__")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def breaches(root: Path, package: str) -> list[Breach]:
    """Every import under ``root/package`` that breaks the contract (empty when it holds)."""
    found: list[Breach] = []
    for path in sorted((root / package).rglob("*.py")):
        module = module_name(root, path)
        parts = module.split(".")
        if len(parts) == 1 or (len(parts) == 2 and parts[1] in ENTRY_POINTS):
            continue  # the package itself and its entry points
        layer = parts[1]
        if layer not in _RANK:
            found.append(Breach(path, 1, module, module, "a module outside every layer"))
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        seen: set[tuple[int, str]] = set()  # ``from a.b import c, d``: one breach, for ``a.b``
        for line, target in imports_in(tree, module, is_package=path.name == "__init__.py"):
            rule = _rule_broken(layer, target, package)
            if rule is not None and (line, rule) not in seen:
                seen.add((line, rule))
                found.append(Breach(path, line, module, target, rule))
    return found


def _rule_broken(layer: str, target: str, package: str) -> str | None:
    top = target.split(".")[0]
    if layer == "engine" and top in ENGINE_FORBIDDEN:
        return f"the engine never imports {top}"
    if top != package:
        return None
    parts = target.split(".")
    if len(parts) == 1 or parts[1] == "__version__":
        return None  # the package itself: its __init__ imports nothing
    other = parts[1]
    if other in ENTRY_POINTS:
        return f"a layer never imports the entry point {package}.{other}"
    if other not in _RANK:
        return None  # ``from pkg import name``: not a module of the package
    if other == layer:
        return None
    if _RANK[other] < _RANK[layer]:
        return f"{layer} is below {other}"
    if _RANK[other] == _RANK[layer]:
        return f"{layer} and {other} are siblings"
    return None


def cycles(root: Path, package: str) -> list[list[str]]:
    """Groups of the package's modules that import each other round a circle (any import,
    lazy or not, counts), each sorted; empty when there is none."""
    paths = {module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = imports_in(tree, module, is_package=path.name == "__init__.py")
        graph[module] = {t for _, t in targets if t in paths and t != module}
    return _strongly_connected(graph)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; only components of two or more nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found
