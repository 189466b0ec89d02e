"""raymlops has no import cycle between its modules: every import counts, module-level, inside functions and
under TYPE_CHECKING alike (a function-level import that closes a circle only hides it until that function runs).
The layer contracts of `make lint` (import-linter) bound imports between packages; this test is the
module-by-module check."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parent.parent


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module importing itself): Tarjan's
    algorithm, iterative so a deep chain of imports cannot hit the recursion limit."""
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
            node, targets = work[-1]
            step = next(targets, None)
            if step is not None:
                if step not in index:
                    index[step] = low[step] = len(index)
                    stack.append(step)
                    on_stack.add(step)
                    work.append((step, iter(sorted(edges.get(step, ())))))
                elif step in on_stack:
                    low[node] = min(low[node], index[step])
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
                if len(component) > 1 or node in edges.get(node, ()):
                    found.append(sorted(component))
    return found


def _describe(graph: grimp.ImportGraph, component: list[str]) -> str:
    """One circle through a component's first two modules, e.g. `a -> b -> c -> a`, then all its modules."""
    if len(component) == 1:
        return f"{component[0]} imports itself"
    there = graph.find_shortest_chain(importer=component[0], imported=component[1]) or ()
    back = graph.find_shortest_chain(importer=component[1], imported=component[0]) or ()
    return f"{' -> '.join([*there, *back[1:]])} (the component: {', '.join(component)})"


def test_cycle_finder() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}, "b": set()}) == [["a"]]
    assert sorted(_cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c", "a"}})) == [["a", "b"], ["c", "d"]]
    graph = grimp.ImportGraph()
    for importer, imported in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a")):
        graph.add_import(importer=importer, imported=imported)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert [_describe(graph, c) for c in _cycles(edges)] == ["p.a -> p.b -> p.c -> p.a (the component: p.a, p.b, p.c)"]


def _function_level_imports() -> list[tuple[str, str, int]]:
    """(importer, imported, line) of every `from raymlops... import` / `import raymlops...` inside a function."""
    found = []
    for path in sorted((REPO / "raymlops").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        importer = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for func in ast.walk(ast.parse(path.read_text())):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("raymlops"):
                        found.append((importer, str(node.module), node.lineno))
                    elif isinstance(node, ast.Import):
                        found += [(importer, a.name, node.lineno) for a in node.names if a.name.startswith("raymlops")]
    return found


def test_raymlops_has_no_import_cycle() -> None:
    graph = grimp.build_graph("raymlops", cache_dir=None, exclude_type_checking_imports=False)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    assert len(graph.modules) > 50 and sum(map(len, edges.values())) > 100, "the whole package was read"
    # grimp reads import statements wherever they stand: the lazy, function-level ones are in the graph too
    lazy = _function_level_imports()
    assert lazy, "raymlops has function-level imports (cli entry points): the cross-check below has something to check"
    missed = [
        (importer, imported, line)
        for importer, imported, line in lazy
        if not any(
            d["line_number"] == line
            for target in edges[importer]
            if target == imported or target.startswith(imported + ".")
            for d in graph.get_import_details(importer=importer, imported=target)
        )
    ]
    assert not missed, f"imports inside functions that grimp's graph lacks: {missed}"
    cycles = _cycles(edges)
    assert not cycles, "import cycles in raymlops:\n" + "\n".join(_describe(graph, c) for c in cycles)


def _modules_loaded_by(*modules: str) -> set[str]:
    """Which heavy libraries a fresh interpreter holds after importing these raymlops modules."""
    import subprocess
    import sys

    heavy = ("torch", "torchvision", "mlflow", "ray.tune")
    code = f"import sys\nimport {', '.join(modules)}\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    return set(out.stdout.split())


def test_ray_actors_that_do_not_train_import_no_torch() -> None:
    """Ray imports a module's whole package chain in each process that runs it: the lane broker (an actor
    started with every DDP search) must load neither torch nor Ray Tune, a DDP trial's thin Tune driver no torch
    (each cost ~1.3 s of CPU on the cores the lane's first trial is starting on)."""
    assert _modules_loaded_by("raymlops.launch.executors.lane_broker") == set()
    assert _modules_loaded_by("raymlops.launch.executors.trainable", "raymlops.launch.executors.warm_lane") == {"ray.tune"}
