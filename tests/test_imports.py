"""The packages import one way: no cycles, and none of the arrows docs/design.md forbids.

Walks every module of the package with :mod:`ast`, maps each import to the
package (``engine``, ``nn``, ``parallel`` ...) or top-level module
(``trace``, ``tape`` ...) it names, and checks the graph. Imports under
``if TYPE_CHECKING:`` name types for annotations only and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import simulator

ROOT = Path(simulator.__file__).parent

#: Arrows docs/design.md forbids: package -> packages it must not import.
FORBIDDEN = {
    "engine": {"comm", "nn", "parallel", "runtime", "planner", "scenario", "experiment"},
    "nn": {"parallel", "runtime", "engine", "comm", "planner", "experiment"},
    "comm": {"engine", "runtime", "parallel", "nn", "planner", "experiment"},
    "parallel": {"runtime", "planner", "experiment", "scenario"},
    "runtime": {"planner", "experiment", "scenario"},
}


def _unit(module: str) -> str:
    """``simulator.engine.core`` -> ``engine``; ``simulator.engine.trace`` -> ``trace``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (outside ``if TYPE_CHECKING``)."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("simulator"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                if target.startswith("simulator"):
                    found.add(target)
                    # "from . import comm" names a module too
                    found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if _exists(m)}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    """Package -> packages it imports (itself excluded)."""
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        module = _module_of(path)
        if module == "simulator":
            continue  # the public API re-exports everything
        unit = _unit(module)
        targets = {_unit(m) for m in _imports(path) if m != "simulator"}
        edges.setdefault(unit, set()).update(targets - {unit})
    return edges


def test_no_package_imports_what_design_forbids() -> None:
    edges = graph()
    wrong = {
        f"{unit} -> {target}"
        for unit, forbidden in FORBIDDEN.items()
        for target in edges.get(unit, set()) & forbidden
    }
    assert not wrong, sorted(wrong)


def test_no_cycles_between_packages() -> None:
    edges = graph()
    cycles = []

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif len(path) < 12:
                walk(nxt, [*path, nxt])

    for start in sorted(edges):
        walk(start, [start])
    assert not cycles, sorted(set(cycles))[:10]
