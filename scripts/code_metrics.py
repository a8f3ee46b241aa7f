"""How the package reads to someone changing it: a parameter walk, import cycles and the longest functions
(docs/architecture.md; results/architecture.md).

python scripts/code_metrics.py                                   # the walks from train and quantize, cycles, sizes
python scripts/code_metrics.py --walk deeplab_mobile.apps.export:main:cfg --show

The parameter walk follows one argument (``cfg``) from a function through every call that passes it, or a value
read from it (``x = cfg.data``, ``cfg.model``), into the package function that receives it, as a reader following
a setting would. It counts the files the walk reads and its climbs: calls that go back into a file the walk had
already left (the reader's jumps back up to a file read before). Calls are resolved through each module's own
definitions and imports, not run; a call through an object (``self.x(cfg)``) is followed into the class's method
where the class is named in the module.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "deeplab_mobile"
WALKS = ("deeplab_mobile.apps.train:main:cfg", "deeplab_mobile.apps.quantize:main:cfg")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Module:
    """One package module: its functions and methods (``name`` and ``Class.name``), and the names it imports."""

    def __init__(self, path: Path):
        self.path, self.name = path, module_name(path)
        self.tree = ast.parse(path.read_text())
        self.functions: dict[str, ast.FunctionDef] = {}
        self.classes: set[str] = set()
        self.imports: dict[str, tuple[str, str | None]] = {}  # local name -> (module, attribute or None)
        package = self.name if path.name == "__init__.py" else self.name.rsplit(".", 1)[0]
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.classes.add(node.name)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self.functions[f"{node.name}.{item.name}"] = item
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = (target, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.imports[alias.asname or alias.name.split(".")[0]] = (alias.name, None)


def read_package() -> dict[str, Module]:
    return {m.name: m for m in map(Module, sorted(PACKAGE.rglob("*.py")))}


def resolve(modules: dict[str, Module], module: Module, func: ast.expr, cls: str | None, depth: int = 0):
    """The (module, function key) a call's target names in the package, or None."""
    if depth > 5:
        return None
    if isinstance(func, ast.Name):
        return lookup(modules, module.name, func.id, depth)
    elif isinstance(func, ast.Attribute):
        value = func.value
        if isinstance(value, ast.Name) and value.id == "self" and cls and f"{cls}.{func.attr}" in module.functions:
            return module.name, f"{cls}.{func.attr}"
        if isinstance(value, ast.Name) and value.id in module.imports:
            target, attr = module.imports[value.id]
            name = f"{target}.{attr}" if attr else target
            if name in modules:
                return lookup(modules, name, func.attr, depth)
        if isinstance(value, ast.Name) and value.id in module.classes:
            key = f"{value.id}.{func.attr}"
            return (module.name, key) if key in module.functions else None
    return None


def lookup(modules: dict[str, Module], target: str, attr: str | None, depth: int):
    """``attr`` of module ``target``: a function, a class's ``__init__``, or what it imports under that name
    (following re-exports: ``from .x import f`` in a package's __init__)."""
    if attr is None or target not in modules or depth > 5:
        return None
    module = modules[target]
    if attr in module.functions:
        return module.name, attr
    if attr in module.classes:
        return (module.name, f"{attr}.__init__") if f"{attr}.__init__" in module.functions else None
    if attr in module.imports:
        inner, inner_attr = module.imports[attr]
        return lookup(modules, inner, inner_attr, depth + 1)
    return None


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def tracked_calls(fn: ast.FunctionDef, param: str) -> list[tuple[ast.Call, list[tuple[int | str, ast.expr]]]]:
    """The calls in ``fn`` (in source order) that pass ``param`` or a value read from it, with those arguments."""
    tracked = {param}
    for node in ast.walk(fn):  # values read from it: ``data = cfg.data.copy()``, ``run = loaded.config`` not
        if isinstance(node, ast.Assign) and names_in(node.value) & tracked and not isinstance(node.value, ast.Call):
            tracked |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            call = node.value
            if isinstance(call.func, ast.Attribute) and names_in(call.func.value) & tracked:  # cfg.data.copy()
                tracked |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in sorted((n for n in ast.walk(fn) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset)):
        args = [(i, a) for i, a in enumerate(node.args) if names_in(a) & tracked]
        args += [(k.arg, k.value) for k in node.keywords if k.arg and names_in(k.value) & tracked]
        if args:
            found.append((node, args))
    return found


def parameter(fn: ast.FunctionDef, position: int | str, method: bool) -> str | None:
    params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if method and params and params[0] in ("self", "cls"):
        params = params[1:]
    if isinstance(position, str):
        return position if position in params + [a.arg for a in fn.args.kwonlyargs] else None
    return params[position] if position < len(params) else None


def walk(modules: dict[str, Module], start: str) -> dict:
    """The files and climbs of a parameter walk from ``module:function:parameter``."""
    module_name_, func, param = start.split(":")
    seen, files, order, climbs = set(), [], [], []

    def visit(module: Module, key: str, name: str, came_from: str | None):
        if (module.name, key, name) in seen:
            return
        first = not any(m == module.name and k == key for m, k, _ in seen)
        seen.add((module.name, key, name))
        if module.name not in files:
            files.append(module.name)
        elif first and came_from is not None and came_from != module.name:
            climbs.append(f"{came_from} -> {module.name}.{key}")
        order.append(f"{module.name}.{key}({name})")
        fn = module.functions[key]
        cls = key.split(".")[0] if "." in key else None
        for call, args in tracked_calls(fn, name):
            target = resolve(modules, module, call.func, cls)
            if target is None:
                continue
            callee_module, callee = modules[target[0]], target[1]
            callee_fn = callee_module.functions[callee]
            for position, _ in args:
                p = parameter(callee_fn, position, "." in callee)
                if p:
                    visit(callee_module, callee, p, module.name)

    visit(modules[module_name_], func, param, None)
    return {"start": start, "files": len(files), "climbs": len(climbs), "functions": order, "climb_list": climbs}


def import_cycles() -> list[list[str]]:
    """The groups of modules that import each other: the layer test's own reading and finder, so this number and
    the test's verdict cannot differ."""
    sys.path.insert(0, str(PACKAGE.parent))
    from tests.test_layers import cycles, edges

    return cycles(edges())


def longest_functions(modules: dict[str, Module], n: int) -> list[tuple[int, str]]:
    sizes = []
    for m in modules.values():
        for node in ast.walk(m.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                sizes.append((node.end_lineno - node.lineno + 1, f"{m.name}:{node.name}"))
    return sorted(sizes, reverse=True)[:n]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--walk", nargs="*", default=list(WALKS), help="module:function:parameter to follow")
    parser.add_argument("--show", action="store_true", help="list the functions each walk visits and its climbs")
    parser.add_argument("--longest", type=int, default=8, help="how many of the longest functions to list")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    modules = read_package()
    walks = [walk(modules, start) for start in args.walk]
    for w in walks:
        print(f"walk {w['start']}: {w['files']} files, {w['climbs']} climbs")
        if args.show:
            print("  " + "\n  ".join(w["functions"]))
            print("  climbs:\n    " + "\n    ".join(w["climb_list"]))
    cycles = import_cycles()
    print(f"import cycles: {len(cycles)}" + "".join(f"\n  {' <-> '.join(c)}" for c in cycles))
    longest = longest_functions(modules, args.longest)
    print("longest functions (lines):" + "".join(f"\n  {n:4d} {name}" for n, name in longest))
    if args.json:
        record = {"walks": walks, "import_cycles": cycles, "longest_functions": longest}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
