"""The package's import graph: no cycles, dependencies toward simulator/, no import dodges in reconstruct/.

The graph is read with ``ast`` from the sources of every package that pyproject.toml installs (its
``package-dir`` table), so a new package is covered without touching this test. Every import counts, at module
level or inside a function: a function-level import that breaks a cycle at run time is still a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_PACKAGE_DIR = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
PACKAGES: dict[str, Path] = {name: ROOT / folder for name, folder in _PACKAGE_DIR.items()}

#: Which installed packages each package may import (besides itself).
ALLOWED = {
    "tumblebench.simulator": set(),
    "tumblebench.stages": {"tumblebench.simulator"},
    "tumblebench.reconstruct": {"tumblebench.simulator", "tumblebench.stages"},
    "tumblebench.analysis": {"tumblebench.simulator", "tumblebench.stages"},
    "tumblebench.validation": set(PACKAGES),
    "tumblebench.dataset": set(PACKAGES),  # training-data generation: a top layer beside validation
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


MODULES = _modules()


def _package_of(module: str) -> str:
    return max((p for p in PACKAGES if module == p or module.startswith(p + ".")), key=len)


def _imports(module: str, path: Path) -> list[tuple[str, ast.stmt, bool]]:
    """(imported tumblebench module, node, inside a function or class) for every import of ``module``."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
            if isinstance(child, ast.Import):
                out.extend((a.name, child, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against the importing module's package
                    anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    out.append((sub if sub in MODULES else base, child, nested))
            visit(child, inner)

    visit(tree, False)
    return [(m, n, f) for m, n, f in out if m.startswith("tumblebench.")]


GRAPH = {m: sorted({t for t, _, _ in _imports(m, p) if t in MODULES and t != m}) for m, p in MODULES.items()}


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
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
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_the_graph_covers_every_installed_package() -> None:
    assert set(PACKAGES) >= set(ALLOWED) and set(ALLOWED) >= set(PACKAGES)
    assert {_package_of(m) for m in MODULES} == set(PACKAGES)
    assert len(MODULES) > 50  # every module of every package is read


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The finder itself: a three-module loop and a self-contained chain."""
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": [], "c": ["a", "b"]}) == []


def test_layers_point_toward_the_simulator() -> None:
    bad = []
    for module, targets in GRAPH.items():
        pkg = _package_of(module)
        for t in targets:
            other = _package_of(t)
            if other != pkg and other not in ALLOWED[pkg]:
                bad.append(f"{module} -> {t}")
    assert bad == []


def test_no_function_level_imports_in_reconstruct() -> None:
    """Every import of reconstruct/ (of tumblebench or not) sits at module level."""
    bad = []
    for m, p in MODULES.items():
        if _package_of(m) != "tumblebench.reconstruct":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
                bad += [f"{m}:{sub.lineno}" for sub in ast.walk(node) if isinstance(sub, ast.Import | ast.ImportFrom)]
    assert sorted(set(bad)) == []


@pytest.mark.parametrize("name", ["analysis", "validation"])
def test_an_unrelated_package_of_the_same_name_imports_beside_tumblebench(tmp_path: Path, name: str) -> None:
    """A user's own top-level package named like one of tumblebench's folders coexists with it."""
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("WHO = 'unrelated'\n")
    code = textwrap.dedent(f"""
        import {name}
        import tumblebench.{name} as tb
        assert {name}.WHO == "unrelated", {name}.__file__
        assert not hasattr(tb, "WHO") and tb.__name__ == "tumblebench.{name}"
        print("ok", {name}.__file__, tb.__file__)
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok " + str(tmp_path))


def _kernel_calls_across_modules(module) -> list[str]:
    """Numba kernels of ``module`` that call a numba function defined in another module."""
    from numba.core.registry import CPUDispatcher

    bad = []
    for name, obj in vars(module).items():
        if not isinstance(obj, CPUDispatcher) or obj.py_func.__module__ != module.__name__:
            continue
        for used in obj.py_func.__code__.co_names:
            callee = vars(module).get(used)
            if isinstance(callee, CPUDispatcher) and callee.py_func.__module__ != module.__name__:
                bad.append(f"{module.__name__}.{name} calls {callee.py_func.__module__}.{used}")
    return bad


def test_kernels_call_only_kernels_of_their_own_module() -> None:
    # numba's on-disk cache of a kernel is invalidated when the kernel's own file changes, not when a kernel it
    # calls from another file does: such a call would run stale compiled code after an upgrade, silently
    import importlib

    bad = []
    for name in _modules():
        if name.endswith("__main__"):
            continue
        bad += _kernel_calls_across_modules(importlib.import_module(name))
    assert not bad, "; ".join(bad)


def test_the_cross_module_kernel_check_finds_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kern_a.py").write_text("import numba\n\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    (tmp_path / "kern_b.py").write_text("import numba\nfrom kern_a import f\n\n"
                                        "@numba.njit(cache=True)\ndef g(x):\n    return f(x) * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    assert _kernel_calls_across_modules(importlib.import_module("kern_b")) == ["kern_b.g calls kern_a.f"]
    assert _kernel_calls_across_modules(importlib.import_module("kern_a")) == []
