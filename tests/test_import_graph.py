"""No import circles in ``statekit`` or ``middleware``, counting imports inside functions too (a
circle that works only because one import is deferred is still a circle); ``if TYPE_CHECKING:``
imports are left out, as they never run. Also: importing statekit and opening ``memory://``
imports neither redis-py nor aiosqlite."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("statekit", "middleware")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def import_graph() -> dict[str, set[str]]:
    """Module -> the statekit / middleware modules it imports (anywhere in its code)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if _type_checking_only(node, parents):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (as a list of modules, first repeated last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_deferred_imports() -> None:
    graph = import_graph()
    assert "statekit.storage.base" in graph["statekit.storage.memory"]
    assert "statekit.storage.redis._client" in graph["statekit.storage.redis._storage"]


def test_no_import_circles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_url_module_imports_no_backend() -> None:
    imported = import_graph()["statekit.storage.url"]
    assert not {m for m in imported if m.startswith(("statekit.storage.redis", "statekit.storage.sqlite", "statekit.storage.memory"))}


def test_memory_storage_needs_no_driver() -> None:
    code = (
        "import sys, statekit\n"
        "statekit.open_storage('memory://')\n"
        "print(sorted(m for m in ('redis', 'aiosqlite') if m in sys.modules))\n"
        "statekit.open_storage('redis://127.0.0.1:1/0')\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["[]", "True"]


# statekit's internal fast paths of the storage layer, used by the FSM and session layers (they
# fall back to public operations for storages without them); no other private reach.
ALLOWED_PRIVATE = {
    ("statekit.fsm._timers", "statekit.storage._fastpath"),
    ("statekit.fsm._writer", "statekit.storage._fastpath"),
    ("statekit.session.store", "statekit.storage._fastpath"),
}


def _owner(module: str) -> str | None:
    """The package a private module belongs to (``a.b._c.d`` -> ``a.b``), None if public."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:i])
    return None


def test_no_private_module_is_imported_from_another_package() -> None:
    reach = set()
    for source, targets in import_graph().items():
        for target in targets:
            owner = _owner(target)
            if owner is not None and source != owner and not source.startswith(owner + "."):
                reach.add((source, target))
    assert reach <= ALLOWED_PRIVATE, sorted(reach - ALLOWED_PRIVATE)
