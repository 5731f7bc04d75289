"""What only the memory backend has: the LRU bound and the sweeper."""

from __future__ import annotations

import asyncio

import pytest

from statekit import MemoryStorage
from statekit.testing import FakeClock


async def test_max_keys_evicts_least_recently_used() -> None:
    async with MemoryStorage(max_keys=3) as storage:
        await storage.set_many({"a": 1, "b": 2, "c": 3})
        assert await storage.get_state("a") == 1
        await storage.set_state("d", 4)
        assert sorted(await storage.list_keys()) == ["a", "c", "d"]
        await storage.increment("e")
        assert len(await storage.list_keys()) == 3


async def test_sweeper_reclaims_expired_keys_while_started() -> None:
    clock = FakeClock()
    async with MemoryStorage(clock=clock, sweep_interval=0.01) as storage:
        await storage.set_many({f"k{i}": i for i in range(100)}, ttl=1)
        await storage.set_state("stay", 1)
        clock.advance(2)
        for _ in range(1000):  # the sweeper runs every 10 ms of real time: wait for it, up to 10 s
            if len(storage._data) == 1:
                break
            await asyncio.sleep(0.01)
        assert list(storage._data) == ["stay"]


async def test_sweep_in_chunks_spares_a_key_set_again_meanwhile() -> None:
    clock = FakeClock()
    async with MemoryStorage(clock=clock, sweep_interval=3600) as storage:
        await storage.set_many({f"k{i}": i for i in range(5000)}, ttl=1)
        clock.advance(2)
        sweep = asyncio.create_task(storage._sweep_in_chunks())
        await asyncio.sleep(0)  # the sweep has done its first chunk and yielded to the loop
        assert 0 < len(storage._data) < 5000
        survivor = next(iter(storage._data))  # not swept yet: set again, now without expiry
        await storage.set_state(survivor, "again")
        assert await sweep == 4999
        assert list(storage._data) == [survivor]
        assert await storage.get_state(survivor) == "again"


async def test_sweep_keeps_keys_whose_expiry_moved_and_reclaims_due_ones() -> None:
    clock = FakeClock()
    async with MemoryStorage(clock=clock, sweep_interval=3600) as storage:
        await storage.set_many({"a": 1, "b": 2, "c": 3, "d": 4}, ttl=1)
        await storage.expire("a", 100)  # moved to a later bucket
        await storage.set_state("b", 5)  # no expiry any more
        await storage.expire("c", 2.5)  # moved, due too once the clock passes it
        clock.advance(4)
        assert await storage._sweep_in_chunks() == 2
        assert sorted(storage._data) == ["a", "b"]
        assert await storage.get_ttl("a") == pytest.approx(96, abs=0.01)
        clock.advance(100)
        assert await storage._sweep_in_chunks() == 1
        assert list(storage._data) == ["b"]
        assert storage._due == {}


async def test_clear_namespace_empties_at_once_and_frees_in_chunks() -> None:
    clock = FakeClock()
    async with MemoryStorage(clock=clock, max_bytes=10**7) as storage:
        await storage.set_many({f"k{i}": i for i in range(5000)})
        await storage.set_many({f"t{i}": i for i in range(10)}, ttl=1)
        clock.advance(2)
        clear = asyncio.create_task(storage.clear_namespace())
        await asyncio.sleep(0)  # the clear has started and yielded to the loop
        assert await storage.list_keys() == []
        await storage.set_state("new", 1)
        assert await clear == 5000
        assert await storage.list_keys() == ["new"]
        assert storage._size == len("new") + 8  # a counter counts 8 bytes


@pytest.mark.parametrize("offset_ms", [0, 1, 32, 63])
async def test_sweep_reclaims_a_key_expired_64_ms_ago_wherever_its_bucket_begins(
    offset_ms: int,
) -> None:
    clock = FakeClock(start=(1000 * 64 + offset_ms) / 1000)  # positions within a 64 ms bucket
    async with MemoryStorage(clock=clock, sweep_interval=3600) as storage:
        await storage.set_state("soon", 1, ttl=0.005)
        await storage.set_state("later", 2, ttl=0.5)
        await storage.set_state("never", 3)
        clock.advance(0.005 + 0.064)
        assert await storage._sweep_in_chunks() == 1
        assert sorted(storage._data) == ["later", "never"]
        clock.advance(0.5)
        assert await storage._sweep_in_chunks() == 1
        assert list(storage._data) == ["never"]
        assert await storage.get_state("never") == 3


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryStorage(max_keys=0)
    with pytest.raises(ValueError, match="default_ttl"):
        MemoryStorage(default_ttl=-1)
