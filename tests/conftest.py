"""Backends as fixtures, shared by every test directory.

``backend`` is parametrized over every backend; ``make_storage(**options)`` builds a storage of
that backend (stopped and cleared after the test); ``storage`` is one such storage; ``clock``
advances time: a fake clock on memory/SQLite, a real sleep on Redis backends.
``redis-cluster`` is a three-primary Redis Cluster and ``redis-sentinel`` a Sentinel-managed
primary with one replica (``redis_cluster`` / ``redis_sentinel``, one each per session), both
opened through ``open_storage`` URLs. ``postgres`` is a PostgreSQL cluster of this session's own
(``postgres_server``) with one database per session (``postgres_url``), on a fake clock.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from statekit import BaseStorage, MemoryStorage, RedisStorage, SQLiteStorage, open_storage
from statekit.testing import (
    FakeClock,
    RedisClusterSetup,
    RedisSentinelSetup,
    RedisServer,
    RedisServerUnavailable,
)
from statekit.testing.postgres_server import PostgresServer, PostgresServerUnavailable

BACKENDS = [
    "memory",
    "sqlite-file",
    "sqlite-memory",
    "fakeredis",
    "redis",
    "redis-cluster",
    "redis-sentinel",
    "postgres",
]
REDIS_BACKENDS = ("fakeredis", "redis", "redis-cluster", "redis-sentinel")
REQUIRE_REDIS = os.environ.get("STATEKIT_REQUIRE_REDIS") == "1"
REQUIRE_POSTGRES = os.environ.get("STATEKIT_REQUIRE_POSTGRES") == "1"
FAKE_CLOCK_BACKENDS = ("memory", "sqlite-file", "sqlite-memory", "postgres")


def _no_redis(reason: str) -> None:
    if REQUIRE_REDIS:
        pytest.fail(f"STATEKIT_REQUIRE_REDIS=1 but {reason}")
    pytest.skip(reason)


def _no_postgres(reason: str) -> None:
    if REQUIRE_POSTGRES:
        pytest.fail(f"STATEKIT_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test session's own (initdb in a temporary directory, a free
    loopback port), removed at the end."""
    try:
        server = PostgresServer()
        server.start()
    except PostgresServerUnavailable as exc:
        _no_postgres(f"PostgreSQL tests need initdb and pg_ctl: {exc}")
        raise
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a database created for this test session on ``postgres_server``."""
    name = f"statekit_{uuid.uuid4().hex[:10]}"
    return postgres_server.create_database(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for this test session, on a free loopback port."""
    try:
        server = RedisServer()
        server.start()
    except RedisServerUnavailable as exc:
        _no_redis(f"real-Redis tests need redis-server: {exc}")
        raise
    yield server
    server.cleanup()


@pytest.fixture
def fresh_redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own (for tests that stop or restart it)."""
    try:
        server = RedisServer()
        server.start()
    except RedisServerUnavailable as exc:
        _no_redis(f"real-Redis tests need redis-server: {exc}")
        raise
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSetup]:
    """A real three-primary Redis Cluster for this test session (``.url`` is redis+cluster://)."""
    try:
        cluster = RedisClusterSetup()
        cluster.start()
    except RedisServerUnavailable as exc:
        _no_redis(f"Redis Cluster tests need redis-server and redis-cli: {exc}")
        raise
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSetup]:
    """A real primary + replica + three sentinels for this session (``.url`` is redis+sentinel://).

    Tests must not kill its servers; a test that fails over starts a RedisSentinelSetup of its own.
    """
    try:
        setup = RedisSentinelSetup()
        setup.start()
    except RedisServerUnavailable as exc:
        _no_redis(f"Redis Sentinel tests need redis-server: {exc}")
        raise
    yield setup
    setup.cleanup()


class Clock:
    """Moves time for a backend: the fake clock where the backend takes one, else real sleep."""

    def __init__(self, fake: FakeClock | None) -> None:
        self.fake = fake

    async def advance(self, seconds: float) -> None:
        if self.fake is not None:
            self.fake.advance(seconds)
        else:
            await asyncio.sleep(seconds)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Name of the backend under test."""
    return str(request.param)


@pytest.fixture
def fake_clock(backend: str) -> FakeClock | None:
    return FakeClock() if backend in FAKE_CLOCK_BACKENDS else None


@pytest.fixture
def clock(fake_clock: FakeClock | None) -> Clock:
    return Clock(fake_clock)


@pytest.fixture
async def make_storage(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fake_clock: FakeClock | None,
) -> AsyncIterator[Callable[..., BaseStorage]]:
    """Factory of storages of the backend under test; options go to the constructor."""
    made: list[BaseStorage] = []
    run = uuid.uuid4().hex[:8]
    fake_servers: dict[str, Any] = {}

    def make(**options: Any) -> BaseStorage:
        options.setdefault("namespace", f"t{run}")
        storage: BaseStorage
        if backend == "memory":
            if fake_clock is not None:
                options.setdefault("clock", fake_clock)
            storage = MemoryStorage(**options)
        elif backend == "sqlite-file":
            if fake_clock is not None:
                options.setdefault("clock", fake_clock)
            storage = SQLiteStorage(tmp_path / "state.db", **options)
        elif backend == "sqlite-memory":
            if fake_clock is not None:
                options.setdefault("clock", fake_clock)
            storage = SQLiteStorage(":memory:", **options)
        elif backend == "fakeredis":
            import fakeredis

            if "server" not in fake_servers:
                fake_servers["server"] = fakeredis.FakeServer()
            client = fakeredis.FakeAsyncRedis(server=fake_servers["server"])
            storage = RedisStorage(client, **options)
        elif backend == "redis":
            server: RedisServer = request.getfixturevalue("redis_server")
            storage = RedisStorage(server.url, **options)
        elif backend == "redis-cluster":
            cluster: RedisClusterSetup = request.getfixturevalue("redis_cluster")
            storage = open_storage(cluster.url, **options)
        elif backend == "redis-sentinel":
            sentinel: RedisSentinelSetup = request.getfixturevalue("redis_sentinel")
            storage = open_storage(sentinel.url, **options)
        elif backend == "postgres":
            from statekit.storage.postgres import PostgresStorage

            if fake_clock is not None:
                options.setdefault("clock", fake_clock)
            url: str = request.getfixturevalue("postgres_url")
            storage = PostgresStorage.from_url(url, **options)
        else:  # pragma: no cover
            raise AssertionError(backend)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        try:
            if (backend in REDIS_BACKENDS or backend == "postgres") and storage.started:
                await storage.clear_namespace()
        finally:
            await storage.stop()


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL another process can open to reach what ``make_storage`` reaches (same SQLite file,
    Redis or PostgreSQL database); pass ``namespace=storage.namespace``. Skips on in-process backends (memory, fakeredis,
    sqlite-memory)."""
    if backend == "sqlite-file":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if backend == "redis":
        return str(request.getfixturevalue("redis_server").url)
    if backend == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    if backend == "redis-sentinel":
        return str(request.getfixturevalue("redis_sentinel").url)
    if backend == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    pytest.skip(f"{backend} cannot be shared with another process")


@pytest.fixture
async def storage(make_storage: Callable[..., BaseStorage]) -> AsyncIterator[BaseStorage]:
    """A started storage of the backend under test."""
    store = make_storage()
    await store.start()
    yield store
