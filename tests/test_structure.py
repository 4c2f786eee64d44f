"""The package's shape, read from its source with ``ast`` (nothing is imported).

- no import cycle between chunkseg modules, imports inside function bodies included;
- no command module (``pipeline/<name>.py`` with a ``run_*`` function) imports another;
- layers import downwards only: ``ops`` nothing above it, ``engine`` no pipeline/cli;
- no function body longer than 60 lines;
- the package root holds only ``__init__``, ``__main__``, ``errors`` and ``defaults``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "chunkseg"
MAX_BODY_LINES = 60
ROOT_MODULES = {"__init__.py", "__main__.py", "errors.py", "defaults.py"}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """chunkseg modules ``name`` imports anywhere in its source (function bodies too)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = _package_of(name, path).split(".")
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            # ``from pkg import mod`` imports the module pkg.mod where there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the chunkseg modules it imports (parent packages are not implied)."""
    mods = _modules(root)
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def command_modules(root: Path = ROOT) -> set[str]:
    """``chunkseg.pipeline.<name>`` modules (not private) that define a ``run_*`` function."""
    out = set()
    for path in sorted((root / "pipeline").glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name.startswith("run_") for n in tree.body):
            out.add(_module_name(path, root))
    return out


def long_functions(root: Path = ROOT, limit: int = MAX_BODY_LINES) -> list[str]:
    """``module:function (N lines)`` for every body (after its docstring) over ``limit``."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            has_doc = (len(body) > 1 and isinstance(body[0], ast.Expr)
                       and isinstance(body[0].value, ast.Constant)
                       and isinstance(body[0].value.value, str))
            first = body[1 if has_doc else 0].lineno
            n = node.end_lineno - first + 1
            if n > limit:
                out.append(f"{_module_name(path, root)}:{node.name} ({n} lines)")
    return out


# ------------------------------------------------------------------ the checks have teeth
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "chunkseg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "chunkseg"


def test_checks_find_a_function_body_cycle_a_command_import_and_a_long_function(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "import chunkseg.b\n",
        "b.py": "def f():\n    from chunkseg import a\n    return a\n",
        "c.py": "from . import d\n",
        "d.py": "",
        "pipeline/__init__.py": "",
        "pipeline/one.py": "def run_one():\n    from chunkseg.pipeline.two import run_two\n",
        "pipeline/two.py": "def run_two():\n    pass\n",
        "pipeline/_shared.py": "x = 1\n",
        "long.py": "def g():\n    '''doc'''\n" + "    x = 1\n" * 61,
    })
    graph = import_graph(pkg)
    assert graph["chunkseg.c"] == {"chunkseg.d"}  # relative import resolved
    assert find_cycles(graph) == [["chunkseg.a", "chunkseg.b"]]
    assert command_modules(pkg) == {"chunkseg.pipeline.one", "chunkseg.pipeline.two"}
    assert "chunkseg.pipeline.two" in graph["chunkseg.pipeline.one"]
    assert long_functions(pkg) == ["chunkseg.long:g (61 lines)"]


# ------------------------------------------------------------------ the package
def test_no_import_cycle_including_function_body_imports():
    graph = import_graph()
    assert len(graph) > 50  # the scan sees the package
    assert find_cycles(graph) == []


def test_no_command_module_imports_another():
    commands = command_modules()
    assert {"chunkseg.pipeline.predict", "chunkseg.pipeline.acme",
            "chunkseg.pipeline.evaluate", "chunkseg.pipeline.segment"} <= commands
    graph = import_graph()
    offenders = {c: sorted(graph[c] & commands) for c in commands if graph[c] & commands}
    assert offenders == {}


@pytest.mark.parametrize("layer, forbidden", [
    ("ops", ("engine", "pipeline", "cli", "workflows", "model", "io", "plots")),
    ("io", ("engine", "pipeline", "cli", "workflows", "model")),
    ("engine", ("pipeline", "cli", "workflows")),
    ("model", ("engine", "pipeline", "cli", "workflows")),
    ("pipeline", ("cli", "workflows")),
    ("synth", ("engine", "pipeline", "cli", "workflows", "model", "io")),
])
def test_layers_import_downwards_only(layer, forbidden):
    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.split(".")[1:2] and d.split(".")[1] in forbidden)
           for m, deps in graph.items() if m.startswith(f"chunkseg.{layer}")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_synth_parameters_import_nothing_of_synth():
    assert not {d for d in import_graph()["chunkseg.synth.params"] if d.startswith("chunkseg.synth")}


def test_no_function_body_over_60_lines():
    assert long_functions() == []


def test_package_root_holds_only_init_main_errors_defaults():
    files = {p.name for p in ROOT.glob("*.py")}
    assert files <= ROOT_MODULES and {"__init__.py", "__main__.py", "errors.py"} <= files


#: commands that run no dask work: no client to take
NO_DASK_COMMANDS = {"run_train": "tf.data", "run_crops": "a thread pool of crop reads",
                    "run_report_training": "one figure from a JSON history"}


def test_every_dask_command_takes_client_none_and_opens_no_cluster():
    seen = set()
    for path in [*sorted((ROOT / "pipeline").glob("*.py")), ROOT / "workflows" / "demo.py"]:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("run_")):
                continue
            seen.add(node.name)
            kw = dict(zip([a.arg for a in node.args.kwonlyargs], node.args.kw_defaults))
            if node.name in NO_DASK_COMMANDS:
                assert "client" not in kw, node.name
                continue
            assert "client" in kw and isinstance(kw["client"], ast.Constant) \
                and kw["client"].value is None, f"{node.name} must take client=None"
            assert "scheduler" not in kw, f"{node.name}: the CLI opens clusters, not run_*"
        calls = {n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
                 for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not calls & {"get_client", "LocalCluster", "Client"}, path.name
    assert {"run_predict", "run_acme", "run_demo", "run_segment"} <= seen
