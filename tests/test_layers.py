"""Dependencies point one way: read every module of the package with `ast` (nothing is
imported) and check the layers.

- `vitmae.models` imports only itself, `vitmae.variants` (torch-free sizes) and
  `vitmae.errors`: no config, engine, data, CLI, runner, checkpoint I/O or RNG state.
- Nothing imports `vitmae.cli` (the CLI is the top; `__main__` only runs it).
- The graph of imports between the package's modules has no cycle, counting imports inside
  functions too: an import moved into a function to dodge a cycle is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vitmae

PACKAGE = Path(vitmae.__file__).parent
MODELS_MAY_IMPORT = ("vitmae.models", "vitmae.variants", "vitmae.errors")


def _module_name(path: Path) -> str:
    parts = ("vitmae", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The package's modules that module `name` imports anywhere in its code (`from a import
    b` counts as a.b when that is a module, else as a)."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for a in node.names:
                full = f"{base}.{a.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_is_found():
    assert {"vitmae.train.engine", "vitmae.models.vit", "vitmae.cli"} <= GRAPH.keys()
    assert "vitmae.models.vit" in GRAPH["vitmae.models.mae"]


def test_models_import_nothing_above_them():
    bad = {f"{name} -> {dep}" for name, deps in GRAPH.items()
           if name.startswith("vitmae.models") for dep in deps
           if not dep.startswith(MODELS_MAY_IMPORT)}
    assert not bad, sorted(bad)


def test_nothing_imports_the_cli():
    importers = sorted(n for n, deps in GRAPH.items()
                       if "vitmae.cli" in deps and n != "vitmae.__main__")
    assert not importers, importers


def test_imports_have_no_cycle():
    cycle = _cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


PROCESS_WIDE = {("matplotlib", "use"), ("os", "chdir"), ("torch", "manual_seed"),
                ("torch", "set_num_threads")}  # settings of the whole process


def _process_wide_calls(tree: ast.AST) -> set[str]:
    """`module.function(...)` calls in `tree` that change a process-wide setting."""
    return {f"{f.value.id}.{f.attr}" for node in ast.walk(tree) if isinstance(node, ast.Call)
            for f in [node.func] if isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name) and (f.value.id, f.attr) in PROCESS_WIDE}


# the commands that own their process set its threads, seeds and allocator
PROCESS_OWNERS = ("vitmae.cli", "vitmae.train.runner", "vitmae.distributed", "vitmae.__main__")
# a shard worker sets the intra-op threads of its own thread, which the caller does not share
THREAD_LOCAL = {"vitmae.train.shards: torch.set_num_threads"}


def test_library_functions_leave_process_wide_settings_alone():
    found = {f"{name}: {call}" for name, path in MODULES.items()
             if not name.startswith(PROCESS_OWNERS)
             for call in _process_wide_calls(ast.parse(path.read_text()))}
    assert not found - THREAD_LOCAL, sorted(found - THREAD_LOCAL)


def test_a_process_wide_call_is_found():
    tree = ast.parse("import os\nos.chdir('x')\nmatplotlib.use('Agg')\nos.path.join('a')")
    assert _process_wide_calls(tree) == {"os.chdir", "matplotlib.use"}
