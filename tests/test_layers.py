"""The package holds to its import layering (src/shrinknet/_layers.py): every module placed, no
import from a higher layer, the library never importing shrinknet.paper, no import cycle.

The source is read with ``ast``, not imported: every ``import`` and ``from ... import`` counts,
inside functions and under ``if TYPE_CHECKING:`` too, and so does ``importlib.import_module`` /
``require`` of a constant name. The checker takes a source root, so that the tests below can also
show it catching a forbidden import in a tree made for the purpose.
"""
from __future__ import annotations

import ast
import fnmatch
import runpy
import shutil
import textwrap
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"
DATA = runpy.run_path(str(SRC / "shrinknet" / "_layers.py"))

#: calls that import the module named by their first argument
IMPORTING_CALLS = {"import_module", "__import__", "require"}
#: a module-level dict of this name maps lazily loaded names to the modules they come from (PEP 562)
LAZY = "_LAZY"


# ---- the checker -------------------------------------------------------------------------------

def find_modules(src: Path, package: str) -> dict[str, Path]:
    """{dotted name: file} of every .py file of `package` under `src` (a package by its __init__)."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name a relative import of `module` refers to."""
    if not level:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _imported(module: str, path: Path, modules: dict) -> list[tuple[str, int]]:
    """(module imported, line) for every import statement or importing call of one file."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node.level, node.module)
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            # `from pkg import sub` imports pkg.sub; `from pkg import name` imports pkg's __init__
            out += [(s, node.lineno) for s in subs]
            if len(subs) < len(node.names):
                out.append((target, node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "id", getattr(node.func, "attr", None)) in IMPORTING_CALLS):
            out.append((node.args[0].value, node.lineno))
        elif (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == LAZY for t in node.targets)
              and isinstance(node.value, ast.Dict)):
            # a package's lazy names (PEP 562): {name: module it is loaded from, relative to the package}
            out += [(_absolute(module, is_package, 1, v.value), node.lineno) for v in node.value.values
                    if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return out


def import_graph(src: Path, package: str) -> dict[str, dict[str, int]]:
    """{importer: {imported: first line}} over the package's own modules.

    Importing ``a.b.c`` runs ``a.b``'s ``__init__`` first: that counts as an import of ``a.b`` too,
    except for a module inside ``a.b`` (whose package is already being imported)."""
    modules = find_modules(src, package)
    graph = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for name, line in _imported(module, path, modules):
            if name in modules and name != module:
                edges.setdefault(name, line)
            parts = name.split(".")
            for k in range(len(parts) - 1, 0, -1):       # the packages above it, up to the importer's own
                parent = ".".join(parts[:k])
                if parent == module or module.startswith(parent + "."):
                    break
                if parent in modules:
                    edges.setdefault(parent, line)
    return graph


def _short(module: str, package: str) -> str:
    """A module's name as LAYERS writes it."""
    return "__init__" if module == package else module[len(package) + 1:]


def _matches(short: str, pattern: str) -> bool:
    if pattern.endswith(".*"):
        return short == pattern[:-2] or short.startswith(pattern[:-1])
    return fnmatch.fnmatchcase(short, pattern)


def _cycles(graph: dict[str, dict[str, int]]) -> list[tuple[list[str], set[str]]]:
    """For every set of modules that import each other in a circle (a strongly connected component
    of two or more): a shortest cycle through its first module (repeated at the end), and the set."""
    index, low, stack, on, comps = {}, {}, [], set(), []

    def visit(v):                                     # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            comps.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for comp in comps:
        if len(comp) < 2:                             # (the graph has no module importing itself)
            continue
        start = min(comp)
        paths, frontier, found = {start: [start]}, [start], None      # breadth first: the shortest way back
        while found is None:
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start and found is None:
                        found = paths[v] + [start]
                    elif w in comp and w not in paths:
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
            frontier = nxt
        out.append((found, comp))
    return out


def check(src, layers, allowed=None, application=None, package: str = "shrinknet",
          paper: str = "paper") -> list[tuple[str, str]]:
    """Every breach of the layering in the source tree under `src`, as (kind, message).

    kinds: "unplaced" (a module in no layer), "ambiguous" (in two), "stale" (a name of `layers` or
    `allowed` that no longer matches anything), "upward" (an import from a higher layer that
    `allowed` does not name), "paper" (a library module importing ``package.paper``), "cycle".
    `application` names the layer that may import the paper (default: the last)."""
    src, allowed = Path(src), dict(allowed or {})
    application = layers[-1][0] if application is None else application
    graph = import_graph(src, package)
    files = find_modules(src, package)
    problems = []

    layer_of = {}
    for module in graph:
        short = _short(module, package)
        found = [i for i, (_, patterns) in enumerate(layers) if any(_matches(short, p) for p in patterns)]
        if not found:
            problems.append(("unplaced", f"{short} ({files[module].relative_to(src)}) is in no layer of "
                                         f"_layers.LAYERS: add it to the one it belongs to"))
        elif len(found) > 1:
            problems.append(("ambiguous", f"{short} is in the layers {', '.join(repr(layers[i][0]) for i in found)}: "
                                          f"expected exactly one"))
        else:
            layer_of[module] = found[0]
    shorts = [_short(m, package) for m in graph]
    for name, patterns in layers:
        for p in patterns:
            if not any(_matches(s, p) for s in shorts):
                problems.append(("stale", f"layer {name!r} lists {p!r}, which matches no module"))

    used = set()
    for module, edges in sorted(graph.items()):
        where = files[module].relative_to(src)
        for target, line in sorted(edges.items(), key=lambda e: e[1]):
            pair = (_short(module, package), _short(target, package))
            if pair in allowed:
                used.add(pair)
                continue
            low, high = layer_of.get(module), layer_of.get(target)
            if low is not None and high is not None and high > low:
                problems.append(("upward", f"{where}:{line}: {pair[0]} (layer {low}, {layers[low][0]!r}) imports "
                                           f"{pair[1]} (layer {high}, {layers[high][0]!r}) from a higher layer"))
            in_app = low is not None and layers[low][0] == application
            if not in_app and _matches(pair[1], paper + ".*"):
                problems.append(("paper", f"{where}:{line}: {pair[0]}, part of the library, imports {pair[1]}: "
                                          f"only the application ({application!r}) may import {package}.{paper}"))
    for pair in sorted(set(allowed) - used):
        problems.append(("stale", f"ALLOWED names {pair[0]} -> {pair[1]}, an import no longer made"))

    for cycle, knot in _cycles(graph):
        steps = " -> ".join(f"{_short(a, package)} ({files[a].relative_to(src)}:{graph[a][b]})"
                            for a, b in zip(cycle, cycle[1:]))
        more = sorted(_short(m, package) for m in knot - set(cycle))
        problems.append(("cycle", f"import cycle: {steps} -> {_short(cycle[0], package)}"
                                  + (f"; in cycles with them: {', '.join(more)}" if more else "")))
    return problems


def _real():
    return check(SRC, DATA["LAYERS"], DATA["ALLOWED"], DATA["APPLICATION"])


def _kinds(problems, kind):
    return [m for k, m in problems if k == kind]


# ---- the package ---------------------------------------------------------------------------------

def test_every_module_is_in_exactly_one_layer():
    problems = _real()
    assert [m for k, m in problems if k in ("unplaced", "ambiguous", "stale")] == []


def test_no_module_imports_from_a_higher_layer():
    assert _kinds(_real(), "upward") == []


def test_the_library_never_imports_the_paper():
    assert _kinds(_real(), "paper") == []


def test_no_import_cycle():
    assert _kinds(_real(), "cycle") == []


def test_the_graph_is_read_as_python_imports():
    """Relative imports resolved, function-local and package-`__init__` imports read."""
    g = import_graph(SRC, "shrinknet")
    assert "shrinknet.paper.data" in g["shrinknet.cli"]                 # inside cmd_prune
    assert "shrinknet.attention" in g["shrinknet.units.heads"]          # inside a method
    assert "shrinknet.oracle.kernel" in g["shrinknet.metrics"]          # from .oracle import kernel
    assert "shrinknet.oracle" in g["shrinknet.metrics"]                 # ... which runs oracle/__init__
    assert {"shrinknet.criteria._registry", "shrinknet.criteria.taylor"} <= set(g["shrinknet.criteria"])
    assert "shrinknet" in g["shrinknet.cli"]                            # from . import __version__
    assert "shrinknet" not in g["shrinknet.derivatives"]                # from . import distributed


# ---- the checker catches what it should ------------------------------------------------------------

def _copy_of_the_package(tmp_path) -> Path:
    for path in (SRC / "shrinknet").rglob("*.py"):
        dest = tmp_path / path.relative_to(SRC)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return tmp_path


def _add(tmp_path, module_file: str, text: str):
    path = tmp_path / "shrinknet" / module_file
    path.write_text(path.read_text() + "\n\n" + textwrap.dedent(text))


def test_a_library_module_importing_the_paper_fails(tmp_path):
    _copy_of_the_package(tmp_path)
    _add(tmp_path, "gating.py", """
        def figure():
            from .paper import plots
            return plots
    """)
    problems = check(tmp_path, DATA["LAYERS"], DATA["ALLOWED"], DATA["APPLICATION"])
    n = len((tmp_path / "shrinknet" / "gating.py").read_text().splitlines()) - 1
    upward, paper = _kinds(problems, "upward"), _kinds(problems, "paper")
    level = [name for name, _ in DATA["LAYERS"]].index("models")
    assert len(upward) == 2 and all(m.startswith(f"shrinknet/gating.py:{n}: gating (layer {level}") for m in upward)
    assert {m.split(" imports ")[1].split(" ")[0] for m in upward} == {"paper", "paper.plots"}
    assert sorted(paper) == sorted(f"shrinknet/gating.py:{n}: gating, part of the library, imports {m}: only the "
                                   f"application ('application') may import shrinknet.paper" for m in ("paper", "paper.plots"))
    # and a cycle, since the paper's figures import results, which import the context, which imports gating
    cycles = _kinds(problems, "cycle")
    assert len(cycles) == 1 and f" -> gating (shrinknet/gating.py:{n}) -> paper.plots (" in cycles[0]
    assert [k for k, _ in problems if k not in ("upward", "paper", "cycle")] == []


def test_an_import_of_the_package_init_for_its_version_is_a_cycle(tmp_path):
    """What checkpoint.py once did: `from . import __version__` inside a function."""
    _copy_of_the_package(tmp_path)
    _add(tmp_path, "checkpoint.py", """
        def old_versions():
            from . import __version__
            return __version__
    """)
    problems = check(tmp_path, DATA["LAYERS"], DATA["ALLOWED"], DATA["APPLICATION"])
    cycles = _kinds(problems, "cycle")
    assert len(cycles) == 1 and cycles[0].startswith("import cycle: __init__ (shrinknet/__init__.py:")
    assert "-> checkpoint (shrinknet/checkpoint.py:" in cycles[0] and cycles[0].split(";")[0].endswith("-> __init__")
    assert len(_kinds(problems, "upward")) == 1


def test_a_new_module_must_be_placed(tmp_path):
    _copy_of_the_package(tmp_path)
    (tmp_path / "shrinknet" / "quotas").mkdir()
    (tmp_path / "shrinknet" / "quotas" / "__init__.py").write_text("from ..context import evaluate\n")
    problems = check(tmp_path, DATA["LAYERS"], DATA["ALLOWED"], DATA["APPLICATION"])
    assert problems == [("unplaced", "quotas (shrinknet/quotas/__init__.py) is in no layer of "
                                     "_layers.LAYERS: add it to the one it belongs to")]
    layers = [(name, patterns + (["quotas.*"] if name == "operations" else []))
              for name, patterns in DATA["LAYERS"]]
    assert check(tmp_path, layers, DATA["ALLOWED"], DATA["APPLICATION"]) == []


def _tree(tmp_path, files: dict) -> Path:
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


LAYERS = [("low", ["low", "sub.*"]), ("high", ["high", "util", "__init__"]), ("app", ["paper.*", "cli"])]
CLEAN = {"__init__.py": "from .high import h\n", "low.py": "import os\n", "sub/__init__.py": "from . import a\n",
         "sub/a.py": "from ..low import os\nfrom . import b\n", "sub/b.py": "",
         "high.py": "from . import low\nfrom .sub import a\nh = 1\n",
         "util.py": "", "paper/__init__.py": "", "paper/fig.py": "import pkg.high\n", "cli.py": "from .paper import fig\n"}


def test_a_clean_synthetic_tree_passes(tmp_path):
    assert check(_tree(tmp_path, CLEAN), LAYERS, package="pkg") == []


def test_every_kind_of_breach_is_reported(tmp_path):
    files = {**CLEAN,
             "low.py": "import os\n\ndef f():\n    from pkg import high\n",           # upward, function-local
             "sub/a.py": "from . import b\n",                                          # a cycle in a layer,
             "sub/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n",  # read as one
             "new.py": "",
             "high.py": "from . import low\nfrom .sub import a\nfrom .paper import fig\nh = 1\n"}
    problems = check(_tree(tmp_path, files), LAYERS, {("cli", "gone"): "no such import"}, package="pkg")
    assert sorted(problems) == sorted([
        ("unplaced", "new (pkg/new.py) is in no layer of _layers.LAYERS: add it to the one it belongs to"),
        ("upward", "pkg/low.py:4: low (layer 0, 'low') imports high (layer 1, 'high') from a higher layer"),
        ("upward", "pkg/high.py:3: high (layer 1, 'high') imports paper (layer 2, 'app') from a higher layer"),
        ("upward", "pkg/high.py:3: high (layer 1, 'high') imports paper.fig (layer 2, 'app') from a higher layer"),
        ("paper", "pkg/high.py:3: high, part of the library, imports paper: only the application ('app') may "
                  "import pkg.paper"),
        ("paper", "pkg/high.py:3: high, part of the library, imports paper.fig: only the application ('app') "
                  "may import pkg.paper"),
        ("stale", "ALLOWED names cli -> gone, an import no longer made"),
        ("cycle", "import cycle: sub.a (pkg/sub/a.py:1) -> sub.b (pkg/sub/b.py:3) -> sub.a"),
        ("cycle", "import cycle: high (pkg/high.py:1) -> low (pkg/low.py:4) -> high; in cycles with them: "
                  "paper.fig"),
    ])


def test_a_submodule_importing_a_name_from_its_package_init_is_a_cycle(tmp_path):
    """What criteria/ once did: __init__ imports the built-ins, which import its registry."""
    files = {**CLEAN, "sub/__init__.py": "REGISTRY = {}\nfrom . import a\n", "sub/b.py": "from . import REGISTRY\n"}
    problems = check(_tree(tmp_path, files), LAYERS, package="pkg")
    assert problems == [("cycle", "import cycle: sub (pkg/sub/__init__.py:2) -> sub.a (pkg/sub/a.py:2) -> "
                                  "sub.b (pkg/sub/b.py:1) -> sub")]


def test_allowed_lets_one_named_import_through(tmp_path):
    files = {**CLEAN, "low.py": "import importlib\nimportlib.import_module('pkg.util')\n"}
    _tree(tmp_path, files)
    assert [k for k, _ in check(tmp_path, LAYERS, package="pkg")] == ["upward"]
    assert check(tmp_path, LAYERS, {("low", "util"): "the reason, written down"}, package="pkg") == []


def test_a_module_in_two_layers_is_refused(tmp_path):
    layers = [(name, patterns + (["util"] if name == "low" else [])) for name, patterns in LAYERS]
    assert check(_tree(tmp_path, CLEAN), layers, package="pkg") == [
        ("ambiguous", "util is in the layers 'low', 'high': expected exactly one")]
