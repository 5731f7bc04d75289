"""Bursts across a window edge (SPEC 7): 12 hits within 0.2 s around an edge, limit 5.

On backends with a fake clock the rate is the issue's 5 per 10 s and the burst spans 0.2 s; on
Redis backends, where time only moves by waiting, the rate is 5 per 1 s and the burst spans 0.1 s
(still shorter than GCRA's 0.2 s between hits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from middleware import Rate, RateLimiter
from statekit.testing import FakeClock


def _period(real_time: bool) -> float:
    return 1.0 if real_time else 10.0


def _gap(real_time: bool) -> float:
    return 0.1 if real_time else 0.2


async def _burst(limiter: RateLimiter, key: str, clock: Any, gap: float) -> tuple[int, int]:
    """Six hits, ``gap`` seconds later six more; return how many of each six passed."""
    first = sum([(await limiter.hit(key)).allowed for _ in range(6)])
    await clock.advance(gap)
    second = sum([(await limiter.hit(key)).allowed for _ in range(6)])
    return first, second


async def _to_aligned_edge(
    period: float, fake_clock: FakeClock | None, before: float = 0.1
) -> None:
    """Move time to ``before`` seconds ahead of the next multiple of ``period``."""
    now = fake_clock() if fake_clock is not None else time.time()
    wait = (period - before - now % period) % period
    if fake_clock is not None:
        fake_clock.advance(wait)
    else:
        await asyncio.sleep(wait)


async def test_gcra_allows_exactly_the_limit_across_any_edge(
    make_limiter: Callable[..., RateLimiter],
    clock: Any,
    fake_clock: FakeClock | None,
    real_time: bool,
) -> None:
    period, gap = _period(real_time), _gap(real_time)
    limiter = make_limiter(Rate(5, period), strategy="gcra")
    # an edge aligned to the clock
    await _to_aligned_edge(period, fake_clock, gap / 2)
    assert sum(await _burst(limiter, "aligned", clock, gap)) == 5
    # the end of a window opened by an earlier hit
    assert (await limiter.hit("opened")).allowed
    await clock.advance(period - gap / 2)
    assert sum(await _burst(limiter, "opened", clock, gap)) == 5


async def test_sliding_window_has_no_double_burst_at_an_edge(
    make_limiter: Callable[..., RateLimiter],
    clock: Any,
    fake_clock: FakeClock | None,
    real_time: bool,
) -> None:
    period, gap = _period(real_time), _gap(real_time)
    limiter = make_limiter(Rate(5, period), strategy="sliding")
    # the sliding window's counters are aligned to the clock: burst around that edge
    await _to_aligned_edge(period, fake_clock, gap / 2)
    first, second = await _burst(limiter, "aligned", clock, gap)
    assert first == 5
    assert first + second <= 6
    # and around the end of a window opened by an earlier hit
    assert (await limiter.hit("opened")).allowed
    await clock.advance(period - gap / 2)
    assert sum(await _burst(limiter, "opened", clock, gap)) <= 6


async def test_fixed_window_starts_at_first_hit_and_allows_its_documented_edge_burst(
    make_limiter: Callable[..., RateLimiter],
    clock: Any,
    fake_clock: FakeClock | None,
    real_time: bool,
) -> None:
    period, gap = _period(real_time), _gap(real_time)
    limiter = make_limiter(Rate(5, period), strategy="fixed")
    # windows are not aligned to the clock: a burst around a clock edge is one window
    await _to_aligned_edge(period, fake_clock, gap / 2)
    assert await _burst(limiter, "aligned", clock, gap) == (5, 0)
    # documented: at the end of a window opened earlier, the rest of that window plus a whole
    # new window pass (here 4 + 5 of the 12 hits), never more than `limit` per window
    assert (await limiter.hit("opened")).allowed
    await clock.advance(period - gap / 2)
    assert await _burst(limiter, "opened", clock, gap) == (4, 5)


async def test_refused_hit_reports_when_to_retry(
    make_limiter: Callable[..., RateLimiter], clock: Any, real_time: bool
) -> None:
    period = 0.5 if real_time else 10.0
    for strategy in ("fixed", "sliding", "gcra"):
        limiter = make_limiter(Rate(5, period), strategy=strategy)
        results = [await limiter.hit("u") for _ in range(5)]
        assert [r.remaining for r in results] == [4, 3, 2, 1, 0]
        assert all(r.allowed and r.retry_after == 0 for r in results)
        refused = await limiter.hit("u")
        assert not refused.allowed and refused.remaining == 0
        assert 0 < refused.retry_after <= 2 * period
        assert 0 < refused.reset_after <= 2 * period
        await clock.advance(refused.retry_after + 0.05)
        assert (await limiter.hit("u")).allowed, strategy
