"""The middleware package's public surface, and its rule of using only public statekit names."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import middleware
import statekit

PACKAGE = Path(middleware.__file__).parent


def test_public_names_are_sorted_and_importable() -> None:
    assert middleware.__all__ == sorted(middleware.__all__)
    for name in middleware.__all__:
        assert getattr(middleware, name) is not None


def test_middleware_imports_only_public_statekit_names() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("statekit"):
                assert node.module == "statekit", f"{path.name} imports {node.module}"
                for alias in node.names:
                    assert alias.name in statekit.__all__, f"{path.name} imports {alias.name}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("statekit."), f"{path.name} imports {alias.name}"


def test_importing_middleware_pulls_in_no_framework() -> None:
    # aiogram and the Pyrogram family are optional: only their mounts import them
    import subprocess

    code = "import middleware, sys; print(sorted(m for m in ('aiogram', 'pyrogram', 'telethon') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
