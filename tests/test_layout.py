"""The package tree is the architecture: each stage imports only from its own stage or the ones
below it, and no modules import each other in a circle (docs/DESIGN.md draws the same order)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "web_tool"

#: lowest first; a module belongs to the stage of the longest prefix that names it
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("shared", ("web_tool", "web_tool.errors", "web_tool.paths", "web_tool.db", "web_tool.geometry")),
    ("imagery", ("web_tool.imagery", "web_tool.DataLoader")),
    ("models", ("web_tool.ServerModels",)),
    ("rendering", ("web_tool.rendering",)),
    ("learning", ("web_tool.learning",)),
    ("mapping", ("web_tool.mapping",)),
    ("validation", ("web_tool.validate",)),
    ("http", ("web_tool.http",)),
    (
        "entry points",
        (
            "web_tool.server",
            "web_tool.startup",
            "web_tool.batch",
            "web_tool.validate.__main__",
            "web_tool.demo",
        ),
    ),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(path: Path) -> set[str]:
    """The web_tool modules `path` imports anywhere in it (inside functions and TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "web_tool":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "web_tool"}
    return found - {module_name(path)}


def stage(module: str) -> int:
    matches = [
        (len(prefix), i)
        for i, (_, prefixes) in enumerate(STAGES)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


GRAPH = {name: imported(path) for name, path in MODULES.items()}


def test_every_import_names_a_module_that_exists():
    assert {(m, d) for m, deps in GRAPH.items() for d in deps if d not in MODULES} == set()


def test_no_module_imports_from_a_stage_above_its_own():
    upward = [
        f"{m} ({STAGES[stage(m)][0]}) imports {d} ({STAGES[stage(d)][0]})"
        for m, deps in GRAPH.items()
        for d in deps
        if d in MODULES and stage(d) > stage(m)
    ]
    assert upward == []


def test_no_import_cycles():
    cycles, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module) :] + [module])
            return
        if module in done:
            return
        for dep in sorted(GRAPH.get(module, ())):
            visit(dep, path + [module])
        done.add(module)

    for module in sorted(GRAPH):
        visit(module, [])
    assert cycles == []


@pytest.mark.parametrize(
    "card_name", ["server.py", "DataLoader.py", "ServerModels", "endpoints.js", "index.html"]
)
def test_the_design_cards_names_stay(card_name):
    assert (PACKAGE / card_name).exists()


def test_every_request_model_lives_in_http_schemas():
    """openapi.py and the routes read request models from one module, never from each other."""
    from pydantic import BaseModel

    import web_tool.http.schemas as schemas

    models = {
        name for name, obj in vars(schemas).items() if isinstance(obj, type) and issubclass(obj, BaseModel)
    }
    elsewhere = []
    for name, path in MODULES.items():
        if not name.startswith("web_tool.http.") or name == "web_tool.http.schemas":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id in models | {"BaseModel"} for b in node.bases
            ):
                elsewhere.append(f"{name}.{node.name}")
    assert elsewhere == []
