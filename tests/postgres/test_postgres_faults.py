"""Faults on a PostgreSQL server of each test's own: stopped (fast / immediate) and restarted under
load, a backend terminated mid-statement. Errors are StorageUnavailableError naming the server,
no acknowledged write is lost, and the same storage object works again once the server is back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import asyncpg
import pytest

from statekit import StorageUnavailableError
from statekit.storage.postgres import PostgresStorage
from statekit.testing.postgres_server import PostgresServer, PostgresServerUnavailable

pytestmark = pytest.mark.postgres


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    try:
        srv = PostgresServer()
        srv.start()
    except PostgresServerUnavailable as exc:
        if os.environ.get("STATEKIT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"STATEKIT_REQUIRE_POSTGRES=1 but {exc}")
        pytest.skip(str(exc))
    yield srv
    srv.cleanup()


async def _until_healthy(storage: PostgresStorage) -> None:
    for _ in range(300):  # waits for an event (the server accepting again), bounded at 30 s
        if await storage.health():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("storage did not recover within 30 s")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_stop_and_restart_under_load_loses_no_acknowledged_write(
    server: PostgresServer, mode: str
) -> None:
    storage = PostgresStorage(server.url(), namespace="faults", max_size=4)
    await storage.start()
    acked: dict[str, int] = {}
    hits_acked = 0
    hits_unknown = 0
    errors: list[BaseException] = []
    stop_now = asyncio.Event()
    down = asyncio.Event()

    async def writer(n: int) -> None:
        nonlocal hits_acked, hits_unknown
        i = 0
        while not stop_now.is_set():
            i += 1
            key = f"w{n}:{i}"
            try:
                await storage.set_state(key, i)
                acked[key] = i
            except StorageUnavailableError as exc:
                errors.append(exc)
                down.set()
                await asyncio.sleep(0.01)
            try:
                await storage.increment("hits")
                hits_acked += 1
            except StorageUnavailableError as exc:
                errors.append(exc)
                hits_unknown += 1

    tasks = [asyncio.create_task(writer(n)) for n in range(8)]
    while len(acked) < 200:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(server.stop, mode)
    await asyncio.wait_for(down.wait(), 30)
    before_restart = len(errors)
    assert before_restart > 0
    for call in (storage.get_state("w0:1"), storage.set_state("x", 1), storage.increment("hits")):
        with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{server.port}/postgres"):
            await call
    assert await storage.health() is False
    assert all(server.password not in str(e) for e in errors)

    await asyncio.to_thread(server.start)
    await _until_healthy(storage)
    acked_at_restart = len(acked)
    while len(acked) < acked_at_restart + 200:  # writers carry on by themselves
        await asyncio.sleep(0.01)
    stop_now.set()
    await asyncio.gather(*tasks)

    assert await storage.get_many(list(acked)) == acked
    hits = await storage.get_state("hits")
    assert isinstance(hits, int) and hits_acked <= hits <= hits_acked + hits_unknown
    # after recovery every operation works on the same storage object
    assert await storage.increment("after") == 1
    await storage.clear_namespace()
    await storage.stop()


async def test_terminated_backend_mid_statement_is_unavailable_then_recovers(
    server: PostgresServer,
) -> None:
    storage = PostgresStorage(server.url(), namespace="term", max_size=2)
    await storage.start()
    await storage.set_state("locked", "before")
    admin = await asyncpg.connect(server.url())
    blocker = await asyncpg.connect(server.url())
    try:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("SELECT 1 FROM statekit_kv WHERE key = convert_to('locked', 'UTF8') FOR UPDATE")
        waiting = asyncio.create_task(storage.set_state("locked", "after"))
        pid = None
        for _ in range(300):  # until the storage's statement waits on the row lock (bounded)
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'INSERT INTO%statekit_kv%'"
            )
            if pid is not None:
                break
            await asyncio.sleep(0.05)
        assert pid is not None
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(StorageUnavailableError, match=f"127.0.0.1:{server.port}"):
            await waiting
        await lock.rollback()
    finally:
        await blocker.close()
        await admin.close()
    assert await storage.get_state("locked") == "before"  # the killed statement did nothing
    await storage.set_state("locked", "again")
    assert await storage.get_state("locked") == "again"
    assert await asyncio.gather(*(storage.increment("n") for _ in range(20))) is not None
    assert await storage.get_state("n") == 20
    await storage.stop()
