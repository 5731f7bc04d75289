"""Counters vanish after their window: memory does not grow without bound (SPEC 7)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from middleware import Rate, RateLimiter
from statekit import BaseStorage, MemoryStorage

USERS = 1000
WINDOWS = 5
STRATEGIES = ("fixed", "sliding", "gcra")


async def test_five_windows_of_a_thousand_users_leave_no_live_keys(
    storage: BaseStorage,
    make_limiter: Callable[..., RateLimiter],
    clock: Any,
    real_time: bool,
) -> None:
    period = 0.2 if real_time else 10.0
    # every strategy at once (each its own prefix); a memory far smaller than the user count
    limiters = [
        make_limiter(Rate(3, period), strategy=s, prefix=f"rl-{s}", memo_size=256)
        for s in STRATEGIES
    ]
    for _ in range(WINDOWS):
        for start in range(0, USERS, 100):
            results = await asyncio.gather(
                *(
                    limiter.hit(f"user:{u}")
                    for u in range(start, start + 100)
                    for limiter in limiters
                )
            )
            assert all(r.allowed for r in results)
        if real_time:  # some counters already expired while others were being counted ...
            counted = time.monotonic()
            live = await storage.list_keys()
            # ... but a sliding-window record lives a whole period after its hit (unless the
            # machine stalled that long before listing)
            assert live or time.monotonic() - counted >= period
        else:
            for strategy in STRATEGIES:
                assert len(await storage.list_keys(f"rl-{strategy}:*")) == USERS, strategy
        await clock.advance(period)
    # the sliding window keeps a record until the end of the next window
    await clock.advance(2 * period + 0.05)
    assert await storage.list_keys() == []
    if isinstance(storage, MemoryStorage):
        storage.sweep()  # space is reclaimed, not only hidden
        assert storage.sweep() == 0
        assert await storage.list_keys() == []
