"""The package's shape, as docs/architecture.md draws it: one concept per folder, small modules,
no import cycle (imports inside functions count), and data flowing down the layers only.

Read from the source with `ast`, so an import hidden in a function is seen too."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "anvil_cli"
MAX_MODULES_PER_FOLDER = 15  # side by side, not counting __init__.py
MAX_LINES = 400

# What each part of the package must not import (the layers of docs/architecture.md).
ABOVE_THE_ENGINE = ("session", "views", "commands", "sim", "plan", "cli", "entry")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "engine": ABOVE_THE_ENGINE,
    "snapshot": ("session", "views", "commands", "sim", "plan"),
    "alerts": ("engine", "session", "views", "commands", "sim", "plan"),
    "policy": ("engine", "snapshot", "alerts", "session", "views", "commands", "sim", "plan"),
    "config": ("engine", "snapshot", "alerts", "session", "views", "commands", "sim", "plan"),
    "jobs": ("engine", "snapshot", "alerts", "session", "views", "commands", "sim", "plan"),
    "views": ("session", "commands", "sim", "plan"),
    "sim": ("engine", "snapshot", "session", "views", "commands", "plan"),
}


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:  # relative: resolved against the importing module's package
        base = module.split(".")
        if modules()[module].name != "__init__.py":
            base.pop()
        base = base[: len(base) - node.level + 1]
        prefix = ".".join([*base, *([node.module] if node.module else [])])
    else:
        prefix = node.module or ""
    for alias in node.names:  # `from pkg import submodule` imports the submodule
        yield f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules() else prefix


@cache
def graph() -> dict[str, frozenset[str]]:
    """Every anvil_cli module -> the anvil_cli modules it imports, anywhere in its body."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in _imported(module, node):
                while target and target not in modules():
                    target = target.rpartition(".")[0]
                if target.startswith("anvil_cli") and target != module:
                    edges[module].add(target)
    return {module: frozenset(edges[module]) for module in modules()}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    """The checker itself: a cycle of three, and a module that only reaches into it."""
    edges = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a"}),
        "d": frozenset({"a"}),
    }
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_imports_inside_functions_are_seen() -> None:
    """A known function-level import of the package is in the graph (so hiding one does not help)."""
    lazily = [
        (module, path)
        for module, path in modules().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for inner in ast.walk(node)
        if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("anvil_cli.")
    ]
    assert lazily, "no function-level import of anvil_cli found: the scan would miss them"
    module, _ = lazily[0]
    assert graph()[module], module


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_each_layer_imports_only_what_lies_below_it() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if (part := module.split(".")[1] if "." in module else "") in FORBIDDEN
        and target.count(".") >= 1
        and target.split(".")[1] in FORBIDDEN[part]
    ]
    assert wrong == []


def test_no_folder_holds_more_than_fifteen_modules_side_by_side() -> None:
    crowded = {
        str(folder.relative_to(PACKAGE.parent)): count
        for folder in [PACKAGE, *(p for p in PACKAGE.rglob("*") if p.is_dir())]
        if (count := len([p for p in folder.glob("*.py") if p.name != "__init__.py"]))
        > MAX_MODULES_PER_FOLDER
    }
    assert crowded == {}


def test_no_module_passes_four_hundred_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_every_module_says_what_it_is() -> None:
    silent = [
        str(path.relative_to(PACKAGE.parent))
        for path in modules().values()
        if path.stat().st_size and not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert silent == []
