"""The packages import one way, down the data flow: the layering docs/design.md states.

docs/design.md ("The data flow", "The package map", "Layering rules") draws the
program as one direction, top to bottom: a scenario becomes a cluster, a model and a strategy;
the strategy lowers to a plan; the runtime executes the plan on the engine; the
run's record feeds the metrics, then the pictures, then the planner and the
command line. The imports must follow the same direction, so that each layer
can be read, tested and replaced knowing only the layers below it.

:data:`LAYERS` lists the packages (and top-level modules) from the bottom up. A
package may import any package of a *lower* layer and none of its own layer or
above. That one rule gives every arrow docs/design.md forbids:

* no cycle between packages (an arrow always points down);
* ``parallel/`` is pure lowering and ``nn/`` knows no strategy: neither imports
  ``runtime/``, which executes what they describe;
* ``engine/``, ``nn/`` and ``comm/`` know nothing of one another (one layer);
* ``scenario/`` reads files into hardware, models and strategies, and knows
  nothing of running them (``runtime/``, ``experiment/``, ``viz/``, ``planner/``);
* the pictures (``viz/``) read a finished run's record; the planner sits above
  them; the command line above everything.

Imports under ``if TYPE_CHECKING:`` count like any other: a type named only in
an annotation is still knowledge of the package that defines it, and an arrow
hidden there is still an arrow (:func:`test_type_checking_imports_are_counted`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import simulator

ROOT = Path(simulator.__file__).parent

#: The layers, lowest first (module docstring).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "transfer", "ranges", "ops"),  # leaves: error types, the transfer-plan
    # type, numeric ranges, the op vocabulary (numpy math, shape-only arrays, the tape)
    ("keys",),  # one rule per key, from the dataclass fields (uses ranges and errors)
    ("hardware",),  # devices, links, clusters, presets, fault specs
    ("engine", "nn", "comm"),  # SimPy time and ports; layers and models; collectives
    ("parallel",),  # strategy -> plan: mesh, schedules, programs (pure lowering)
    ("runtime", "scenario"),  # executes a plan / reads a scenario file
    ("experiment",),  # runs strategies and scenarios, metrics
    ("viz",),  # pictures and tables of a finished run
    ("planner",),  # layout search and sweeps over many runs
    ("commands",),  # one module per subcommand
    ("cli",),
    ("__main__",),
    ("docs_assets",),  # remakes the documentation's tables and pictures from all of the above
)
LEVEL = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(module: str) -> str:
    """``simulator.engine.core`` -> ``engine``; ``simulator.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def _imports(source: str, module: str, is_package: bool) -> list[tuple[str, bool]]:
    """Every module of ``simulator`` that ``source`` (module ``module``) imports, and
    whether the import sits under ``if TYPE_CHECKING:``."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, typing_only) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.append((target, typing_only))
                # "from . import comm" names a module too
                found.extend((f"{target}.{a.name}", typing_only) for a in child.names)
            visit(child, typing_only or _type_checking(child))

    visit(ast.parse(source), False)
    return [(m, t) for m, t in found if m.startswith("simulator")]


def _type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def arrows() -> dict[tuple[str, str], list[str]]:
    """Package -> package it imports (itself excluded), with the importing modules;
    ``(typing)`` marks an import under ``TYPE_CHECKING``."""
    out: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = _module_of(path)
        if module == "simulator":
            continue  # the public API re-exports everything
        unit = _unit(module)
        for target, typing_only in _imports(path.read_text(), module, path.name == "__init__.py"):
            if target == "simulator" or not _exists(target) or _unit(target) == unit:
                continue
            where = module + (" (typing)" if typing_only else "")
            out.setdefault((unit, _unit(target)), []).append(where)
    return out


def wrong_arrows(edges: dict[tuple[str, str], list[str]]) -> list[str]:
    """The arrows that do not point to a lower layer, each with who makes it."""
    wrong = []
    for (a, b), where in sorted(edges.items()):
        if LEVEL[b] >= LEVEL[a]:
            relation = "its own layer" if LEVEL[b] == LEVEL[a] else "a higher layer"
            wrong.append(f"{a} -> {b} ({relation}; from {', '.join(sorted(set(where)))})")
    return wrong


def cycles(edges: dict[tuple[str, str], list[str]]) -> list[str]:
    """Every cycle between packages, as ``a -> b -> a``."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                found.add(" -> ".join([*path[path.index(nxt) :], nxt]))
            else:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return sorted(found)


def test_every_package_has_a_layer() -> None:
    units = {_unit(_module_of(p)) for p in ROOT.rglob("*.py")} - {"simulator"}
    assert units <= set(LEVEL), f"place these in LAYERS: {sorted(units - set(LEVEL))}"


def test_every_import_points_down_the_layers() -> None:
    assert not wrong_arrows(arrows()), "\n".join(wrong_arrows(arrows()))


def test_no_cycles_between_packages() -> None:
    assert not cycles(arrows())


def test_neither_parallel_nor_nn_imports_the_runtime() -> None:
    edges = arrows()
    assert ("parallel", "runtime") not in edges and ("nn", "runtime") not in edges


def test_type_checking_imports_are_counted() -> None:
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..runtime import x\n"
    assert _imports(source, "simulator.parallel.tied", False) == [
        ("simulator.runtime", True),
        ("simulator.runtime.x", True),
    ]
    typing_only = [w for where in arrows().values() for w in where if w.endswith("(typing)")]
    assert typing_only, "the package's own TYPE_CHECKING imports are in the graph"


def test_the_checks_catch_a_forbidden_arrow_and_a_cycle() -> None:
    edges = {
        ("parallel", "runtime"): ["simulator.parallel.tied (typing)"],
        ("runtime", "parallel"): ["simulator.runtime.core"],
        ("engine", "comm"): ["simulator.engine.core"],
    }
    assert wrong_arrows(edges) == [
        "engine -> comm (its own layer; from simulator.engine.core)",
        "parallel -> runtime (a higher layer; from simulator.parallel.tied (typing))",
    ]
    assert cycles(edges) == [
        "parallel -> runtime -> parallel",
        "runtime -> parallel -> runtime",
    ]
