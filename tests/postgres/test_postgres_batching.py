"""Concurrent operations share round trips once every pooled connection is busy: the results are
exactly those of running the calls one by one (per-caller values, errors and CAS outcomes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from statekit import StorageUnavailableError, WrongTypeError
from statekit.storage.postgres import PostgresStorage

pytestmark = pytest.mark.postgres
INT64_MAX = 2**63 - 1


@pytest.fixture
async def narrow(postgres_url: str) -> AsyncIterator[PostgresStorage]:
    """A storage with a one-connection pool: the second concurrent call already queues."""
    storage = PostgresStorage(postgres_url, namespace=f"b{uuid.uuid4().hex[:8]}", max_size=1)
    await storage.start()
    yield storage
    await storage.clear_namespace()
    await storage.stop()


def _batches(storage: PostgresStorage) -> int:
    assert storage._coalescer is not None
    return storage._coalescer.batches_run


async def test_concurrent_increments_return_each_callers_own_value(narrow: PostgresStorage) -> None:
    results = await asyncio.gather(*(narrow.increment(f"n{i % 3}", 2, ttl=60) for i in range(150)))
    assert _batches(narrow) > 0, "150 calls on one connection must have shared statements"
    for key in range(3):
        mine = sorted(r for i, r in enumerate(results) if i % 3 == key)
        assert mine == list(range(2, 101, 2))
    assert await narrow.get_many(["n0", "n1", "n2"]) == {"n0": 100, "n1": 100, "n2": 100}
    ttl = await narrow.get_ttl("n0")
    assert ttl is not None and 50 < ttl <= 60


async def test_batched_increment_errors_stay_with_their_callers(narrow: PostgresStorage) -> None:
    await narrow.set_state("text", "not a number")
    await narrow.set_state("big", INT64_MAX - 5)
    calls = (
        [narrow.increment("text") for _ in range(5)]
        + [narrow.increment("big", 1) for _ in range(8)]  # the 6th and later overflow
        + [narrow.increment("mixed", a) for a in (5, -3, 10, -20)]
        + [narrow.increment("ok") for _ in range(20)]
    )
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, WrongTypeError) for r in results[:5])
    big = results[5:13]
    assert sorted(r for r in big if isinstance(r, int)) == [INT64_MAX - 4 + i for i in range(5)]
    assert sum(isinstance(r, OverflowError) for r in big) == 3
    assert await narrow.get_state("big") == INT64_MAX
    assert await narrow.get_state("mixed") == -8
    assert sorted(results[17:]) == list(range(1, 21))  # type: ignore[type-var]
    assert await narrow.get_state("text") == "not a number"


async def test_concurrent_cas_create_has_exactly_one_winner_per_key(narrow: PostgresStorage) -> None:
    outcomes = await asyncio.gather(
        *(narrow.compare_and_set(f"c{i % 4}", i, expected=None) for i in range(80))
    )
    assert outcomes.count(True) == 4
    for key in range(4):
        winners = [i for i, ok in enumerate(outcomes) if ok and i % 4 == key]
        assert len(winners) == 1
        assert await narrow.get_state(f"c{key}") == winners[0]


async def test_concurrent_cas_retry_loops_on_few_keys_lose_nothing(narrow: PostgresStorage) -> None:
    async def add_one(key: str) -> None:
        while True:
            current = await narrow.get_state(key)
            new = {"n": (current or {"n": 0})["n"] + 1}
            if await narrow.compare_and_set(key, new, expected=current, ttl=100):
                return

    await asyncio.gather(*(add_one(f"r{i % 5}") for i in range(100)))
    assert _batches(narrow) > 0
    assert await narrow.get_many([f"r{i}" for i in range(5)]) == {f"r{i}": {"n": 20} for i in range(5)}


async def test_concurrent_sets_and_gets_see_whole_values(narrow: PostgresStorage) -> None:
    await asyncio.gather(*(narrow.set_state(f"s{i % 10}", {"i": i}, ttl=30) for i in range(100)))
    got = await asyncio.gather(*(narrow.get_state(f"s{i % 10}") for i in range(100)))
    for i, value in enumerate(got):
        assert value is not None and value["i"] % 10 == i % 10
    assert len(await narrow.list_keys("s*")) == 10


async def test_concurrent_deletes_of_one_key_report_one_removal(narrow: PostgresStorage) -> None:
    await narrow.set_many({"d1": 1, "d2": 2})
    outcomes = await asyncio.gather(*(narrow.delete_state(f"d{i % 3}") for i in range(30)))
    assert sum(outcomes) == 2
    assert [i % 3 for i, ok in enumerate(outcomes) if ok] in ([1, 2], [2, 1])
    assert await narrow.list_keys("d*") == []


async def test_cancelled_queued_calls_are_never_run(narrow: PostgresStorage) -> None:
    tasks = [asyncio.ensure_future(narrow.increment("cancel")) for _ in range(60)]
    await asyncio.sleep(0)
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    done = sum(1 for t in tasks if not t.cancelled())
    assert await narrow.get_state("cancel") == done
    assert await narrow.increment("cancel") == done + 1


async def test_a_set_many_of_several_statements_is_stored_whole_or_not_at_all(
    narrow: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {f"bucket:{i:03d}": bytes([i]) * 300_000 for i in range(10)}  # 3 MB: 4 statements
    await narrow.set_many(values)
    assert await narrow.get_many(list(values)) == values

    changed = {key: b"new" + value for key, value in values.items()}
    real_execute = asyncpg.connection.Connection.execute
    statements = 0

    async def failing_third(self: asyncpg.connection.Connection, query: str, *args: object) -> str:
        nonlocal statements
        statements += bool(args)  # not BEGIN / ROLLBACK
        if args and statements == 3:
            raise asyncpg.exceptions.DiskFullError("no space left on device")
        return await real_execute(self, query, *args)

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", failing_third)
    with pytest.raises(StorageUnavailableError):
        await narrow.set_many(changed)
    monkeypatch.undo()
    assert statements == 3, "the batch should have been split for this test to mean anything"
    assert await narrow.get_many(list(values)) == values  # the first two statements rolled back
