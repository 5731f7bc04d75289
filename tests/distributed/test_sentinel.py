"""RedisStorage through Redis Sentinel (SPEC section 3): URLs, given clients, unknown services and
a real failover with the primary killed mid-run."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from statekit import RedisStorage, StorageUnavailableError, open_storage
from statekit.storage.redis._client import close_sentinel
from statekit.testing import RedisSentinelSetup, free_port


@pytest.fixture
def namespace() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


def _sentinel(setup: RedisSentinelSetup) -> Sentinel:
    return Sentinel([("127.0.0.1", p) for p in setup.sentinel_ports], socket_connect_timeout=2)


async def test_sentinel_url_reaches_the_primary(redis_sentinel: RedisSentinelSetup, namespace: str) -> None:
    storage = open_storage(redis_sentinel.url + f"?namespace={namespace}")
    assert isinstance(storage, RedisStorage)
    assert f"/{redis_sentinel.service}" in repr(storage)
    async with storage:
        await storage.set_state("k", {"v": 1})
        assert await storage.get_state("k") == {"v": 1}
        assert await storage.health() is True
        # the write is on the primary the sentinels name, and it replicates
        assert storage.client.connection_pool.master_address[1] == redis_sentinel.primary_port()
        await storage.client.execute_command("WAIT", 1, 2000)
        replica = _sentinel(redis_sentinel).slave_for(redis_sentinel.service)
        try:
            assert await replica.get(f"{namespace}:k") is not None
        finally:
            await replica.aclose()
        assert await storage.clear_namespace() == 1


async def test_given_sentinel_client_that_decodes_responses(redis_sentinel: RedisSentinelSetup, namespace: str) -> None:
    sentinel = _sentinel(redis_sentinel)
    client = sentinel.master_for(redis_sentinel.service, decode_responses=True)
    try:
        storage = RedisStorage(client, namespace=namespace)
        assert f"/{redis_sentinel.service}" in repr(storage)
        async with storage:
            assert storage.client is not client
            await storage.set_state("blob", b"\x80\xff")
            assert await storage.get_state("blob") == b"\x80\xff"
            assert await storage.increment("n", 3) == 3
            assert await storage.clear_namespace() == 2
        await client.set(f"{namespace}-probe", "ok")
        assert await client.get(f"{namespace}-probe") == "ok"
        await client.delete(f"{namespace}-probe")
    finally:
        await client.aclose()
        await close_sentinel(sentinel)


async def test_unknown_service_name_is_a_clear_error(redis_sentinel: RedisSentinelSetup, namespace: str) -> None:
    ports = ",".join(f"127.0.0.1:{p}" for p in redis_sentinel.sentinel_ports)
    storage = open_storage(f"redis+sentinel://:pw-secret@{ports}/nosuchservice", namespace=namespace)
    for call in (storage.set_state("k", 1), storage.get_state("k"), storage.increment("n")):
        with pytest.raises(StorageUnavailableError) as info:
            await call
        message = str(info.value)
        assert "'nosuchservice'" in message and ports in message
        assert "pw-secret" not in message
    assert await storage.health() is False
    await storage.stop()
    # nothing was written anywhere: the real primary has no key of this namespace
    async with open_storage(redis_sentinel.url, namespace=namespace) as real:
        assert await real.list_keys() == []


async def test_unreachable_sentinels(namespace: str) -> None:
    port = free_port()
    storage = open_storage(f"redis+sentinel://127.0.0.1:{port}/mymaster", namespace=namespace)
    with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{port}.*'mymaster'"):
        await storage.get_state("k")
    await storage.stop()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://127.0.0.1:26379", "no service name"),
        ("redis+sentinel://127.0.0.1:26379/", "no service name"),
        ("redis+sentinel://127.0.0.1:26379/a/b", "just the service name"),
        ("redis+sentinel:///mymaster", "no host"),
        ("redis+sentinel://127.0.0.1:99999/mymaster", "port"),
        ("redis+sentinel://127.0.0.1/mymaster?db=x", "db"),
        ("redis+sentinel://127.0.0.1/mymaster?ssl=1", "unknown parameter"),
    ],
)
def test_malformed_sentinel_urls(url: str, why: str) -> None:
    with pytest.raises(ValueError, match="accepted schemes") as info:
        open_storage(url)
    assert why in str(info.value)


def test_sentinel_passwords_are_hidden() -> None:
    storage = open_storage(
        "redis+sentinel://app:data-pw@127.0.0.1,127.0.0.2:26380/cache?sentinel_password=sent-pw&db=2"
    )
    text = repr(storage)
    assert "data-pw" not in text and "sent-pw" not in text
    assert "127.0.0.1:26379,127.0.0.2:26380/cache" in text


@pytest.mark.slow
async def test_failover_keeps_every_acknowledged_write(own_sentinel: RedisSentinelSetup, namespace: str) -> None:
    """The primary is SIGKILLed mid-run. A write counts as acknowledged once redis returned it AND
    ``WAIT 1`` on the same connection confirmed a replica has it (Redis replication is asynchronous:
    without WAIT a write the primary acknowledged can be lost in a failover; see
    docs/deployment.md). Every acknowledged write must be readable after the failover; during the
    switch operations fail only with StorageUnavailableError; afterwards the same storages work."""
    sentinel = _sentinel(own_sentinel)
    # one connection, no client-side retry: WAIT then covers exactly the writes before it
    writer_client = sentinel.master_for(
        own_sentinel.service, max_connections=1, retry=Retry(NoBackoff(), 0)
    )
    writer = RedisStorage(writer_client, namespace=namespace)
    observer = open_storage(own_sentinel.url, namespace=namespace)
    await writer.start()
    await observer.start()
    assert writer.client is writer_client

    acked: dict[str, int] = {}
    unexpected: list[BaseException] = []
    unavailable = {"writer": 0, "observer": 0}
    written_after_kill = {"n": 0}
    killed = asyncio.Event()
    stop = asyncio.Event()

    async def write_loop() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            key = f"w{i}"
            try:
                await writer.set_state(key, i)
                written_after_kill["n"] += killed.is_set()
                replicas = await writer_client.execute_command("WAIT", 1, 500)
            except StorageUnavailableError:
                unavailable["writer"] += killed.is_set()
                await asyncio.sleep(0.02)
                continue
            except Exception as exc:  # noqa: BLE001 - the WAIT is a raw redis-py call
                from redis.exceptions import ConnectionError as RedisConnectionError

                if not isinstance(exc, RedisConnectionError):
                    unexpected.append(exc)
                await asyncio.sleep(0.02)
                continue
            if replicas >= 1:
                acked[key] = i

    async def observe_loop() -> None:
        while not stop.is_set():
            try:
                await observer.increment("observed")
            except StorageUnavailableError:
                unavailable["observer"] += killed.is_set()
            except Exception as exc:  # noqa: BLE001 - anything else is a failure of the test
                unexpected.append(exc)
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(write_loop()), asyncio.create_task(observe_loop())]
    try:
        while len(acked) < 100:
            await asyncio.sleep(0.01)
        old_port = own_sentinel.primary.port
        own_sentinel.primary.kill()
        killed.set()
        acked_at_kill = dict(acked)
        await asyncio.to_thread(own_sentinel.wait_failover, old_port, 30)
        # after the switch the same storages work again by themselves
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            try:
                await observer.set_state("after", "failover")
                if written_after_kill["n"] > 0:
                    break
            except StorageUnavailableError as exc:
                assert asyncio.get_running_loop().time() < deadline, f"observer did not recover: {exc}"
            assert asyncio.get_running_loop().time() < deadline, "writer did not recover"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    try:
        assert not unexpected, unexpected
        assert unavailable["writer"] + unavailable["observer"] > 0, "the switch went unnoticed"
        assert len(acked_at_kill) >= 100
        found = await observer.get_many(list(acked))
        lost = {k: v for k, v in acked.items() if found.get(k) != v}
        assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost)[:5]}"
        assert await observer.get_state("after") == "failover"
        assert await writer.get_state("after") == "failover"
        assert isinstance(await observer.get_state("observed"), int)
        new_port = observer.client.connection_pool.master_address[1]
        assert new_port == own_sentinel.replica.port != old_port
    finally:
        await observer.stop()
        await writer.stop()
        await writer_client.aclose()
        await close_sentinel(sentinel)
