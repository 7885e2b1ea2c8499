"""The package's layering, read from the source with `ast` (nothing is imported or run; well under a second).

Levels, each importing only its own level or lower (function-level imports included):

    0  _args, shapes, version, sampling   plain Python / NumPy
    1  functional                         pure jax ops
    2  layers, params                     Flax linen layers, parameter counting
    3  models, nnx, model_summary, keras_bridge
    4  data, train, artifact
    5  viz, testing
    6  cnnjax/__init__.py                 the package's front door (only the command line may import it)
    7  cli and every __main__ module      the command line (nothing in the library imports it)

`model_summary` sits with models and nnx, not with the layers: it takes NNX models through `nnx.adapter`.
Also checked: no module imports another package's private (``_x``) module, no import cycle between packages, and
no module defines a public function, class or alias named like the module (``fit.py`` defining ``fit`` hides the
module behind the function once its package re-exports it).
"""
import ast
import functools
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cnnjax")

LEVELS = {
    "_args": 0, "shapes": 0, "version": 0, "sampling": 0,
    "functional": 1,
    "layers": 2, "params": 2,
    "models": 3, "nnx": 3, "model_summary": 3, "keras_bridge": 3,
    "data": 4, "train": 4, "artifact": 4,
    "viz": 5, "testing": 5,
    "": 6,              # the package itself, cnnjax/__init__.py
    "cli": 7,
}
CLI_LEVEL = LEVELS["cli"]

# Known open items, each to be removed by whoever fixes it (test_allowed_entries_are_still_needed says when):
ALLOWED: set = set()


def _modules():
    """{dotted module name: path} of every .py file under cnnjax/."""
    found = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                found[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


MODULES = _modules()


def _resolve(name):
    """The longest prefix of dotted `name` that is a module of cnnjax (``cnnjax.data.loading.Split`` ->
    ``cnnjax.data.loading``)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts)


@functools.lru_cache(maxsize=None)
def _tree(path):
    with open(path) as f:
        return ast.parse(f.read(), path)


def _imports(module):
    """[(imported cnnjax module, line)] of `module`, resolved to modules (``from X import n`` is X.n where that is
    a module, else X)."""
    path = MODULES[module]
    tree = _tree(path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(_resolve(a.name), node.lineno) for a in node.names if a.name.split(".")[0] == "cnnjax"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "cnnjax":
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                out.append((target if target in MODULES else _resolve(source), node.lineno))
    return out


def _package(module):
    """The first component after ``cnnjax`` ('' for the package itself)."""
    return module.split(".")[1] if "." in module else ""


def _owner(module):
    """The package a module belongs to in the package graph: the command line for every ``__main__``."""
    return "cli" if module.rpartition(".")[2] == "__main__" else _package(module)


def _level(module):
    return CLI_LEVEL if module.rpartition(".")[2] == "__main__" else LEVELS[_package(module)]


def _found(kind):
    problems = set()
    for module in MODULES:
        for target, line in _imports(module):
            if kind == "up" and _level(target) > _level(module):
                problems.add(("up", module, target, line))
            if kind == "private":
                parts = target.split(".")
                for i, part in enumerate(parts[1:], 1):
                    if part.startswith("_") and not part.startswith("__"):
                        owner = ".".join(parts[:i])
                        if module != owner and not module.startswith(owner + "."):
                            problems.add(("private", module, target, line))
                        break
    return problems


def _same_name_definitions():
    """{("name", module, name)} for each module-level def/class/assignment whose name is the module's own."""
    found = set()
    for module, path in MODULES.items():
        if path.endswith("__init__.py"):
            continue
        stem = module.rpartition(".")[2]
        for node in _tree(path).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            elif isinstance(node, ast.ImportFrom):
                names = [a.asname or a.name for a in node.names]
            else:
                names = []
            if stem in names:
                found.add(("name", module, stem))
    return found


def test_every_package_has_a_level():
    packages = {_package(m) for m in MODULES if not m.endswith(".__main__")}
    assert packages <= set(LEVELS), packages - set(LEVELS)


def test_imports_run_only_downward():
    problems = sorted(p for p in _found("up") if (p[0], p[1], p[2]) not in ALLOWED)
    assert not problems, "\n".join(f"{m}:{line} imports {t} (level {_level(t)} above {_level(m)})"
                                   for _, m, t, line in problems)


def test_nothing_in_the_library_imports_the_command_line_or_the_package_itself():
    for module in MODULES:
        if _level(module) < LEVELS[""]:
            for target, line in _imports(module):
                assert _package(target) not in ("", "cli"), f"{module}:{line} imports {target}"


def test_no_private_module_of_another_package_is_imported():
    problems = sorted(_found("private"))
    assert not problems, "\n".join(f"{m}:{line} imports {t}" for _, m, t, line in problems)


def test_no_import_cycle_between_packages():
    graph = {}
    for module in MODULES:
        for target, _ in _imports(module):
            if _owner(target) != _owner(module):
                graph.setdefault(_owner(module), set()).add(_owner(target))

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(p for p in graph if p in reachable(p))
    assert not cycles, f"packages on an import cycle: {cycles}"


def test_no_public_name_is_its_modules_name():
    problems = sorted(_same_name_definitions() - ALLOWED)
    assert not problems, "\n".join(f"{m} defines {n}: rename the module" for _, m, n in problems)


def test_allowed_entries_are_still_needed():
    present = _same_name_definitions() | {(kind, m, t) for kind, m, t, _ in _found("up") | _found("private")}
    stale = sorted(ALLOWED - present)
    assert not stale, f"fixed, remove from ALLOWED: {stale}"


@pytest.mark.parametrize("source, expected", [
    ("from cnnjax.train.checkpoint import Checkpointer", "cnnjax.train.checkpoint"),
    ("from . import ensemble as _ensemble", "cnnjax.viz.ensemble"),
    ("from cnnjax import models", "cnnjax.models"),
    ("from cnnjax import count_params", "cnnjax"),
    ("import cnnjax.functional.checks", "cnnjax.functional.checks"),
])
def test_the_scanner_resolves_imports_to_modules(source, expected, tmp_path, monkeypatch):
    """The resolution rules above on one-line modules (an independent check of the scanner itself)."""
    monkeypatch.setitem(MODULES, "cnnjax.viz.probe", str(tmp_path / "probe.py"))
    monkeypatch.setitem(MODULES, "cnnjax.viz.ensemble", str(tmp_path / "ensemble.py"))
    (tmp_path / "probe.py").write_text(source + "\n")
    assert expected in MODULES and _imports("cnnjax.viz.probe") == [(expected, 1)]
