"""The README's two set-up commands.

* The first code block of the README must stay exactly the two commands CI and users run.
* ``test_first_command_offline`` runs the first command's steps in a fresh virtual environment
  without the network: ``pip install`` gets ``--no-deps --no-build-isolation --no-index`` and the
  dependencies come from this test environment through a ``.pth`` file; then ``statekit demo``
  runs from that environment (with ``--users 20`` to stay quick).
* ``test_readme_commands_verbatim`` runs both commands exactly as written (it needs PyPI and runs
  the whole test suite again, so it is opt-in: ``STATEKIT_README_TEST=1``). CI runs
  ``statekit demo`` from a fresh ``pip install`` on every build anyway (``.ci/run``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install . && statekit demo",
    "python3 -m venv .venv-test && . .venv-test/bin/activate "
    "&& pip install -c .ci/constraints.txt -e '.[dev]' && python -m pytest -n 2",
]


def readme_setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```bash\n(.*?)```", text, re.S)
    assert match, "README.md has no ```bash block"
    return match.group(1).strip().splitlines()


def test_readme_setup_block_is_unchanged() -> None:
    assert readme_setup_commands() == SETUP


def _copy_project(dest: Path, *, with_tests: bool) -> None:
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", ".ci/constraints.txt"):
        (dest / name).parent.mkdir(exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for pkg in ("statekit", "middleware") + (("tests", "examples") if with_tests else ()):
        if (ROOT / pkg).exists():
            shutil.copytree(ROOT / pkg, dest / pkg, ignore=ignore)


def _can_build_offline() -> bool:
    """pip, and a setuptools that can build a wheel (>= 70.1, or any with ``wheel``)."""
    if importlib.util.find_spec("pip") is None:
        return False
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    if importlib.util.find_spec("wheel") is not None:
        return True
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (70, 1)


@pytest.mark.slow
@pytest.mark.skipif(
    not _can_build_offline(),
    reason="building statekit offline needs pip and setuptools>=70.1 (or wheel) in this environment",
)
def test_first_command_offline(tmp_path: Path) -> None:
    project = tmp_path / "project"
    _copy_project(project, with_tests=False)
    purelib = sysconfig.get_paths()["purelib"]
    script = f"""
set -e
{sys.executable} -m venv --without-pip .venv
. .venv/bin/activate
site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo '{purelib}' > "$site/_statekit_test_parent.pth"
python -m pip install -q --no-deps --no-build-isolation --no-index .
cd "{tmp_path}"
python -c 'import statekit, sys; sys.exit(0 if "/.venv/" in statekit.__file__ else 1)'
statekit demo --users 20
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        ["bash", "-c", script], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "conversations completed  20 this run" in proc.stdout
    assert (tmp_path / "statekit-demo.db").is_file()


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("STATEKIT_README_TEST") != "1",
    reason="runs the README's commands verbatim (needs PyPI, runs the suite again): "
    "set STATEKIT_README_TEST=1",
)
def test_readme_commands_verbatim(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("STATEKIT_README_TEST")  # the suite run by the second command must not recurse
    for n, command in enumerate(readme_setup_commands()):
        project = tmp_path / f"run{n}"
        _copy_project(project, with_tests=True)
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        assert proc.returncode == 0, (command, proc.stdout[-4000:], proc.stderr[-4000:])


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md", "docs/index.md"])
def test_python_snippets_compile_and_name_real_things(doc: str) -> None:
    """Every Python block parses, and every name it imports from statekit, middleware or the
    frameworks exists (the quickstarts use the real adapter names)."""
    import ast
    import importlib

    for block in _python_blocks(ROOT / doc):
        tree = ast.parse(block)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{doc}: {node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _prose(path: Path) -> str:
    """The Markdown of ``path`` without its fenced code blocks (whose ``# ...`` lines are no
    headings and whose ``x[i](y)`` is no link)."""
    return re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)


def _anchors(path: Path) -> set[str]:
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", _prose(path), flags=re.MULTILINE)}


def test_documented_links_exist() -> None:
    """Links in the README and every page under docs/ to files in the repository point at real
    files, and links to a heading (``#anchor``, of the same page or of another Markdown page) at
    a real heading."""
    for doc in (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))):
        where = doc.relative_to(ROOT).as_posix()
        for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)", _prose(doc)):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (doc.parent / target).resolve() if target else doc
            assert path.exists(), f"{where} links to missing {target}"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"{where} links to {target}#{anchor}, which no heading there has"


def test_ci_runs_the_readmes_test_command() -> None:
    """``.ci/run``'s blocking test run is the README's second command: the same install (pinned by
    ``.ci/constraints.txt``) and the same pytest command."""
    install, test = SETUP[1].split(" && ")[2:]
    ci = (ROOT / ".ci" / "run").read_text()
    assert install.replace("pip install", "python -m pip install -q", 1).replace(
        ".ci/constraints.txt", '"$constraints"'
    ) in ci
    assert f"\n{test}\n" in ci


def test_checkers_are_pinned_exactly_and_constraints_agree() -> None:
    """A new release of mypy or ruff cannot fail CI: pyproject pins them exactly, and every pin
    of pyproject is the version in .ci/constraints.txt (the blocking run's versions)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    dev = project["optional-dependencies"]["dev"]
    for tool in ("mypy", "ruff"):
        assert f"{tool}=={pins[tool]}" in dev, (tool, dev)
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]
        assert "<" in requirement, f"{requirement}: no upper bound"
        assert name.lower() in {k.lower() for k in pins}, f"{name} missing from constraints"
