"""Counters vanish after their window: memory does not grow without bound (SPEC 7)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from middleware import Rate, RateLimiter
from statekit import BaseStorage, MemoryStorage

USERS = 1000
WINDOWS = 5


@pytest.mark.parametrize("strategy", ["fixed", "sliding", "gcra"])
async def test_five_windows_of_a_thousand_users_leave_no_live_keys(
    storage: BaseStorage,
    make_limiter: Callable[..., RateLimiter],
    clock: Any,
    real_time: bool,
    strategy: str,
) -> None:
    period = 0.2 if real_time else 10.0
    limiter = make_limiter(Rate(3, period), strategy=strategy, memo_size=256)
    for _ in range(WINDOWS):
        for start in range(0, USERS, 100):
            results = await asyncio.gather(
                *(limiter.hit(f"user:{u}") for u in range(start, start + 100))
            )
            assert all(r.allowed for r in results)
        # at least the last hundred users' counters are live (on Redis, with real time, the
        # first ones may already have expired)
        assert len(await storage.list_keys("ratelimit:*")) >= (100 if real_time else USERS)
        await clock.advance(period)
    # the sliding window keeps a window's counter until the end of the next window
    await clock.advance(2 * period + 0.05)
    assert await storage.list_keys() == []
    if isinstance(storage, MemoryStorage):
        storage.sweep()  # space is reclaimed, not only hidden
        assert storage.sweep() == 0
        assert await storage.list_keys() == []
