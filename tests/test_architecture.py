"""The import graph of the project: no cycles, and no function-level import left unexplained."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("flows", "tasks", "storage", "deployments")
# The only reasons to import a project module inside a function (pyproject's import contracts
# and the project's standards): keep TensorFlow (or Prefect) out of CLI start-up, or reach an
# optional extra (openvino, dask) only when it is used.
DEFERRED = re.compile(r"#\s*deferred:.*(tensorflow|cli start-up|optional extra)", re.IGNORECASE)


def project_packages() -> list[str]:
    """The project's importable packages (deployments/ joins once it has an __init__.py)."""
    return [p for p in PACKAGES if (ROOT / p / "__init__.py").is_file()]


def import_edges() -> dict[str, set[str]]:
    """importer -> imported, for every import among the project's modules, functions included."""
    graph = grimp.build_graph(*project_packages(), cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def with_parent_packages(edges: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Add what Python runs implicitly: importing a.b.c first runs a/__init__ and a/b/__init__
    (unless the importer is inside them already). spec -> engines.tflite, with engines/__init__
    importing spec, is a cycle that breaks `import tasks.predict.spec` alone."""
    full = {m: set(targets) for m, targets in edges.items()}
    for importer, targets in edges.items():
        own = set(ancestors(importer)) | {importer}
        for imported in targets:
            full[importer] |= {p for p in ancestors(imported) if p not in own and p in edges}
    return full


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def function_level_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of each import of a project module made inside a function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                names = [inner.module]
            else:
                continue
            found += [(inner.lineno, n) for n in names if n.split(".")[0] in PACKAGES]
    return sorted(set(found))  # a nested function's imports are walked twice


def explained(lines: list[str], line: int) -> bool:
    """Whether the import at `line` (1-based) says `# deferred: <reason>` at its end, or a
    comment line does so above the run of imports it starts."""
    i = line - 1
    if DEFERRED.search(lines[i]):
        return True
    while i > 0:
        i -= 1
        text = lines[i].strip()
        if text.startswith("#") and DEFERRED.search(text):
            return True
        # a trailing comment explains its own line only; keep climbing a run of imports
        if not (text.startswith(("#", "from ", "import ")) or text == ")"):
            return False
    return False


def unexplained_imports(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in function_level_imports(source)
        if not explained(lines, line)
    ]


def test_no_import_cycle_among_project_modules():
    edges = with_parent_packages(import_edges())
    assert {"flows.cli", "tasks.predict.spec", "storage.files"} <= set(edges)
    assert cycles(edges) == []


def test_every_function_level_project_import_says_what_it_defers():
    files = [f for p in PACKAGES for f in sorted((ROOT / p).rglob("*.py"))]
    assert len(files) > 50
    problems = [problem for f in files for problem in unexplained_imports(f)]
    assert problems == [], "hoist these to module level, or say `# deferred: <why>`"


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"x": {"y"}, "y": {"x"}, "p": {"q"}, "q": {"p"}}, [["p", "q"], ["x", "y"]]),
    ],
)
def test_cycles_finds_each_loop(edges, expected):
    assert sorted(cycles(edges)) == expected


def test_parent_package_edges_reveal_a_cycle_through_an_init():
    # pkg/__init__ imports pkg.spec; spec imports pkg.engines.tflite -> runs pkg.engines/__init__
    edges = {
        "pkg": set(),
        "pkg.spec": {"pkg.engines.tflite"},
        "pkg.engines": {"pkg.spec"},
        "pkg.engines.tflite": set(),
    }
    assert cycles(edges) == []
    assert cycles(with_parent_packages(edges)) == [["pkg.engines", "pkg.spec"]]
    # A module importing its own package's siblings runs no __init__ of its own package.
    inside = with_parent_packages({"pkg.engines": {"pkg.engines.x"}, "pkg.engines.x": set()})
    assert inside["pkg.engines"] == {"pkg.engines.x"}


def test_function_level_imports_need_a_deferred_comment():
    source = """
import tasks.runtime

def f():
    import os
    from storage.parquet import read_table
    return read_table

def g():
    # deferred: TensorFlow (CLI start-up)
    from tasks.train.fit import fit
    from tasks.train.models import build_model
    return fit, build_model

def h():
    from flows.cli.demo import run_demo  # deferred: openvino is an optional extra
    # a comment that is not a reason
    from flows.cli.commands import app
    return run_demo, app
"""
    lines = source.splitlines()
    found = function_level_imports(source)
    assert [m for _, m in found] == [
        "storage.parquet",
        "tasks.train.fit",
        "tasks.train.models",
        "flows.cli.demo",
        "flows.cli.commands",
    ]
    assert [explained(lines, line) for line, _ in found] == [False, True, True, True, False]
