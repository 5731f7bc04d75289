"""``__all__`` of ``statekit`` and of each public module says exactly what is public (httpx's
``test_exported_members`` is the model): every name it lists exists, it is sorted, and every
public name the module defines at top level (class, function, constant, type alias) is in it;
anything else is private by a leading underscore."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import middleware
import statekit

# imported only on demand by the package (see statekit/__init__.py): listed, defined lazily
LAZY = {"statekit": {"RedisStorage", "SQLiteStorage"}, "statekit.storage": {"RedisStorage", "SQLiteStorage"}}


def _public_modules() -> list[str]:
    names = ["statekit", "middleware"]
    for package in (statekit, middleware):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return sorted(names)


NOT_API = ("TypeVar", "ParamSpec", "getLogger")  # type variables and loggers are no API


def _defined(path: Path) -> set[str]:
    """Public names a module's source defines at top level (imports, type variables and
    loggers excluded)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            if isinstance(node.value, ast.Call) and ast.unparse(node.value.func).endswith(NOT_API):
                continue
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", _public_modules())
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert list(exported) == sorted(exported), f"{name}.__all__ is not sorted"
    for member in exported:
        assert hasattr(module, member), f"{name}.__all__ lists {member!r}, which it lacks"
    path = Path(module.__file__ or "")
    unlisted = _defined(path) - set(exported)
    assert not unlisted, f"{name} defines public {sorted(unlisted)} missing from __all__"


def test_package_root_exports_the_backends_lazily() -> None:
    for name, members in LAZY.items():
        module = importlib.import_module(name)
        assert members <= set(module.__all__) and members <= set(dir(module))
    assert statekit.RedisStorage.__name__ == "RedisStorage"
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        statekit.Nope  # noqa: B018
