"""The package's layers (docs/architecture.md): a lower layer never imports a higher one, and no
module imports itself back through others. Every import counts, including those made inside a
function or under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "srvd"

# Lowest first; a module may import its own layer and those before it.
LAYERS = (
    ("srvd", "srvd.errors", "srvd.wire"),
    ("srvd.config",),
    ("srvd.index",),
    ("srvd.http",),
    ("srvd.answer",),
    ("srvd.ops",),
    ("srvd.server",),
    ("srvd.xfr",),
    ("srvd.migrate",),
    ("srvd.cli", "srvd.service", "srvd.export", "srvd.signing", "srvd.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best, rank = "", -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > len(best):
                best, rank = prefix, i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return rank


def imports_of(path: Path) -> set[str]:
    """The srvd modules a file imports (a name imported from a package counts as its module
    when there is one of that name)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "srvd")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module.split(".")[0] != "srvd":
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found


FILES = sorted(PACKAGE.rglob("*.py"))
MODULES = {module_name(path): path for path in FILES}
GRAPH = {name: imports_of(path) - {name} for name, path in MODULES.items()}


def test_every_module_is_in_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module: str) -> None:
    upward = sorted(other for other in GRAPH[module] if layer_of(other) > layer_of(module))
    assert not upward, f"{module} (layer {layer_of(module)}) imports higher layers: {upward}"


def test_no_import_cycles() -> None:
    # Packages' __init__ modules count as the package; a cycle is a path back to its start.
    def reach(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for other in GRAPH.get(node, ()):
                if other == start:
                    return [*path, start]
                if other not in seen and other in GRAPH:
                    seen.add(other)
                    stack.append((other, [*path, other]))
        return None

    cycles = [cycle for name in sorted(GRAPH) if (cycle := reach(name))]
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from srvd.server.responder import Responder\n")
    assert "srvd.server.responder" in imports_of(bad)
    assert layer_of("srvd.server.responder") > layer_of("srvd.index.model")


def test_every_package_is_installed() -> None:
    """pyproject.toml lists the packages by hand: a layer missing there is missing from a
    non-editable install (``pip install .``, the container) while editable tests pass."""
    import tomllib

    listed = set(
        tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    )
    packages = {module_name(path) for path in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"not in pyproject.toml's packages: {sorted(packages - listed)}"
