"""The package's layers, as docs/architecture.md states them: imports only go down, and no module imports itself
back through others (no cycle).

    cli  ->  apps, ablation  ->  bench  ->  config  ->  core

Every ``import`` and ``from ... import`` in the package is read (function-level ones too) and resolved to the
module it names. ``python -m tests.test_layers`` prints the layer-to-layer import graph.
"""

import ast
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deeplab_mobile"
ALLOWED = {
    "core": {"core"},
    "config": {"core", "config"},
    "bench": {"core", "config", "bench"},
    "apps": {"core", "config", "bench", "apps"},
    "ablation": {"core", "config", "bench", "ablation"},
    "cli": {"core", "config", "bench", "apps", "ablation", "cli"},
}
LAYERS = ("config", "bench", "apps", "ablation", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] == "__main__":
        return "cli"
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def imports(path: Path) -> list[str]:
    """The package modules one file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "deeplab_mobile"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "deeplab_mobile":
                continue
            folder = PACKAGE.parent.joinpath(*target.split("."))
            for alias in node.names:  # ``from .. import stats``: the module stats
                sub = folder / alias.name
                found.append(f"{target}.{alias.name}" if sub.is_dir() or sub.with_suffix(".py").is_file() else target)
    return found


def edges() -> Counter:
    graph = Counter()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for target in imports(path):
            graph[(source, target)] += 1
    return graph


def test_imports_only_go_down():
    upward = [f"{s} -> {t}" for (s, t) in edges() if layer(t) not in ALLOWED[layer(s)]]
    assert upward == []


def cycles(graph: Counter) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others (Tarjan's strongly connected
    components of more than one module)."""
    nodes = sorted({m for edge in graph for m in edge})
    out = {n: sorted({t for (s, t) in graph if s == n and t != n}) for n in nodes}
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in out[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on.discard(group[-1])
            if len(group) > 1:
                groups.append(sorted(group))

    for n in nodes:
        if n not in index:
            visit(n)
    return groups


def test_every_import_names_a_module_of_the_package():
    """A function-level import runs only when its function does: each must name a module that exists."""
    missing = []
    for source, target in edges():
        path = PACKAGE.parent.joinpath(*target.split("."))
        if not (path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()):
            missing.append(f"{source} -> {target}")
    assert missing == []


def test_no_import_cycle():
    assert cycles(edges()) == []


def test_cycles_are_found():
    """The cycle finder sees a cycle through three modules, and none in a chain."""
    ring = Counter({("a", "b"): 1, ("b", "c"): 1, ("c", "a"): 1, ("c", "d"): 1})
    assert cycles(ring) == [["a", "b", "c"]]
    assert cycles(Counter({("a", "b"): 1, ("b", "c"): 1})) == []


def test_the_graph_is_read():
    """The reader sees the imports it must: an app reads the config layer, the config layer the core."""
    graph = edges()
    assert ("deeplab_mobile.apps.train", "deeplab_mobile.config.run") in graph
    assert ("deeplab_mobile.config.source", "deeplab_mobile.predict") in graph
    assert ("deeplab_mobile.ablation.rows", "deeplab_mobile.stats") in graph
    assert ("deeplab_mobile.apps.quantize", "deeplab_mobile.bench.latency") in graph


if __name__ == "__main__":
    layers = Counter()
    for (source, target), n in edges().items():
        layers[(layer(source), layer(target))] += n
    for (a, b), n in sorted(layers.items()):
        print(f"{a:>9} -> {b:<9} {n:4d} imports{'' if b in ALLOWED[a] else '   UPWARD'}")
