"""Fixtures of the command-line tests: ``cli`` runs ``statekit`` as a subprocess (what a user runs)
in the test's temporary directory; store URLs on SQLite and the real Redis."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from clitools import Run, clear, statekit_cmd

from statekit.testing import RedisServer


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


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's real redis-server with a namespace of this test's own (cleared after)."""
    url = f"{redis_server.url}?namespace=cli{uuid.uuid4().hex[:8]}"
    yield url
    clear(url)


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """The session's PostgreSQL database with a namespace of this test's own (cleared after)."""
    url = f"{postgres_url}?namespace=cli{uuid.uuid4().hex[:8]}"
    yield url
    clear(url)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, or the real Redis or PostgreSQL with a namespace of this test's own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    if request.param == "postgres":
        yield request.getfixturevalue("pg_url")
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    url = f"{server.url}?namespace=cli{uuid.uuid4().hex[:8]}"
    yield url
    clear(url)
