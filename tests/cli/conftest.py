"""Helpers of the command-line tests: run ``statekit`` as a subprocess, fill and read stores.

Every command runs as ``python -m statekit.cli`` in a separate process (what a user runs), with
the test's temporary directory as its working directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from statekit import open_storage
from statekit.testing import RedisServer

Run = Callable[..., subprocess.CompletedProcess[str]]


def statekit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "statekit.cli", *args]


@pytest.fixture
def cli(tmp_path: Path) -> Run:
    """``cli("keys", url, ...)`` runs the command and returns the finished process."""

    def run(
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("STATEKIT_DEBUG", None)
        return subprocess.run(
            statekit_cmd(*args),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or tmp_path,
            env=full_env,
        )

    return run


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """The process failed with exactly one line on stderr, no traceback; return that line."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("statekit: error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def load_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fill(url: str, values: Mapping[str, Any], ttl: float | None = None) -> None:
    """Write ``values`` into the store at ``url`` (in this process)."""

    async def main() -> None:
        async with open_storage(url) as storage:
            await storage.set_many(dict(values), ttl=ttl)

    asyncio.run(main())


def dump(url: str) -> dict[str, tuple[Any, float | None]]:
    """Every key of the store at ``url`` with (value, remaining TTL)."""

    async def main() -> dict[str, tuple[Any, float | None]]:
        async with open_storage(url) as storage:
            out = {}
            for key in await storage.list_keys():
                out[key] = (await storage.get_state(key), await storage.get_ttl(key))
            return out

    return asyncio.run(main())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def _clear(url: str) -> None:
    async def main() -> None:
        async with open_storage(url) as storage:
            await storage.clear_namespace()

    asyncio.run(main())


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's real redis-server with a namespace of this test's own (cleared after)."""
    url = f"{redis_server.url}?namespace=cli{uuid.uuid4().hex[:8]}"
    yield url
    _clear(url)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or the real Redis with a namespace of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    url = f"{server.url}?namespace=cli{uuid.uuid4().hex[:8]}"
    yield url
    _clear(url)
