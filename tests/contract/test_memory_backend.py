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
        await asyncio.sleep(0.05)
        assert len(storage._data) == 1


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        MemoryStorage(max_keys=0)
    with pytest.raises(ValueError, match="default_ttl"):
        MemoryStorage(default_ttl=-1)
