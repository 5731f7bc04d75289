"""What only the Redis backend has: its key layout, its clients, and outages of the server."""

from __future__ import annotations

import logging
import os

import pytest
import redis
import redis.asyncio

from statekit import RedisStorage, StorageUnavailableError, open_storage
from statekit.testing import RedisServer, RedisServerUnavailable


async def test_keys_are_namespace_colon_key(redis_server: RedisServer) -> None:
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    async with RedisStorage(raw, namespace="mybot") as storage:
        await storage.set_state("user:1", "x")
        assert await raw.exists("mybot:user:1") == 1
        await storage.clear_namespace()
    async with RedisStorage(raw, namespace="a:b%c") as storage:
        await storage.set_state("k", 1)
        assert await raw.get("a%3Ab%25c:k") == b"1"
        await storage.clear_namespace()
    async with RedisStorage(raw, namespace="{bot}") as storage:
        await storage.set_state("fsm:{1:2}", 1)
        assert await raw.get("%7Bbot%7D:fsm:{1:2}") == b"1", "only the key's own braces form a hash tag"
        await storage.clear_namespace()
    await raw.aclose()


async def test_integers_are_native_redis_integers(redis_server: RedisServer) -> None:
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    async with RedisStorage(raw, namespace="native") as storage:
        await storage.increment("n", 41)
        assert await raw.incr("native:n") == 42
        assert await storage.get_state("n") == 42
        await storage.clear_namespace()
    await raw.aclose()


async def test_client_that_decodes_responses_works(redis_server: RedisServer) -> None:
    decoding = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    async with RedisStorage(decoding, namespace="dec") as storage:
        await storage.set_state("b", b"\xff\x00 binary")
        await storage.set_state("d", {"x": [1, b"\x80"]})
        assert await storage.get_state("b") == b"\xff\x00 binary"
        assert await storage.get_many(["d"]) == {"d": {"x": [1, b"\x80"]}}
        assert sorted(await storage.list_keys()) == ["b", "d"]
        await storage.clear_namespace()
    assert await decoding.ping() is True, "the caller's client stays open"
    await decoding.aclose()


def test_sync_client_is_rejected_with_the_async_alternative() -> None:
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisStorage(redis.Redis())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="redis.asyncio"):
        RedisStorage(42)  # type: ignore[arg-type]


async def test_outage_raises_unavailable_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    try:
        server = RedisServer(password="s3cret-pw")
        server.start()
    except RedisServerUnavailable as exc:
        if os.environ.get("STATEKIT_REQUIRE_REDIS") == "1":
            pytest.fail(f"STATEKIT_REQUIRE_REDIS=1 but {exc}")
        pytest.skip(str(exc))
    try:
        storage = open_storage(server.url + "?namespace=outage")
        assert "s3cret-pw" not in repr(storage)
        await storage.set_state("k", 1)
        server.stop()
        for call in (storage.get_state("k"), storage.set_state("k", 2), storage.increment("n")):
            with pytest.raises(StorageUnavailableError) as info:
                await call
            message = str(info.value)
            assert f"127.0.0.1:{server.port}" in message
            assert "s3cret-pw" not in message
        assert await storage.health() is False
        server.start()
        assert await storage.health() is True
        assert await storage.get_state("k") is None or await storage.get_state("k") == 1
        await storage.set_state("k", 3)
        assert await storage.get_state("k") == 3
        await storage.stop()
        assert "s3cret-pw" not in caplog.text
    finally:
        server.cleanup()


async def test_scripts_are_reloaded_after_the_server_forgets_them(redis_server: RedisServer) -> None:
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    async with RedisStorage(raw, namespace="noscript") as storage:
        assert await storage.compare_and_set("k", 1, expected=None)
        await raw.script_flush()
        assert await storage.compare_and_set("k", 2, expected=1)
        await raw.script_flush()
        assert await storage.increment("n", ttl=10) == 1
        await raw.script_flush()
        await storage.set_state("k", 3, ttl=10, keep_ttl=True)
        assert await storage.get_state("k") == 3
        await storage.clear_namespace()
    await raw.aclose()
