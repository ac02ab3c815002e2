"""The package's shape: imports follow the data flow (readers -> backbone -> tasks) with no cycles,
the package never reads repository files at run time, benchmarks never import the tests."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("data", "elmo_core", "tasks")
ORDER = {"data": 0, "elmo_core": 1, "tasks": 2}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Our modules ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def test_imports_follow_the_data_flow_and_have_no_cycles():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    upward = [(a, b) for a, deps in graph.items() for b in deps if ORDER[b.split(".")[0]] > ORDER[a.split(".")[0]]]
    assert upward == []
    # a cycle exists iff a depth-first search meets a module still on its stack
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(trail[trail.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, trail + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_package_never_reads_repository_files():
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        assert "parents[1]" not in text and "REPO" not in text, f"{name} reaches into the repository"


def test_benchmarks_import_the_package_not_the_tests():
    for path in (REPO / "benchmarks").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "conftest" not in text and '"tests"' not in text and "from tests" not in text, path.name
