"""Every third-party package anvil_cli imports is declared in pyproject.toml, not merely present
because another package needs it (httpx2 arrives with the SDK, pydantic_core with pydantic).

The imports are read from the source (ast), each top-level name mapped to the distributions
that provide it (`importlib.metadata.packages_distributions()`). An import must name a
distribution in `dependencies`, or one of a user-facing extra (`fast`, `ray`) where it runs only
when that feature is used: inside a function, or in a module that anvil_cli itself imports only
inside functions (directly or through modules so imported), as `--backend ray` loads its modules.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "anvil_cli"
NOT_FOR_THE_PACKAGE = {"test"}  # extras for working on Anvil: nothing in anvil_cli may need them


@dataclass(frozen=True)
class Imported:
    module: str  # the anvil_cli module with the import statement
    names: tuple[str, ...]  # the absolute dotted names it imports (a module, or a module's attribute)
    deferred: bool  # inside a function or under `if TYPE_CHECKING:`: not run when the module loads
    line: int


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match is not None, requirement
    return _normalize(match.group(1))


def declared() -> tuple[set[str], set[str]]:
    """(the distributions in `dependencies`, those of the extras a user installs), normalized."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = {_dist_name(r) for r in project["dependencies"]}
    extras = {
        _dist_name(r)
        for name, reqs in project.get("optional-dependencies", {}).items()
        if name not in NOT_FOR_THE_PACKAGE
        for r in reqs
    }
    return required, extras


def _modules() -> dict[str, Path]:
    found = {}
    for path in (REPO / PACKAGE).rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.depth = 0  # > 0: inside a function or a TYPE_CHECKING block
        self.found: list[Imported] = []

    def _deferred(self, nodes: list[ast.stmt]) -> None:
        self.depth += 1
        for node in nodes:
            self.visit(node)
        self.depth -= 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._deferred(node.body)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._deferred(node.body)

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._deferred(node.body)
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, node: ast.stmt, names: list[str]) -> None:
        self.found.append(Imported(self.module, tuple(names), self.depth > 0, node.lineno))

    def visit_Import(self, node: ast.Import) -> None:
        self._add(node, [alias.name for alias in node.names])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            base = base if self.is_package else base[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join([*base, *([node.module] if node.module else [])])
        else:
            prefix = node.module or ""
        self._add(node, [f"{prefix}.{alias.name}" for alias in node.names])


def imports() -> list[Imported]:
    """Every import statement in anvil_cli."""
    found = []
    for module, path in sorted(_modules().items()):
        collector = _Collector(module, path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(), str(path)))
        found.extend(collector.found)
    return found


def _own_module(name: str, modules: set[str]) -> str | None:
    """The anvil_cli module `name` loads (`a.b.Name` -> `a.b`), None for a third-party name."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def loaded_eagerly(found: list[Imported]) -> set[str]:
    """The modules that load with the CLI: from its entry points (the console scripts' modules,
    whose `main` is the CLI starting, so its imports count; and what nothing in anvil_cli
    imports), every module imported at module level, not those anvil_cli imports only in
    functions (a package's `__init__` loads with its modules)."""
    modules = set(_modules())
    eager_edges: dict[str, set[str]] = defaultdict(set)
    deferred_edges: dict[str, set[str]] = defaultdict(set)
    for imp in found:
        for name in imp.names:
            target = _own_module(name, modules)
            if target is None or target == imp.module:
                continue
            parts = target.split(".")
            loaded = {".".join(parts[:n]) for n in range(1, len(parts) + 1)} & modules
            (deferred_edges if imp.deferred else eager_edges)[imp.module] |= loaded
    imported = set().union(*eager_edges.values(), *deferred_edges.values())
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"].get("scripts", {})
    roots = (modules - imported) | {target.partition(":")[0] for target in scripts.values()}
    todo = [*roots, *(m for root in roots for m in deferred_edges[root])]
    eager = set(todo)
    while todo:
        for target in eager_edges[todo.pop()] - eager:
            eager.add(target)
            todo.append(target)
    return eager


def undeclared(required: set[str], extras: set[str]) -> list[str]:
    """One line per import of a package that `required` (and `extras`, where it may) lack."""
    dists = importlib.metadata.packages_distributions()
    found = imports()
    eager = loaded_eagerly(found)
    problems = []
    for imp in found:
        for name in imp.names:
            top = name.partition(".")[0]
            if not top or top == PACKAGE or top in sys.stdlib_module_names:
                continue
            provided = {_normalize(d) for d in dists.get(top, [top])}
            where = f"{imp.module}:{imp.line} imports {top}"
            if provided & required:
                continue
            if not provided & extras:
                problems.append(f"{where}, which pyproject.toml does not declare ({sorted(provided)})")
            elif not imp.deferred and imp.module in eager:
                problems.append(f"{where}, an optional extra's, as the CLI loads ({sorted(provided)})")
    return sorted(set(problems))


def test_every_package_anvil_imports_is_declared() -> None:
    required, extras = declared()
    assert undeclared(required, extras) == []


def test_a_package_that_only_arrives_with_another_is_reported() -> None:
    required, extras = declared()
    problems = undeclared(required - {"httpx2"}, extras)
    assert problems, "httpx2 is imported directly: without its declaration the check must fail"
    assert all("imports httpx2, which pyproject.toml does not declare" in p for p in problems)
    assert any(p.startswith("anvil_cli.engine.modes.batches.") for p in problems)


def test_an_extra_is_needed_only_where_its_feature_runs() -> None:
    required, extras = declared()
    assert "ray" in extras and "uvloop" in extras
    assert undeclared(required, extras) == []  # ray's modules load only under --backend ray
    eager = loaded_eagerly(imports())
    assert "anvil_cli.engine.backends.ray_backend" not in eager
    assert {"anvil_cli.cli", "anvil_cli.engine.worker.loop"} <= eager
    problems = undeclared(required - {"rich"}, extras | {"rich"})  # as if rich were an extra
    assert any("imports rich, an optional extra's, as the CLI loads" in p for p in problems)
