"""The house rules of ARCHITECTURE.md, checked on the source: imports run up the layer table,
fsm/ and xmpp/ stay pure, and no two modules import each other, even indirectly (counting
imports under `if TYPE_CHECKING:`, imports inside functions, and `from pkg import module`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Bottom of the house first: a folder imports only the folders before it (and itself).
LAYERS = ["xmpp", "storage", "routing", "fsm", "features", "cluster", "actors", "web", "xmppd"]
PURE = {"xmpp", "fsm"}
IMPURE = {"asyncio", "socket", "ssl", "threading", "pykka", "redis", "sqlite3", "sqlalchemy",
          "aiohttp", "importlib", "concurrent", "selectors"}  # fmt: skip


def project_modules() -> dict[str, Path]:
    modules = {}
    for layer in LAYERS:
        for path in (ROOT / layer).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every module `path` imports, anywhere in the file."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base != name:  # `from pkg import module` runs pkg/__init__.py first
                found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in modules)  # fmt: skip
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, name, modules) for name, path in modules.items()}


def layer(module: str) -> str:
    return module.split(".")[0]


def test_imports_run_up_the_layer_table():
    wrong = []
    for module, imported in graph().items():
        for target in imported:
            above = layer(target) in LAYERS and LAYERS.index(layer(target)) > LAYERS.index(
                layer(module)
            )
            if above:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_fsm_and_xmpp_touch_no_sockets_threads_or_databases():
    wrong = [
        f"{module} imports {target}"
        for module, imported in graph().items()
        if layer(module) in PURE
        for target in imported
        if target.split(".")[0] in IMPURE
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_imports_itself_through_others():
    edges = {m: {t for t in ts if t in project_modules()} for m, ts in graph().items()}
    cycles = strongly_connected(edges)
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan: the components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_checker_sees_a_circle_and_a_wrong_way_import():
    """The rules above can fail: a made-up graph with both faults is caught."""
    assert strongly_connected({"a.x": {"a.y"}, "a.y": {"a.x"}, "a.z": set()}) == [{"a.x", "a.y"}]
    assert LAYERS.index(layer("xmppd.cli")) > LAYERS.index(layer("actors.node"))
