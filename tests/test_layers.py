"""The package layout reads as the data flow: each stage imports only earlier ones, and nothing imports in a
circle (between modules or between first-level packages), function-level imports included.

Entry points (`fbad/cli.py` and the `python -m fbad.<command>` shims beside it) sit on top: they only start
commands and no library module imports them.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import fbad

# lowest first; a module may import its own package and the packages before it
LAYERS = ["errors", "tracking", "data", "config", "engine", "preprocess", "segmentation", "lesions", "models", "planes",
          "anomaly", "evaluation", "training", "inference", "sweep", "benchmark", "commands", "entry"]
PACKAGE = Path(fbad.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every fbad module each module imports, anywhere in its body."""
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import submodule` imports the submodule; `from pkg import name`, the package
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != name and t != "fbad":
                    edges[name].add(t)
    return edges


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "fbad.cli" or (len(parts) == 2 and parts[1] not in LAYERS):
        return "entry"  # cli and the `python -m fbad.<command>` shims beside it (a package's own __main__ is
        # part of that package: one that started a command would make the package import `commands`)
    return parts[1] if len(parts) > 1 else "entry"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None (iterative DFS with colours)."""
    colour: dict[str, int] = {}
    for root in sorted(graph):
        if colour.get(root):
            continue
        stack = [(root, iter(sorted(graph.get(root, ()))))]
        path = [root]
        colour[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not colour.get(nxt):
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
                path.append(nxt)
    return None


def test_every_first_level_package_has_a_layer():
    packages = {layer(m) for m in _modules()}
    assert packages <= set(LAYERS), f"packages without a layer in LAYERS: {sorted(packages - set(LAYERS))}"


def test_imports_point_down_the_layer_order():
    mods = _modules()
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, bs in _imports(mods).items() for b in bs
              if rank[layer(b)] > rank[layer(a)]]
    assert not upward, "imports that point up the layer order:\n" + "\n".join(sorted(upward))


def test_no_import_cycle_between_modules():
    cycle = _cycle(_imports(_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, bs in _imports(_modules()).items():
        graph[layer(a)] |= {layer(b) for b in bs if layer(b) != layer(a)}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The checks above can fail: a made-up graph with a cycle is caught, and so is a module of `data`
    importing `training`."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    rank = {name: i for i, name in enumerate(LAYERS)}
    assert rank[layer("fbad.training.anomaly")] > rank[layer("fbad.data.records")]
    assert layer("fbad.train") == layer("fbad.cli") == "entry" and layer("fbad.data.__main__") == "data"
