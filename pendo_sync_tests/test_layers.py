"""The layers hold: each module imports only from its own layer or the ones below, and nothing below the
Dagster layer imports Dagster (the engine can be tested and benchmarked alone)."""

from __future__ import annotations

import ast
from pathlib import Path

import pendo_sync

PACKAGE = Path(pendo_sync.__file__).resolve().parent
# Lowest first: a module may import from its layer and those before it.
LAYERS = [
    ("errors", "outcome"),
    ("pendo.types", "pendo.client"),
    ("variables", "secrets"),
    ("config", "config_values", "pendo.emulator"),
    ("warehouse",),
    ("state",),
    ("engine",),
    ("settings",),
    ("dagster", "definitions", "defs"),
    ("demo", "cli"),
]
DAGSTER_LAYER = LAYERS.index(("dagster", "definitions", "defs"))


def layer_of(module: str) -> int:
    name = module.removeprefix("pendo_sync.")
    for rank, members in enumerate(LAYERS):
        if any(name == m or name.startswith(m + ".") for m in members):
            return rank
    raise AssertionError(f"pendo_sync.{name} is in no layer of {__file__}: add it to LAYERS")


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "pendo_sync"}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "pendo_sync" and imports_of(path):  # a package's docstring-only __init__ is in no layer
            out.append((name, path))
    return out


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = []
    for name, path in modules():
        for imported in imports_of(path):
            if (
                imported.startswith("pendo_sync.")
                and imported != "pendo_sync"
                and layer_of(imported) > layer_of(name)
            ):
                upward.append(f"{name} imports {imported}")
    assert upward == []


def test_nothing_below_the_dagster_layer_imports_dagster() -> None:
    below = [
        f"{name} imports {imported}"
        for name, path in modules()
        if layer_of(name) < DAGSTER_LAYER
        for imported in imports_of(path)
        if imported == "dagster" or imported.startswith(("dagster.", "dagster_"))
    ]
    assert below == []


def test_no_module_is_longer_than_400_lines() -> None:
    long = {name: n for name, path in modules() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}
