"""The house rule (docs/ARCHITECTURE.md): each stage is a subpackage on a floor; a module imports
only from its own subpackage or from a lower floor, and no modules import each other in a circle.
Imports inside functions count the same as those at the top of a file."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "pushbutton"

# floor of each top-level part of the package (lower floors never import higher ones)
FLOORS = {
    "core": 0,        # errors, ids, names, the task-side API, file helpers
    "spec": 1,        # the spec model, parameter spaces, parrun
    "store": 2,       # state database, Parquet parts, views, provenance, locks
    "harvest": 3,     # outcome files -> task states and result rows (the one Ingestor)
    "execution": 4,   # driver, worker, backends, targets, SLURM
    "analysis": 5,    # statistics and figures
    "dl": 5,          # deep-learning helpers for tasks
    "report": 6,      # the HTML report
    "clusters": 7,    # clusters pushbutton builds
    "experiment": 8,  # the Python API (pushbutton.Experiment) and pushbutton/__init__
    "ui": 9,          # pb ui: the live web dashboard
    "cli": 10,        # the command line
    "__main__": 11,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str):
    """(line, imported module) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for a in node.names:  # `from pkg import module`
                yield node.lineno, f"{mod}.{a.name}"


def _graph():
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        out = set()
        for line, mod in _imports(path, name):
            while mod and mod not in modules:
                mod = mod.rpartition(".")[0]
            if mod and mod.startswith("pushbutton") and mod != name:
                out.add((mod, line))
        edges[name] = out
    return modules, edges


def _part(mod: str) -> str:
    parts = mod.split(".")
    return "experiment" if len(parts) == 1 else parts[1]


def test_every_part_of_the_package_has_a_floor():
    modules, _ = _graph()
    unknown = sorted({_part(m) for m in modules} - set(FLOORS))
    assert not unknown, f"give these a floor in FLOORS and docs/ARCHITECTURE.md: {unknown}"


def test_no_module_imports_from_a_floor_above_it():
    modules, edges = _graph()
    bad = []
    for name, out in edges.items():
        for mod, line in out:
            a, b = _part(name), _part(mod)
            if a != b and FLOORS[b] >= FLOORS[a]:
                bad.append(f"{modules[name].relative_to(PKG.parent)}:{line} ({a}, floor "
                           f"{FLOORS[a]}) imports {mod} ({b}, floor {FLOORS[b]})")
    assert not bad, "imports that run up or sideways:\n" + "\n".join(sorted(bad))


def test_no_import_cycle_between_modules():
    modules, edges = _graph()
    graph = {n: {m for m, _ in out} for n, out in edges.items()}
    # a module's package __init__ runs before it; an __init__ importing its own modules is not
    # a cycle with them
    for n in graph:
        graph[n] = {m for m in graph[n] if not n.startswith(m + ".")}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "modules that import each other in a circle: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_the_test_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from ..store import database\n")
    assert (2, "pushbutton.store.database") in set(_imports(f, "pushbutton.core.m"))
