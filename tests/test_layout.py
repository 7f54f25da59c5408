"""The source layout: no import cycles in src/seqlab, and no module too long to read in one sitting."""

import ast
from pathlib import Path

import seqlab

SRC = Path(seqlab.__file__).parent

# The longest a module may be. 500 lines still reads in one sitting (STYLE.md: a model <= ~350, the
# training loop <= ~300); countmodel.py (675) and train.py (535) were split by role to get under it, and
# the longest module now is serve/worker.py (431). A file that outgrows it wants splitting, not a new bound.
MAX_LINES = 500


def module_names(root: Path) -> dict[str, Path]:
    """{dotted name: file} of every module under root (a package is named by its __init__.py)."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """{module: {module it imports: line}} within root's package.

    Every import counts, at module level or inside a function (a function-local import that dodges a
    cycle is still a cycle). Relative imports are resolved; `from pkg import name` means pkg.name when
    that is a module, else pkg; importing a package means its __init__, and importing a module inside a
    package also runs the __init__ of each package on the way that the importer is not already inside.
    """
    names = module_names(root)
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph[name] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in names:  # `import pkg.module.attr` forms: the module named
                    target = target.rpartition(".")[0]
                parts = target.split(".")
                for i in range(1, len(parts) + 1):  # the packages on the way, then the module itself
                    step = ".".join(parts[:i])
                    inside = name == step or name.startswith(step + ".")
                    if step in names and not inside:
                        edges.setdefault(step, node.lineno)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state = {}  # module -> "open" while on the DFS path, "done" after

    def visit(module, path):
        state[module] = "open"
        path.append(module)
        for nxt in sorted(graph[module]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [])):
            return cycle
    return None


def describe(cycle: list[str], graph) -> str:
    return "import cycle:\n" + "\n".join(f"  {a} imports {b} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:]))


def test_no_import_cycles():
    graph = import_graph(SRC)
    assert {"seqlab.config", "seqlab.countmodel"} <= set(graph["seqlab.run"])  # module-level and function-local
    cycle = find_cycle(graph)
    assert cycle is None, describe(cycle, graph)


def test_no_module_is_too_long():
    lengths = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    too_long = {p: n for p, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by role): {too_long}"


def test_the_checker_finds_a_cycle_through_a_function_local_import_and_a_package(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("def f():\n    from .sub.b import g\n")
    (root / "sub" / "__init__.py").write_text("from .b import g\n")
    (root / "sub" / "b.py").write_text("from .. import c\n")
    (root / "c.py").write_text("import pkg.a\n")
    graph = import_graph(root)
    assert graph["pkg.a"] == {"pkg.sub": 2, "pkg.sub.b": 2}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub", "pkg.sub.b", "pkg.c", "pkg.a"]
    assert "pkg.c imports pkg.a (line 1)" in describe(find_cycle(graph), graph)
