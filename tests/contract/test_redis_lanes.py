"""RedisStorage's command lanes on a real redis-server: concurrent commands share a few
connections and go out pipelined, yet each caller gets its own reply or its own error."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
import redis.asyncio
import redis.asyncio.connection

from statekit import RedisStorage, StorageUnavailableError, WrongTypeError
from statekit.storage.redis._lanes import _pieces
from statekit.testing import RedisServer


async def _storage_connections(raw: redis.asyncio.Redis, name: str) -> int:
    return sum(1 for c in await raw.client_list() if c.get("name") == name)


async def test_a_burst_gets_every_reply_right_over_a_few_connections(redis_server: RedisServer) -> None:
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    client = redis.asyncio.Redis.from_url(redis_server.url, client_name="lanes-burst")
    async with RedisStorage(client, namespace="lanes-burst") as storage:

        async def one(i: int) -> tuple[object, ...]:
            await storage.set_state(f"k{i}", {"i": i})
            got = await storage.get_state(f"k{i}")
            n = await storage.increment(f"n{i % 7}")
            swapped = await storage.compare_and_set(f"k{i}", {"i": -i}, expected={"i": i})
            return got, n, swapped, await storage.get_state(f"k{i}")

        results = await asyncio.gather(*(one(i) for i in range(400)))
        for i, (got, _, swapped, after) in enumerate(results):
            assert got == {"i": i}
            assert swapped is True
            assert after == {"i": -i}
        assert sorted(n for _, n, _, _ in results if n is not None)[-1] <= 400 // 7 + 1
        assert [await storage.get_state(f"n{j}") for j in range(7)] == [58, 57, 57, 57, 57, 57, 57]
        # the lanes, plus one connection that loaded the compare-and-set script on first use
        assert await _storage_connections(raw, "lanes-burst") <= RedisStorage.command_lanes + 1
        await storage.clear_namespace()
    await client.aclose()
    await raw.aclose()


async def test_an_error_reply_fails_only_its_own_command(redis_server: RedisServer) -> None:
    async with RedisStorage(redis_server.url, namespace="lanes-error") as storage:
        await storage.set_state("text", "not a number")

        async def bump(key: str) -> int | str:
            try:
                return await storage.increment(key)
            except WrongTypeError:
                return "wrong type"

        results = await asyncio.gather(*(bump("text" if i % 10 == 0 else f"n{i}") for i in range(200)))
        assert results == ["wrong type" if i % 10 == 0 else 1 for i in range(200)]
        assert await storage.get_state("text") == "not a number"
        await storage.clear_namespace()


async def test_cancelled_callers_leave_the_others_and_the_lanes_working(redis_server: RedisServer) -> None:
    async with RedisStorage(redis_server.url, namespace="lanes-cancel") as storage:
        tasks = [asyncio.create_task(storage.set_state(f"k{i}", i)) for i in range(300)]
        await asyncio.sleep(0)
        for task in tasks[::3]:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for i, outcome in enumerate(outcomes):
            if i % 3:
                assert outcome is None, f"set_state k{i} failed: {outcome!r}"
        for i in range(300):
            if i % 3:
                assert await storage.get_state(f"k{i}") == i
        assert await asyncio.gather(*(storage.increment("after") for _ in range(50)))
        assert await storage.get_state("after") == 50
        await storage.clear_namespace()


async def test_a_connection_the_server_dropped_is_replaced_without_an_error(
    redis_server: RedisServer,
) -> None:
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    client = redis.asyncio.Redis.from_url(redis_server.url, client_name="lanes-killed")
    async with RedisStorage(client, namespace="lanes-killed") as storage:
        await asyncio.gather(*(storage.set_state(f"k{i}", i) for i in range(50)))
        killed = 0
        for info in await raw.client_list():
            if info.get("name") == "lanes-killed":
                await raw.client_kill_filter(_id=info["id"])
                killed += 1
        assert killed >= 1
        await asyncio.sleep(0.05)  # the close reaches the client while the connections are idle
        assert await storage.get_state("k7") == 7
        assert await asyncio.gather(*(storage.get_state(f"k{i}") for i in range(50))) == list(range(50))
        await storage.clear_namespace()
    await client.aclose()
    await raw.aclose()


async def test_stop_gives_the_connections_back_to_the_callers_pool(redis_server: RedisServer) -> None:
    pool = redis.asyncio.ConnectionPool.from_url(redis_server.url, max_connections=2)
    client = redis.asyncio.Redis(connection_pool=pool)
    async with RedisStorage(client, namespace="lanes-pool") as storage:
        await asyncio.gather(*(storage.set_state(f"k{i}", i) for i in range(20)))
        await storage.clear_namespace()
    # both connections free again: two commands that each hold one at the same moment
    assert await asyncio.gather(client.blpop(["lanes-pool:none1"], 0.1), client.blpop(["lanes-pool:none2"], 0.1)) == [
        None,
        None,
    ]
    await client.aclose()


async def test_a_server_that_stops_answering_times_out_and_cancellation_stays_cancellation(
    redis_server: RedisServer,
) -> None:
    raw = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=10)
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=0.3)
    async with RedisStorage(client, namespace="lanes-timeout") as storage:
        await storage.set_state("k", 1)
        # 4 s, so that a stall of the machine cannot end the pause before the reads below (the
        # unpause in `finally` is itself held until the pause ends: 4 s is what this costs)
        await raw.client_pause(4000)
        try:
            # a caller cancelled while waiting for the paused server sees its own cancellation
            waiting = asyncio.create_task(storage.get_state("k"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # one that waits runs into the deadline: 1 to 1.5 times socket_timeout
            start = time.monotonic()
            with pytest.raises(StorageUnavailableError, match="no reply from Redis within 0.3 s"):
                await storage.get_state("k")
            assert time.monotonic() - start < 3.5, "the read gave up after socket_timeout"
        finally:
            await raw.client_unpause()
        assert await storage.get_state("k") == 1
        await storage.clear_namespace()
    await client.aclose()
    await raw.aclose()


async def test_a_large_write_cancelled_at_any_point_is_all_or_nothing_and_the_lanes_go_on(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``set_many`` of megabytes is one ``MSET`` sent in pieces, the event loop running between
    them: stopped part-way, its connection is dropped (the server never runs half a command, and
    the next command on that lane is not read as the rest of it)."""
    big = {f"big{i}": bytes([i % 251]) * 8000 for i in range(400)}  # ~3.2 MB in one MSET
    async with RedisStorage(redis_server.url, namespace="lanes-large") as storage:
        for turns in range(0, 40, 3):
            await storage.clear_namespace()
            writing = asyncio.create_task(storage.set_many(big))
            for _ in range(turns):
                await asyncio.sleep(0)
            writing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writing
            found = await storage.get_many(list(big))
            assert len(found) in (0, len(big)), f"cancelled after {turns} turns: {len(found)} keys"
            if found:
                assert found == big
            await storage.set_state("after", turns)
            assert await storage.get_state("after") == turns

        ticks = 0
        sent_at: list[int] = []  # the ticker's count as each write to the socket begins
        send = redis.asyncio.connection.AbstractConnection.send_packed_command

        async def recording(self: Any, command: Any, check_health: bool = True) -> None:
            sent_at.append(ticks)
            await send(self, command, check_health)

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", recording)
        counting = asyncio.create_task(ticker())
        await storage.set_many(big)
        counting.cancel()
        assert len(set(sent_at)) >= 8  # other tasks ran between the pieces (~256 KiB each)
        assert await storage.get_many(list(big)) == big
        await storage.clear_namespace()


def test_a_large_command_sent_in_pieces_is_the_bytes_redis_py_packs() -> None:
    conn = redis.asyncio.connection.Connection()
    large = ("MSET", *(part for i in range(300) for part in (f"k{i}", bytes([i % 256]) * 1000, i)))
    for command in (large, ("CLIENT LIST", "TYPE", "normal")):
        pieces = list(_pieces(conn, command))
        packed = conn.pack_command(*command)
        assert b"".join(pieces) == (packed if isinstance(packed, bytes) else b"".join(packed))
    assert len(list(_pieces(conn, large))) >= 2  # 300 KB: more than one piece
