"""The house is one-way: every import, including those inside functions, points down.

Packages, top to bottom: cli -> reproduce -> solvers -> models -> port. Inside a package its
``verbs`` (and the ``*_verb``/``*_verbs`` modules its verbs are split into) come first, then its ``__init__`` where it re-exports (one that imports nothing of
fcn_port, like port's, is a leaf). Inside port the tools (verbs, parity, coord_map, surgery)
sit above net, net above layers, layers above formats, formats above fileio; ``errors`` and
``lazy`` (the packages' import-on-first-use helper) are leaves anyone may import. Within one rank any import is allowed as long as the whole module graph
has no cycle, so a function-level import cannot hide one.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("port", "models", "solvers", "reproduce")
SKIP = {"port/formats/proto/caffe_pb2.py", "port/formats/proto/generate.py"}


def _module(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["fcn_port"] + parts)


def _sources():
    files = [ROOT / "__init__.py", ROOT / "cli.py", ROOT / "hubconf.py"]
    for pkg in PACKAGES:
        files += sorted((ROOT / pkg).rglob("*.py"))
    return {_module(f): f for f in files if f.relative_to(ROOT).as_posix() not in SKIP}


MODULES = _sources()


def _is_package(name):
    return (ROOT / Path(*name.split(".")[1:]) / "__init__.py").exists() or name == "fcn_port"


def _targets(name, path):
    """Every fcn_port module ``name`` imports, at any depth of its code."""
    package = name if _is_package(name) else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fcn_port"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("fcn_port"):
                mod = node.module
            else:
                continue
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES]
            found.update(subs or [mod])
            if subs and len(subs) < len(node.names):
                found.add(mod)
    return {t for t in found if t in MODULES and t != name}


GRAPH = {name: _targets(name, path) for name, path in MODULES.items()}


def rank(name):
    """(package rank, rank inside the package): an import must not go to a higher pair."""
    parts = name.split(".")[1:]
    if not parts:
        return (-1, 0)                                         # fcn_port: the version only
    if parts[0] in ("cli", "hubconf"):
        return (9, 0)
    pkg = PACKAGES.index(parts[0]) + 1
    rest = parts[1:]
    if rest in (["errors"], ["lazy"]) or (not rest and not GRAPH[name]):
        return (0, 0)                                 # port.errors and .lazy, an __init__ of data
    if not rest:
        return (pkg, 8)                                        # a package's facade: re-exports
    if rest[0] == "verbs" or rest[0].endswith(("_verb", "_verbs")):
        return (pkg, 9)
    if parts[0] == "port":
        return (pkg, {"fileio": 1, "formats": 2, "layers": 3, "net": 4}.get(rest[0], 5))
    if parts[0] == "models":
        return (pkg, 2 if rest[0] == "deploy" else 1)
    return (pkg, 1)


def test_the_graph_is_read():
    assert "fcn_port.port.net" in GRAPH["fcn_port.port.parity"]
    assert "fcn_port.port.formats.caffemodel" in GRAPH["fcn_port.port.net"]  # inside a method
    assert len(MODULES) > 60


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    up = sorted(t for t in GRAPH[name] if rank(t) > rank(name))
    assert not up, f"{name} {rank(name)} imports modules above it: " + \
        ", ".join(f"{t} {rank(t)}" for t in up)


def test_no_import_cycle():
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for t in sorted(GRAPH[n]):
            if state.get(t) == "open":
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[n] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long
