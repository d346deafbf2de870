"""The dependency rules of docs/architecture.md, checked on the source (AST, imports inside functions included).

* no import cycle between the modules of ``replication/``, ``kernels/`` and ``gan_tf_port/``;
* ``kernels/`` and ``gan_tf_port/`` never import ``replication``;
* code inside ``replication/`` never imports the public facades (``replication.train``,
  ``replication.experiment``) nor a package ``__init__`` that re-exports names: it imports the
  concrete module;
* an import inside a function names an optional or heavy dependency (see OPTIONAL), never a plain
  module of this repository.

The graph builder is tested on a small synthetic package first, so a broken builder cannot make
the real checks pass vacuously.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("replication", "kernels", "gan_tf_port")
#: Public entry points for users; the package's own code must import the concrete modules instead.
FACADES = {"replication.train", "replication.experiment"}
#: Modules that may be imported inside a function: optional or heavy third-party dependencies, and
#: this repository's modules that exist only to wrap one of them (importing them loads it).
OPTIONAL = (
    "cupy", "cupyx", "numba.cuda", "numba_cuda", "timm", "matplotlib", "torch.distributed.run",
    "safetensors", "huggingface_hub",
    "kernels.cupy_cuda", "kernels.numba_cuda", "replication.models.timm_backbone", "replication.report.plots",
    "gan_tf_port.grid",
)


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of ``path`` relative to ``root`` (``pkg/__init__.py`` → ``pkg``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect_modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name → file."""
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules`` (``a.b.func`` → ``a.b``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        cand = ".".join(parts[:i])
        if cand in modules:
            return cand
    return None


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(path: Path, current: str, modules: dict[str, Path]) -> list[tuple[str, bool, int]]:
    """``(imported name, inside a function?, line)`` for every import statement of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    out: list[tuple[str, bool, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(child, current, is_package)
                for a in child.names:
                    full = f"{base}.{a.name}"
                    out.append((full if _resolve(full, modules) == full else base, in_function, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return out


def build_graph(root: Path, packages: tuple[str, ...]) -> tuple[dict[str, set[str]], dict[str, list]]:
    """Edges between this repository's modules, and every import (with its place) per module."""
    modules = collect_modules(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    raw: dict[str, list] = {}
    for mod, path in modules.items():
        raw[mod] = imports_of(path, mod, modules)
        for name, _, _ in raw[mod]:
            target = _resolve(name, modules)
            if target is not None and target != mod:
                graph[mod].add(target)
    return graph, raw


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
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
            strongconnect(v)
    return cycles


# ------------------------------------------------------------------ the builder on a known package


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "def f():\n    from .c import thing\n",
        "pkg/c.py": "import pkg.a\nthing = 1\n",
        "pkg/d.py": "from pkg.sub import e\nimport os\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/e.py": "from ..d import x\n",
        "pkg/f.py": "import numpy\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_builder_finds_cycles_through_function_level_and_relative_imports(toy: Path) -> None:
    graph, raw = build_graph(toy, ("pkg",))
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}  # relative import inside a function
    assert graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.sub.e"] == {"pkg.d"}  # ..d from a subpackage
    assert graph["pkg.f"] == set()  # third-party imports are not edges
    assert ("pkg.c", True, 2) in raw["pkg.b"]
    assert sorted(find_cycles(graph)) == [["pkg.a", "pkg.b", "pkg.c"], ["pkg.d", "pkg.sub.e"]]


def test_builder_sees_no_cycle_in_a_chain() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


# ------------------------------------------------------------------------- the rules on this repo


@pytest.fixture(scope="module")
def repo_graph() -> tuple[dict[str, set[str]], dict[str, list]]:
    return build_graph(REPO, PACKAGES)


def test_no_import_cycles(repo_graph) -> None:
    graph, _ = repo_graph
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_kernels_and_gan_port_never_import_replication(repo_graph) -> None:
    _, raw = repo_graph
    bad = [(m, name, line) for m, imps in raw.items() if not m.startswith("replication")
           for name, _, line in imps if name == "replication" or name.startswith("replication.")]
    assert not bad, "\n".join(map(str, bad))


def _reexports(root: Path, modules: dict[str, Path]) -> dict[str, set[str]]:
    """For each package ``__init__`` of replication/: the names it imports from this repository."""
    out: dict[str, set[str]] = {}
    for mod, path in modules.items():
        if path.name != "__init__.py" or not mod.startswith("replication"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and _absolute(node, mod, True).startswith(PACKAGES):
                out.setdefault(mod, set()).update(a.asname or a.name for a in node.names)
    return out


def test_internal_code_imports_concrete_modules_not_facades() -> None:
    modules = collect_modules(REPO, PACKAGES)
    reexports = _reexports(REPO, modules)
    bad = []
    for mod, path in modules.items():
        if not mod.startswith("replication") or mod in FACADES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                bad += [(mod, a.name) for a in node.names if a.name in FACADES]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node, mod, path.name == "__init__.py")
                names = {a.name for a in node.names}
                if base in FACADES or names & reexports.get(base, set()) and not mod.startswith(base + "."):
                    bad.append((mod, base))
    assert not bad, "\n".join(map(str, sorted(set(bad))))


def test_function_level_imports_only_for_optional_dependencies(repo_graph) -> None:
    _, raw = repo_graph
    first_party = tuple(p + "." for p in PACKAGES)
    bad = sorted((m, name, line) for m, imps in raw.items() for name, in_function, line in imps
                 if in_function and (name.startswith(first_party) or name in PACKAGES)
                 and not name.startswith(OPTIONAL))
    assert not bad, "\n".join(map(str, bad))


#: The layers of docs/architecture.md: a module may import only from its own group or a lower layer.
#: A group is a top-level module or package of ``replication/`` (``replication.training``), or a module
#: inside a package that sits on another layer than the package (``replication.report.statistics``):
#: a module belongs to the longest group that names it or a package above it.
LAYERS = {
    "kernels": 0, "gan_tf_port": 0, "replication": 0, "replication.errors": 0, "replication.vocabulary": 0,
    "replication.console": 0,
    "replication.io_utils": 1, "replication.locking": 1, "replication.config": 1,
    "replication.data": 2, "replication.models": 2, "replication.metrics": 2,
    "replication.report.plots": 2, "replication.report.paper_table": 2, "replication.report.statistics": 2,
    "replication.inference.predictions": 3, "replication.report.gallery": 3,
    "replication.labeling": 4, "replication.training": 4, "replication.gan": 4,
    "replication.inference": 5, "replication.benchmarks": 5, "replication.gan.quality_step": 5,
    "replication.experiments": 6, "replication.gan.curve": 6, "replication.gan.diagnosis": 6,
    "replication.report": 7,
    "replication.train": 8, "replication.experiment": 8,
    "replication.commands": 9,
    "replication.cli": 10,
}


def layer_group(module: str) -> str:
    """The group of a module: ``replication.training.loop`` → ``replication.training``,
    ``replication.report.statistics`` → itself, ``kernels.ops.x`` → ``kernels``; an unknown
    ``replication.x.y`` → ``replication.x`` (which then has no layer)."""
    parts = module.split(".")
    if parts[0] != "replication" or len(parts) == 1:
        return parts[0]
    for i in range(len(parts), 1, -1):
        if ".".join(parts[:i]) in LAYERS:
            return ".".join(parts[:i])
    return ".".join(parts[:2])


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from a module to another group on the same or a higher layer."""
    return sorted((m, t) for m, targets in graph.items() for t in targets
                  if layer_group(m) != layer_group(t) and LAYERS[layer_group(t)] >= LAYERS[layer_group(m)])


def test_dependencies_point_down_the_layers(repo_graph) -> None:
    graph, _ = repo_graph
    unknown = sorted({layer_group(m) for m in graph} - set(LAYERS))
    assert not unknown, f"modules without a layer in docs/architecture.md: {unknown}"
    bad = upward_imports(graph)
    assert not bad, "\n".join(f"{m} (layer {LAYERS[layer_group(m)]}) imports {t} (layer {LAYERS[layer_group(t)]})"
                              for m, t in bad)


def test_layer_check_catches_upward_and_sideways_imports() -> None:
    graph = {"replication.metrics": {"replication.training.loop", "replication.errors"},
             "replication.training.loop": {"replication.gan.run", "replication.training.config"},
             "replication.gan.run": set(), "replication.training.config": set(), "replication.errors": set()}
    assert upward_imports(graph) == [("replication.metrics", "replication.training.loop"),
                                     ("replication.training.loop", "replication.gan.run")]


def test_layer_groups_inside_a_package() -> None:
    assert layer_group("replication.report.statistics") == "replication.report.statistics"
    assert layer_group("replication.report.page") == "replication.report"
    assert layer_group("replication.inference.predict") == "replication.inference"
    assert layer_group("replication.newthing.x") == "replication.newthing"  # no layer: the test above fails
    graph = {"replication.report.statistics": {"replication.report.table"},      # layer 2 → 7: up
             "replication.report.table": {"replication.report.statistics", "replication.report.formats"},
             "replication.report.formats": set(),
             "replication.training.loop": {"replication.inference.predictions", "replication.inference.predict"}}
    assert upward_imports(graph) == [("replication.report.statistics", "replication.report.table"),
                                     ("replication.training.loop", "replication.inference.predict")]


# ------------------------------------------------------------------------- sizes and the root

#: Most lines of a module and of a function (docs/architecture.md, "Rules that go with the layers").
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
#: What the root of ``replication/`` holds: the CLI entry, the config system, the vocabulary, errors,
#: atomic I/O, locking, the pure labeling and metrics libraries, and the two public facades.
ROOT_MODULES = {"cli", "config", "vocabulary", "errors", "io_utils", "locking", "labeling", "metrics",
                "train", "experiment"}


def _is_cuda_kernel(node: ast.AST) -> bool:
    """A Numba CUDA kernel or device function (``@cuda.jit``): one GPU thread's body, exempt from the length rule."""
    return any(ast.unparse(d).startswith("cuda.jit") for d in getattr(node, "decorator_list", ()))


def size_violations(files: dict[str, Path]) -> list[str]:
    """Modules over :data:`MAX_MODULE_LINES` lines and functions over :data:`MAX_FUNCTION_LINES` (not CUDA kernels)."""
    bad = []
    for mod, path in sorted(files.items()):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            bad.append(f"{path}: {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_cuda_kernel(node):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    bad.append(f"{path}:{node.lineno}: {mod}.{node.name} is {n} lines (at most {MAX_FUNCTION_LINES})")
    return bad


def test_size_check_on_a_known_package(tmp_path: Path) -> None:
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    files = {"long": "def f():\n" + long_body + "\n",                               # 81 lines
             "ok": "def g():\n" + "\n".join(long_body.splitlines()[1:]) + "\n",     # 80 lines
             "kernel": "@cuda.jit(cache=True)\ndef k():\n" + long_body + "\n",
             "big": "x = 1\n" * (MAX_MODULE_LINES + 1)}
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
    bad = size_violations({name: tmp_path / f"{name}.py" for name in files})
    assert len(bad) == 2
    assert bad[0].endswith(f"{MAX_MODULE_LINES + 1} lines (at most {MAX_MODULE_LINES})") and "big.py" in bad[0]
    assert "long.f is 81 lines" in bad[1]


def test_no_module_or_function_too_long() -> None:
    bad = size_violations(collect_modules(REPO, PACKAGES))
    assert not bad, "\n".join(bad)


def test_root_of_replication_holds_only_entry_points_and_shared_basics() -> None:
    root = {p.stem for p in (REPO / "replication").glob("*.py")} - {"__init__"}
    extra = sorted(root - ROOT_MODULES)
    assert not extra, f"modules at the root of replication/ that belong in a package: {extra}"
    assert len(root) <= 10

