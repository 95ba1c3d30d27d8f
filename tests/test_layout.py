"""The codebase's shape, as a newcomer relies on it: modules of one idea each, packages by concern, edges that hold.

The engine (`tuner`) never imports the person-facing layer (`advisor`) nor textual; the app's screens never import a
command module or the CLI's reporter; no two modules import each other at import time; no module is over 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
SOURCES = sorted(p for package in ("tuner", "advisor") for p in (ROOT / package).rglob("*.py"))
ENGINE_PACKAGES = ("study", "training", "data", "scoring", "fullrun", "memory", "models", "spectrum")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in SOURCES}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The project modules a file imports: all of them, or only those run when it is imported (not inside a
    function, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if top_level_only:
        pending = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and not _type_checking(node):
                pending.extend(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                pending.extend(node.body + node.orelse + node.finalbody)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                nodes.append(node)
    else:
        nodes = list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # a submodule by its own name, else the module the names come from
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in MODULES else node.module)
    return {name for name in names if name in MODULES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: it holds two ideas, split along them"


def test_the_engine_is_in_packages_by_concern():
    for package in ENGINE_PACKAGES:
        init = ROOT / "tuner" / package / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), f"tuner/{package} says what it holds"
    loose = sorted(p.name for p in (ROOT / "tuner").glob("*.py"))
    assert len(loose) <= 10, loose  # what every package shares: errors, events, records, settings...


@pytest.mark.parametrize("path", [p for p in SOURCES if p.parts[len(ROOT.parts)] == "tuner"], ids=str)
def test_the_engine_never_imports_advisor_or_textual(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    named |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not [m for m in named if m.split(".")[0] in ("advisor", "textual", "textual_plotext")]


@pytest.mark.parametrize("path", sorted((ROOT / "advisor" / "app" / "screens").glob("*.py")), ids=lambda p: p.name)
def test_screens_import_no_command_module_nor_the_cli(path):
    imported = imports(path, top_level_only=False)
    forbidden = [m for m in imported if m.startswith("advisor.commands") or m in ("advisor.cli", "advisor.progress")]
    assert forbidden == []


def test_no_import_cycles():
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
