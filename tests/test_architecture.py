"""The layer rule of docs/architecture.md, checked on the source.

``_kernels`` ← ``models`` ← ``evaluation``, ``onboarding``, ``serving``,
``distributed``, ``apps`` ← ``cli``: imports point down the layers (a layer may
skip the one below it), never up; the packages import one another without
circles; no private name (``_x``, or anything in a private module ``pkg._x``)
is imported from another package; and ``import matfact`` loads none of the
heavy libraries. Imports inside functions count: a lazy import is still a
dependency. The one exception is a module's ``__getattr__``: the lazy re-export
that keeps a moved name importable from its old place (``matfact.onboarding.
simulate_onboarding`` now lives in ``matfact.evaluation.onboarding``); it is a
signpost for users, not a dependency of the module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "matfact"

#: Each package (or top-level module) and its layer: imports may only point to a
#: layer at or below their own. Root-level private modules are shared utilities.
LAYERS = {
    "_kernels": 0, "_params": 0, "_threads": 0, "_linalg": 0, "_atomic": 0, "_text": 0,
    "_progress": 0,
    "_version": 0, "exceptions": 0,
    "data": 1, "datasets": 1, "plots": 1,
    "models": 2, "io": 2,
    "evaluation": 3, "onboarding": 3, "serving": 3, "distributed": 3, "apps": 3,
    "cli": 4, "__main__": 4,
}
#: Imports across a layer that the design allows (models stop early on a metric).
ALLOWED_UP = {("models", "evaluation.metrics")}
#: Private modules other packages may use: the kernels are the models' and Dask's engine.
SHARED_PRIVATE = {"_kernels": {"models", "distributed"}}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(("matfact", *parts)), path))
    return out


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) of every ``matfact`` import in a file."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    signposts = {id(inner) for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
                 for inner in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in signposts:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names
                      if alias.name.startswith("matfact")]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, target]) if target else ".".join(base)
            if target.startswith("matfact"):
                found.append((target, [alias.name for alias in node.names], node.lineno))
    return found


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


EDGES = [(module, path, target, names, line)
         for module, path in _modules() for target, names, line in _imports(module, path)]


def test_every_package_has_a_layer():
    missing = {_package(module) for module, _ in _modules()} - set(LAYERS) - {""}
    assert not missing, f"add these to LAYERS (and docs/architecture.md): {sorted(missing)}"


def test_imports_point_down_the_layers():
    wrong = []
    for module, _, target, _, line in EDGES:
        mine, theirs = _package(module), _package(target)
        if not mine or not theirs or mine == theirs:
            continue
        if (mine, target.removeprefix("matfact.")) in ALLOWED_UP:
            continue
        if LAYERS[theirs] > LAYERS[mine]:
            wrong.append(f"{module}:{line} imports {target} (layer {LAYERS[theirs]} > "
                         f"{LAYERS[mine]})")
    assert not wrong, "\n".join(wrong)


def test_packages_import_one_another_without_circles():
    graph: dict[str, set[str]] = {}
    for module, _, target, _, _ in EDGES:
        mine, theirs = _package(module), _package(target)
        if mine and theirs and mine != theirs:
            graph.setdefault(mine, set()).add(theirs)

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    return [*trail, start]
                if nxt not in trail:
                    stack.append((nxt, [*trail, nxt]))
        return None

    cycles = {" → ".join(c) for node in graph if (c := cycle_from(node))}
    assert not cycles, "\n".join(sorted(cycles))


def test_no_private_name_crosses_a_package():
    wrong = []
    for module, _, target, names, line in EDGES:
        mine, theirs = _package(module), _package(target)
        if not theirs or mine == theirs:
            continue
        private_parts = [p for p in target.split(".")[1:] if p.startswith("_")]
        shared = mine in SHARED_PRIVATE.get(theirs, ())
        root_utility = len(target.split(".")) == 2 and theirs.startswith("_")
        if private_parts and not (shared or root_utility):
            wrong.append(f"{module}:{line} imports private module {target}")
        for name in names:
            if name.startswith("_") and not name.startswith("__"):
                wrong.append(f"{module}:{line} imports private name {name} from {target}")
    assert not wrong, "\n".join(wrong)


def test_nothing_outside_models_calls_a_private_model_method():
    """``model._x(...)`` / ``self.model._x`` outside models/ reaches past the interface."""
    wrong = []
    for module, path in _modules():
        if _package(module) in ("models", "_kernels"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                owner = node.value
                name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if name in ("model", "fitted", "refit", "estimator"):
                    wrong.append(f"{module}:{node.lineno} {name}.{node.attr}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("heavy", ["numpy", "scipy", "pandas", "numba", "sklearn", "fastapi",
                                   "dask", "matplotlib"])
def test_import_matfact_is_light(heavy):
    code = f"import sys, matfact; print({heavy!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", f"import matfact loads {heavy}"
