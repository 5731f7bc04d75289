"""The few internals of aiosqlite and redis-py that statekit relies on, each used in one module
(statekit/storage/_aiosqlite.py, statekit/storage/redis/_client.py and the command lanes). When a
release changes one of them, this fails and says which, before a backend breaks in a subtler way."""

from __future__ import annotations

import inspect

import aiosqlite
import pytest
import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from statekit.storage._aiosqlite import daemon_worker, raw_connection, run_in_thread


def _needs(owner: object, *names: str) -> None:
    for name in names:
        assert hasattr(owner, name), (
            f"{getattr(owner, '__name__', owner)}.{name} is gone in this release "
            f"(redis {redis.__version__}, aiosqlite {aiosqlite.__version__}); statekit uses it"
        )


async def test_aiosqlite_runs_a_function_on_its_thread_and_exposes_the_connection() -> None:
    _needs(aiosqlite.Connection, "_execute")
    async with aiosqlite.connect(":memory:") as conn:
        db = raw_connection(conn)
        assert type(db).__name__ == "Connection" and db.__class__.__module__ == "sqlite3"
        assert await run_in_thread(conn, lambda c: c.execute("SELECT 41 + 1").fetchone()[0], db) == 42


async def test_aiosqlite_worker_thread_can_be_made_a_daemon() -> None:
    pending = aiosqlite.connect(":memory:")
    assert daemon_worker(pending), (
        f"aiosqlite {aiosqlite.__version__} has no worker thread at Connection._thread: an "
        "unstopped SQLiteStorage may keep a finished program alive"
    )
    async with pending as conn:
        assert conn._thread.daemon


def test_redis_pool_keeps_its_connection_kwargs() -> None:
    pool = redis.asyncio.ConnectionPool(host="127.0.0.1", port=1, db=3, decode_responses=True)
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["decode_responses"] is True
    _needs(pool, "connection_class", "max_connections")
    _needs(redis.asyncio.Redis, "from_pool")


def test_redis_cluster_keeps_what_the_bytes_twin_copies() -> None:
    client = RedisCluster(host="127.0.0.1", port=1, decode_responses=True)
    _needs(client, "connection_kwargs", "load_balancing_strategy", "read_from_replicas", "retry",
           "startup_nodes", "nodes_manager", "get_nodes", "get_encoder")
    _needs(NodesManager, "__init__")
    manager = client.nodes_manager
    _needs(manager, "require_full_coverage", "address_remap")
    params = inspect.signature(RedisCluster.__init__).parameters
    from statekit.storage.redis._client import _CLUSTER_TWIN_KWARGS

    missing = [name for name in _CLUSTER_TWIN_KWARGS if name not in params]
    assert not missing, f"RedisCluster() no longer takes {missing}"


def test_sentinel_pool_keeps_its_fields() -> None:
    manager = Sentinel([("127.0.0.1", 1)])
    pool = SentinelConnectionPool("svc", manager)
    _needs(pool, "service_name", "sentinel_manager", "is_master", "check_connection",
           "connection_class", "max_connections", "connection_kwargs")
    _needs(manager, "sentinels")


@pytest.mark.parametrize(
    "name",
    ["send_packed_command", "read_response", "pack_command", "pack_commands", "connect",
     "disconnect", "is_connected"],
)
def test_connection_offers_what_the_command_lanes_use(name: str) -> None:
    _needs(AbstractConnection, name)
    assert hasattr(AbstractConnection, "can_read") or hasattr(AbstractConnection, "can_read_destructive")


def test_cluster_offers_what_the_cluster_lanes_use() -> None:
    _needs(ClusterNode, "acquire_connection", "release", "name")
    _needs(RedisCluster, "get_node_from_key", "execute_command")
