"""The package's shape (ARCHITECTURE.md), checked with ``ast``: imports go one way (no cycle
among vnexport modules, counting module-level and function-level imports), only cli.py imports
the package's own modules inside functions, no function is over 60 lines, and ``vnexport
--help`` imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "vnexport"
MAX_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST, in_function: bool = False):
    """(import node, inside a function?) for every import, skipping `if TYPE_CHECKING:`
    blocks (annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if _type_checking_block(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                 ast.Lambda))
        yield from _imports(node, inner)


def _targets(mod: str, node: ast.AST) -> set[str]:
    """The vnexport modules (packages included) an import statement in module ``mod`` loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = mod.split(".")
            if MODULES[mod].name != "__init__.py":
                package = package[:-1]
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        names = [base] + [f"{base}.{a.name}" for a in node.names]
    out = set()
    for name in names:
        while name and name not in MODULES:  # `from m import obj`: obj is not a module
            name = name.rpartition(".")[0]
        if name and name != mod:
            out.add(name)
    return out


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """module -> the vnexport modules it imports; and the function-local package imports."""
    graph, local = {}, []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[mod] = set()
        for node, in_function in _imports(tree):
            targets = _targets(mod, node)
            graph[mod] |= targets
            if in_function and targets and mod != "vnexport.cli":
                local.append(f"{path.relative_to(PKG.parent)}:{node.lineno} imports "
                             f"{', '.join(sorted(targets))} inside a function")
    return graph, local


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph, _ = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among vnexport modules: " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_no_function_local_import_of_the_package_outside_cli():
    _, local = import_graph()
    assert not local, "function-local imports of vnexport modules:\n" + "\n".join(local)


def test_no_function_over_60_lines():
    long = []
    for mod, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name} "
                                f"({n} lines)")
    assert not long, f"functions over {MAX_LINES} lines:\n" + "\n".join(long)


def test_help_imports_no_torch():
    code = ("import sys\n"
            "from vnexport.cli import app\n"
            "try:\n"
            "    app(['--help'])\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', "
            "'tensorrt_rtx', 'polygraphy') if m in sys.modules)\n"
            "print('HEAVY', ','.join(heavy))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=PKG.parent, timeout=120)
    assert r.returncode == 0, r.stderr
    heavy = r.stdout.strip().splitlines()[-1].removeprefix("HEAVY").strip()
    assert "Usage" in r.stdout
    assert heavy == "", f"vnexport --help imported {heavy}"


# the checker itself: it must see what it is meant to see


def test_checker_sees_a_cycle_and_names_it():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_checker_resolves_relative_and_absolute_imports():
    tree = ast.parse("from .. import ort, trt\nfrom ..errors import VnexportError\n"
                     "import vnexport.fileio\nfrom vnexport.onnx_file import load_onnx\n"
                     "def f():\n    from .common import Log\n")
    found = [(_targets("vnexport.stages.trt", n), local) for n, local in _imports(tree)]
    assert found == [({"vnexport", "vnexport.ort", "vnexport.trt"}, False),
                     ({"vnexport.errors"}, False), ({"vnexport.fileio"}, False),
                     ({"vnexport.onnx_file"}, False), ({"vnexport.stages.common"}, True)]


def test_readme_python_api_imports_resolve():
    """Every name README's Python API block imports exists (README once documented a
    ``run_onnx`` that did not)."""
    readme = (PKG.parent / "README.md").read_text()
    block = readme.split("#### Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    imports = [n for n in ast.parse(block).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports, "no imports found in README's Python API block"
    calls = {f"{n.value.id}.{n.attr}" for n in ast.walk(ast.parse(block))
             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    namespace: dict = {}
    for node in imports:
        exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
    missing = [c for c in sorted(calls) if c.split(".")[0] in namespace
               and not hasattr(namespace[c.split(".")[0]], c.split(".")[1])]
    assert not missing, f"README's Python API names what does not exist: {missing}"
